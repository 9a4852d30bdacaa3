"""What the subcommands share, importable without cli.py (which imports every command): the
``--data`` option, list options (``ListOption``) and the command line that made a report."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path


def add_data(p: argparse.ArgumentParser) -> None:
    """``--data``: where every command that reads images gets them (``data.load_split``)."""
    p.add_argument("--data", help="CIFAR-10 archive (JPEG copy or official python release); "
                                  "default: $CIFAR10_PATH, else Keras' download")


class ListOption(argparse.Action):
    """A list option given repeated (``--x a --x b``), comma separated (``--x a,b``) or both, as
    every list of the command line is: the value is the items joined by commas, the first use
    replacing the default, so that the command splits one string either way."""

    def __call__(self, parser, namespace, values, option_string=None):
        given = vars(namespace).setdefault("_lists_given", set())
        before = getattr(namespace, self.dest) if self.dest in given else ""
        setattr(namespace, self.dest, ",".join(x for x in (before, values) if x))
        given.add(self.dest)


def command_line() -> str | None:
    """The command that made a report, as a user would type it again: ``fleetvote ARGS`` when this
    process is the fleetvote command (the console script or ``python -m fleetvote.cli``); None
    otherwise (a test or a script calling ``main()``, whose argv says nothing about the report)."""
    prog = Path(sys.argv[0])
    if prog.name == "fleetvote" or (prog.name == "cli.py" and prog.parent.name == "fleetvote"):
        return "fleetvote " + shlex.join(sys.argv[1:])
    return None
