"""``fleetvote pareto``: int8 test accuracy against bill of materials and against estimated latency,
for single models and the best fleets of 2 to 5 members, with the non-dominated front; one picture.

It computes no accuracy and no cost of its own: the points come from the reports ``make results``
has just written.

* accuracy: ``fleetvote ensemble-eval --json`` (the numpy engine on the test split): each model's
  argmax accuracy; for a fleet of k, the best subset of k members **and its vote, both chosen on
  validation** (the report's ``best``: the vote that scores best on validation for that subset),
  at that vote's test accuracy;
* cost: ``fleetvote plan --json``: each model on its cheapest catalogue board (the reference on a
  nucleo-f411re), its price, and its latency (serial transfer + compute from the model's own
  instruction count) plus the host's measured overhead; a fleet costs the sum of its members'
  boards (``bom.fleet_plan``) and answers when its slowest member has.

Single models: the members, the reference (``resnet8``, role reference) and the baseline. The
report's best "fleet" of 1 is no fleet: it is the member best on validation, already a single
model's point (drawn twice, its labels overlapped), so the fleets start at 2. A point
is dominated when another is at least as accurate and at most as costly on that axis, and better on
one of the two; the front is every point no other dominates (a tie dominates neither). A model
that fits no board has no cost and is left out of the picture (listed in the report).

    fleetvote pareto --eval runs/results/ensemble-eval.json --plan runs/results/plan.json \\
        --png docs/pareto.png --json runs/results/pareto.json
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

from ..command import command_line
from ..errors import ConfigError
from .bom import fleet_plan

MIN_FLEET = 2  # a "fleet" of 1 is its one member, a single model's point already
MAX_FLEET = 5
AXES = (
    {"key": "bom_usd", "label": "bill of materials ($)", "fmt": "${:g}"},
    {"key": "latency_ms", "label": "estimated latency (ms)", "fmt": "{:.1f} ms"},
)
SINGLE_KINDS = ("member", "reference", "baseline")
FLEETS_RULE = (f"fleets: the best subset of each size {MIN_FLEET}-{MAX_FLEET} and its vote, both chosen on the "
               "validation split; accuracy on the test split")


def points(ev: dict, plan: dict, max_fleet: int = MAX_FLEET) -> list[dict]:
    """Single models and the best fleets of ``MIN_FLEET`` to ``max_fleet``: id, label, kind, members, vote,
    test accuracy, bill of materials (USD) and estimated latency (ms; None without a board)."""
    host = (plan.get("host_overhead_ms") or {}).get("p50") or 0.0
    rows = {r["id"]: r for r in plan["models"]}
    acc = {m["id"]: m["test_accuracy"] for m in ev["models"]}
    out = []
    for r in plan["models"]:
        if r.get("role") not in SINGLE_KINDS:
            continue
        a = acc.get(r["id"], r.get("test_accuracy"))
        if a is None:
            continue
        lat = r.get("latency")
        out.append({"id": r["id"], "label": r["id"], "kind": r["role"], "size": 1, "members": [r["id"]],
                    "vote": "argmax", "test_accuracy": a, "bom_usd": r.get("price_usd") if r.get("board") else None,
                    "latency_ms": None if lat is None else round(lat["total_ms"] + host, 2)})
    for k in range(MIN_FLEET, max_fleet + 1):
        best = ev["best"].get(str(k))
        if best is None:
            continue
        vote = best["best_strategy_on_val"]
        f = fleet_plan(f"best {k}", best["members"], rows, {}, host, best["test"])
        placed = not f["unfit"]
        out.append({"id": f"fleet-{k}", "label": f"fleet of {k}", "kind": "fleet", "size": k,
                    "members": best["members"], "vote": vote, "test_accuracy": best["test"][vote],
                    "bom_usd": f["total_usd"] if placed else None,
                    "latency_ms": f["latency_ms"] if placed else None})
    return out


def dominates(q: dict, p: dict, key: str) -> bool:
    """q at least as accurate and at most as costly as p on ``key``, and strictly better on one."""
    return (q[key] <= p[key] and q["test_accuracy"] >= p["test_accuracy"]
            and (q[key] < p[key] or q["test_accuracy"] > p["test_accuracy"]))


def front(pts: list[dict], key: str) -> list[str]:
    """The ids of the points no other dominates on ``key``, cheapest first (those with a cost)."""
    have = [p for p in pts if p.get(key) is not None]
    keep = [p for p in have if not any(dominates(q, p, key) for q in have if q is not p)]
    return [p["id"] for p in sorted(keep, key=lambda p: (p[key], -p["test_accuracy"], p["id"]))]


def report(ev: dict, plan: dict, png: str | None = None) -> dict:
    pts = points(ev, plan)
    if not pts:
        raise ConfigError("no model with an accuracy in the reports: run fleetvote ensemble-eval and plan first")
    return {"points": pts, "front": {a["key"]: front(pts, a["key"]) for a in AXES}, "axes": list(AXES),
            "unplaced": [p["id"] for p in pts if p["bom_usd"] is None], "fleets_rule": FLEETS_RULE,
            "dataset": ev.get("dataset"), "images": ev.get("images"), "png": png,
            "accuracy_from": ev.get("command"), "cost_from": plan.get("command")}


# colours and markers per kind; the front a dashed step through its points
LOOKS = {"member": dict(marker="o", color="0.55", label="single member"),
         "reference": dict(marker="*", color="purple", s=140, label="reference (one board)"),
         "baseline": dict(marker="s", color="red", label="int8 baseline (one board)"),
         "fleet": dict(marker="^", color="tab:blue", s=70, label="best fleet of k (chosen on validation)")}


def plot(rep: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    for ax, axis in zip(axes, rep["axes"]):
        draw(rep, ax, axis)
    axes[0].set_ylabel(f"int8 test accuracy ({(rep.get('images') or {}).get('test', '?')} images)")
    axes[0].legend(fontsize=8, loc="lower right")
    fig.suptitle("fleetvote: accuracy against cost; fleets' members and votes chosen on validation", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def draw(rep: dict, ax, axis: dict) -> None:
    key = axis["key"]
    pts = [p for p in rep["points"] if p[key] is not None]
    for kind, look in LOOKS.items():
        mine = [p for p in pts if p["kind"] == kind]
        if mine:
            ax.scatter([p[key] for p in mine], [100 * p["test_accuracy"] for p in mine], zorder=3,
                       **{"s": 36, **look})
    for p in pts:
        if p["kind"] != "member":
            text = f"{p['size']} ({p['vote']})" if p["kind"] == "fleet" else p["label"]
            ax.annotate(text, (p[key], 100 * p["test_accuracy"]), textcoords="offset points", xytext=(5, 4),
                        fontsize=7)
    by_id = {p["id"]: p for p in pts}
    f = [by_id[i] for i in rep["front"][key] if i in by_id]
    if f:
        ax.step([p[key] for p in f], [100 * p["test_accuracy"] for p in f], where="post", ls="--", color="black",
                lw=0.9, label="non-dominated front", zorder=2)
    ax.set_xlabel(axis["label"])
    ax.grid(alpha=0.3)


def _cmd(a: argparse.Namespace) -> int:
    try:
        ev = json.loads(Path(a.eval).read_text())
        plan = json.loads(Path(a.plan).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read the reports ({exc}): run fleetvote ensemble-eval --json and "
                          "fleetvote plan --json first (make results does)") from exc
    rep = report(ev, plan, a.png)
    rep["command"] = command_line()
    rep["date"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    if a.png:
        try:
            plot(rep, Path(a.png))
        except ImportError:
            print("matplotlib is not installed: no plot", file=sys.stderr)
            rep["png"] = None
    if a.json:
        Path(a.json).write_text(json.dumps(rep, indent=1) + "\n")
    for axis in rep["axes"]:
        pts = {p["id"]: p for p in rep["points"]}
        print(f"front in {axis['label']}: " + "; ".join(
            f"{pts[i]['label']} {100 * pts[i]['test_accuracy']:.2f} % at {axis['fmt'].format(pts[i][axis['key']])}"
            for i in rep["front"][axis["key"]]))
    if rep["unplaced"]:
        print(f"fits no catalogue board (left out): {', '.join(rep['unplaced'])}")
    if rep.get("png"):
        print(f"plot: {a.png}")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("pareto", help="accuracy against bill of materials and estimated latency, with the front",
                       description="From the reports of fleetvote ensemble-eval and fleetvote plan: int8 test accuracy "
                                   "against bill of materials and against estimated latency for the members, the "
                                   "reference, the baseline and the best fleets of 2 to 5 (members and vote chosen "
                                   "on validation), with the non-dominated front of each; one picture, two panels.",
                       epilog="example: fleetvote pareto --eval runs/results/ensemble-eval.json --plan "
                              "runs/results/plan.json --png docs/pareto.png --json runs/results/pareto.json",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--eval", default="runs/results/ensemble-eval.json", help="fleetvote ensemble-eval --json output")
    p.add_argument("--plan", default="runs/results/plan.json", help="fleetvote plan --json output")
    p.add_argument("--png", help="the picture (two panels)")
    p.add_argument("--json", help="the points and the fronts")
    p.set_defaults(func=_cmd)
