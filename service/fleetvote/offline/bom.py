"""``fleetvote plan``: the cheapest board for each model, the bill of materials of a fleet, and an
estimate of its latency, beside the baseline and the reference.

For each model of the zoo:

* what it needs: flash and RAM of its firmware image as measured by the STM32 port's size report
  (``firmware/build/size-report.json``, from ``make -C firmware size-report``) when that file
  exists and has the pair; otherwise an estimate: the card's weights plus
  ``FIRMWARE_FLASH_BYTES`` of ``fleetvote.catalog`` (a guess, low: the size report measures more),
  and the card's arena plus ``FIRMWARE_RAM_BYTES`` (the firmware's own RAM) plus the DSP kernels'
  static buffers the model's layers need (``dsp_buffers.static_ram_bytes``, the rule that sizes
  them in its image, ``dsp_buffers.SIZED_BUFFERS``; without the zoo's model file they are not
  counted, and the source says so); the report says which;
* the cheapest board of the catalogue (``firmware/boards/catalog.json``; boards with a price only,
  which leaves out the emulated one) that it fits; ties go to the faster clock. A model of role
  ``reference`` (MLPerf Tiny's ResNet-8) goes on a nucleo-f411re, the members' board, whatever
  is cheaper: it is the one-board system the fleet is compared with;
* its latency on that board, estimated as

      transfer  3,124 bytes on the wire (image frame out, answer back) x 10 bits / the board's baud
    + compute   MACC x instructions per MAC x cycles per instruction / the board's clock

  Instructions per MAC: the model's own count, a whole inference's instructions over its MACC
  with the optimised DSP kernels the release firmware runs, counted under QEMU by the firmware
  bench: from ``firmware/build/bench-firmware.json`` (``make bench-firmware MODELS=<id>``) when
  it counted the model, else from the card's ``bench_firmware`` record (``CARDS=1``). No other
  model's figure and no constant stands in: a model without a count of its own is refused
  (ConfigError), unless ``--instructions-per-mac`` gives one figure for every model, labelled as
  given. Cycles per instruction: 1.3 for every core (``CYCLES_PER_INSTRUCTION``, the firmware
  bench's assumption, range 1.1-1.5; not measured), whether or not the bench's file exists. The
  M7 is given the M4 build's instruction count and CPI: pessimistic for a dual-issue core.

A fleet answers when its slowest member has: its estimate is the largest member latency plus the
host's own overhead, the p50 measured by ``fleetvote bench`` at concurrency 1 (``--bench``; 0 and
said so without it).

Fleets: the best subsets of 3, 4 and 5 members from ``fleetvote ensemble-eval --json`` (``--eval``),
the current ensemble file, and any ``--fleet a,b,c``. Accuracies come from the same report (engine,
test split of the JPEG copy) or, without it, from the cards. Beside the fleets, each on one
board: the zoo's int8 ``baseline`` (role baseline) on the cheapest board it fits, the reference
(role reference) on its nucleo-f411re, and the seed's float deployment as its README reports it
(5.12 MiB of weights in external flash, 83.2 %, 0.275 s on its board).
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timezone
from pathlib import Path

from ..catalog import CATALOG, FIRMWARE_FLASH_BYTES, FIRMWARE_RAM_BYTES, load_catalog
from ..command import command_line
from ..errors import ConfigError
from ..settings import ROOT
from . import rel_path as _rel
from .dsp_buffers import model_limits, static_ram_bytes

SIZE_REPORT = ROOT / "firmware" / "build" / "size-report.json"
BENCH_FIRMWARE = ROOT / "firmware" / "build" / "bench-firmware.json"
# the committed per-layer-kind table (firmware/tools/bench_firmware.py --table): the counts when no
# build of the bench is at hand
BENCH_TABLE = ROOT / "firmware" / "bench" / "instructions.json"
# fleetvote probe --json records of real boards: their own cycle counts, preferred to the estimate
MEASURED = ROOT / "firmware" / "boards" / "measured"
WIRE_BYTES = 3124  # one image frame and its answer (docs/protocol.md)
BITS_PER_BYTE = 10  # 8N1
REFERENCE_BOARD = "nucleo-f411re"  # the reference's one board: the members' (size_report.py's default)
SINGLE_ROLES = ("baseline", "reference")  # one board each, shown beside the fleets
FLEET_SIZES = (3, 4, 5)  # the best fleets planned from ensemble-eval's report (issue 16 reports 3, 4 and 5)
# Cycles per instruction, assumed until the boards issue derives them per board from flash wait
# states: firmware/tools/bench_firmware.py's CPI (1.3: the DSP inner loop's loads at 2 cycles and
# its single-cycle MACs near 1.2, the load- and branch-heavier reference loops near 1.4). One
# figure whether or not a bench-firmware.json exists, so an estimate never depends on which
# files happen to be in the build folder.
CYCLES_PER_INSTRUCTION = {"cortex-m4f": 1.3, "cortex-m4": 1.3, "cortex-m7": 1.3}
SEED = {
    "id": "seed (float, X-CUBE-AI)", "macc": 32_997_984, "flash_bytes": 5_372_584, "ram_bytes": 143_468,
    "test_accuracy": 0.832, "latency_ms": 275.0,
    "board": "stm32h747i-disco",
    "note": "as reported by the seed (seed/README.md): 5.12 MiB float32 weights, external flash; 0.275 s of "
            "inference on its board, image transfer not included; the seed does not name its board: the "
            "catalogue's stm32h747i-disco is the one with the external flash it needs",
}


# ---- measured firmware figures, when the STM32 port has produced them ------------------------

def _walk(obj):
    if isinstance(obj, dict):
        yield obj
        for v in obj.values():
            yield from _walk(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _walk(v)


def _first(d: dict, keys) -> object:
    for k in keys:
        if k in d and d[k] is not None:
            return d[k]
    return None


def load_size_report(path: Path = SIZE_REPORT) -> tuple[dict[tuple[str, str], tuple[int, int]], str | None]:
    """{(board, model): (flash bytes, RAM bytes)} of the firmware images, and a note on problems.
    Reads any record with a board, a model and flash/RAM figures, wherever it sits in the file."""
    if not path.exists():
        return {}, None
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        return {}, f"{path}: unreadable ({exc})"
    out = {}
    for d in _walk(raw):
        board = _first(d, ("board", "board_name"))
        model = _first(d, ("model", "model_id", "id"))
        flash = _first(d, ("flash_bytes", "flash_used", "flash", "image_flash_bytes", "rom_bytes"))
        ram = _first(d, ("ram_bytes", "ram_used", "ram", "image_ram_bytes"))
        if isinstance(flash, dict):
            flash = _first(flash, ("used", "bytes", "total"))
        if isinstance(ram, dict):
            ram = _first(ram, ("used", "bytes", "total"))
        if isinstance(board, str) and isinstance(model, str) and isinstance(flash, (int, float)) \
                and isinstance(ram, (int, float)):
            out[(board, model)] = (int(flash), int(ram))
    return out, None if out else f"{path}: no (board, model, flash, RAM) records recognised"


def load_bench_firmware(path: Path = BENCH_FIRMWARE) -> tuple[dict[str, tuple[float, str]], float | None, str | None]:
    """({model: (instructions per MAC, which kernels)}, the file's stated cycles per instruction,
    a note on problems). Instructions per MAC are a whole inference's instructions over the
    model's MACC; the optimised (DSP) kernels' figure when the file has one, as the release
    firmware runs those; else the reference kernels'."""
    if not path.exists():
        return {}, None, None
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        return {}, None, f"{path}: unreadable ({exc})"
    cpi = raw.get("cpi") if isinstance(raw, dict) and isinstance(raw.get("cpi"), (int, float)) else None
    out: dict[str, tuple[float, str]] = {}
    for d in _walk(raw):
        model = _first(d, ("model", "model_id", "member"))
        if not isinstance(model, str):
            continue
        figures: dict[str, float] = {}
        total, macc = d.get("total_instructions"), d.get("macc")
        if isinstance(total, dict) and isinstance(macc, (int, float)) and macc > 0:
            for k, v in total.items():  # {"ref": N, "opt": N}: instructions of one inference
                if isinstance(v, (int, float)):
                    figures[f"{k} kernels, total instructions / MACC"] = v / macc
        for k, v in d.items():  # or figures stated per MAC: {"dsp": {"instructions_per_mac": ...}}
            if "per_mac" in k and isinstance(v, (int, float)):
                figures[k] = float(v)
            if isinstance(v, dict):
                for k2, v2 in v.items():
                    if "per_mac" in k2 and isinstance(v2, (int, float)):
                        figures[f"{k} {k2}"] = float(v2)
        if not figures:
            continue
        opt = [k for k in figures if any(t in k for t in ("dsp", "opt"))]
        key = opt[0] if opt else sorted(figures)[0]
        where = f" on {d['machine']}" if isinstance(d.get("machine"), str) else ""
        out[model] = (round(figures[key], 3), f"measured under QEMU{where} ({key})")
    return out, cpi, None if out else f"{path}: no per-model instruction counts recognised"


