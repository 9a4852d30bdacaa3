"""Real-board bring-up: ``fleetvote flash`` and ``fleetvote probe`` (docs/hardware.md).

    fleetvote flash --board nucleo-f411re --model vgg12-s1 /dev/serial/by-id/usb-STMicro...-if02
    fleetvote probe /dev/serial/by-id/usb-STMicroelectronics_STM32_STLink_0671FF...-if02 --limit 50

* ``flash`` builds the release image (``make -C firmware BOARD=B MODEL=M``; B one of the
  catalogue's real boards, ``catalog.real_boards()``), writes it with
  st-flash (stlink-tools) or, failing that, OpenOCD, then opens the board's port at the
  catalogue's baud and checks with HELLO that it reports the board and the model's hash.
* ``probe`` says HELLO, classifies N test images, compares every output byte with the numpy
  engine on the same model, and prints the timings: the round trip seen by the host and the
  inference time and cycles the board measured; ``--json`` writes them
  (firmware/boards/measured/<board>-<model>.json), and ``fleetvote plan`` then uses the board's
  own cycle count instead of its estimate.

Both import the engine, the dataset and the serial client only when run.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from ..catalog import get_board, real_boards
from ..command import add_data
from ..errors import BoardError, ConfigError
from ..settings import ROOT

FIRMWARE = ROOT / "firmware"
ZOO = ROOT / "models" / "zoo"
FLASH_BASE = 0x08000000
MEASURED = FIRMWARE / "boards" / "measured"  # probe records fleetvote plan reads (offline/bom.py)


def model_sha8(model_id: str, zoo: Path = ZOO) -> bytes:
    path = zoo / model_id / "model.tflite"
    if not path.exists():
        raise ConfigError(f"no model {model_id} in {zoo}")
    return hashlib.sha256(path.read_bytes()).digest()[:8]


def flash_command(board: str, model_id: str, tool: str | None = None) -> list[str]:
    """The command that writes the release image of (board, model); ConfigError if no tool."""
    out = FIRMWARE / "build" / "stm32f4" / board / model_id / "release"
    tools = [tool] if tool else ["st-flash", "openocd"]
    for t in tools:
        if shutil.which(t) is None:
            continue
        if t == "st-flash":
            return [t, "--reset", "write", str(out / "firmware.bin"), hex(FLASH_BASE)]
        if t == "openocd":
            return [t, "-f", "interface/stlink.cfg", "-f", "target/stm32f4x.cfg",
                    "-c", f"program {out / 'firmware.elf'} verify reset exit"]
        raise ConfigError(f"unknown flash tool {t!r}: use st-flash or openocd")
    raise ConfigError(
        f"no flash tool: {'neither st-flash nor openocd is' if len(tools) > 1 else tools[0] + ' is not'} installed. Install stlink-tools (st-flash) "
        "or openocd (apt-get install stlink-tools openocd), plug the board's ST-LINK USB port in, "
        "and run again.")


async def _hello(url: str, baud: int, timeout: float = 3.0):
    from ..link.client import BoardClient, Timeouts

    client = await BoardClient.open(url, Timeouts(open=5.0, hello=timeout), baudrate=baud)
    try:
        return await client.hello()
    finally:
        await client.close()


def flash(board: str, model_id: str, port: str, tool: str | None = None, build: bool = True,
          boot_s: float = 1.0) -> int:
    from .qemu import build_image

    spec = get_board(board)
    real = real_boards()
    if board not in real:
        raise ConfigError(f"{board} is not a real board of the STM32F4 port ({', '.join(real)})"
                          + ("; the emulated one runs with `fleetvote sim --qemu N`" if spec.get("emulated") else ""))
    cmd = flash_command(board, model_id, tool)  # fail on a missing tool before building
    if build:
        build_image(model_id, "release", board)
    print("$ " + " ".join(cmd), flush=True)
    r = subprocess.run(cmd)
    if r.returncode != 0:
        raise ConfigError(f"{cmd[0]} failed with status {r.returncode}: is the ST-LINK plugged in "
                          "and its firmware up to date?")
    time.sleep(boot_s)
    want = model_sha8(model_id)
    try:
        info = asyncio.run(_hello(port, int(spec["baud"])))
    except BoardError as exc:
        print(f"flashed, but HELLO on {port} failed: {exc}", file=sys.stderr)
        return 1
    ok = info.model_id == model_id and info.model_sha256 == want and info.board_name == board
    print(f"{info.board_name} id {info.board_id.hex()} model {info.model_id} "
          f"sha256 {info.model_sha256.hex()} (expected {want.hex()}) clock {info.core_clock_hz / 1e6:.0f} MHz "
          f"baud {info.link_baud}: {'OK' if ok else 'MISMATCH'}")
    return 0 if ok else 1


def probe_record(info, n: int, bad: int, rtt_ms: list[float], inf_us: list[int], cycles: list[int]) -> dict:
    """What ``fleetvote probe --json`` writes: the board's own cycle count of an inference (p50),
    which ``fleetvote plan`` uses instead of its estimate for this (board, model) when every
    answer equalled the engine's and the board ran the optimised kernels."""
    c50 = statistics.median(cycles) if cycles else None
    return {"board": info.board_name, "model": info.model_id, "model_sha256_8": info.model_sha256.hex(),
            "macc": info.macc, "clock_hz": info.core_clock_hz,
            "kernels": "dsp" if info.flags & 2 else "reference", "build": "test" if info.flags & 1 else "release",
            "images": n, "differ": bad,
            "inference_cycles_p50": c50,
            "inference_ms_p50": round(statistics.median(inf_us) / 1e3, 3) if inf_us else None,
            "round_trip_ms_p50": round(statistics.median(rtt_ms), 3) if rtt_ms else None,
            "mac_per_cycle": round(info.macc / c50, 4) if c50 else None}


