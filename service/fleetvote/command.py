"""What the subcommands share, importable without cli.py (which imports every command): the
``--data`` option and the command line that made a report."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path


def add_data(p: argparse.ArgumentParser) -> None:
    """``--data``: where every command that reads images gets them (``data.load_split``)."""
    p.add_argument("--data", help="CIFAR-10 archive (JPEG copy or official python release); "
                                  "default: $CIFAR10_PATH, else Keras' download")


def command_line() -> str | None:
    """The command that made a report, as a user would type it again: ``fleetvote ARGS`` when this
    process is the fleetvote command (the console script or ``python -m fleetvote.cli``); None
    otherwise (a test or a script calling ``main()``, whose argv says nothing about the report)."""
    prog = Path(sys.argv[0])
    if prog.name == "fleetvote" or (prog.name == "cli.py" and prog.parent.name == "fleetvote"):
        return "fleetvote " + shlex.join(sys.argv[1:])
    return None