# ---- fitting and latency ---------------------------------------------------------------------

ESTIMATE = "card + firmware estimate"
NO_MODEL = " (no model file: DSP buffers not counted)"


def requirement(card: dict, board: str, sizes: dict[tuple[str, str], tuple[int, int]],
                zoo: Path | None = None) -> tuple[int, int, str]:
    """(flash, RAM, source) that ``card``'s model needs on ``board``: the size report's image of
    the pair, else of the model on another board, else the estimate (module docstring), whose
    DSP buffers come from ``zoo``/<id>/model.tflite."""
    mid = card["id"]
    if (board, mid) in sizes:
        f, r = sizes[(board, mid)]
        return f, r, "size report"
    measured = [(b, fr) for (b, m), fr in sizes.items() if m == mid]
    if measured:
        f = max(fr[0] for _b, fr in measured)
        r = max(fr[1] for _b, fr in measured)
        return f, r, f"size report ({'/'.join(sorted(b for b, _ in measured))} image)"
    arena = card.get("arena_bytes") or card.get("ram_bytes") or 0
    model = Path(zoo) / mid / "model.tflite" if zoo is not None else None
    dsp = static_ram_bytes(model_limits(model)) if model is not None and model.is_file() else None
    return (int(card["flash_bytes"]) + FIRMWARE_FLASH_BYTES, int(arena) + FIRMWARE_RAM_BYTES + (dsp or 0),
            ESTIMATE if dsp is not None else ESTIMATE + NO_MODEL)


