"""An emulated fleet: the STM32F4 firmware (``firmware/ports/stm32f4``) under QEMU 7.2's
``netduinoplus2`` machine (an STM32F405), one ``qemu-system-arm`` process per board, each serial
port on a pty with a stable link in ``run/qemu/``.

    with QemuFleet(["vgg12-s31", "resnetw16-16-48-64-s45"], n=2) as fleet:
        for b in fleet.boards:
            print(b.model_id, b.url)        # run/qemu/board0-vgg12-s31 -> /dev/pts/N

    fleetvote sim --qemu 2                  # the same from a shell, until Ctrl-C
    fleetvote serve --link-glob 'run/qemu/board*'

* **Images.** One test image per member (``make -C firmware BOARD=netduinoplus2 MODEL=<id>``,
  FV_TEST_BUILD: fault injection on), built on demand; boards cycle through the members.
* **Ids.** QEMU faults on the STM32's unique-id register, so the firmware of this board reads
  its 96-bit id from a reserved flash word (``.fv_config`` at offset 0x200: the marker
  ``fvconfig``, 12 id bytes, u32 flags). Each instance runs a patched copy of the .bin with its
  own id, so N boards have N distinct ids; the flags pick the reference (0) or the DSP (1)
  kernels at boot.
* **Processes.** Started in their own session (a Ctrl-C in the terminal is ours to forward),
  stopped by PID: SIGTERM, then SIGKILL after a grace period. ``stop()`` leaves no QEMU behind
  and removes the links and image copies.

**Handed out only once they answer.** QEMU prints the pty line before the firmware has enabled
its USART, and QEMU's STM32 USART model drops every byte that arrives while the USART is
disabled: a client that writes at once loses its request about half the time (6 of 12 starts
here). So ``start_qemu`` returns only after the board has answered a PING on that pty, resending
every ``RESEND_S`` (above QEMU's 1 s pty poll, so a PING that is only waiting to be read is not
sent twice for nothing), and fails with the QEMU output after ``ANSWER_TIMEOUT_S``. A real board
is not affected: opening an ST-LINK's COM port does not reset the chip.
QEMU notices a client opening a pty by polling once a second, so the first request after an
open may wait up to a second before the board sees it: give it a timeout above that.
QEMU does not model the baud rate: bytes move as fast as its event loop passes them (tens of
KB/s here), and the board reports its catalogue baud (115,200) in HELLO. Compute time is
virtual: without ``-icount`` it follows the host's clock, so an emulated board proves
correctness and robustness, not speed (``make bench-firmware`` counts instructions instead).
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import os
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError
from ..settings import ROOT
from .processes import stop_process

FIRMWARE = ROOT / "firmware"
RUN_DIR = ROOT / "run" / "qemu"
MACHINE = "netduinoplus2"
QEMU = "qemu-system-arm"

# ports/stm32f4/port.h: fv_flash_config at FV_CONFIG_OFFSET
CONFIG_OFFSET = 0x200
CONFIG_MAGIC = b"fvconfig"
CONFIG_FORMAT = "<8s12sI"
FLAG_OPTIMISED = 0x1
BOARD_ID_SIZE = 12

_PTY_LINE = re.compile(r"char device redirected to (/dev/pts/\d+)")

# QEMU polls a pty it has not seen connected about once a second: resend a PING after 1.5 s
RESEND_S = 1.5
# time to first answer was at most ~3 s here with a CPU hog on one core (make qemu-startup); 30 s
# is a stuck board, not a slow one
ANSWER_TIMEOUT_S = 30.0
_READY_PING = b"fleetvote: are you up?"


def image_path(model_id: str, variant: str = "test", board: str = MACHINE) -> Path:
    return FIRMWARE / "build" / "stm32f4" / board / model_id / variant / "firmware.bin"


def build_image(model_id: str, variant: str = "test", board: str = MACHINE,
                python: str | None = None) -> Path:
    """``make -C firmware BOARD=<board> MODEL=<id> VARIANT=<variant>``; returns the .bin."""
    args = ["make", "-C", str(FIRMWARE), f"BOARD={board}", f"MODEL={model_id}", f"VARIANT={variant}",
            f"PYTHON={python or sys.executable}"]
    try:
        r = subprocess.run(args, capture_output=True, text=True)
    except FileNotFoundError as exc:
        raise ConfigError("make is not installed") from exc
    if r.returncode != 0:
        tail = (r.stdout + r.stderr).strip().splitlines()[-15:]
        raise ConfigError(f"building {board} {model_id} ({variant}) failed:\n" + "\n".join(tail))
    return image_path(model_id, variant, board)


def read_config(image: bytes) -> tuple[bytes, int]:
    """(board id, flags) of an image's config word."""
    _check_config(image)
    _, board_id, flags = struct.unpack_from(CONFIG_FORMAT, image, CONFIG_OFFSET)
    return board_id, flags


