"""Flashing by probe: which ST-LINK, which chip behind it, which member on which board.

Every Nucleo's ST-LINK/V2-1 has the same USB id (0483:374B): neither the id nor the order of
enumeration tells an F411 from an F446 on one hub. So a probe is named by its serial number and
the board behind it by its chip:

* **the probe**: ``--serial``, or the serial in the port's stable link
  (``/dev/serial/by-id/usb-STMicroelectronics_STM32_STLink_<serial>-if02``, or the udev rules'
  ``/dev/fleetvote/<serial>-if02``); the flasher is told it (``st-flash --serial S``, OpenOCD's
  ``adapter serial S``), so it never writes whichever probe it finds first;
* **the chip**: ``st-info --probe`` lists each probe's serial and chip id (DBGMCU_IDCODE's
  DEV_ID, the catalogue's ``dev_id``); a board that runs fleetvote firmware also says its name in
  HELLO, which settles a chip id shared by two boards (an L475 and an L476 are both 0x415) and
  names the board when only OpenOCD is installed.

``plan()`` gives each attached board a member of the ensemble (``fleetvote flash --ensemble``):
a board that already runs a member (HELLO's model id and hash) keeps it; then the heaviest member
left (MACC) goes to the fastest board left (clock) that it fits, since the slowest member sets
the fleet's latency; boards beyond the members get second copies, heaviest member first.
Anything wrong (an unknown chip, a board no firmware port builds, a probe without a port to check
it on, two probes and no serial) is an error before anything is written; a failed flash stops
the run, and the boards not yet written are left as they were.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..catalog import boards_of_dev_id, get_board, load_catalog, real_boards
from ..errors import BoardError, ConfigError
from ..settings import ROOT

IMAGES = ROOT / "firmware" / "build" / "stm32f4"
ZOO = ROOT / "models" / "zoo"
FLASH_BASE = 0x08000000  # the STM32F4's main flash (RM0383 3.3, RM0390 3.3)
BY_ID_DIRS = (Path("/dev/serial/by-id"), Path("/dev/fleetvote"))
# the probe's serial in a link's name: udev's by-id (usb-<vendor>_<product>_<serial>-if<NN>) for
# ST-LINK/V2-1 ("STM32_STLink") and STLINK-V3, and the udev rules' /dev/fleetvote/<serial>-if<NN>
BY_ID_LINK = re.compile(r"^usb-STMicroelectronics_(?:STM32_STLink|STLINK-V3)_([0-9A-Za-z]+)-if(\d\d)$")
FLEETVOTE_LINK = re.compile(r"^([0-9A-Fa-f]{8,})-if(\d\d)$")
VCP_INTERFACE = "02"  # the virtual COM port's interface on V2-1 and V3 (the debug one is 00)
DEFAULT_BAUD = 921_600


def serial_of_port(port: str | Path) -> str | None:
    """The probe serial a port's link names, or None (a bare /dev/ttyACM0, socket://...)."""
    name = Path(str(port)).name
    m = BY_ID_LINK.match(name) or FLEETVOTE_LINK.match(name)
    return m[1] if m else None


def ports_by_serial(dirs=BY_ID_DIRS) -> dict[str, str]:
    """{probe serial: the link of its virtual COM port} over the link folders, first folder first."""
    out: dict[str, str] = {}
    for d in dirs:
        for link in sorted(Path(d).glob("*")) if Path(d).is_dir() else ():
            m = BY_ID_LINK.match(link.name) or FLEETVOTE_LINK.match(link.name)
            if m and m[2] == VCP_INTERFACE:
                out.setdefault(m[1], str(link))
    return out


def parse_st_info(text: str) -> list[tuple[str, int | None]]:
    """(serial, chip id) of each probe in ``st-info --probe``'s output (stlink 1.7: a block per
    probe with ``serial:`` and ``chipid:`` lines; chip id None when the block has none)."""
    probes: list[list] = []
    for line in text.splitlines():
        key, _, value = line.strip().partition(":")
        value = value.strip()
        if key == "serial" and value:
            probes.append([value, None])
        elif key == "chipid" and probes and value:
            try:
                probes[-1][1] = int(value, 16)
            except ValueError:
                pass
    return [(s, c) for s, c in probes]


