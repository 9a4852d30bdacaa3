"""What the subcommands share, importable without cli.py (which imports every command): the
``--data`` option, list options (``ListOption``), the API key of a client (``add_api_key``, never
on argv) and the command line that made a report."""

from __future__ import annotations

import argparse
import os
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


class NoSecretOnArgv(argparse.Action):
    """A secret's flag that refuses its value: the command line is visible to every user (ps)."""

    def __call__(self, parser, namespace, values, option_string=None):
        where = ("set FLEETVOTE_ADMIN_KEY in the environment" if option_string == "--admin-key" else
                 "set FLEETVOTE_API_KEY in the environment, or put the key in a file and pass --api-key-file FILE")
        parser.error(f"{option_string} is not taken on the command line, where ps shows it to every user: {where}")


def add_api_key(p: argparse.ArgumentParser) -> None:
    """A client's API key: FLEETVOTE_API_KEY or ``--api-key-file``; ``--api-key`` says so."""
    p.add_argument("--api-key-file", help="a file holding the service's API key (its first line); "
                                          "default: FLEETVOTE_API_KEY")
    p.add_argument("--api-key", nargs="?", action=NoSecretOnArgv, metavar="KEY",
                   help="not taken here (ps would show it): FLEETVOTE_API_KEY or --api-key-file")


def read_api_key(a: argparse.Namespace) -> str | None:
    """The key of ``add_api_key``'s options: the file's first line, else FLEETVOTE_API_KEY."""
    from .errors import ConfigError

    if a.api_key_file:
        try:
            lines = Path(a.api_key_file).read_text().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the API key file {a.api_key_file} ({exc})") from exc
        if not lines or not lines[0].strip():
            raise ConfigError(f"the API key file {a.api_key_file} is empty")
        return lines[0].strip()
    return os.environ.get("FLEETVOTE_API_KEY") or None


def command_line() -> str | None:
    """The command that made a report, as a user would type it again: ``fleetvote ARGS`` when this
    process is the fleetvote command (the console script or ``python -m fleetvote.cli``); None
    otherwise (a test or a script calling ``main()``, whose argv says nothing about the report)."""
    prog = Path(sys.argv[0])
    if prog.name == "fleetvote" or (prog.name == "cli.py" and prog.parent.name == "fleetvote"):
        return "fleetvote " + shlex.join(sys.argv[1:])
    return None