def fits(card: dict, board: str, spec: dict, sizes, zoo: Path | None = None) -> bool:
    f, r, _ = requirement(card, board, sizes, zoo)
    return f <= spec["flash_bytes"] and r <= spec["ram_bytes"]


def priced_boards(catalog: dict) -> dict[str, dict]:
    return {n: b for n, b in catalog.items() if b.get("price_usd") is not None and not b.get("emulated")}


def cheapest_board(card: dict, catalog: dict, sizes, zoo: Path | None = None) -> str | None:
    ok = [(b["price_usd"], -b["clock_hz"], n) for n, b in priced_boards(catalog).items()
          if fits(card, n, b, sizes, zoo)]
    return min(ok)[2] if ok else None


# ---- cycles per instruction from the board's flash, and energy from its run current -----------
#
# Most instructions of the optimised kernels are the 2x2 inner loop (firmware/core/
# fv_kernels_dsp.c): per group of 4 values 2 LDR, 2 LDRD, 4 SXTB16, 8 SMLAD, CMP and a taken
# branch, 18 instructions for 16 MACs (1.125 per MAC). Their cycles, from the Cortex-M4 Technical
# Reference Manual (ARM DDI 0439B, 3.3.1 "Cortex-M4 instruction timings"): LDR 2 cycles, 1 when
# pipelined behind another load; LDRD 3; SXTB16, SMLAD and CMP 1; a taken branch 1 + P, P the
# pipeline refill (1-3), taken as 2. 3 + 6 + 4 + 8 + 1 + 3 = 25 cycles for 18 instructions.
LOOP_CPI = 25 / 18
LOOP_INSTRUCTIONS_PER_MAC = 18 / 16
# The loop's 72 bytes run from the ART accelerator's instruction cache (enabled with prefetch by
# ports/stm32f4/clock.c), so the flash wait states never stall it. The other instructions (the
# share 1 - 1.125 / instructions per MAC: gathering columns, requantisation, pooling, ADD) are
# counted pessimistically, as if each 16-byte flash line of them (about 6 Thumb-2 instructions)
# missed the cache once and waited the board's wait states (its reference manual's figure at its
# clock, in the catalogue).
LINE_INSTRUCTIONS = 6


def cycles_per_instruction(board: dict, ipm: float) -> tuple[float, str]:
    """(CPI, how it was found) of a model of ``ipm`` instructions per MAC on ``board``: from the
    board's flash wait states when the catalogue has them, else the assumed per-core figure."""
    ws = board.get("flash_wait_states")
    if ws is None:
        return CYCLES_PER_INSTRUCTION.get(board.get("core", ""), 1.3), "assumed (no flash wait states in the catalogue)"
    outside = max(0.0, 1.0 - LOOP_INSTRUCTIONS_PER_MAC / ipm) if ipm > 0 else 0.0
    cpi = LOOP_CPI + outside * ws / LINE_INSTRUCTIONS
    return round(cpi, 3), (f"{LOOP_CPI:.2f} in the DSP loop (Cortex-M4 TRM timings) + the share of instructions "
                           f"outside it (1 - {LOOP_INSTRUCTIONS_PER_MAC} / instructions per MAC) x {ws} flash wait "
                           f"states / {LINE_INSTRUCTIONS} instructions per cache line")


def energy_mj(board: dict, compute_ms: float) -> float | None:
    """The MCU's energy for one answer's compute: supply voltage x run current at the board's
    clock (the datasheet's run-mode current per MHz, in the catalogue) x compute time; None when
    the catalogue has no sourced run current for the board."""
    ua_per_mhz, volts = board.get("run_current_ua_per_mhz"), board.get("supply_v")
    if ua_per_mhz is None or volts is None:
        return None
    amps = ua_per_mhz * 1e-6 * board["clock_hz"] / 1e6
    return round(volts * amps * compute_ms, 3)  # V x A x ms = mJ