def st_info_probes(timeout: float = 30.0) -> list[tuple[str, int | None]] | None:
    """``st-info --probe``'s probes, or None when st-info is not installed."""
    if shutil.which("st-info") is None:
        return None
    try:
        r = subprocess.run(["st-info", "--probe"], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise ConfigError(f"st-info --probe did not answer in {timeout:.0f} s: unplug and replug the probes") from exc
    return parse_st_info(r.stdout)


@dataclass
class Probe:
    """One attached ST-LINK and what is known of the board behind it."""
    serial: str
    chip_id: int | None = None  # st-info's; None: not read (no st-info)
    port: str | None = None     # the link of its virtual COM port
    hello: object | None = None  # link.codec.Info, when fleetvote firmware answered
    board: str | None = None
    how: str = ""                # how the board was identified, for the plan

    @property
    def runs(self) -> tuple[str, bytes] | None:
        return (self.hello.model_id, self.hello.model_sha256) if self.hello is not None else None


async def _hello(url: str, baud: int, timeout: float = 2.0):
    from ..link.client import BoardClient, Timeouts

    client = await BoardClient.open(url, Timeouts(open=5.0, hello=timeout), baudrate=baud)
    try:
        return await client.hello()
    finally:
        await client.close()


def hello(port: str, baud: int = DEFAULT_BAUD, timeout: float = 2.0):
    """HELLO on ``port``: the board's Info, or None when no fleetvote firmware answers."""
    try:
        return asyncio.run(_hello(port, baud, timeout))
    except (BoardError, OSError):
        return None


def identify(probe: Probe, board: str | None = None) -> Probe:
    """Names ``probe.board`` from its chip id, else HELLO; ``board`` (--board) must agree.
    ConfigError for a chip the catalogue lacks, a board no port builds, or nothing to go by."""
    catalog = load_catalog()
    named = probe.hello.board_name if probe.hello is not None and probe.hello.board_name in catalog else None
    if probe.chip_id == 0:
        raise ConfigError(f"probe {probe.serial}: no chip answers (chip id 0x000): is the board powered "
                          "(JP5 on U5V) and are both CN2 jumpers fitted? (docs/hardware.md 2)")
    if probe.chip_id is not None:
        found = boards_of_dev_id(probe.chip_id)
        if not found:
            known = ", ".join(sorted({f"{b['dev_id']} {n}" for n, b in catalog.items() if b.get("dev_id")}))
            raise ConfigError(f"probe {probe.serial}: unknown chip 0x{probe.chip_id:03x}: no catalogue board has "
                              f"this dev_id ({known}); add the board to firmware/boards/catalog.json "
                              "(docs/hardware.md 7) or unplug it")
        if len(found) > 1:
            pick = board if board in found else named if named in found else None
            if pick is None:
                raise ConfigError(f"probe {probe.serial}: chip 0x{probe.chip_id:03x} is any of {', '.join(found)} "
                                  "and the board does not say which by HELLO: give --board")
            probe.board, probe.how = pick, f"st-info chip 0x{probe.chip_id:03x} + {'--board' if pick == board else 'HELLO'}"
        else:
            probe.board, probe.how = found[0], f"st-info chip 0x{probe.chip_id:03x}"
    elif named is not None:
        probe.board, probe.how = named, "HELLO"
    elif board is not None:
        probe.board, probe.how = board, "--board"
    else:
        raise ConfigError(f"probe {probe.serial}: cannot tell its board: st-info is not installed (stlink-tools) "
                          "and no fleetvote firmware answered HELLO on its port; give --board")
    if board is not None and probe.board != board:
        raise ConfigError(f"probe {probe.serial} has a {probe.board} ({probe.how}), not the --board {board}: "
                          "check which port belongs to which board (ls -l /dev/serial/by-id/)")
    real = real_boards()
    if probe.board not in real:
        raise ConfigError(f"probe {probe.serial}: {probe.board} ({probe.how}) is not a real board of the STM32F4 "
                          f"port ({', '.join(real)}): unplug it, or port the firmware to it (docs/hardware.md 7)")
    return probe


def attached(dirs=BY_ID_DIRS, say_hello: bool = True) -> list[Probe]:
    """Every attached probe, by serial: st-info's list (with chip ids) when st-info is installed,
    else the probes with a port link; each with its port and, where fleetvote firmware answers,
    its HELLO."""
    ports = ports_by_serial(dirs)
    listed = st_info_probes()
    probes = [Probe(s, chip, ports.get(s)) for s, chip in listed] if listed is not None \
        else [Probe(s, None, p) for s, p in ports.items()]
    if say_hello:
        for p in probes:
            if p.port is not None:
                bauds = {int(get_board(b)["baud"]) for b in boards_of_dev_id(p.chip_id)} if p.chip_id else set()
                p.hello = hello(p.port, bauds.pop() if len(bauds) == 1 else DEFAULT_BAUD)
    return probes


# ---- the commands ----------------------------------------------------------------------------

def image(board: str, model_id: str, kind: str, images: Path = IMAGES) -> Path:
    return images / board / model_id / "release" / f"firmware.{kind}"


def flash_command(board: str, model_id: str, serial: str, tool: str | None = None,
                  images: Path = IMAGES) -> list[str]:
    """The command that writes (board, model)'s release image through the probe ``serial``;
    ConfigError when no flasher is installed."""
    tools = [tool] if tool else ["st-flash", "openocd"]
    for t in tools:
        if t not in ("st-flash", "openocd"):
            raise ConfigError(f"unknown flash tool {t!r}: use st-flash or openocd")
        if shutil.which(t) is None:
            continue
        if t == "st-flash":
            return [t, "--serial", serial, "--reset", "write", str(image(board, model_id, "bin", images)),
                    hex(FLASH_BASE)]
        # adapter serial before `program`, whose init opens the adapter
        return [t, "-f", "interface/stlink.cfg", "-f", "target/stm32f4x.cfg", "-c", f"adapter serial {serial}",
                "-c", f"program {image(board, model_id, 'elf', images)} verify reset exit"]
    raise ConfigError(
        f"no flash tool: {'neither st-flash nor openocd is' if len(tools) > 1 else tools[0] + ' is not'} installed. "
        "Install stlink-tools (st-flash) or openocd (apt-get install stlink-tools openocd), plug the board's "
        "ST-LINK USB port in, and run again.")


def model_sha8(model_id: str, zoo: Path = ZOO) -> bytes:
    path = zoo / model_id / "model.tflite"
    if not path.exists():
        raise ConfigError(f"no model {model_id} in {zoo}")
    return hashlib.sha256(path.read_bytes()).digest()[:8]


@dataclass
class Step:
    probe: Probe
    member: str
    why: str
    keep: bool = False  # the board already runs the member: checked, not written


@dataclass
class Plan:
    steps: list[Step]
    unserved: list[str] = field(default_factory=list)  # members without a board: the engine's

    def format(self) -> str:
        lines = [f"flash plan: {len(self.steps)} board(s), "
                 f"{len({s.member for s in self.steps})} of {len({s.member for s in self.steps}) + len(self.unserved)} "
                 "member(s) on boards"]
        for i, s in enumerate(self.steps, 1):
            lines.append(f"  {i}. {s.member:<20} -> {s.probe.board:<14} probe {s.probe.serial} "
                         f"({s.probe.how}), port {s.probe.port}")
            lines.append(f"     {'keep' if s.keep else 'flash'}: {s.why}")
        for m in self.unserved:
            lines.append(f"  -  {m:<20} no board left: the service computes it with the engine (fallback)")
        return "\n".join(lines)


def _card(member: str, zoo: Path) -> dict:
    import json

    path = zoo / member / "card.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"member {member}: no readable card {path} ({exc}): export it again") from exc


def plan(members: list[str], probes: list[Probe], zoo: Path = ZOO) -> Plan:
    """Which member each identified probe's board gets, and why (module docstring)."""
    from ..offline.bom import load_size_report, requirement

    sizes, _ = load_size_report()
    cards = {m: _card(m, zoo) for m in members}
    order = sorted(members, key=lambda m: (-int(cards[m].get("macc") or 0), members.index(m)))
    free = sorted(probes, key=lambda p: (-int(get_board(p.board)["clock_hz"]), p.serial))
    steps: list[Step] = []

    def fit(member: str, board: str) -> str | None:
        spec = get_board(board)
        f, r, src = requirement(cards[member], board, sizes, zoo)
        if f > spec["flash_bytes"] or r > spec["ram_bytes"]:
            return None
        return f"{f / 1024:.0f} of {spec['flash_bytes'] / 1024:.0f} KiB flash, {r / 1024:.0f} of " \
               f"{spec['ram_bytes'] / 1024:.0f} KiB RAM ({src})"

    # 1. a board that already runs a member, with the zoo's hash, keeps it
    for p in list(free):
        if p.runs and p.runs[0] in members and p.runs[0] not in {s.member for s in steps} \
                and p.runs[1] == model_sha8(p.runs[0], zoo):
            steps.append(Step(p, p.runs[0], "already runs it (HELLO: model id and hash match)", keep=True))
            free.remove(p)
    # 2. the heaviest member left to the fastest board left that it fits; then, while boards are
    # left, second (third...) copies, heaviest member first, for as long as a round places one
    first = True
    while free:
        placed = False
        for m in ([m for m in order if m not in {s.member for s in steps}] if first else order):
            for p in free:
                room = fit(m, p.board)
                if room is None:
                    continue
                spec = get_board(p.board)
                what = "heaviest member left" if first else "another board for the heaviest member"
                steps.append(Step(p, m, f"{what} ({int(cards[m].get('macc') or 0) / 1e6:.1f} M MACC) on the fastest "
                                        f"board left ({spec['clock_hz'] / 1e6:.0f} MHz); fits: {room}"))
                free.remove(p)
                placed = True
                break
            if not free:
                break
        if not placed and not first:
            break
        first = False
    if free:
        raise ConfigError("no member of the ensemble fits " + ", ".join(f"the {p.board} on probe {p.serial}"
                                                                        for p in free))
    served = {s.member for s in steps}
    return Plan(steps, [m for m in members if m not in served])


def verify(probe: Probe, member: str, timeout: float = 10.0, zoo: Path = ZOO) -> str | None:
    """HELLO on the probe's port until the board answers (it resets after a flash), then the board
    name, the model id and its hash against the zoo: None when all match, else what differs."""
    want = model_sha8(member, zoo)
    baud = int(get_board(probe.board)["baud"])
    end = time.monotonic() + timeout
    info = None
    while info is None and time.monotonic() < end:
        info = hello(probe.port, baud)
        if info is None:
            time.sleep(0.5)
    if info is None:
        return f"no HELLO on {probe.port} within {timeout:.0f} s"
    probe.hello = info
    bad = [f"{what} {got!r}, not {exp!r}" for what, got, exp in (
        ("board", info.board_name, probe.board), ("model", info.model_id, member),
        ("model hash", info.model_sha256.hex(), want.hex())) if got != exp]
    return "; ".join(bad) or None


def run_plan(p: Plan, tool: str | None = None, build: bool = True, images: Path = IMAGES,
             boot_s: float = 1.0, verify_s: float = 10.0, zoo: Path = ZOO) -> int:
    """Builds and writes every step's image, in order, with progress; stops at the first failed
    build or flash; then checks every board by HELLO. 0 when every board runs its member."""
    from .qemu import build_image

    todo = [s for s in p.steps if not s.keep]
    cmds = {id(s): flash_command(s.probe.board, s.member, s.probe.serial, tool, images) for s in todo}
    for i, s in enumerate(todo, 1):
        where = f"{s.probe.board} (probe {s.probe.serial})"
        print(f"[{i}/{len(todo)}] {s.member} -> {where}", flush=True)
        if build:
            build_image(s.member, "release", s.probe.board)
        else:
            kind = "bin" if cmds[id(s)][0] == "st-flash" else "elf"
            if not image(s.probe.board, s.member, kind, images).exists():
                raise ConfigError(f"no image {image(s.probe.board, s.member, kind, images)}: build it "
                                  f"(make -C firmware BOARD={s.probe.board} MODEL={s.member}) or drop --no-build")
        t0 = time.monotonic()
        print("    $ " + " ".join(cmds[id(s)]), flush=True)
        r = subprocess.run(cmds[id(s)])
        if r.returncode != 0:
            done = ", ".join(x.probe.serial for x in todo[:i - 1]) or "none"
            raise ConfigError(f"{cmds[id(s)][0]} failed with status {r.returncode} on {where}: stopped there. "
                              f"Written before it: {done}; the other boards are as they were. Is the ST-LINK "
                              "plugged in and its firmware up to date? Run again once fixed.")
        print(f"    written in {time.monotonic() - t0:.1f} s", flush=True)
    if todo:
        time.sleep(boot_s)
    failed = 0
    for s in p.steps:
        problem = verify(s.probe, s.member, verify_s, zoo)
        info = s.probe.hello
        head = f"{s.probe.board} probe {s.probe.serial}"
        if problem is None:
            print(f"{head}: {info.model_id} sha256 {info.model_sha256.hex()} id {info.board_id.hex()}: OK")
        else:
            failed += 1
            print(f"{head}: {problem}: MISMATCH (reflash it)", file=sys.stderr)
    print(f"{len(p.steps) - failed} of {len(p.steps)} board(s) verified by HELLO and model hash")
    return 0 if failed == 0 else 1


def choose_probe(serial: str | None, port: str | None, dirs=BY_ID_DIRS) -> Probe:
    """The one probe a single-board flash writes: --serial, the port's link, or the only one
    attached; ConfigError when several are attached and nothing names one."""
    serial = serial or (serial_of_port(port) if port else None)
    ports = ports_by_serial(dirs)
    listed = st_info_probes()
    known = [s for s, _ in listed] if listed is not None else list(ports)
    if serial is None:
        if len(known) > 1:
            raise ConfigError(f"{len(known)} probes attached ({', '.join(known)}): name one with --serial, or give "
                              "the board's by-id port (/dev/serial/by-id/...STLink_<serial>-if02); nothing written")
        if not known:
            raise ConfigError("no ST-LINK found (st-info --probe, /dev/serial/by-id): plug the board's ST-LINK USB in")
        serial = known[0]
    elif listed is not None and serial not in known:
        raise ConfigError(f"probe {serial} is not attached (st-info --probe lists {', '.join(known) or 'none'})")
    chip = dict(listed).get(serial) if listed is not None else None
    return Probe(serial, chip, port or ports.get(serial))


def flash_one(model_id: str, port: str | None = None, board: str | None = None, serial: str | None = None,
              tool: str | None = None, build: bool = True, dirs=BY_ID_DIRS, images: Path = IMAGES,
              boot_s: float = 1.0, verify_s: float = 10.0, zoo: Path = ZOO) -> int:
    real = real_boards()
    if board is not None and board not in real:
        raise ConfigError(f"{board} is not a real board of the STM32F4 port ({', '.join(real)})"
                          + ("; the emulated one runs with `fleetvote sim --qemu N`" if get_board(board).get("emulated")
                             else ""))
    model_sha8(model_id, zoo)
    flash_command(board or real[0], model_id, "-", tool)  # a missing flasher fails before anything else
    probe = choose_probe(serial, port, dirs)
    if probe.port is None:
        raise ConfigError(f"probe {probe.serial}: no port to check the board on by HELLO: give its port "
                          "(/dev/serial/by-id/...-if02)")
    if probe.chip_id is None:
        probe.hello = hello(probe.port, int(get_board(board)["baud"]) if board else DEFAULT_BAUD)
    identify(probe, board)
    p = Plan([Step(probe, model_id, "as asked (--model)")])
    print(p.format(), flush=True)
    return run_plan(p, tool, build, images, boot_s, verify_s, zoo)


def flash_ensemble(ensemble: Path, tool: str | None = None, build: bool = True, dry_run: bool = False,
                   dirs=BY_ID_DIRS, images: Path = IMAGES, boot_s: float = 1.0, verify_s: float = 10.0,
                   zoo: Path | None = None) -> int:
    import json

    try:
        members = [m["id"] for m in json.loads(Path(ensemble).read_text())["members"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{ensemble}: not an ensemble file with members ({exc})") from exc
    zoo = Path(zoo) if zoo else Path(ensemble).parent
    for m in members:
        model_sha8(m, zoo)
    if not dry_run:
        flash_command(real_boards()[0], members[0], "-", tool)  # a missing flasher fails before anything else
    probes = attached(dirs)
    if not probes:
        raise ConfigError("no ST-LINK attached (st-info --probe, /dev/serial/by-id): nothing to flash")
    problems = []
    for p in probes:
        try:
            identify(p)
        except ConfigError as exc:
            problems.append(str(exc))
        if p.port is None:
            problems.append(f"probe {p.serial}: no virtual COM port link in {', '.join(map(str, dirs))}: "
                            "its board could not be checked by HELLO (udev rules, docs/deploy.md)")
    if problems:
        raise ConfigError("nothing written:\n  " + "\n  ".join(problems))
    p = plan(members, probes, zoo)
    print(p.format(), flush=True)
    if dry_run:
        return 0
    return run_plan(p, tool, build, images, boot_s, verify_s, zoo)
