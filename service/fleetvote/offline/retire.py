"""``fleetvote retire``: a zoo model that no fleet uses leaves the zoo; its card stays in the history.

The zoo is what ``make check-cards``, ``make verify-exact``, the host firmware and ``fleetvote
ensemble-eval`` walk: every model in it costs time on every run. A model that no fleet uses
leaves it, and what was measured of it stays: its card, whole, goes into ``models/history.json``
(the one place its figures are stated), and ``docs/history.md``, written from that file, shows
it as a table row (id, role, architecture, epochs, training time, int8 validation and test
accuracy, MACC, parameters, flash, RAM, instructions per MAC, when and why it left).

A model is refused, and nothing at all changes, when any id asked for:

* is not in the zoo (or is not a plain id: no path separators);
* is a member of the zoo's ensemble file (``models/zoo/ensemble.json``: the fleet ``make run``
  serves): write a fleet without it first (``fleetvote ensemble-eval --write-ensemble``);
* has role ``reference`` or ``baseline``: the one-board systems every result is compared with;
* is what another model is made from: a zoo card's ``init`` or ``teacher``, or a recipe's
  ``parent``, ``init`` or ``teacher`` in ``models/recipes.json``, names it (``make model ID=<dependant>``
  would otherwise quietly retrain it first): retire the dependant in the same call, or drop the
  dependant's recipe first;
* is named by a test (any text file under ``tests/`` or ``firmware/tests/`` that names the id,
  as a whole word): the test would lose its model. A test that needs a model of some kind picks
  one by its properties instead (tests/test_qemu.py picks a member with max pooling and ADD).

The figures are written before the model's folder is removed, so an interrupted run loses
nothing. ``--render`` rewrites ``docs/history.md`` from ``models/history.json`` alone.

    fleetvote retire OLD-s1 OLD-s1-r2 --why "a warm-restart pair no fleet uses"
    fleetvote retire --render
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from datetime import datetime, timezone
from pathlib import Path

from ..errors import ConfigError
from ..settings import ROOT
from . import pct as _pct, rel_path as _rel

ZOO = ROOT / "models" / "zoo"
HISTORY = ROOT / "models" / "history.json"
HISTORY_MD = ROOT / "docs" / "history.md"
RECIPES = ROOT / "models" / "recipes.json"
DEPENDENCY_KEYS = ("parent", "init", "teacher")  # how a card or a recipe names the model it is made from
TEST_DIRS = (ROOT / "tests", ROOT / "firmware" / "tests")
PROTECTED_ROLES = ("reference", "baseline")
DATE = re.compile(r"\d{4}-\d{2}-\d{2}")  # an entry's "left": the day it left the zoo (UTC)
MAX_SCANNED_BYTES = 2 << 20  # test files larger than this are data (vectors), not tests naming a model
HISTORY_DOC = ("Models that left the zoo (fleetvote retire) or were replaced under their id: each card as it "
               "was, with when (left: the date, UTC; null while it is still in the zoo) and why. docs/history.md "
               "is written from this file (fleetvote retire --render); edit this file, never the markdown.")


def load_history(path: Path = HISTORY) -> dict:
    if not Path(path).exists():
        return {"_doc": HISTORY_DOC, "models": []}
    try:
        h = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc}); fix it before retiring anything") from exc
    if not isinstance(h, dict) or not isinstance(h.get("models"), list) \
            or not all(isinstance(e, dict) and isinstance(e.get("card"), dict) for e in h["models"]):
        raise ConfigError(f"{path}: expected {{\"models\": [{{\"card\": {{...}}, ...}}, ...]}}")
    for e in h["models"]:
        left = e.get("left")
        if left is not None and not (isinstance(left, str) and DATE.fullmatch(left)):
            raise ConfigError(f"{path}: {e['card'].get('id')}: left {left!r}: a date (YYYY-MM-DD), or null for a "
                              "model still in the zoo; say why in \"why\"")
    return h


def ensemble_ids(zoo: Path) -> list[str]:
    path = zoo / "ensemble.json"
    if not path.exists():
        return []
    try:
        ens = json.loads(path.read_text())
        return [m["id"] for m in ens.get("members", [])]
    except (OSError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"{path}: unreadable ({exc}): cannot tell which models the fleet uses") from exc


def naming_tests(model_id: str, dirs=TEST_DIRS) -> list[str]:
    """``file:line`` of every line of a test file that names ``model_id`` as a whole word (a
    longer id that starts with it, such as ``<id>-r2``, is another model)."""
    word = re.compile(r"(?<![A-Za-z0-9_.-])" + re.escape(model_id) + r"(?![A-Za-z0-9_-])")
    hits = []
    for d in dirs:
        d = Path(d)
        if not d.is_dir():
            continue
        for f in sorted(d.rglob("*")):
            if not f.is_file() or f.stat().st_size > MAX_SCANNED_BYTES or "__pycache__" in f.parts:
                continue
            try:
                text = f.read_text()
            except (UnicodeDecodeError, OSError):
                continue  # binary data
            for n, line in enumerate(text.splitlines(), start=1):
                if word.search(line):
                    hits.append(f"{_rel(f)}:{n}")
    return hits


def dependants(zoo: Path, recipes: Path = RECIPES) -> dict[str, list[str]]:
    """{model id: what is made from it}: ``card <id> (init)`` for a zoo card (its ``recipe`` block
    holds ``init`` and ``teacher``), ``recipe <id> (parent)`` for a recipe of ``recipes``. A value
    that is a path names the model of its last part."""
    found: list[tuple[str, str, dict]] = []
    for card_path in sorted(Path(zoo).glob("*/card.json")):
        try:
            card = json.loads(card_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{_rel(card_path)} unreadable ({exc}): cannot tell which models are made from "
                              "which") from exc
        if isinstance(card, dict):
            found.append(("card", card_path.parent.name, card))
    if Path(recipes).exists():
        try:
            raw = json.loads(Path(recipes).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{_rel(recipes)}: not valid JSON ({exc}): cannot tell which models are made from "
                              "which") from exc
        found += [("recipe", k, r) for k, r in (raw.items() if isinstance(raw, dict) else ())
                  if not k.startswith("_") and isinstance(r, dict)]
    out: dict[str, list[str]] = {}
    for kind, owner, d in found:
        sub = d.get("recipe") if kind == "card" and isinstance(d.get("recipe"), dict) else {}
        for key in DEPENDENCY_KEYS:
            v = d.get(key) or sub.get(key)  # a card keeps its training arguments under "recipe"
            if isinstance(v, str) and v:
                out.setdefault(Path(v).name, []).append(f"{kind} {owner} ({key})")
    return out


def problems(ids: list[str], zoo: Path, dirs=TEST_DIRS, recipes: Path = RECIPES) -> list[str]:
    """Why each id may not leave the zoo (empty: all may)."""
    out = []
    if not any(Path(d).is_dir() for d in dirs):
        return [f"no tests found in {', '.join(str(d) for d in dirs)}: cannot tell whether a test needs a model; "
                "retire from a checkout of the repository"]
    fleet = ensemble_ids(zoo)
    made_from = dependants(zoo, recipes)
    for i in ids:
        if not i or "/" in i or "\\" in i or i in (".", ".."):
            out.append(f"{i!r}: not a zoo id")
            continue
        card_path = zoo / i / "card.json"
        if not card_path.exists():
            have = sorted(p.parent.name for p in zoo.glob("*/card.json"))
            out.append(f"{i}: not in {_rel(zoo)} (have {', '.join(have) or 'nothing'})")
            continue
        try:
            card = json.loads(card_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            out.append(f"{i}: {_rel(card_path)} unreadable ({exc})")
            continue
        if i in fleet:
            out.append(f"{i}: a member of {_rel(zoo / 'ensemble.json')} (the fleet make run serves): write a fleet "
                       "without it first (fleetvote ensemble-eval --write-ensemble)")
        if card.get("role") in PROTECTED_ROLES:
            out.append(f"{i}: role {card['role']}: every result is compared with it; it stays")
        deps = [d for d in made_from.get(i, []) if d.split()[1] not in ids]  # unless it leaves too
        if deps:
            out.append(f"{i}: other models are made from it ({', '.join(deps)}; make model ID=<that id> would "
                       f"retrain {i} first): retire them in the same call, or drop their recipes from "
                       f"{_rel(recipes)} first")
        hits = naming_tests(i, dirs)
        if hits:
            out.append(f"{i}: named by a test ({', '.join(hits[:5])}{', ...' if len(hits) > 5 else ''}): make the "
                       "test pick a model by its properties, then retire it")
    return out


def _ipm(card: dict) -> str:
    v = ((card.get("bench_firmware") or {}).get("instructions_per_mac") or {}).get("opt")
    return "-" if v is None else f"{v:g}"


def _num(v) -> str:
    return "-" if v is None else f"{v:,}"


def render(history: dict) -> str:
    """docs/history.md: one table row per model of the history, in the order they left."""
    L = ["# History: models that left the zoo", "",
         "Written by `fleetvote retire` from `models/history.json` (each card whole, as it was); do not edit by "
         "hand: edit that file and run `fleetvote retire --render`. Accuracies are int8, through the TFLite Micro "
         "reference interpreter, on the card's data set (CIFAR-10, JPEG copy: 5,000 validation images held out "
         "of the training set, the 10,000 test images); flash is the weights, RAM the peak activations; "
         "instructions per MAC with the optimised kernels, counted under QEMU; left the zoo: the date (UTC), - for a "
         "model still in it.", "",
         "| id | role | arch | epochs | train s | int8 val | int8 test | MACC | params | flash | RAM | instr/MAC "
         "| sha256 | left the zoo | why |",
         "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|"]
    for e in history["models"]:
        c = e["card"]
        L.append(f"| `{c.get('id')}` | {c.get('role') or '-'} | `{c.get('arch') or '-'}` | {c.get('epochs', '-')} | "
                 f"{_num(c.get('train_seconds'))} | {_pct(c.get('val_accuracy'))} | {_pct(c.get('test_accuracy'))} | "
                 f"{_num(c.get('macc'))} | {_num(c.get('params'))} | {_num(c.get('flash_bytes'))} | "
                 f"{_num(c.get('ram_bytes'))} | {_ipm(c)} | {str(c.get('sha256') or '-')[:12]} | "
                 f"{e.get('left') or '-'} | {e.get('why') or '-'} |")
    return "\n".join(L) + "\n"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)  # atomic: a reader never sees half a file


def retire(ids: list[str], zoo: Path = ZOO, history: Path = HISTORY, history_md: Path = HISTORY_MD,
           why: str = "no fleet uses it", dirs=TEST_DIRS, dry_run: bool = False, today: str | None = None,
           recipes: Path = RECIPES) -> list[dict]:
    """Move the cards of ``ids`` into the history and remove their zoo folders; every id is checked
    first, and any problem refuses them all (ConfigError listing each). Returns the entries added."""
    ids = list(dict.fromkeys(ids))
    if not ids:
        raise ConfigError("no id given: name the zoo models to retire (fleetvote retire ID ...)")
    bad = problems(ids, zoo, dirs, recipes)
    if bad:
        raise ConfigError("nothing retired:\n  " + "\n  ".join(bad))
    h = load_history(history)
    today = today or datetime.now(timezone.utc).date().isoformat()
    added = [{"card": json.loads((zoo / i / "card.json").read_text()), "left": today, "why": why} for i in ids]
    if dry_run:
        return added
    h["models"].extend(added)
    _write(Path(history), json.dumps(h, indent=1) + "\n")
    _write(Path(history_md), render(h))
    for i in ids:  # the figures are safe in the history: now the models go
        shutil.rmtree(zoo / i)
    return added


def _cmd(a: argparse.Namespace) -> int:
    if a.render:
        if a.ids:
            raise ConfigError("--render takes no ids: it rewrites the markdown from the history file alone")
        _write(Path(a.history_md), render(load_history(Path(a.history))))
        print(f"wrote {a.history_md} from {a.history}")
        return 0
    added = retire(a.ids, Path(a.zoo), Path(a.history), Path(a.history_md), a.why, dry_run=a.dry_run,
                   recipes=Path(a.recipes))
    for e in added:
        c = e["card"]
        print(f"{'would retire' if a.dry_run else 'retired'} {c['id']} ({c.get('arch')}, {c.get('epochs')} epochs, "
              f"int8 val {_pct(c.get('val_accuracy'))}, test {_pct(c.get('test_accuracy'))})")
    if not a.dry_run:
        print(f"cards kept in {a.history} and {a.history_md}; rebuild what embeds the zoo "
              "(make -C firmware BOARD=host) and rerun make results")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("retire", help="move zoo models no fleet uses out of the zoo, their cards into the history",
                       description="Each id's card goes whole into models/history.json and as a row into "
                                   "docs/history.md, then its folder leaves the zoo. Refused, with nothing changed, "
                                   "for a model the zoo's ensemble file uses, the reference or the baseline, a "
                                   "model another card or recipe is made from (init, teacher, parent), or a "
                                   "model a test names.",
                       epilog=("examples:\n"
                               "  fleetvote retire OLD-s1 OLD-s1-r2 --dry-run  # a parent with its child\n"
                               "  fleetvote retire OLD-s1 OLD-s1-r2 \\\n"
                               "      --why \"15-25 epochs; no fleet uses them\"\n"
                               "  fleetvote retire --render        # docs/history.md from models/history.json"),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("ids", nargs="*", help="zoo ids")
    p.add_argument("--zoo", default=str(ZOO), help=f"default {_rel(ZOO)}")
    p.add_argument("--history", default=str(HISTORY), help=f"the history's data (default {_rel(HISTORY)})")
    p.add_argument("--history-md", default=str(HISTORY_MD), help=f"the history's table (default {_rel(HISTORY_MD)})")
    p.add_argument("--recipes", default=str(RECIPES),
                   help=f"the recipes whose parents must stay (default {_rel(RECIPES)})")
    p.add_argument("--why", default="no fleet uses it", help="the reason, in the table (default: %(default)s)")
    p.add_argument("--dry-run", action="store_true", help="check and say what would leave; change nothing")
    p.add_argument("--render", action="store_true", help="only rewrite --history-md from --history")
    p.set_defaults(func=_cmd)