def latency(macc: int, board: dict, ipm: float, cpi: float | None = None, cycles: float | None = None) -> dict:
    """Transfer + compute of one answer on ``board``. ``cycles``: the board's own count of an
    inference (``fleetvote probe --json``), used before any estimate; else MACC x ``ipm`` x CPI,
    CPI given or from the board (cycles_per_instruction)."""
    if cycles is not None:
        cpi_used, cpi_source = round(cycles / (macc * ipm), 3), "measured on the board (fleetvote probe)"
        compute = cycles / board["clock_hz"] * 1000
    else:
        cpi_used, cpi_source = (cpi, "given") if cpi is not None else cycles_per_instruction(board, ipm)
        compute = macc * ipm * cpi_used / board["clock_hz"] * 1000
    transfer = WIRE_BYTES * BITS_PER_BYTE / board["baud"] * 1000
    return {"transfer_ms": round(transfer, 2), "compute_ms": round(compute, 2),
            "total_ms": round(transfer + compute, 2), "instructions_per_mac": ipm, "cpi": cpi_used,
            "cpi_source": cpi_source, "energy_mj": energy_mj(board, compute)}


# ---- the member budget (issue 16) ----------------------------------------------------------------
#
# A member must fit the members' board (flash and RAM of its real firmware image, from the size
# report) and answer within MEMBER_LATENCY_BUDGET_MS there by the planner's own estimate: transfer
# + compute from the model's own instruction count (``latency`` above). This replaces the fixed
# 5 M MACC limit: with the DSP kernels at 1.3-1.4 instructions per MAC, 160 ms on a 100 MHz F411
# is about 6 M MACC, and a slower model (a depthwise-heavy one) gets fewer.
MEMBER_BOARD = "nucleo-f411re"
MEMBER_LATENCY_BUDGET_MS = 160.0


def member_budget(macc: int, flash_bytes: int, ram_bytes: int, ipm: float, board: dict,
                  budget_ms: float = MEMBER_LATENCY_BUDGET_MS) -> dict:
    """The budget's verdict on one member: its planned latency on ``board`` (the catalogue's
    entry), the margins left, and the reasons it does not fit (``problems``, empty when it does)."""
    lat = latency(int(macc), board, float(ipm))
    problems = []
    if flash_bytes > board["flash_bytes"]:
        problems.append(f"flash {flash_bytes:,} B > the board's {board['flash_bytes']:,} B")
    if ram_bytes > board["ram_bytes"]:
        problems.append(f"RAM {ram_bytes:,} B > the board's {board['ram_bytes']:,} B")
    if lat["total_ms"] > budget_ms:
        problems.append(f"planned latency {lat['total_ms']} ms (transfer {lat['transfer_ms']} + compute "
                        f"{lat['compute_ms']}) > {budget_ms:g} ms")
    return {"latency": lat, "latency_margin_ms": round(budget_ms - lat["total_ms"], 2),
            "flash_share": round(flash_bytes / board["flash_bytes"], 3),
            "ram_share": round(ram_bytes / board["ram_bytes"], 3), "problems": problems}


def check_member_budget(name: str, macc: int, flash_bytes: int, ram_bytes: int, ipm: float, board: dict,
                        budget_ms: float = MEMBER_LATENCY_BUDGET_MS) -> dict:
    """``member_budget``, raising ConfigError when the member does not fit: a narrower stage or
    fewer blocks at 8x8/4x4 is what to change."""
    verdict = member_budget(macc, flash_bytes, ram_bytes, ipm, board, budget_ms)
    if verdict["problems"]:
        raise ConfigError(f"{name} is over the member budget on {MEMBER_BOARD}: " + "; ".join(verdict["problems"])
                          + " (narrow a stage or drop a block, then measure it again)")
    return verdict


# ---- a real board's own count: fleetvote probe --json ------------------------------------------

def load_measured(directory: Path = MEASURED) -> dict[tuple[str, str], dict]:
    """{(board, model): record} of the probe records in ``directory`` (fleetvote probe --json):
    only those whose every answer equalled the engine's and that ran the optimised kernels, as
    the release firmware does."""
    out: dict[tuple[str, str], dict] = {}
    if not Path(directory).is_dir():
        return out
    for path in sorted(Path(directory).glob("*.json")):
        try:
            rec = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if not isinstance(rec, dict) or not isinstance(rec.get("inference_cycles_p50"), (int, float)):
            continue
        if rec.get("differ") != 0 or rec.get("kernels") != "dsp" or not rec.get("images"):
            continue
        out[(str(rec.get("board")), str(rec.get("model")))] = {**rec, "path": _rel(path)}
    return out