async def _probe(url: str, baud: int, images, timeout: float, zoo: Path, json_out: Path | None = None) -> int:
    import numpy as np

    from ..engine import Engine
    from ..link.client import BoardClient, Timeouts

    client = await BoardClient.open(url, Timeouts(open=5.0, hello=3.0, classify=timeout), baudrate=baud)
    try:
        info = await client.hello()
        print(f"board   {info.board_name} id {info.board_id.hex()} firmware "
              f"{'.'.join(map(str, info.firmware_version))} protocol {info.protocol_version}")
        print(f"model   {info.model_id} sha256 {info.model_sha256.hex()} MACC {info.macc:,} "
              f"weights {info.weight_bytes:,} B arena {info.arena_bytes:,} B")
        print(f"clock   {info.core_clock_hz / 1e6:.0f} MHz, link {info.link_baud} baud, "
              f"{'test' if info.flags & 1 else 'release'} build, "
              f"{'DSP' if info.flags & 2 else 'reference'} kernels")
        path = zoo / info.model_id / "model.tflite"
        if not path.exists():
            print(f"no {path}: cannot compare with the engine", file=sys.stderr)
            return 1
        if hashlib.sha256(path.read_bytes()).digest()[:8] != info.model_sha256:
            print(f"the board's model hash differs from {path}'s: reflash it", file=sys.stderr)
            return 1
        expected = Engine.from_file(path).run(images)
        rtt, inf_us, cycles, bad = [], [], [], 0
        for i, img in enumerate(images):
            t0 = time.perf_counter()
            r = await client.classify(img)
            rtt.append((time.perf_counter() - t0) * 1e3)
            inf_us.append(r.inference_us)
            cycles.append(r.inference_cycles)
            if tuple(int(v) for v in expected[i]) != r.scores:
                bad += 1
                if bad <= 3:
                    print(f"image {i}: board {r.scores} engine {tuple(int(v) for v in expected[i])}")
        n = len(images)

        def pct(xs, q):
            return float(np.percentile(np.asarray(xs, dtype=float), q)) if xs else 0.0

        print(f"images  {n}, {n - bad} identical to the engine byte for byte, {bad} differ")
        if n:
            print(f"round trip  p50 {pct(rtt, 50):.1f} ms  p99 {pct(rtt, 99):.1f} ms  (host, transfer included)")
            print(f"inference   p50 {statistics.median(inf_us) / 1e3:.1f} ms  "
                  f"{statistics.median(cycles):,.0f} cycles  (board's own count)")
            if info.macc and info.core_clock_hz:
                print(f"            {info.macc / statistics.median(cycles):.2f} MAC/cycle")
        if json_out is not None:
            if str(json_out) == "auto":
                json_out = MEASURED / f"{info.board_name}-{info.model_id}.json"
            json_out.parent.mkdir(parents=True, exist_ok=True)
            json_out.write_text(json.dumps(probe_record(info, n, bad, rtt, inf_us, cycles), indent=2) + "\n")
            print(f"wrote {json_out}" + ("" if bad == 0 and n > 0 and info.flags & 2 else
                                         " (fleetvote plan ignores it: "
                                         + ("answers differ" if bad else "reference kernels" if n else "no images")
                                         + ")"))
        return 0 if bad == 0 and n > 0 else 1
    finally:
        await client.close()


