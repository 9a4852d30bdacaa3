"""Virtual boards: the host build of the firmware (``firmware/build/host/board``), one process per
board (``replicas`` per member), each on its own pty with a stable ``--link`` (or on a TCP port).
Started and stopped by PID; ``stop()`` leaves no process behind.

Speed (``fleetvote serve --virtual --board-speed``): ``host`` boards answer as fast as this machine
computes (2-5 ms a member); ``planned`` boards take their member's latency on its catalogue board
as ``fleetvote plan`` estimates it (serial transfer of the image and its answer at the board's
baud + compute at the model's own instructions per MAC, ``offline/bom.py``), through the host
board's ``--latency-ms`` (the firmware pads its compute time up to it before it replies). The wire
of a pty adds about a millisecond on top: the transfer is counted once, inside the padding.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import selectors
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
                binary: Path | None = None, timeout: float = 5.0, latency_ms: int = 0,
                own_session: bool = True) -> VirtualBoard:
    """One virtual board, once it has said where its link is. ``own_session``: in a session of its
    own (the default: a test's boards then weigh apart from the test, as real boards would not
    share its CPU at all), else in the caller's session, in a process group of its own (below)."""
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
    # A process group of its own either way, so that Ctrl-C in a terminal is ours to forward.
    # The service's virtual fleet (VirtualFleet) keeps its boards in the service's session: where
    # the kernel groups the scheduling of processes by session (CONFIG_SCHED_AUTOGROUP, on by
    # default in Debian's and Ubuntu's kernels), a board in a session of its own weighs as much as
    # the whole service, event loop and engine workers together, and five busy host-speed boards
    # left the service a sixth of the cores in a burst. In the service's session each board is one
    # thread among the service's own (admission.EngineBatches counts the busy ones as rivals).
    session = {"start_new_session": True} if own_session else {"process_group": 0}
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **session)
    line, ended = first_line(proc, timeout)
    if ended != "line" or not line.startswith(("pty ", "tcp ")):
        if ended == "eof":  # it closed its stdout, so it is exiting: its stderr says why
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(1.0)
        exited = proc.poll() is not None
        err = proc.stderr.read() if exited else ""
        stop_process(proc)
        if ended == "timeout":
            said = f" (it wrote {line!r} and no end of line)" if line else ""
            raise ConfigError(f"virtual board {model_id} did not start: {binary} said nothing within {timeout:g} s"
                              f"{said}; it was stopped. Is it the host board (make -C firmware BOARD=host), "
                              f"and is the machine so loaded that it needs a longer timeout?")
        raise ConfigError(f"virtual board {model_id} did not start: {line.strip() or err.strip() or 'no output'}")
    kind, port = line.split()
    return VirtualBoard(model_id, board_id, proc, port, link if kind == "pty" else None, kind)


def first_line(proc: subprocess.Popen, timeout: float) -> tuple[str, str]:
    """The first line ``proc`` writes to its stdout pipe, waited for at most ``timeout`` seconds
    whatever the process does: (the line without its end, "line"), or (what came, "eof") when it
    closed its stdout (exited) first, or (what came, "timeout") when no whole line came in time.
    Reads the pipe's descriptor as bytes come (a selector), never a blocking ``readline``, which
    waits for an end of line that a board that hangs (or a machine so loaded that it has not yet
    run it) never writes; the caller reads nothing more from the pipe afterwards. A selector
    (epoll or poll), not ``select.select``, which refuses a descriptor of 1024 or more (FD_SETSIZE):
    a busy service (``bench_hotplug`` restarts boards under load) holds that many open."""
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout
    got = b""
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while b"\n" not in got:
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                return got.decode(errors="replace"), "timeout"
            chunk = os.read(fd, 4096)
            if not chunk:
                return got.decode(errors="replace"), "eof"
            got += chunk
    return got.partition(b"\n")[0].decode(errors="replace").rstrip("\r"), "line"


BOARD_SPEEDS = ("host", "planned")


def planned_latency_ms(model_ids: list[str], zoo: Path | None = None, catalog: Path | None = None) -> dict[str, dict]:
    """Per model id: its planned board and latency as ``fleetvote plan`` estimates it, i.e.
    ``{"board": "nucleo-f411re", "transfer_ms": .., "compute_ms": .., "total_ms": ..}``.
    ConfigError when a model is not in the zoo, fits no catalogue board, or has no instruction
    count of its own (the planner's rule: no other model's figure stands in)."""
    from ..catalog import CATALOG, load_catalog
    from ..offline.bom import BENCH_FIRMWARE, SIZE_REPORT, load_bench_firmware, load_size_report, model_row
    from ..offline.cards import load_cards

    zoo = Path(zoo or ROOT / "models" / "zoo")
    cards = {c["id"]: c for c in load_cards(zoo)}
    missing = [m for m in model_ids if m not in cards]
    if missing:
        raise ConfigError(f"no card in {zoo} for {', '.join(missing)}: --board-speed planned needs each member's card")
    catalog = load_catalog(Path(catalog or CATALOG))
    sizes, _ = load_size_report(SIZE_REPORT)
    ipms, _, _ = load_bench_firmware(BENCH_FIRMWARE)
    out = {}
    for mid in dict.fromkeys(model_ids):
        row = model_row(cards[mid], catalog, sizes, ipms, None, None, zoo=zoo)
        if row["latency"] is None:
            raise ConfigError(f"{mid} fits no priced board of the catalogue: no planned latency for it; "
                              "use --board-speed host")
        out[mid] = {"board": row["board"], **{k: row["latency"][k] for k in ("transfer_ms", "compute_ms", "total_ms")}}
    return out


class VirtualFleet:
    """``replicas`` virtual boards per model id, links in ``link_dir`` (named after the model, the
    member's index and the replica). ``latency_ms``: per model id, the time each of its boards
    takes per image at least (``--latency-ms`` of the host board; absent or 0: host speed)."""

    def __init__(self, model_ids: list[str], link_dir: Path, tcp_base: int | None = None, replicas: int = 1,
                 latency_ms: dict[str, float] | None = None):
        if replicas < 1:
            raise ConfigError(f"replicas: {replicas}; at least 1 virtual board per member")
        self.model_ids = model_ids
        self.link_dir = link_dir
        self.tcp_base = tcp_base
        self.replicas = replicas
        self.latency_ms = dict(latency_ms or {})
        self.boards: list[VirtualBoard] = []

    def start(self) -> list[VirtualBoard]:
        try:
            for r in range(self.replicas):
                for i, mid in enumerate(self.model_ids):
                    n = r * len(self.model_ids) + i  # replica 0 keeps the names of a one-replica fleet
                    tag = f"{i}" if r == 0 else f"{i}r{r}"
                    self.boards.append(start_board(
                        mid, f"virtual-{tag}-{mid}", link=self.link_dir / f"board{tag}-{mid}",
                        tcp_port=None if self.tcp_base is None else self.tcp_base + n,
                        # the host board takes whole milliseconds: round to the nearest
                        latency_ms=int(round(self.latency_ms.get(mid, 0))),
                        own_session=False))  # the service's: see start_board
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
                                                     "pid": b.process.pid,
                                                     "latency_ms": int(round(self.latency_ms.get(b.model_id, 0)))})
        return self

    async def __aexit__(self, *exc) -> None:
        await asyncio.to_thread(self.stop)
        log.info("virtual boards stopped")