# ---- the plan --------------------------------------------------------------------------------

def instructions_per_mac(card: dict, measured: dict[str, tuple[float, str]]) -> tuple[float, str]:
    """(instructions per MAC, where from) of ``card``'s own model: the firmware bench's file when it
    counted the model (``measured``, from ``load_bench_firmware``), else the card's record. Raises
    ConfigError without either: no other model's count stands in."""
    mid = card["id"]
    if mid in measured:
        return measured[mid]
    rec = card.get("bench_firmware") or {}
    ipm = (rec.get("instructions_per_mac") or {}).get("opt")
    if isinstance(ipm, (int, float)) and ipm > 0:
        return float(ipm), f"its card (opt kernels, counted on {rec.get('machine')}: {rec.get('command')})"
    raise ConfigError(f"{mid}: no instruction count of its own to estimate its latency from (neither the "
                      "firmware bench's JSON nor its card's bench_firmware record has one): count it with "
                      f"`make bench-firmware MODELS={mid} CARDS=1`, or give --instructions-per-mac")


def model_row(card: dict, catalog: dict, sizes, ipms, cpi: float | None, accuracy: float | None,
              measured: dict[tuple[str, str], dict] | None = None, zoo: Path | None = None) -> dict:
    if card.get("role") == "reference":
        board = REFERENCE_BOARD if fits(card, REFERENCE_BOARD, catalog[REFERENCE_BOARD], sizes, zoo) else None
    else:
        board = cheapest_board(card, catalog, sizes, zoo)
    # the card's validation accuracy beside the test accuracy: the results table's members rows
    # read it for models ensemble-eval does not score (the reference)
    row = {"id": card["id"], "role": card.get("role"), "macc": card.get("macc"), "test_accuracy": accuracy,
           "val_accuracy": card.get("val_accuracy"), "board": board, "fits_boards": sorted(n for n, b in priced_boards(catalog).items()
                                                 if fits(card, n, b, sizes, zoo))}
    if board is None:  # no latency to estimate: no count needed
        f, r, src = requirement(card, "-", sizes, zoo)
        row.update(flash_bytes=f, ram_bytes=r, sizes_from=src, price_usd=None, latency=None, ipm_source=None)
        return row
    ipm, row["ipm_source"] = instructions_per_mac(card, ipms)
    f, r, src = requirement(card, board, sizes, zoo)
    spec = catalog[board]
    probe = (measured or {}).get((board, card["id"]))
    row.update(flash_bytes=f, ram_bytes=r, sizes_from=src, price_usd=spec["price_usd"],
               price_date=spec["price_date"], price_source=spec["price_source"],
               latency=latency(int(card["macc"]), spec, ipm, cpi,
                               cycles=probe["inference_cycles_p50"] if probe else None),
               measured_from=probe["path"] if probe else None)
    return row


def fleet_plan(name: str, ids: list[str], rows: dict[str, dict], catalog: dict, host_ms: float | None,
               accuracy: dict | None) -> dict:
    missing = [i for i in ids if i not in rows]
    if missing:
        raise ConfigError(f"fleet {name}: not in the zoo: {', '.join(missing)}")
    members = [rows[i] for i in ids]
    unfit = [m["id"] for m in members if m["board"] is None]
    bom: dict[str, dict] = {}
    for m in members:
        if m["board"]:
            b = bom.setdefault(m["board"], {"board": m["board"], "count": 0, "unit_usd": m["price_usd"],
                                            "price_date": m["price_date"], "price_source": m["price_source"]})
            b["count"] += 1
    board_ms = max((m["latency"]["total_ms"] for m in members if m["latency"]), default=None)
    # every member computes once per answer: the fleet's energy is the sum (None unless every
    # member's board has a sourced run current)
    energies = [m["latency"]["energy_mj"] if m["latency"] else None for m in members]
    return {
        "name": name, "members": ids, "boards": [m["board"] for m in members], "unfit": unfit,
        "bom": list(bom.values()), "total_usd": sum(b["count"] * b["unit_usd"] for b in bom.values()),
        "macc_per_board_max": max(m["macc"] or 0 for m in members),
        "macc_total": sum(m["macc"] or 0 for m in members),
        "flash_per_board_max": max(m["flash_bytes"] for m in members),
        "ram_per_board_max": max(m["ram_bytes"] for m in members),
        "slowest_board_ms": board_ms, "host_overhead_ms": host_ms,
        "latency_ms": None if board_ms is None else round(board_ms + (host_ms or 0.0), 2),
        "accuracy": accuracy,
        "energy_mj": None if not energies or None in energies else round(sum(energies), 3),
        "member_energy_mj": dict(zip(ids, energies)),
    }


