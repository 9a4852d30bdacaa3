"""``make model ID=<id>``: train (resumable) and export one zoo model from models/recipes.json.

    python -m fleetvote_models.recipes vgg12-s1 [--runs runs] [--zoo models/zoo]

Running it again after an interruption resumes training from the last finished epoch. A recipe
with a ``parent`` is a warm restart: the parent is made first (if its run is not finished yet),
then this run starts from the parent's best weights (``--init``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RECIPES = ROOT / "models" / "recipes.json"


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
    p.add_argument("--runs", default=str(ROOT / "runs"))
    p.add_argument("--zoo", default=str(ROOT / "models" / "zoo"))
    a = p.parse_args(argv)
    recipes = {k: v for k, v in json.loads(RECIPES.read_text()).items() if not k.startswith("_")}
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
