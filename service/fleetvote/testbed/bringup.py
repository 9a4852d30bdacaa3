"""Real-board bring-up: ``fleetvote flash`` and ``fleetvote probe`` (docs/hardware.md).

    fleetvote flash --model vgg12-s31 /dev/serial/by-id/usb-STMicro..._STLink_0671FF...-if02
    fleetvote flash --ensemble models/zoo/ensemble.json
    fleetvote probe /dev/serial/by-id/usb-STMicroelectronics_STM32_STLink_0671FF...-if02 --limit 50

* ``flash`` (``flashing.py``) picks the ST-LINK by its serial (``--serial`` or the port's by-id
  link), names the board behind it by its chip id (``st-info --probe``) or HELLO, builds the
  release image (``make -C firmware BOARD=B MODEL=M``), writes it with st-flash (stlink-tools)
  or, failing that, OpenOCD, through that probe only, and checks with HELLO that the board
  reports the model's id and hash. ``--ensemble`` does so for every attached board, after
  printing a plan: which member on which board, and why.
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
import statistics
import sys
import time
from pathlib import Path

from ..catalog import get_board, real_boards
from ..command import add_data
from ..errors import ConfigError
from ..settings import ROOT

ZOO = ROOT / "models" / "zoo"
FIRMWARE = ROOT / "firmware"
MEASURED = FIRMWARE / "boards" / "measured"  # probe records fleetvote plan reads (offline/bom.py)


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


def _cmd_flash(a: argparse.Namespace) -> int:
    from . import flashing

    dirs = tuple(Path(d) for d in a.links) if a.links else flashing.BY_ID_DIRS
    if a.ensemble:
        if a.model or a.port or a.serial or a.board:
            raise ConfigError("--ensemble chooses every board's model itself: leave out --model, --board, --serial "
                              "and PORT")
        return flashing.flash_ensemble(Path(a.ensemble), a.tool, build=not a.no_build, dry_run=a.dry_run, dirs=dirs)
    if not a.model:
        raise ConfigError("give --model ID (one board) or --ensemble (every attached board)")
    return flashing.flash_one(a.model, a.port, a.board, a.serial, a.tool, build=not a.no_build, dirs=dirs)


def add_parser(sub: argparse._SubParsersAction) -> None:
    f = sub.add_parser(
        "flash", help="flash and check real boards, each by its probe's serial (st-flash or openocd)",
        description="Writes the release firmware of --model through one ST-LINK, chosen by its serial (--serial, "
                    "or the by-id link PORT names; with one probe attached, that one), onto the board its chip id "
                    "(st-info --probe) or HELLO names, then checks by HELLO that the board reports the model's id "
                    "and hash. --ensemble instead prints a plan (which member on which attached board, and why) "
                    "and flashes every attached board with a member of the ensemble. Several probes and none "
                    "named, an unknown chip or a board no firmware port builds stop it before anything is "
                    "written; a failed flash stops it there. See docs/hardware.md.",
        epilog="examples:\n"
               "  fleetvote flash --model vgg12-s31 /dev/serial/by-id/usb-STMicroelectronics_STM32_STLink_0671FF...-if02\n"
               "  fleetvote flash --model vgg12-s31 --serial 0671FF485550755187121723 --board nucleo-f411re\n"
               "  fleetvote flash --ensemble --dry-run          # the plan only\n"
               "  fleetvote flash --ensemble models/zoo/ensemble.json",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    f.add_argument("port", nargs="?", help="the board's serial port, its by-id link (names the probe); default: "
                                           "the probe's link in --links")
    try:
        real = real_boards()
    except ConfigError:
        # the catalogue is absent where only the service is installed (a wheel, the Docker
        # image): every other command must still parse, and flash checks the board itself
        real = None
    f.add_argument("--board", choices=real, help="a real board the STM32F4 port builds "
                   "(firmware/boards/catalog.json); default: the one the probe's chip id or HELLO names, which "
                   "this must match")
    f.add_argument("--model", help="a zoo id (one board)")
    f.add_argument("--serial", help="the ST-LINK's serial (st-info --probe lists them)")
    f.add_argument("--ensemble", nargs="?", const=str(ZOO / "ensemble.json"), metavar="FILE",
                   help="flash every attached board with a member of this ensemble (default models/zoo/ensemble.json)")
    f.add_argument("--dry-run", action="store_true", help="with --ensemble: print the plan, write nothing")
    f.add_argument("--links", action="append", metavar="DIR",
                   help="folders of the probes' port links (default /dev/serial/by-id and /dev/fleetvote)")
    f.add_argument("--tool", choices=("st-flash", "openocd"), help="default: st-flash, else openocd")
    f.add_argument("--no-build", action="store_true", help="flash the images already built")
    f.set_defaults(func=_cmd_flash)

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
