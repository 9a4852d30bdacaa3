#!/usr/bin/env python3
"""What the build and the host derive from the board catalogue (firmware/boards/catalog.json),
so that the catalogue stays the only list of boards and the only source of their figures:

    board_config.py BOARD --header OUT.h --ld OUT.ld [--unlimited]   one board's C header and
                                                                     linker memory map
    board_config.py --boards PORT [--emulated | --real]              the boards firmware/ports/PORT
                                                                     builds, on one line (port.mk)
    board_config.py --usb-ids                                        the boards' probes' VID:PID
    board_config.py --udev > deploy/udev/99-fleetvote.rules          the udev rules for those ids

Every form takes --catalog PATH (default: the repository's). Standard library only (it runs
before the virtual environment may exist), plus the repository's own service/fleetvote/catalog.py,
itself standard library only, which reads and checks the catalogue for every stage. Writes a
header or map only when its text changes, so make does not rebuild what did not change.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "service"))

from fleetvote.catalog import CATALOG, load_catalog, port_boards, probes_in_use, usb_ids  # noqa: E402
from fleetvote.errors import ConfigError  # noqa: E402

# Where each family keeps its flash and SRAM (RM0090 2.3, RM0383 2.3, RM0390 2.3): the catalogue
# gives the sizes, these the origins.
FLASH_ORIGIN = 0x08000000
RAM_ORIGIN = 0x20000000

UDEV_COMMAND = "python3 firmware/tools/board_config.py --udev > deploy/udev/99-fleetvote.rules"


def put(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def udev_rules(catalog: Path = CATALOG) -> str:
    """deploy/udev/99-fleetvote.rules: a rule for the virtual COM port and one for the debug
    interface of every probe the catalogue's boards carry."""
    probes = probes_in_use(catalog)
    ids = [tuple(i.lower().split(":")) for pairs in probes.values() for i in pairs]
    named = "\n".join(f"#   {name}: {', '.join(pairs)}" for name, pairs in probes.items())
    vcp = "\n".join(f'SUBSYSTEM=="tty", SUBSYSTEMS=="usb", ATTRS{{idVendor}}=="{v}", ATTRS{{idProduct}}=="{p}", '
                     f'GOTO="fleetvote_vcp"' for v, p in ids)
    dev = "\n".join(f'SUBSYSTEM=="usb", ENV{{DEVTYPE}}=="usb_device", ATTR{{idVendor}}=="{v}", ATTR{{idProduct}}=="{p}", '
                     f'GOTO="fleetvote_stlink"' for v, p in ids)
    return f"""# fleetvote: udev rules for STM32 Nucleo and Discovery boards (docs/deploy.md).
# Generated from firmware/boards/catalog.json (the probes its boards carry); do not edit, run
#   {UDEV_COMMAND}
#
#   sudo install -m 0644 deploy/udev/99-fleetvote.rules /etc/udev/rules.d/
#   sudo udevadm control --reload && sudo udevadm trigger --subsystem-match=tty --subsystem-match=usb
#
# The ST-LINK's virtual COM port (a ttyACM) gets
#   - group dialout, mode 0660: the service runs as a member of dialout, not as root;
#   - ENV{{ID_MM_DEVICE_IGNORE}}="1": ModemManager would otherwise probe every new ttyACM with AT
#     commands for several seconds, and those bytes reach the board as protocol garbage;
#   - a stable name /dev/fleetvote/<ST-LINK serial>-if<interface>, beside systemd's own
#     /dev/serial/by-id/usb-STMicroelectronics_STM32_STLink_<serial>-if02 (the service watches
#     both). The interface number keeps the two ports of a dual-VCP STLINK-V3 apart.
# The ST-LINK's debug interface (the USB device itself) gets group plugdev and the uaccess tag,
# so st-flash and openocd work without root.
#
# USB IDs, the catalogue's probes (VID 0483 is STMicroelectronics):
{named}
# An STM32's own USB CDC port (0483:5740) is left alone: any STM32 USB device may carry it.
# sysfs spells the ids in lower case, and udev compares them as strings.

ACTION=="remove", GOTO="fleetvote_end"

{vcp}

{dev}

GOTO="fleetvote_end"

LABEL="fleetvote_vcp"
ENV{{ID_MM_DEVICE_IGNORE}}="1", GROUP="dialout", MODE="0660"
# ID_SERIAL_SHORT and ID_USB_INTERFACE_NUM come from usb_id, imported by 60-serial.rules
ENV{{ID_SERIAL_SHORT}}=="?*", ENV{{ID_USB_INTERFACE_NUM}}=="?*", SYMLINK+="fleetvote/$env{{ID_SERIAL_SHORT}}-if$env{{ID_USB_INTERFACE_NUM}}"
GOTO="fleetvote_end"

LABEL="fleetvote_stlink"
ENV{{ID_MM_DEVICE_IGNORE}}="1", GROUP="plugdev", MODE="0660", TAG+="uaccess"

LABEL="fleetvote_end"
"""