def run(zoo: Path, eval_json: Path | None = None, bench_json: Path | None = None,
        ensemble: Path | None = None, fleets: list[list[str]] | None = None, catalog_path: Path = CATALOG,
        size_report: Path = SIZE_REPORT, bench_firmware: Path = BENCH_FIRMWARE, cpi: float | None = None,
        ipm: float | None = None, bench_table: Path = BENCH_TABLE, measured_dir: Path = MEASURED) -> dict:
    from .cards import load_cards

    catalog = load_catalog(catalog_path)
    cards = {c["id"]: c for c in load_cards(zoo)}
    sizes, size_note = load_size_report(size_report)
    ipms, _, ipm_note = load_bench_firmware(bench_firmware)
    if not Path(bench_firmware).exists() and Path(bench_table).exists():
        # no build of the bench: the committed table, for the models it counted (the same MACC:
        # the same model as the zoo's card, not another zoo's model of that id)
        ipms, _, ipm_note = load_bench_firmware(bench_table)
        try:
            maccs = {m["model"]: m.get("macc") for m in json.loads(Path(bench_table).read_text())["models"]}
        except (OSError, json.JSONDecodeError, KeyError, TypeError):
            maccs = {}
        ipms = {i: v for i, v in ipms.items() if i in cards and maccs.get(i) == cards[i].get("macc")}
        bench_firmware = bench_table
    measured = load_measured(measured_dir)
    if ipm is not None:
        ipms = {i: (ipm, "given (--instructions-per-mac)") for i in cards}
    cpi_note = (f"{cpi} (given)" if cpi is not None else
                "per board and model from the board's flash wait states and the ART accelerator (see each "
                "model's cpi_source; boards without wait states in the catalogue: "
                + ", ".join(f"{k} {v}" for k, v in CYCLES_PER_INSTRUCTION.items()) + ", assumed)"
                + (f"; the board's own cycle count where a probe record exists ({_rel(measured_dir)})"
                   if measured else ""))
    notes = []
    if sizes:
        notes.append(f"flash/RAM: measured firmware images from {_rel(size_report)} (models it lacks: card "
                     f"weights + {FIRMWARE_FLASH_BYTES:,} B flash, arena + {FIRMWARE_RAM_BYTES:,} B RAM + "
                     "the DSP buffers of its layers)")
    else:
        notes.append(f"flash/RAM: no size report ({size_note or f'{_rel(size_report)} does not exist yet'}): card "
                     f"weights + {FIRMWARE_FLASH_BYTES:,} B flash (a guess) and arena + {FIRMWARE_RAM_BYTES:,} B "
                     "RAM of firmware + the DSP buffers of each model's layers (fleetvote.catalog, "
                     "fleetvote.offline.dsp_buffers)")
    notes.append(f"cycles per instruction: {cpi_note}; the Cortex-M7 boards are given the Cortex-M4 build's "
                 "instruction count")
    ev = json.loads(Path(eval_json).read_text()) if eval_json else None
    bench = json.loads(Path(bench_json).read_text()) if bench_json else None
    host_ms = host_p99 = None
    if bench:
        one = next((o for o in bench.get("overhead", []) if o["concurrency"] == 1), None)
        if one:
            host_ms, host_p99 = one["p50_ms"], one["p99_ms"]
    notes.append(f"host overhead: {host_ms} ms p50 at concurrency 1 from {bench_json}" if host_ms is not None else
                 "host overhead: not measured (no --bench): 0 ms added")
    acc = {m["id"]: m["test_accuracy"] for m in ev["models"]} if ev else {}
    rows = {i: model_row(c, catalog, sizes, ipms, cpi, acc.get(i, c.get("test_accuracy")), measured, zoo)
            for i, c in cards.items()}
    used = ", ".join(f"{i} {r['latency']['instructions_per_mac']}" for i, r in sorted(rows.items()) if r["latency"])
    if ipm is not None:
        notes.insert(1, f"instructions per MAC: {ipm} for every model (given: --instructions-per-mac)")
    else:
        notes.insert(1, f"instructions per MAC: each model's own count of the optimised kernels under QEMU "
                        f"({used}), from {_rel(bench_firmware)} where it counted the model"
                        + (f" ({ipm_note})" if ipm_note else "") + ", else from its card")

    def fleet_acc(ids: list[str]) -> dict | None:
        if not ev:
            return None
        for s in ev["subsets"]:
            if sorted(s["members"]) == sorted(ids):
                return s["test"]
        return None

    plans = []
    if ev:
        for k in FLEET_SIZES:
            best = ev["best"].get(str(k))
            label = f"best {k}"
            if best is None:
                have = max(int(n) for n in ev["best"])
                if have < k and str(have) in ev["best"] and not any(p["members"] == ev["best"][str(have)]["members"]
                                                                    for p in plans):
                    best, label = ev["best"][str(have)], f"best {have} (only {have} members in the zoo; {k} asked)"
                else:
                    continue
            plans.append(fleet_plan(label, best["members"], rows, catalog, host_ms, best["test"]))
            plans[-1]["chosen_strategy"] = best["best_strategy_on_val"]
    if ensemble and Path(ensemble).exists():
        ids = [m["id"] for m in json.loads(Path(ensemble).read_text())["members"]]
        plans.append(fleet_plan(f"ensemble file {Path(ensemble).name}", ids, rows, catalog, host_ms, fleet_acc(ids)))
    for ids in fleets or []:
        plans.append(fleet_plan(",".join(ids), ids, rows, catalog, host_ms, fleet_acc(ids)))

    singles = {}
    for role in SINGLE_ROLES:
        c = next((c for c in cards.values() if c.get("role") == role), None)
        if c is not None:
            r = rows[c["id"]]
            singles[role] = {**r, "latency_ms": None if r["latency"] is None else
                             round(r["latency"]["total_ms"] + (host_ms or 0.0), 2),
                             "accuracy_from": "ensemble-eval (numpy engine, test split)" if c["id"] in acc else "card"}
    seed_board = catalog.get(SEED["board"], {})
    return {
        "catalog": str(catalog_path), "notes": notes, "host_overhead_ms": {"p50": host_ms, "p99": host_p99},
        "wire_bytes": WIRE_BYTES, "bits_per_byte": BITS_PER_BYTE,
        "models": sorted(rows.values(), key=lambda r: (r["role"] != "member", r["id"])),
        "fleets": plans,
        "baseline": singles.get("baseline"),
        "baseline_note": None if "baseline" in singles else "no zoo model with role 'baseline' yet "
                                                            "(models/recipes.json: make model ID=baseline)",
        "reference": singles.get("reference"),
        "reference_note": None if "reference" in singles else "no zoo model with role 'reference' yet "
                                                              "(MLPerf Tiny's ResNet-8: make model ID=resnet8)",
        "seed": {**SEED, "price_usd": seed_board.get("price_usd"), "price_date": seed_board.get("price_date"),
                 "price_source": seed_board.get("price_source")},
    }