def probe(url: str, limit: int = 50, baud: int | None = None, data: str | None = None,
          timeout: float = 10.0, zoo: Path = ZOO, board: str | None = None, json_out: Path | None = None) -> int:
    from ..data import load_split

    if baud is None:
        baud = 921_600
        if board:
            baud = int(get_board(board)["baud"])
    split = load_split("test", data)
    images = split.x[:limit]
    return asyncio.run(_probe(url, baud, images, timeout, zoo, json_out))


# ---- subcommands -----------------------------------------------------------------------------


def add_parser(sub: argparse._SubParsersAction) -> None:
    f = sub.add_parser(
        "flash", help="build, flash and check a real board (st-flash or openocd)",
        description="Builds the release firmware of --model for --board, writes it with st-flash "
                    "(stlink-tools) or OpenOCD, then opens PORT and checks with HELLO that the board "
                    "reports the model's hash. See docs/hardware.md.",
        epilog="example: fleetvote flash --board nucleo-f411re --model vgg12-s1 "
               "/dev/serial/by-id/usb-STMicroelectronics_STM32_STLink_0671FF...-if02",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    f.add_argument("port", help="the board's serial port (its ST-LINK virtual COM port)")
    try:
        real = real_boards()
    except ConfigError:
        # the catalogue is absent where only the service is installed (a wheel, the Docker
        # image): every other command must still parse, and flash() checks the board itself
        real = None
    f.add_argument("--board", required=True, choices=real,
                   help="a real board the STM32F4 port builds (firmware/boards/catalog.json)")
    f.add_argument("--model", required=True, help="a zoo id")
    f.add_argument("--tool", choices=("st-flash", "openocd"), help="default: st-flash, else openocd")
    f.add_argument("--no-build", action="store_true", help="flash the image already built")
    f.set_defaults(func=lambda a: flash(a.board, a.model, a.port, a.tool, build=not a.no_build))

    p = sub.add_parser(
        "probe", help="HELLO and N test images on one board, byte for byte against the engine",
        description="Says HELLO, classifies the first N test images, compares every output byte with "
                    "the numpy engine running the zoo model the board reports, and prints round-trip "
                    "and on-board inference times. Exit status 1 on any difference.",
        epilog="example: fleetvote probe /dev/ttyACM0 --limit 100 --board nucleo-f411re",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("url", help="tty path, socket://host:port or rfc2217://host:port")
    p.add_argument("--limit", type=int, default=50, help="test images (default %(default)s)")
    p.add_argument("--board", help="a catalogue board: its baud is used")
    p.add_argument("--baud", type=int, help="default: the --board's, else 921600")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per classification")
    p.add_argument("--json", metavar="PATH", nargs="?", const="auto",
                   help="write the board's cycle count (p50) and timings here; without PATH, "
                        "firmware/boards/measured/<board>-<model>.json, which fleetvote plan prefers to its "
                        "estimate when every answer equalled the engine's")
    add_data(p)
    p.set_defaults(func=lambda a: probe(a.url, a.limit, a.baud, a.data, a.timeout, board=a.board,
                                        json_out=None if a.json is None else Path(a.json)))