def write_board(board: str, b: dict, header: Path, ld: Path, unlimited: bool) -> str | None:
    """Writes the board's header and memory map; the reason it cannot, or None."""
    if len(board) > 15:
        return f"board name {board!r} is over 15 characters (INFO holds 16)"
    uart = b["uart"]
    m = re.fullmatch(r"USART(\d)", uart)
    if not m:
        return f"{board}: uart {uart!r} is not USARTn"
    ident = re.sub(r"[^0-9A-Za-z]", "_", board).upper()
    put(header, f"""/* Generated by firmware/tools/board_config.py from boards/catalog.json. Do not edit. */
#ifndef FV_BOARD_H
#define FV_BOARD_H
#define FV_BOARD_NAME "{board}"
#define FV_BOARD_{ident} 1
#define FV_BOARD_MCU "{b['mcu']}"
#define FV_BOARD_CLOCK_HZ {int(b['clock_hz'])}u
#define FV_BOARD_BAUD {int(b['baud'])}u
#define FV_BOARD_FLASH_BYTES {int(b['flash_bytes'])}u
#define FV_BOARD_RAM_BYTES {int(b['ram_bytes'])}u
#define FV_BOARD_USART {m.group(1)}
#define FV_BOARD_EMULATED {1 if b.get('emulated') else 0}
#endif
""")
    flash = 64 << 20 if unlimited else int(b["flash_bytes"])
    ram = 64 << 20 if unlimited else int(b["ram_bytes"])
    put(ld, f"""/* Generated by firmware/tools/board_config.py from boards/catalog.json. Do not edit. */
MEMORY
{{
    FLASH (rx)  : ORIGIN = 0x{FLASH_ORIGIN:08X}, LENGTH = {flash}
    RAM   (rwx) : ORIGIN = 0x{RAM_ORIGIN:08X}, LENGTH = {ram}
}}
""")
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("board", nargs="?", help="a catalogue board: write its --header and --ld")
    ap.add_argument("--header", type=Path)
    ap.add_argument("--ld", type=Path)
    ap.add_argument("--catalog", type=Path, default=CATALOG)
    ap.add_argument("--unlimited", action="store_true",
                    help="64 MiB regions instead of the board's, for the size report: an image that "
                         "does not fit still links, and is measured")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--boards", metavar="PORT", help="print the boards firmware/ports/PORT builds")
    mode.add_argument("--usb-ids", action="store_true", help="print the VID:PID of the boards' probes")
    mode.add_argument("--udev", action="store_true", help="print the udev rules for those ids")
    kind = ap.add_mutually_exclusive_group()
    kind.add_argument("--emulated", action="store_true", help="with --boards: only the emulated ones")
    kind.add_argument("--real", action="store_true", help="with --boards: only the real ones")
    a = ap.parse_args(argv)
    listing = a.boards or a.usb_ids or a.udev
    if listing and a.board:
        ap.error("a board takes --header and --ld; --boards, --usb-ids and --udev take no board")
    if not listing and not (a.board and a.header and a.ld):
        ap.error("give BOARD --header OUT.h --ld OUT.ld, or one of --boards PORT, --usb-ids, --udev")
    try:
        if a.boards:
            print(" ".join(port_boards(a.boards, emulated=True if a.emulated else False if a.real else None,
                                       path=a.catalog)))
            return 0
        if a.usb_ids:
            print("\n".join(usb_ids(a.catalog)))
            return 0
        if a.udev:
            sys.stdout.write(udev_rules(a.catalog))
            return 0
        boards = load_catalog(a.catalog)
    except ConfigError as exc:
        print(f"board_config: {exc}", file=sys.stderr)
        return 2
    if a.board not in boards:
        print(f"board_config: unknown board {a.board!r}; the catalogue has {', '.join(sorted(boards))}",
              file=sys.stderr)
        return 2
    why = write_board(a.board, boards[a.board], a.header, a.ld, a.unlimited)
    if why:
        print(f"board_config: {why}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