# ---- output ----------------------------------------------------------------------------------

def _kib(n) -> str:
    return "-" if n is None else (f"{n / 1024:.1f} KiB" if n < 1 << 20 else f"{n / (1 << 20):.2f} MiB")


def format_report(rep: dict) -> str:
    lines = ["notes:"] + [f"  - {n}" for n in rep["notes"]] + [
        "", f"{'model':<18}{'role':<10}{'MACC':>11}{'flash':>12}{'RAM':>11}  {'cheapest board':<16}{'$':>4}"
            f"{'xfer ms':>9}{'MCU ms':>9}{'total':>8}{'instr/MAC':>10}{'CPI':>7}{'MCU mJ':>8}  sizes from"]
    for r in rep["models"]:
        lat = r["latency"] or {}
        mj = lat.get("energy_mj")
        lines.append(f"{r['id']:<18}{r['role'] or '-':<10}{r['macc'] or 0:>11,}{_kib(r['flash_bytes']):>12}"
                     f"{_kib(r['ram_bytes']):>11}  {r['board'] or 'FITS NONE':<16}{r['price_usd'] or '-':>4}"
                     f"{lat.get('transfer_ms', '-'):>9}{lat.get('compute_ms', '-'):>9}{lat.get('total_ms', '-'):>8}"
                     f"{lat.get('instructions_per_mac', '-'):>10}{lat.get('cpi', '-'):>7}"
                     f"{'-' if mj is None else mj:>8}  {r['sizes_from']}"
                     + (f"; cycles measured ({r['measured_from']})" if r.get("measured_from") else ""))
    lines.append("  CPI: " + "; ".join(sorted({f"{r['board']}: {r['latency']['cpi_source']}" for r in rep["models"]
                                                if r["latency"]})))
    lines.append("  MCU mJ: supply x the datasheet's run current at the board's clock x MCU ms, the MCU alone "
                 "(the catalogue's run_current_source); - where the catalogue has no sourced figure")
    lines += ["", "fleets (latency = slowest member's transfer + compute + host overhead p50):"]
    for f in rep["fleets"]:
        bom = " + ".join(f"{b['count']} x {b['board']} (${b['unit_usd']})" for b in f["bom"])
        acc = f["accuracy"] or {}
        lines.append(f"  {f['name']}: {', '.join(f['members'])}")
        lines.append(f"    BOM {bom} = ${f['total_usd']}; per board max MACC {f['macc_per_board_max']:,}, flash "
                     f"{_kib(f['flash_per_board_max'])}, RAM {_kib(f['ram_per_board_max'])}; latency "
                     f"{f['latency_ms']} ms; MCU energy per answer "
                     + ("-" if f["energy_mj"] is None else f"{f['energy_mj']} mJ") + "; test accuracy "
                     + (", ".join(f"{s} {v:.4f}" for s, v in acc.items()) or "-")
                     + (f"; unfit: {', '.join(f['unfit'])}" if f["unfit"] else ""))
    b = rep["baseline"]
    if b:
        lines.append(f"  baseline {b['id']} (int8, one board): {b['board'] or 'FITS NONE'} "
                     f"(${b['price_usd']}); MACC {b['macc']:,}, flash {_kib(b['flash_bytes'])}, RAM "
                     f"{_kib(b['ram_bytes'])}; latency {b['latency_ms']} ms; MCU energy per answer "
                     + ("-" if not b["latency"] or b["latency"]["energy_mj"] is None
                        else f"{b['latency']['energy_mj']} mJ") + f"; test accuracy {b['test_accuracy']}")
    else:
        lines.append(f"  baseline: {rep['baseline_note']}")
    r = rep.get("reference")
    if r:
        lines.append(f"  reference {r['id']} (int8, one board): {r['board'] or 'DOES NOT FIT ' + REFERENCE_BOARD} "
                     f"(${r['price_usd']}); MACC {r['macc']:,}, flash {_kib(r['flash_bytes'])}, RAM "
                     f"{_kib(r['ram_bytes'])}; latency {r['latency_ms']} ms; test accuracy {r['test_accuracy']}")
    else:
        lines.append(f"  reference: {rep['reference_note']}")
    s = rep["seed"]
    lines.append(f"  seed, as reported: {s['board']} (${s['price_usd']}); MACC {s['macc']:,}, flash "
                 f"{_kib(s['flash_bytes'])} (float32, external), RAM {_kib(s['ram_bytes'])}; "
                 f"{s['latency_ms']:.0f} ms on board; test accuracy {s['test_accuracy']}")
    return "\n".join(lines)


