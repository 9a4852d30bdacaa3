"""The board catalogue (``firmware/boards/catalog.json``): one data file for every stage."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from .errors import ConfigError

CATALOG = Path(__file__).resolve().parents[2] / "firmware" / "boards" / "catalog.json"

# What the firmware itself (runtime, protocol, port, stack) takes beside a model's weights and
# arena. Upper bounds until the STM32 port's size report measures them per board.
FIRMWARE_FLASH_BYTES = 24 * 1024
FIRMWARE_RAM_BYTES = 12 * 1024

REQUIRED = ("mcu", "core", "clock_hz", "flash_bytes", "ram_bytes", "uart", "baud", "price_usd",
            "price_date", "price_source")


@lru_cache(maxsize=4)
def load_catalog(path: Path = CATALOG) -> dict[str, dict]:
    try:
        boards = json.loads(path.read_text())["boards"]
    except (OSError, json.JSONDecodeError, KeyError) as exc:
        raise ConfigError(f"{path}: unreadable board catalogue ({exc})") from exc
    for name, b in boards.items():
        missing = [k for k in REQUIRED if k not in b]
        if missing:
            raise ConfigError(f"{path}: board {name} lacks {', '.join(missing)}")
    return boards


def get_board(name: str) -> dict:
    boards = load_catalog()
    if name not in boards:
        raise ConfigError(f"unknown board {name!r}; the catalogue has {', '.join(sorted(boards))}")
    return boards[name]
