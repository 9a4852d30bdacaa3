"""Virtual boards: the host build of the firmware (``firmware/build/host/board``), one process per
member, each on its own pty with a stable ``--link`` (or on a TCP port). Started and stopped by
PID; ``stop()`` leaves no process behind."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from ..settings import ROOT
from .processes import stop_process

log = logging.getLogger("fleetvote.virtual")

BOARD_BIN = ROOT / "firmware" / "build" / "host" / "board"


def board_binary() -> Path:
    """The virtual board's executable: $FLEETVOTE_BOARD_BIN, else `fleetvote-board` on PATH (the
    container image installs it so), else the build folder of a source checkout."""
    if os.environ.get("FLEETVOTE_BOARD_BIN"):
        return Path(os.environ["FLEETVOTE_BOARD_BIN"])
    found = shutil.which("fleetvote-board")
    if found:
        return Path(found)
    for candidate in (BOARD_BIN, Path.cwd() / "firmware" / "build" / "host" / "board"):
        if candidate.exists():
            return candidate
    return BOARD_BIN


@dataclass
class VirtualBoard:
    model_id: str
    board_id: str
    process: subprocess.Popen
    port: str  # "/dev/pts/N" or "127.0.0.1:PORT"
    link: Path | None
    kind: str  # "pty" or "tcp"

    @property
    def url(self) -> str:
        if self.kind == "tcp":
            return f"socket://{self.port}"
        return str(self.link) if self.link else self.port


def start_board(model_id: str, board_id: str, link: Path | None = None, tcp_port: int | None = None,
                binary: Path | None = None, timeout: float = 5.0, latency_ms: int = 0) -> VirtualBoard:
    binary = binary or board_binary()
    if not binary.exists():
        raise ConfigError(f"{binary} is missing: build it with `make -C firmware BOARD=host`")
    args = [str(binary), "--model", model_id, "--id", board_id]
    if latency_ms:
        args += ["--latency-ms", str(latency_ms)]
    if tcp_port is not None:
        args += ["--tcp", str(tcp_port)]
    else:
        args += ["--pty"]
        if link is not None:
            link.parent.mkdir(parents=True, exist_ok=True)
            args += ["--link", str(link)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # Ctrl-C in a terminal is ours to forward
    deadline = time.monotonic() + timeout
    line = ""
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line or proc.poll() is not None:
            break
    if not line.startswith(("pty ", "tcp ")):
        err = proc.stderr.read() if proc.poll() is not None else ""
        stop_process(proc)
        raise ConfigError(f"virtual board {model_id} did not start: {line.strip() or err.strip() or 'no output'}")
    kind, port = line.split()
    return VirtualBoard(model_id, board_id, proc, port, link if kind == "pty" else None, kind)


class VirtualFleet:
    """One virtual board per model id, links in ``link_dir`` (named after the model and index)."""

    def __init__(self, model_ids: list[str], link_dir: Path, tcp_base: int | None = None):
        self.model_ids = model_ids
        self.link_dir = link_dir
        self.tcp_base = tcp_base
        self.boards: list[VirtualBoard] = []

    def start(self) -> list[VirtualBoard]:
        try:
            for i, mid in enumerate(self.model_ids):
                self.boards.append(start_board(
                    mid, f"virtual-{i}-{mid}", link=self.link_dir / f"board{i}-{mid}",
                    tcp_port=None if self.tcp_base is None else self.tcp_base + i))
        except Exception:
            self.stop()
            raise
        return self.boards

    def stop(self) -> None:
        for b in self.boards:
            stop_process(b.process)
            if b.link is not None and b.link.is_symlink():
                b.link.unlink()
        self.boards.clear()

    def __enter__(self) -> "VirtualFleet":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # ``fleetvote serve --virtual`` hands the fleet to ``create_app(board_supply=...)``: the
    # lifespan enters it before the service's fleet starts and leaves it after that has stopped,
    # so the boards end with the application even when the server exits on a signal
    async def __aenter__(self) -> "VirtualFleet":
        for b in await asyncio.to_thread(self.start):
            log.info("virtual board started", extra={"url": str(b.link or b.port), "model_id": b.model_id,
                                                     "pid": b.process.pid})
        return self

    async def __aexit__(self, *exc) -> None:
        await asyncio.to_thread(self.stop)
        log.info("virtual boards stopped")
