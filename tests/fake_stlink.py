#!/usr/bin/env python3
"""Fake ``st-info``, ``st-flash`` and ``openocd`` for tests/test_flash.py: one script, linked under
those three names into a folder put first on PATH. Standard library only.

The state lives in ``$FAKE_STLINK`` (a folder):

* ``probes.json``: the attached probes, ``[{"serial": ..., "chip_id": 0x431}, ...]``;
* ``calls.jsonl``: every call, one JSON line ``{"tool": ..., "argv": [...]}``, appended;
* ``fail``: when it holds a serial, writing through that probe fails (status 1);
* ``links``, ``board_bin``: the folder of by-id links and the host firmware.

"Writing" an image really changes the board behind the probe: the virtual board (host firmware,
``--name`` the image's board, ``--model`` its model, ``--pty --link`` the probe's by-id link)
that stands for it is stopped and started again, so HELLO afterwards tells what was written.
Like the real tools, st-flash and openocd without a serial take the first probe.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

STATE = Path(os.environ.get("FAKE_STLINK", "."))


def link_of(links: Path, serial: str) -> Path:
    return links / f"usb-STMicroelectronics_STM32_STLink_{serial}-if02"


def start_board(state: Path, serial: str, board: str, model: str) -> int:
    """(Re)starts the virtual board behind ``serial``; returns its PID once its link exists."""
    stop_board(state, serial)
    links = Path((state / "links").read_text())
    link = link_of(links, serial)
    proc = subprocess.Popen([(state / "board_bin").read_text(), "--model", model, "--name", board, "--id", serial,
                             "--pty", "--link", str(link)], stdout=subprocess.DEVNULL,
                            stderr=open(state / f"{serial}.log", "ab"), start_new_session=True)
    (state / f"{serial}.pid").write_text(str(proc.pid))
    for _ in range(200):
        if link.exists():
            return proc.pid
        if proc.poll() is not None:
            sys.exit(f"fake: the virtual board for {serial} exited with {proc.returncode}")
        time.sleep(0.025)
    sys.exit(f"fake: no link {link} after 5 s")


def stop_board(state: Path, serial: str) -> None:
    pidfile = state / f"{serial}.pid"
    if not pidfile.exists():
        return
    pid = int(pidfile.read_text())
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pidfile.unlink()
        return
    for _ in range(200):
        try:
            if os.waitpid(pid, os.WNOHANG)[0]:
                break  # our own child, reaped
        except ChildProcessError:
            pass
        try:  # another process's child: gone, or a zombie its parent has not reaped yet
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                break
        except (FileNotFoundError, ProcessLookupError):
            break
        time.sleep(0.025)
    pidfile.unlink()


def write(serial: str | None, image: str) -> int:
    probes = json.loads((STATE / "probes.json").read_text())
    if serial is None:
        serial = probes[0]["serial"] if probes else None
    if serial not in {p["serial"] for p in probes}:
        print(f"fake: no ST-LINK with serial {serial}", file=sys.stderr)
        return 1
    fail = STATE / "fail"
    if fail.exists() and fail.read_text().strip() == serial:
        print(f"fake: flash write failed on {serial}", file=sys.stderr)
        return 1
    # what is written is the file itself: a link to another build's image writes that build
    parts = Path(image).resolve().parts  # .../stm32f4/<board>/<model>/release/firmware.bin
    start_board(STATE, serial, parts[-4], parts[-3])
    return 0


def main(argv: list[str]) -> int:
    tool = Path(argv[0]).name
    with open(STATE / "calls.jsonl", "a") as f:
        f.write(json.dumps({"tool": tool, "argv": argv[1:]}) + "\n")
    if tool == "st-info":
        probes = json.loads((STATE / "probes.json").read_text())
        print(f"Found {len(probes)} stlink programmers")
        for p in probes:  # stlink 1.7.0's layout
            print(f"  version:    V2J37S26\n  serial:     {p['serial']}\n  flash:      524288 (pagesize: 16384)\n"
                  f"  sram:       131072\n  chipid:     0x{p['chip_id']:04x}\n  descr:      F4xx")
        return 0
    if tool == "st-flash":
        args = argv[1:]
        serial = args[args.index("--serial") + 1] if "--serial" in args else None
        return write(serial, args[args.index("write") + 1])
    if tool == "openocd":
        cmds = [argv[i + 1] for i, a in enumerate(argv) if a == "-c"]
        serial = next((c.split()[2] for c in cmds if c.startswith("adapter serial ")), None)
        program = next(c.split()[1] for c in cmds if c.startswith("program "))
        return write(serial, program)
    print(f"fake: unknown tool {tool}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
