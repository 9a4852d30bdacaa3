"""``fleetvote flash``: each board by its probe's serial, the chip by st-info or HELLO, an ensemble's
plan, and the bad cases, against fake st-info, st-flash and openocd on PATH (tests/fake_stlink.py)
that record their arguments and, when they write, restart the virtual board (host firmware, named
as the image's board) that stands behind the probe, so HELLO checks what was written."""

from __future__ import annotations

import json
import os
import signal
import sys

import pytest

from conftest import ROOT, ZOO, zoo_models
from test_service import board_bin  # noqa: F401  (a fixture)

import fake_stlink

F411, F446, L4, UNKNOWN = 0x431, 0x421, 0x415, 0x999
MEMBERS = [m["id"] for m in json.loads((ZOO / "ensemble.json").read_text())["members"]]


class Bench:
    """The fakes' state folder, the by-id links, the images, and the probes attached."""

    def __init__(self, tmp_path, board_bin, monkeypatch):  # noqa: F811
        self.state = tmp_path / "fake"
        self.links = tmp_path / "by-id"
        self.images = tmp_path / "images"
        bindir = tmp_path / "bin"
        for d in (self.state, self.links, self.images, bindir):
            d.mkdir()
        script = bindir / "fake_stlink.py"
        script.write_text(f"#!{sys.executable}\n" + (ROOT / "tests" / "fake_stlink.py").read_text())
        script.chmod(0o755)
        for tool in ("st-info", "st-flash", "openocd"):
            (bindir / tool).symlink_to(script)
        # only the fakes and the basics: a real st-flash on this machine must never be reached
        monkeypatch.setenv("PATH", f"{bindir}:/usr/bin:/bin")
        monkeypatch.setenv("FAKE_STLINK", str(self.state))
        (self.state / "links").write_text(str(self.links))
        (self.state / "board_bin").write_text(str(board_bin))
        self.probes: list[dict] = []
        self.save()

    def save(self):
        (self.state / "probes.json").write_text(json.dumps(self.probes))

    def attach(self, serial: str, chip_id: int, board: str | None = None, model: str | None = None):
        """A probe; with ``board`` and ``model``, a board behind it already running fleetvote firmware."""
        self.probes.append({"serial": serial, "chip_id": chip_id})
        self.save()
        if board:
            fake_stlink.start_board(self.state, serial, board, model)

    def port(self, serial: str) -> str:
        return str(fake_stlink.link_of(self.links, serial))

    def calls(self, tool: str | None = None) -> list[list[str]]:
        path = self.state / "calls.jsonl"
        lines = [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []
        return [c["argv"] for c in lines if tool is None or c["tool"] == tool]

    def writes(self) -> list[tuple[str, str, str]]:
        """(serial, board, model) of each st-flash write, in order."""
        out = []
        for argv in self.calls("st-flash"):
            parts = argv[argv.index("write") + 1].split("/")
            out.append((argv[argv.index("--serial") + 1] if "--serial" in argv else None, parts[-4], parts[-3]))
        return out

    def image_files(self, boards=("nucleo-f411re", "nucleo-f446re"), models=MEMBERS):
        for b in boards:
            for m in models:
                d = self.images / b / m / "release"
                d.mkdir(parents=True, exist_ok=True)
                (d / "firmware.bin").write_bytes(b"\0")
                (d / "firmware.elf").write_bytes(b"\0")

    def stop(self):
        for pidfile in self.state.glob("*.pid"):
            try:
                os.kill(int(pidfile.read_text()), signal.SIGTERM)
            except ProcessLookupError:
                pass
        for pidfile in self.state.glob("*.pid"):
            fake_stlink.stop_board(self.state, pidfile.stem)

    def kw(self):
        return {"dirs": (self.links,), "images": self.images, "build": False, "boot_s": 0, "verify_s": 5}


@pytest.fixture
def bench(tmp_path, board_bin, monkeypatch):  # noqa: F811
    b = Bench(tmp_path, board_bin, monkeypatch)
    yield b
    b.stop()


# ---- pure parts ------------------------------------------------------------------------------

def test_st_info_output_gives_each_probes_serial_and_chip_id():
    from fleetvote.testbed.flashing import parse_st_info

    text = """Found 2 stlink programmers
  version:    V2J37S26
  serial:     0671FF485550755187121723
  flash:      524288 (pagesize: 16384)
  sram:       131072
  chipid:     0x0431
  descr:      F4xx (low power)
  version:    V2J39S27
  serial:     066DFF555185754867071234
  chipid:     0x421
"""
    assert parse_st_info(text) == [("0671FF485550755187121723", 0x431), ("066DFF555185754867071234", 0x421)]
    assert parse_st_info("Found 0 stlink programmers\n") == []


@pytest.mark.parametrize("port, serial", [
    ("/dev/serial/by-id/usb-STMicroelectronics_STM32_STLink_0671FF485550755187121723-if02", "0671FF485550755187121723"),
    ("/dev/serial/by-id/usb-STMicroelectronics_STLINK-V3_004A00343137510F39383538-if02", "004A00343137510F39383538"),
    ("/dev/fleetvote/066DFF555185754867071234-if02", "066DFF555185754867071234"),
    ("/dev/ttyACM0", None),
    ("socket://127.0.0.1:7000", None),
])
def test_the_probe_serial_comes_from_the_ports_stable_link(port, serial):
    from fleetvote.testbed.flashing import serial_of_port

    assert serial_of_port(port) == serial


def test_every_catalogue_board_the_port_builds_has_a_chip_id_that_names_it_alone():
    from fleetvote.catalog import boards_of_dev_id, get_board, real_boards

    for board in real_boards():
        assert boards_of_dev_id(int(get_board(board)["dev_id"], 16)) == (board,)
    assert boards_of_dev_id(F411) == ("nucleo-f411re",) and boards_of_dev_id(UNKNOWN) == ()
    assert len(boards_of_dev_id(L4)) == 2  # one family, two boards: HELLO or --board must say


# ---- one board -------------------------------------------------------------------------------

def test_flash_writes_through_the_probe_its_by_id_port_names_and_checks_by_hello(bench, capsys):
    from fleetvote.testbed.flashing import flash_one

    bench.attach("0671FF485550755187121723", F411, "nucleo-f411re", "baseline")
    bench.attach("066DFF555185754867071234", F446, "nucleo-f446re", "baseline")
    bench.image_files()
    target = "066DFF555185754867071234"
    assert flash_one(MEMBERS[0], bench.port(target), **bench.kw()) == 0
    # the second probe, not the first st-flash would take, with the F446's image (its chip id)
    assert bench.writes() == [(target, "nucleo-f446re", MEMBERS[0])]
    assert bench.calls("st-flash")[0][-1] == "0x8000000"
    out = capsys.readouterr().out
    assert f"nucleo-f446re probe {target}: {MEMBERS[0]} sha256" in out and ": OK" in out
    assert "1 of 1 board(s) verified by HELLO and model hash" in out


def test_flash_with_openocd_names_the_probe_by_adapter_serial(bench):
    from fleetvote.testbed.flashing import flash_one

    bench.attach("0671FF485550755187121723", F411, "nucleo-f411re", "baseline")
    bench.attach("066DFF555185754867071234", F446)
    bench.image_files()
    assert flash_one(MEMBERS[1], serial="0671FF485550755187121723", tool="openocd", **bench.kw()) == 0
    (argv,) = bench.calls("openocd")
    cmds = [argv[i + 1] for i, a in enumerate(argv) if a == "-c"]
    assert cmds[0] == "adapter serial 0671FF485550755187121723"
    assert cmds[1].startswith("program ") and f"nucleo-f411re/{MEMBERS[1]}/release/firmware.elf" in cmds[1]


def test_flash_with_two_probes_and_none_named_writes_nothing(bench):
    from fleetvote.errors import ConfigError
    from fleetvote.testbed.flashing import flash_one

    bench.attach("0671FF485550755187121723", F411)
    bench.attach("066DFF555185754867071234", F446)
    bench.image_files()
    with pytest.raises(ConfigError, match="2 probes attached.*0671FF485550755187121723.*--serial"):
        flash_one(MEMBERS[0], **bench.kw())
    assert bench.writes() == [] and bench.calls("openocd") == []


def test_flash_refuses_a_board_other_than_the_chip_says(bench):
    from fleetvote.errors import ConfigError
    from fleetvote.testbed.flashing import flash_one

    bench.attach("066DFF555185754867071234", F446, "nucleo-f446re", "baseline")
    bench.image_files()
    with pytest.raises(ConfigError, match="has a nucleo-f446re .*not the --board nucleo-f411re"):
        flash_one(MEMBERS[0], bench.port("066DFF555185754867071234"), board="nucleo-f411re", **bench.kw())
    assert bench.writes() == []


def test_flash_names_the_board_by_hello_when_only_openocd_is_installed(bench, monkeypatch):
    from fleetvote.testbed.flashing import flash_one

    bench.attach("066DFF555185754867071234", F446, "nucleo-f446re", "baseline")
    bench.image_files()
    (bench.state.parent / "bin" / "st-info").unlink()
    (bench.state.parent / "bin" / "st-flash").unlink()
    assert flash_one(MEMBERS[2], bench.port("066DFF555185754867071234"), **bench.kw()) == 0
    (argv,) = bench.calls("openocd")
    assert f"nucleo-f446re/{MEMBERS[2]}/release/firmware.elf" in " ".join(argv)


def test_flash_without_st_flash_or_openocd_says_what_to_install(bench):
    from fleetvote.errors import ConfigError
    from fleetvote.testbed.flashing import flash_one

    for tool in ("st-flash", "openocd"):
        (bench.state.parent / "bin" / tool).unlink()
    with pytest.raises(ConfigError, match="neither st-flash nor openocd is installed.*stlink-tools"):
        flash_one(MEMBERS[0], "/dev/null", "nucleo-f411re", **bench.kw())
    with pytest.raises(ConfigError, match="not a real board"):
        flash_one(MEMBERS[0], "/dev/null", "netduinoplus2", **bench.kw())


# ---- an ensemble -----------------------------------------------------------------------------

FLEET_OF_FIVE = [("0671FF485550755187121723", F411), ("066DFF555185754867071234", F446),
                 ("0670FF383930434B43184521", F411), ("066CFF495056805087233148", F411),
                 ("066EFF544851897767131627", F446)]


def test_flash_ensemble_plans_flashes_and_verifies_a_fleet_of_five(bench, capsys):
    from fleetvote.testbed.flashing import flash_ensemble

    for serial, chip in FLEET_OF_FIVE:
        bench.attach(serial, chip, "nucleo-f446re" if chip == F446 else "nucleo-f411re", "baseline")
    bench.image_files()
    assert flash_ensemble(ZOO / "ensemble.json", **bench.kw()) == 0
    out = capsys.readouterr().out
    print(out)  # the plan, for the report (pytest -s)
    writes = bench.writes()
    # every board written once, through its own serial, with its own board's image
    chips = dict(FLEET_OF_FIVE)
    assert sorted(s for s, _, _ in writes) == sorted(chips)
    for serial, board, _model in writes:
        assert board == ("nucleo-f446re" if chips[serial] == F446 else "nucleo-f411re")
    # every member on a board; the heaviest (MACC) on the fastest (the F446s, 180 MHz)
    assert sorted(m for _, _, m in writes) == sorted(MEMBERS)
    macc = {m: json.loads((ZOO / m / "card.json").read_text())["macc"] for m in MEMBERS}
    on_f446 = [m for s, _, m in writes if chips[s] == F446]
    assert min(macc[m] for m in on_f446) >= max(macc[m] for s, _, m in writes if chips[s] == F411)
    assert "flash plan: 5 board(s), 5 of 5 member(s) on boards" in out
    assert "heaviest member left" in out and "fits:" in out
    assert [f"[{i}/5]" in out for i in range(1, 6)] == [True] * 5
    assert "5 of 5 board(s) verified by HELLO and model hash" in out


def test_flash_ensemble_keeps_a_board_that_already_runs_its_member(bench, capsys):
    from fleetvote.testbed.flashing import flash_ensemble

    bench.attach("0671FF485550755187121723", F411, "nucleo-f411re", MEMBERS[3])
    bench.attach("066DFF555185754867071234", F446, "nucleo-f446re", "baseline")
    bench.image_files()
    assert flash_ensemble(ZOO / "ensemble.json", **bench.kw()) == 0
    out = capsys.readouterr().out
    assert [s for s, _, _ in bench.writes()] == ["066DFF555185754867071234"]
    assert "already runs it" in out and "no board left: the service computes it with the engine" in out
    assert "2 of 2 board(s) verified" in out


def test_flash_ensemble_dry_run_prints_the_plan_and_writes_nothing(bench, capsys):
    from fleetvote.testbed.flashing import flash_ensemble

    for serial, chip in FLEET_OF_FIVE[:2]:
        bench.attach(serial, chip, "nucleo-f446re" if chip == F446 else "nucleo-f411re", "baseline")
    assert flash_ensemble(ZOO / "ensemble.json", dry_run=True, **bench.kw()) == 0
    assert "flash plan: 2 board(s)" in capsys.readouterr().out
    assert bench.writes() == []


def test_flash_ensemble_with_an_unknown_chip_writes_nothing(bench):
    from fleetvote.errors import ConfigError
    from fleetvote.testbed.flashing import flash_ensemble

    bench.attach("0671FF485550755187121723", F411, "nucleo-f411re", "baseline")
    bench.attach("066DFF555185754867071234", UNKNOWN, "nucleo-f446re", "baseline")
    bench.image_files()
    with pytest.raises(ConfigError, match="(?s)nothing written.*066DFF555185754867071234: unknown chip 0x999"):
        flash_ensemble(ZOO / "ensemble.json", **bench.kw())
    assert bench.writes() == []


def test_flash_ensemble_with_a_board_no_port_builds_writes_nothing(bench):
    from fleetvote.errors import ConfigError
    from fleetvote.testbed.flashing import flash_ensemble

    bench.attach("0671FF485550755187121723", F411, "nucleo-f411re", "baseline")
    bench.attach("066DFF555185754867071234", 0x433)  # an F401: in the catalogue, not built by the port
    bench.image_files()
    with pytest.raises(ConfigError, match="(?s)nucleo-f401re .*not a real board of the STM32F4 port"):
        flash_ensemble(ZOO / "ensemble.json", **bench.kw())
    assert bench.writes() == []


def test_flash_ensemble_stops_at_a_failed_flash_and_says_what_was_written(bench):
    from fleetvote.errors import ConfigError
    from fleetvote.testbed.flashing import flash_ensemble

    for serial, chip in FLEET_OF_FIVE[:3]:
        bench.attach(serial, chip, "nucleo-f446re" if chip == F446 else "nucleo-f411re", "baseline")
    bench.image_files()
    # the plan's order: the F446 first (fastest), then the F411s by serial: 0670..., 0671...
    (bench.state / "fail").write_text("0670FF383930434B43184521")
    with pytest.raises(ConfigError, match="st-flash failed with status 1 on nucleo-f411re .*0670FF383930434B43184521.*"
                                          "Written before it: 066DFF555185754867071234"):
        flash_ensemble(ZOO / "ensemble.json", **bench.kw())
    # the third board was never written
    assert [s for s, _, _ in bench.writes()] == ["066DFF555185754867071234", "0670FF383930434B43184521"]


def test_flash_ensemble_reports_a_board_that_does_not_run_what_was_written(bench, capsys):
    from fleetvote.testbed.flashing import flash_ensemble

    bench.attach("066DFF555185754867071234", F446, "nucleo-f446re", "baseline")
    bench.image_files()
    # a flash that "succeeds" but leaves another model behind: the build folder's image of the
    # member the F446 gets (the heaviest) is a link to another model's build
    import shutil

    macc = {m: json.loads((ZOO / m / "card.json").read_text())["macc"] for m in MEMBERS}
    heaviest = max(MEMBERS, key=lambda m: (macc[m], -MEMBERS.index(m)))
    # the other model: any zoo model outside the fleet (else another member), so the board runs a
    # model the host binary holds but not the one the plan wrote
    others = [m.name for m in zoo_models() if m.name != heaviest]
    other = next((m for m in others if m not in MEMBERS), others[0])
    shutil.rmtree(bench.images / "nucleo-f446re" / heaviest)
    bench.image_files(("nucleo-f446re",), (other,))
    (bench.images / "nucleo-f446re" / heaviest).symlink_to(bench.images / "nucleo-f446re" / other)
    assert flash_ensemble(ZOO / "ensemble.json", **bench.kw()) == 1
    err = capsys.readouterr().err
    assert f"model '{other}', not" in err and "MISMATCH" in err


def test_flash_command_line_plans_an_ensemble_and_refuses_mixed_options(bench, capsys):
    from fleetvote.cli import main

    bench.attach(*FLEET_OF_FIVE[1], "nucleo-f446re", "baseline")
    assert main(["flash", "--ensemble", str(ZOO / "ensemble.json"), "--dry-run", "--links", str(bench.links)]) == 0
    assert "flash plan: 1 board(s), 1 of 5 member(s) on boards" in capsys.readouterr().out
    assert main(["flash", "--ensemble", "--model", MEMBERS[0]]) == 2
    assert "--ensemble chooses every board's model itself" in capsys.readouterr().err
    assert main(["flash"]) == 2
    assert "give --model ID (one board) or --ensemble" in capsys.readouterr().err
    assert bench.writes() == []


def test_flash_ensemble_with_a_chip_two_boards_share_and_no_hello_writes_nothing(bench):
    from fleetvote.errors import ConfigError
    from fleetvote.testbed.flashing import flash_ensemble

    bench.attach("0671FF485550755187121723", F411, "nucleo-f411re", "baseline")
    bench.attach("066DFF555185754867071234", L4)  # an L475 or an L476: no firmware answers to say which
    bench.image_files()
    with pytest.raises(ConfigError, match="(?s)nothing written.*chip 0x415 is any of .*nucleo-l476rg.*give --board"):
        flash_ensemble(ZOO / "ensemble.json", **bench.kw())
    assert bench.writes() == []
