"""The board catalogue (firmware/boards/catalog.json) is the only list of boards: the firmware
build's board list, ``fleetvote flash``'s boards, the service's USB ids and the udev rules are all
derived from it, so adding a board is an edit of the catalogue (plus, for a board a firmware port
builds, its board file) and nothing else."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, need_tool
from fleetvote.catalog import CATALOG, load_catalog, port_boards, real_boards, usb_ids
from fleetvote.errors import ConfigError

FIRMWARE = ROOT / "firmware"
BOARD_CONFIG = FIRMWARE / "tools" / "board_config.py"
RULES = ROOT / "deploy" / "udev" / "99-fleetvote.rules"

# a board the catalogue does not have, carrying a probe it does not have either: STLINK-V3PWR
# (0483:3757, OpenOCD's STLINK_V3P_PID); 13 characters, within HELLO's 16-byte board name
NEW_BOARD = "nucleo-f429zi"
NEW_PROBE = "STLINK-V3PWR"
NEW_ID = "0483:3757"


def board_config(*args: str | Path) -> str:
    r = subprocess.run([sys.executable, str(BOARD_CONFIG), *map(str, args)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def make_variables(*names: str, **variables: str | Path) -> list[str]:
    """The values make gives these variables in firmware/ (port.mk's own view), one per name."""
    need_tool("make")
    rule = "fv-print: ; @" + " ; ".join(f"echo '$({n})'" for n in names)
    r = subprocess.run(["make", "-s", "--no-print-directory", "-C", str(FIRMWARE),
                        *(f"{k}={v}" for k, v in variables.items()), "--eval", rule, "fv-print"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()


@pytest.fixture
def catalogue_with_a_new_board(tmp_path) -> Path:
    doc = json.loads(CATALOG.read_text())
    doc["probes"][NEW_PROBE] = {"usb_ids": [NEW_ID], "source": "a test's"}
    doc["boards"][NEW_BOARD] = doc["boards"]["nucleo-f446re"] | {"mcu": "STM32F429ZI", "probe": NEW_PROBE}
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(doc))
    return path


def test_udev_rules_file_is_the_one_generated_from_the_catalogue():
    assert RULES.read_text() == board_config("--udev"), (
        "deploy/udev/99-fleetvote.rules is stale: python3 firmware/tools/board_config.py --udev > "
        "deploy/udev/99-fleetvote.rules")


def test_a_board_added_to_a_copy_of_the_catalogue_appears_in_every_derived_list(catalogue_with_a_new_board,
                                                                                 tmp_path, monkeypatch):
    from fleetvote.settings import Settings

    cat = catalogue_with_a_new_board
    # the build: make's board list, the variant of a real board, its header from the catalogue
    boards, variant = make_variables("STM_BOARDS", "VARIANT", CATALOG=cat, BOARD=NEW_BOARD, MODEL="any")
    assert boards.split() == list(port_boards("stm32f4", path=cat)) and NEW_BOARD in boards.split()
    assert variant == "release"
    board_config(NEW_BOARD, "--catalog", cat, "--header", tmp_path / "fv_board.h", "--ld", tmp_path / "memory.ld")
    assert '#define FV_BOARD_MCU "STM32F429ZI"' in (tmp_path / "fv_board.h").read_text()
    # flashing, the service's USB ids, the udev rules
    assert NEW_BOARD in real_boards(cat) and NEW_BOARD not in real_boards()
    for var in ("FLEETVOTE_USB_IDS", "FLEETVOTE_CATALOG", "FLEETVOTE_SCAN_USB"):
        monkeypatch.delenv(var, raising=False)
    assert Settings(catalog=cat).usb_ids == usb_ids(cat) == usb_ids() + [NEW_ID]
    assert board_config("--usb-ids", "--catalog", cat).split() == usb_ids(cat)
    rules = board_config("--udev", "--catalog", cat)
    assert rules.count('ATTRS{idProduct}=="3757"') == 1 and rules.count('ATTR{idProduct}=="3757"') == 1
    assert NEW_ID not in RULES.read_text()


def test_make_builds_the_catalogues_stm32f4_boards_and_tests_the_emulated_ones_by_default():
    assert make_variables("STM_BOARDS")[0].split() == list(port_boards("stm32f4"))
    for board in port_boards("stm32f4"):
        (variant,) = make_variables("VARIANT", BOARD=board, MODEL="any")
        assert variant == ("test" if load_catalog()[board].get("emulated") else "release"), board


def test_every_stm32f4_board_has_its_board_file_and_every_board_file_its_board():
    files = {p.stem for p in (FIRMWARE / "ports" / "stm32f4" / "boards").glob("*.c")}
    assert files == {b.replace("-", "_") for b in port_boards("stm32f4")}


def test_real_boards_are_the_stm32f4_boards_that_are_not_emulated():
    cat = load_catalog()
    assert real_boards() and set(real_boards()) == {b for b in port_boards("stm32f4") if not cat[b].get("emulated")}


def test_flash_takes_exactly_the_catalogues_real_boards():
    from fleetvote.cli import build_parser

    parser = build_parser()
    for board in real_boards():
        assert parser.parse_args(["flash", "/dev/null", "--board", board, "--model", "m"]).board == board
    with pytest.raises(SystemExit):
        parser.parse_args(["flash", "/dev/null", "--board", "netduinoplus2", "--model", "m"])


def test_service_without_a_catalogue_says_how_to_give_usb_ids_unless_it_scans_no_usb(tmp_path, monkeypatch):
    from fleetvote.settings import Settings

    for var in ("FLEETVOTE_USB_IDS", "FLEETVOTE_CATALOG", "FLEETVOTE_SCAN_USB"):
        monkeypatch.delenv(var, raising=False)
    assert Settings().usb_ids == usb_ids() and usb_ids()
    with pytest.raises(ConfigError, match="FLEETVOTE_CATALOG"):
        Settings(catalog=tmp_path / "none.json")
    assert Settings(catalog=tmp_path / "none.json", scan_usb=False).usb_ids == []
    assert Settings(catalog=tmp_path / "none.json", usb_ids=["0483:5740"]).usb_ids == ["0483:5740"]


def test_catalogue_refuses_a_board_whose_probe_it_does_not_describe(tmp_path):
    doc = json.loads(CATALOG.read_text())
    doc["boards"]["nucleo-f411re"]["probe"] = "ST-LINK/V9"
    bad = tmp_path / "catalog.json"
    bad.write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match="ST-LINK/V9"):
        load_catalog(bad)
