"""The board catalogue (``firmware/boards/catalog.json``): one data file for every stage, and the
only list of boards. Everything that needs a list of boards derives it here:

* ``port_boards(port)``: the boards a firmware port builds (``"firmware_port"``), for the build
  (firmware/ports/stm32f4/port.mk asks firmware/tools/board_config.py, which calls this);
* ``real_boards()``: those of them that are not emulated, what ``fleetvote flash`` writes and the
  tests of real-board images parametrise over;
* ``boards_of_dev_id(id)``: the boards whose MCU has this device id (DBGMCU_IDCODE's DEV_ID, what
  ``st-info --probe`` prints as chipid), how ``fleetvote flash`` names the board behind a probe;
* ``usb_ids()``: the VID:PID pairs of the boards' probes, the service's default ``usb_ids`` and
  the udev rules (``board_config.py --udev``).

Standard library only: firmware/tools/board_config.py imports it before any virtual environment
exists.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path

from .errors import ConfigError

CATALOG = Path(__file__).resolve().parents[2] / "firmware" / "boards" / "catalog.json"

# What the firmware itself takes beside a model, for the planner's estimate of a model the size
# report has not measured (fleetvote.offline.bom.requirement).
# RAM: beside the model's arena and the DSP kernels' buffers sized by its layers (which the
# planner adds: fleetvote.offline.dsp_buffers.static_ram_bytes, the rule the firmware's build
# sizes them by), the runtime, protocol, port, frame buffer, receive ring, stack and the DSP
# kernels' fixed arrays. `make -C firmware size-report` (2026-12-02, the zoo's 12 models on the 3
# STM32F4 boards; 11 models with the fused pools' runner code) measures 11,400-11,412 B of it:
# 12 KB leaves about 880 B.
# Flash: still a guess, low (the same report: 32-68 KB beside the weights; the generated layer
# tables and, for a model with a fused depthwise pair, 19 KB of fused kernels); plan with the
# size report where flash matters.
FIRMWARE_FLASH_BYTES = 24 * 1024
FIRMWARE_RAM_BYTES = 12 * 1024

# four upper-case hex digits each, as lsusb and pyserial's port list print them
VIDPID = re.compile(r"[0-9A-F]{4}:[0-9A-F]{4}")

REQUIRED = ("mcu", "core", "clock_hz", "flash_bytes", "ram_bytes", "uart", "baud", "price_usd",
            "price_date", "price_source")


@lru_cache(maxsize=4)
def _load(path: Path) -> tuple[dict[str, dict], dict[str, dict]]:
    """(boards, probes) of the catalogue at path, checked: every board has the REQUIRED keys and
    names a probe the catalogue describes (or none)."""
    try:
        doc = json.loads(path.read_text())
        boards, probes = doc["boards"], doc.get("probes", {})
    except (OSError, json.JSONDecodeError, KeyError) as exc:
        raise ConfigError(f"{path}: unreadable board catalogue ({exc})") from exc
    for name, b in boards.items():
        missing = [k for k in REQUIRED if k not in b]
        if missing:
            raise ConfigError(f"{path}: board {name} lacks {', '.join(missing)}")
        if b.get("probe") is not None and b["probe"] not in probes:
            raise ConfigError(f"{path}: board {name}: probe {b['probe']!r} is not among the catalogue's "
                              f"probes ({', '.join(sorted(probes))})")
    for name, p in probes.items():
        bad = [i for i in p.get("usb_ids", [None]) if not isinstance(i, str) or not VIDPID.fullmatch(i)]
        if bad or not p.get("usb_ids"):
            raise ConfigError(f"{path}: probe {name}: usb_ids must be VID:PID pairs like 0483:374B, not {bad}")
    return boards, probes


def load_catalog(path: Path = CATALOG) -> dict[str, dict]:
    """The catalogue's boards by name."""
    return _load(Path(path))[0]


def get_board(name: str) -> dict:
    boards = load_catalog()
    if name not in boards:
        raise ConfigError(f"unknown board {name!r}; the catalogue has {', '.join(sorted(boards))}")
    return boards[name]


def port_boards(port: str, emulated: bool | None = None, path: Path = CATALOG) -> tuple[str, ...]:
    """The boards the firmware port ``port`` (firmware/ports/<port>) builds, in catalogue order;
    only the emulated ones, or only the others, when ``emulated`` says so."""
    return tuple(name for name, b in load_catalog(path).items()
                 if b.get("firmware_port") == port
                 and (emulated is None or bool(b.get("emulated")) == emulated))


def real_boards(path: Path = CATALOG) -> tuple[str, ...]:
    """The real (not emulated) boards the STM32F4 port builds: what ``fleetvote flash`` writes,
    and what tests of release images parametrise over."""
    return port_boards("stm32f4", emulated=False, path=path)


def probes_in_use(path: Path = CATALOG) -> dict[str, list[str]]:
    """{probe name: its VID:PID pairs} for the probes the catalogue's boards carry, in catalogue
    order (a probe no board carries is left out)."""
    boards, probes = _load(Path(path))
    used = {b["probe"] for b in boards.values() if b.get("probe") is not None}
    return {name: list(probe["usb_ids"]) for name, probe in probes.items() if name in used}


def usb_ids(path: Path = CATALOG) -> list[str]:
    """VID:PID of every probe the catalogue's boards carry."""
    return [i for ids in probes_in_use(path).values() for i in ids]


def boards_of_dev_id(dev_id: int, path: Path = CATALOG) -> tuple[str, ...]:
    """The catalogue's boards whose MCU has the device id ``dev_id`` (``"dev_id"``: DBGMCU_IDCODE's
    DEV_ID), in catalogue order: none for a chip the catalogue lacks, several for one MCU family."""
    out = []
    for name, b in load_catalog(path).items():
        try:
            if b.get("dev_id") is not None and int(str(b["dev_id"]), 16) == dev_id:
                out.append(name)
        except ValueError as exc:
            raise ConfigError(f"{path}: board {name}: dev_id {b['dev_id']!r} is not hex like 0x431") from exc
    return tuple(out)