def _cmd(a: argparse.Namespace) -> int:
    fleets = [[x for x in f.split(",") if x] for f in a.fleet or []]
    rep = run(Path(a.zoo), Path(a.eval) if a.eval else None, Path(a.bench) if a.bench else None,
              Path(a.ensemble) if a.ensemble else None, fleets, Path(a.catalog),
              Path(a.size_report), Path(a.bench_firmware), a.cpi, a.instructions_per_mac,
              measured_dir=Path(a.measured))
    rep["command"] = command_line()
    rep["date"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    if a.json:
        Path(a.json).write_text(json.dumps(rep, indent=1) + "\n")
    print(format_report(rep))
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser(
        "plan", help="cheapest board per model, bill of materials and estimated latency of fleets",
        description="For each zoo model: flash and RAM (measured firmware images when the size report exists), "
                    "the cheapest catalogue board it fits, and its latency estimated as serial transfer (3,124 "
                    "bytes x 10 bits / baud) + MACC x instructions per MAC x cycles per instruction / clock. For "
                    "fleets: bill of materials and latency (slowest member + measured host overhead), beside the "
                    "int8 baseline and the seed as reported.",
        epilog="examples:\n"
               "  fleetvote plan                                      # the zoo and the current ensemble file\n"
               "  fleetvote plan --eval runs/results/ensemble-eval.json --bench runs/results/bench/bench.json\n"
               "  fleetvote plan --fleet vgg12-s31,resnetw16-16-48-64-s45 --json plan.json",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--zoo", default="models/zoo")
    p.add_argument("--eval", help="fleetvote ensemble-eval --json output: accuracies and the best fleets of 3, 4 and 5")
    p.add_argument("--bench", help="fleetvote bench's bench.json: the host overhead (p50 at concurrency 1)")
    p.add_argument("--ensemble", default="models/zoo/ensemble.json", help="also plan this ensemble file's fleet")
    p.add_argument("--fleet", action="append", help="also plan this comma list of zoo ids (repeat)")
    p.add_argument("--catalog", default=str(CATALOG))
    p.add_argument("--size-report", default=str(SIZE_REPORT))
    p.add_argument("--bench-firmware", default=str(BENCH_FIRMWARE),
                   help="the firmware bench's JSON (default %(default)s; when absent, the committed table "
                        f"{_rel(BENCH_TABLE)})")
    p.add_argument("--measured", default=str(MEASURED),
                   help="folder of `fleetvote probe --json` records: a real board's own cycle count replaces the "
                        "estimate for its (board, model) (default %(default)s)")
    p.add_argument("--cpi", type=float, help="cycles per instruction for every core (default: stated per core)")
    p.add_argument("--instructions-per-mac", type=float,
                   help="one figure for every model instead of each model's own count (labelled as given)")
    p.add_argument("--json", help="write the full report here")
    p.set_defaults(func=_cmd)
