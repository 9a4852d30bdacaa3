"""``make model ID=<id>``: train (resumable) and export one zoo model from models/recipes.json.

    python -m fleetvote_models.recipes resnet8 [--runs DIR] [--zoo models/zoo]

Running it again after an interruption resumes training from the last finished epoch. A recipe
with a ``parent`` is a warm restart: the parent is made first (if its run is not finished yet),
then this run starts from the parent's best weights (``--init``). An entry with ``"recipe":
true`` trains with the shared recipe (``_recipe`` in recipes.json) and then its own arguments,
which win where they overlap (argparse keeps the last).

Runs (checkpoints every epoch, logs, best weights) live outside the work tree, in
``$FLEETVOTE_RUNS`` or else ``~/.local/state/fleetvote/runs``: a checkpoint is not a model, and
only the exported model and its card are committed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RECIPES = ROOT / "models" / "recipes.json"


def default_runs() -> Path:
    env = os.environ.get("FLEETVOTE_RUNS")
    return Path(env) if env else Path.home() / ".local" / "state" / "fleetvote" / "runs"


def load_recipes(path: Path | None = None) -> dict[str, dict]:
    """Every zoo id's recipe, with the shared recipe's arguments expanded in front of its own."""
    raw = json.loads((path or RECIPES).read_text())
    shared = raw.get("_recipe", {}).get("args", [])
    out = {}
    for k, v in raw.items():
        if k.startswith("_"):
            continue
        out[k] = {**v, "args": [*shared, *v["args"]] if v.get("recipe") else list(v["args"])}
    return out


def _finished(run: Path, zoo_dir: Path) -> bool:
    """The run did all its epochs and its model is in the zoo (so it need not be made again)."""
    try:
        state = json.loads((run / "run.json").read_text())
    except (OSError, ValueError):
        return False
    return state.get("epoch") == state.get("recipe", {}).get("epochs") and (zoo_dir / "card.json").exists()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("id")
    p.add_argument("--runs", default=str(default_runs()),
                   help="where runs and their checkpoints go (default: $FLEETVOTE_RUNS, else %(default)s)")
    p.add_argument("--zoo", default=str(ROOT / "models" / "zoo"))
    a = p.parse_args(argv)
    recipes = load_recipes()
    if a.id not in recipes:
        print(f"unknown id {a.id!r}; recipes: {', '.join(recipes)}", file=sys.stderr)
        return 2
    from fleetvote.cli import main as cli

    r = recipes[a.id]
    run = str(Path(a.runs) / a.id)
    init: list[str] = []
    if "parent" in r:
        if not _finished(Path(a.runs) / r["parent"], Path(a.zoo) / r["parent"]):
            rc = main([r["parent"], "--runs", a.runs, "--zoo", a.zoo])
            if rc:
                return rc
        init = ["--init", str(Path(a.runs) / r["parent"])]
    rc = cli(["train", *r["args"], *init, "--out", run, "--resume"])
    if rc:
        return rc
    return cli(["export", run, "--id", a.id, "--zoo", a.zoo, "--role", r["role"]])


if __name__ == "__main__":
    sys.exit(main())