def patch_image(image: bytes, board_id: bytes, flags: int) -> bytes:
    """A copy of a netduinoplus2 .bin with its config word set to this id and these flags."""
    if len(board_id) != BOARD_ID_SIZE:
        raise ValueError(f"a board id is {BOARD_ID_SIZE} bytes, got {len(board_id)}")
    _check_config(image)
    out = bytearray(image)
    struct.pack_into(CONFIG_FORMAT, out, CONFIG_OFFSET, CONFIG_MAGIC, board_id, flags)
    return bytes(out)


def _check_config(image: bytes) -> None:
    if image[CONFIG_OFFSET:CONFIG_OFFSET + len(CONFIG_MAGIC)] != CONFIG_MAGIC:
        where = image.find(CONFIG_MAGIC)
        raise ConfigError(f"no config word at offset 0x{CONFIG_OFFSET:x} of the image"
                          + (f" (marker found at 0x{where:x}: linker script changed?)" if where >= 0 else ""))


def board_id_for(index: int, model_id: str) -> bytes:
    """12 bytes, distinct per index: 'QEMU', the index (u32 BE), 4 bytes of the model id's hash."""
    return b"QEMU" + index.to_bytes(4, "big") + hashlib.sha256(model_id.encode()).digest()[:4]


def ensemble_members(path: Path | None = None) -> list[str]:
    path = path or ROOT / "models" / "zoo" / "ensemble.json"
    try:
        return [m["id"] for m in json.loads(Path(path).read_text())["members"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: cannot read the ensemble's members ({exc})") from exc


@dataclass
class QemuBoard:
    index: int
    model_id: str
    board_id: bytes
    optimised: bool
    image: Path  # the patched copy this instance runs
    process: subprocess.Popen
    pty: str  # /dev/pts/N
    link: Path  # run/qemu/board<i>-<model> -> pty
    output: collections.deque = field(default_factory=lambda: collections.deque(maxlen=50))
    answer_s: float = 0.0  # from QEMU's spawn to the board's first PONG

    @property
    def url(self) -> str:
        return str(self.link)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None


def _drain(proc: subprocess.Popen, sink: collections.deque) -> None:
    """Keep reading QEMU's stdout so that it can never block on a full pipe; keep the tail."""
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            sink.append(line.rstrip())
    except (OSError, ValueError):  # stop_process closed the pipe under us: QEMU is gone
        pass


@dataclass
class Started:
    """A QEMU process whose board has answered a PING on ``pty``."""

    process: subprocess.Popen
    pty: str  # /dev/pts/N
    output: collections.deque  # QEMU's last lines
    answer_s: float  # from the spawn to the first PONG


def start_qemu(image: Path, qemu: str = QEMU, icount: bool = False, timeout: float = 10.0,
               extra: list[str] | None = None, usart: int = 1,
               answer_timeout: float = ANSWER_TIMEOUT_S) -> Started:
    """One QEMU with the image's serial port on a new pty, returned once the board answers.
    `usart`: which USART the image talks on (QEMU's n-th -serial is USARTn; 2 for a Nucleo image,
    whose clock bring-up times out on QEMU's empty RCC and falls back to the HSI). `timeout`
    bounds the wait for QEMU's pty line, `answer_timeout` the wait for the board's first PONG."""
    if shutil.which(qemu) is None:
        raise ConfigError(f"{qemu} is not installed (apt-get install qemu-system-arm)")
    args = [qemu, "-M", MACHINE, "-nographic", "-monitor", "none"]
    args += ["-serial", "null"] * (usart - 1) + ["-serial", "pty", "-kernel", str(image)]
    if icount:
        args += ["-icount", "shift=0"]
    args += extra or []
    t0 = time.monotonic()
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    assert proc.stdout is not None
    deadline = t0 + timeout
    seen: list[str] = []
    pty = None
    while pty is None and time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            line = proc.stdout.readline()
            if not line:
                break  # QEMU exited
            seen.append(line.rstrip())
            m = _PTY_LINE.search(line)
            if m:
                pty = m.group(1)
        elif proc.poll() is not None:
            break
    if pty is None:
        stop_process(proc)
        raise ConfigError(f"QEMU did not start with {image.name}: " + (" | ".join(seen) or "no output"))
    out: collections.deque = collections.deque(seen, maxlen=50)
    threading.Thread(target=_drain, args=(proc, out), daemon=True).start()
    try:
        wait_for_answer(pty, proc, answer_timeout)
    except ConfigError as exc:
        stop_process(proc)
        raise ConfigError(f"{image.name} on {pty}: {exc}; QEMU said: " + (" | ".join(out) or "nothing")) from None
    return Started(proc, pty, out, time.monotonic() - t0)


def wait_for_answer(port: str, proc: subprocess.Popen | None = None,
                    timeout: float = ANSWER_TIMEOUT_S, resend: float = RESEND_S) -> float:
    """PING the board on `port` until it answers (resending every `resend` seconds, with a new
    sequence number); returns the seconds waited. Raises ConfigError after `timeout`, or at once
    when `proc` exits. Any PONG counts: one for an earlier PING proves the board is up just as
    well. A PONG still on its way when this returns is read and dropped here, not by the next
    client: after the first answer the port is drained until it has been quiet for 0.2 s."""
    import serial

    from ..link.codec import FrameDecoder, Ping, Pong, encode

    t0 = time.monotonic()
    try:
        link = serial.Serial(port, timeout=0.05, write_timeout=1.0)
    except (OSError, serial.SerialException) as exc:
        raise ConfigError(f"cannot open {port}: {exc}") from exc
    decoder = FrameDecoder()
    seq = 0
    try:
        while True:
            seq += 1
            link.write(encode(Ping(seq, _READY_PING)))
            sent = time.monotonic()
            while time.monotonic() - sent < resend:
                if any(isinstance(m, Pong) for m in decoder.feed(link.read(256))):
                    waited = time.monotonic() - t0
                    quiet = time.monotonic()
                    while time.monotonic() - quiet < 0.2:
                        if link.read(256):
                            quiet = time.monotonic()
                    return waited
                if proc is not None and proc.poll() is not None:
                    raise ConfigError(f"QEMU exited ({proc.returncode}) before the board answered")
                if time.monotonic() - t0 > timeout:
                    raise ConfigError(f"no answer to {seq} PINGs in {timeout:.0f} s")
    except serial.SerialException as exc:
        raise ConfigError(f"{port}: {exc}") from exc
    finally:
        link.close()


def _link(path: Path, target: str) -> None:
    """Atomic replacement of a symlink."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(target)
    os.replace(tmp, path)


class QemuFleet:
    """N emulated boards cycling through `model_ids`. `optimised` is one flag for all, or one per
    board (reference kernels where False)."""

    def __init__(self, model_ids: list[str], n: int | None = None, run_dir: Path = RUN_DIR,
                 optimised: bool | list[bool] = True, build: bool = True, qemu: str = QEMU,
                 variant: str = "test", icount: bool = False):
        if not model_ids:
            raise ConfigError("an emulated fleet needs at least one model")
        self.model_ids = list(model_ids)
        self.n = len(self.model_ids) if n is None else n
        if self.n < 1:
            raise ConfigError(f"an emulated fleet needs at least one board, not {self.n}")
        if isinstance(optimised, bool):
            optimised = [optimised] * self.n
        if len(optimised) != self.n:
            raise ConfigError(f"{len(optimised)} kernel flags for {self.n} boards")
        self.optimised = list(optimised)
        self.run_dir = Path(run_dir)
        self.build = build
        self.qemu = qemu
        self.variant = variant
        self.icount = icount
        self.boards: list[QemuBoard] = []

    def start(self) -> list[QemuBoard]:
        if shutil.which(self.qemu) is None:
            raise ConfigError(f"{self.qemu} is not installed (apt-get install qemu-system-arm)")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        images: dict[str, bytes] = {}
        try:
            for i in range(self.n):
                mid = self.model_ids[i % len(self.model_ids)]
                if mid not in images:
                    src = build_image(mid, self.variant) if self.build else image_path(mid, self.variant)
                    if not src.exists():
                        raise ConfigError(f"{src} is missing: make -C firmware BOARD={MACHINE} MODEL={mid}")
                    images[mid] = src.read_bytes()
                bid = board_id_for(i, mid)
                flags = FLAG_OPTIMISED if self.optimised[i] else 0
                name = f"board{i}-{mid}"
                # the copies in a folder of their own: a glob over the links (run/qemu/board*)
                # must match ports only
                copy = self.run_dir / "images" / f"{name}.bin"
                copy.parent.mkdir(exist_ok=True)
                copy.write_bytes(patch_image(images[mid], bid, flags))
                started = start_qemu(copy, self.qemu, self.icount)
                link = self.run_dir / name
                board = QemuBoard(i, mid, bid, self.optimised[i], copy, started.process, started.pty,
                                  link, started.output, started.answer_s)
                self.boards.append(board)
                _link(link, started.pty)
        except BaseException:
            self.stop()
            raise
        return self.boards

    def stop(self) -> None:
        for b in self.boards:
            stop_process(b.process)
            for p in (b.link, b.image):
                if p.is_symlink() or p.exists():
                    p.unlink()
        self.boards.clear()

    @property
    def pids(self) -> list[int]:
        return [b.pid for b in self.boards]

    def __enter__(self) -> "QemuFleet":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---- `fleetvote sim --qemu N` ------------------------------------------------------------------


def add_parser(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser(
        "sim", help="run an emulated fleet: STM32F4 firmware under QEMU, one board per member",
        description="Starts N qemu-system-arm instances (machine netduinoplus2, an STM32F405), each "
                    "with the firmware of an ensemble member (cycling through them) and its own "
                    "board id, its serial port on a pty linked from --run-dir. Prints the ports, "
                    "then runs until Ctrl-C or SIGTERM, which stop every QEMU.",
        epilog="example: fleetvote sim --qemu 2      # then: fleetvote serve --link-glob 'run/qemu/board*'",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("--qemu", type=int, required=True, metavar="N", help="number of emulated boards")
    s.add_argument("--ensemble", help="ensemble file (default models/zoo/ensemble.json)")
    s.add_argument("--model", action="append", help="a zoo id instead of the ensemble's members (repeat)")
    s.add_argument("--run-dir", help=f"where the links and image copies go (default {RUN_DIR})")
    s.add_argument("--reference", action="store_true", help="run the reference kernels, not the DSP ones")
    s.set_defaults(func=_cmd_sim)


def _cmd_sim(a: argparse.Namespace) -> int:
    models = a.model or ensemble_members(Path(a.ensemble) if a.ensemble else None)
    fleet = QemuFleet(models, n=a.qemu, run_dir=Path(a.run_dir) if a.run_dir else RUN_DIR,
                      optimised=not a.reference)
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with fleet:
            for b in fleet.boards:
                print(f"qemu board {b.index} {b.model_id} id {b.board_id.hex()} (pid {b.pid}) "
                      f"on {b.pty}, link {b.link}", flush=True)
            print(f"{len(fleet.boards)} emulated boards up; Ctrl-C stops them", flush=True)
            while not stop.wait(0.5):
                dead = [b for b in fleet.boards if not b.alive()]
                if dead:
                    for b in dead:
                        print(f"qemu board {b.index} exited ({b.process.returncode}): "
                              + " | ".join(b.output), file=sys.stderr, flush=True)
                    return 1
        print("emulated boards stopped", flush=True)
        return 0
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
