"""Where boards are: the OS serial port list filtered by USB VID:PID (``Settings.usb_ids``, by
default those of the probes in the board catalogue), link folders, explicit URLs.

A scan returns a set of port URLs; the fleet opens and greets the new ones and notices the ones
that disappeared. Symlinks (``/dev/serial/by-id/...``, a virtual board's ``--link``) are kept as
they are, not resolved: a board that comes back on a new tty keeps its name.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from typing import Iterable, Protocol


class PortInfo(Protocol):
    device: str
    vid: int | None
    pid: int | None


@dataclass(frozen=True)
class FakePort:
    """A port-list entry for tests (the fields of pyserial's ListPortInfo that we read)."""

    device: str
    vid: int | None = None
    pid: int | None = None


def parse_ids(ids: Iterable[str]) -> set[tuple[int, int]]:
    out = set()
    for item in ids:
        v, p = item.split(":")
        out.add((int(v, 16), int(p, 16)))
    return out


def filter_ports(ports: Iterable[PortInfo], usb_ids: Iterable[str]) -> list[str]:
    """Devices of the ports whose VID:PID is in usb_ids (ports without USB ids never match)."""
    wanted = parse_ids(usb_ids)
    return sorted(p.device for p in ports if p.vid is not None and p.pid is not None and (p.vid, p.pid) in wanted)


def list_os_ports() -> list[PortInfo]:
    from serial.tools import list_ports

    return list(list_ports.comports())


def scan(urls: Iterable[str], link_globs: Iterable[str], usb_ids: Iterable[str], scan_usb: bool = True,
         os_ports=list_os_ports) -> list[str]:
    found: list[str] = []
    seen: set[str] = set()

    def add(u: str) -> None:
        # one board reached by two names (a by-id link and its /dev/ttyACM*) is one board: the
        # first name wins, and links come before the USB scan, so the stable name is kept
        key = u if "://" in u else os.path.realpath(u)
        if key not in seen:
            seen.add(key)
            found.append(u)

    for u in urls:
        add(u)
    for pattern in link_globs:
        for path in sorted(glob.glob(pattern)):
            add(path)
    if scan_usb:
        for dev in filter_ports(os_ports(), usb_ids):
            add(dev)
    return found
