#!/usr/bin/env python3
"""Instructions per inference of any zoo model's firmware, counted under QEMU.

    bench_firmware.py --models vgg12-s31 baseline [--build firmware/build] [--json OUT] [--cards ZOO]
    bench_firmware.py --machine baseline        the machine that counts a model (bench-firmware's
                                                make recipe asks, then builds that image)

Each model's bench image (ports/stm32f4/bench.c) runs on one of two emulated Cortex-M4s with
``-icount shift=0``: the netduinoplus2 (STM32F405, ``make -C firmware BOARD=netduinoplus2
MODEL=<id> VARIANT=bench``) when the image fits it, else the MPS2 AN386 (``make -C firmware
BOARD=mps2-an386 MODEL=<id>``, tests/bench_mps2_an386.c), whose larger memory holds the int8
baseline; ``machine_for`` states the rule. With -icount shift=0 every guest instruction
advances virtual time by 1 ns, and SysTick, clocked at the machine's core clock (168 MHz on the
netduinoplus2, 25 MHz on the AN386), by clock / 1 GHz ticks: the bench's tick counts divided by
that are instruction counts, the same on every run and every host (calibrated on this project's
machine with a 2,000,000-instruction subs/bne loop: 336,000 SysTick ticks at 168 MHz), and on both machines, which run the same code between two readings.

Prints, per model, each layer's instructions and instructions per MAC with the reference C
kernels and with the Cortex-M4 DSP kernels, grouped as the first layer, the other standard
convolutions, depthwise, fully connected and the rest; then an estimated latency on a
NUCLEO-F411RE at 100 MHz, for a stated cycles-per-instruction assumption, beside the anchors.
With ``--cards ZOO`` it records each model's whole-inference instructions per MAC (both kernel
sets) in ZOO/<id>/card.json under ``"bench_firmware"``, with the machine, the emulator, the
compiler of the image and the make command that counts it again; ``fleetvote plan`` reads them.
Exit status 1 if a bench fails, the two kernel sets disagree on the output, or the runner fused
another number of (convolution, depthwise) pairs than the build planned (FV_DSP_FUSED_PAIRS of
tools/dsp_limits.py: the planes' RAM and the fused kernels' flash are reserved for them), or of
(convolution, max pool) pairs (FV_DSP_POOL_PAIRS: their running maximum and kernels).

A fused max pool (fv_conv2d_pool_opt) is computed by the convolution before it: its maxima and
its one requantisation per pooled byte are counted in that convolution's layer, and the pool
layer keeps only what is left of it (nothing, or a copy of the pooled bytes where the arena plan
puts the pool's output over the convolution's input). The max pool rows therefore say how many
of their pools were fused (``fused_pools`` of ``pools``), so that a small figure is not read as a
standalone kernel's; with ``--table``, each model counted again prints its whole-model figures
and those of the layer kinds the fusion touches (first layer, conv, max pool) before (the table's
row) and after.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import sys
import time
from pathlib import Path

from size_report import CATALOG, measure

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "service"))
from fleetvote.engine.ops import BY_NAME, OPS  # noqa: E402  (after the path above)

NETDUINO, AN386 = "netduinoplus2", "mps2-an386"
# per machine: the bench image under the build directory, and the make command that builds it
IMAGES = {
    NETDUINO: ("stm32f4/netduinoplus2/{m}/bench/firmware.bin",
               "make -C firmware BOARD=netduinoplus2 MODEL={m} VARIANT=bench"),
    AN386: ("mps2-an386/{m}/bench/firmware.elf", "make -C firmware BOARD=mps2-an386 MODEL={m}"),
}
# a layer's label by its op number (fv_layer.kind), from the operator registry the firmware's enum
# (core/fv_ops.h) is generated from
KINDS = {o.number: o.label for o in OPS}
GROUPS = ("first layer", "conv", "conv 1x1", "depthwise", "fully connected", "max pool", "add", "other")
PER_BYTE = ("max pool", "add")  # the kinds without MACs counted per output byte

# Cycles per instruction assumed for the estimate on the F411 (Cortex-M4 at 100 MHz, flash at 3
# wait states behind the ART accelerator, whose 1 KB instruction cache holds these inner loops):
# SMLAD, SXTB16 and ALU ops take 1 cycle, a load 2 (1 when pipelined behind another), a taken
# branch 2-4. The DSP inner loop (20 instructions: 6 loads, 14 single-cycle) runs at about 1.2;
# the reference loops, load- and branch-heavier, nearer 1.4. 1.3 is the middle; the range
# 1.1-1.5 bounds it.
CPI = 1.3
CPI_RANGE = (1.1, 1.5)
F411_HZ = 100_000_000

REFERENCE_FIGURES = """for comparison: a TFLite-style reference int8 3x3 conv in plain C on the M4, measured
  under QEMU on this project's machine: ~7.4 instructions/MAC (8.0 M instructions for 1.08 M MACs);
  MLPerf Tiny ResNet-8 latencies (mlcommons/tiny_results_v0.5-v1.3, results/*/ic/performance):
  TFLM reference kernels ~0.15 MAC/cycle, vendor-optimised int8 (X-CUBE-AI, CMSIS-NN, Plumerai)
  0.6-1.1 MAC/cycle.
  target here: <= 2 instructions/MAC on the standard convolutions."""


def machine_for(model: str, build: Path) -> str:
    """The machine that counts ``model``: the netduinoplus2, the fleet's emulated board, when the
    model's bench image fits its flash and RAM (the catalogue's, the limits its real link checks),
    measured on the same objects linked into unbounded memory (``make ... VARIANT=bench
    measure``); else the MPS2 AN386 (tests/mps2_an386/memory.ld)."""
    elf = build / "stm32f4" / NETDUINO / model / "bench" / "measure.elf"
    if not elf.exists():
        raise FileNotFoundError(f"{elf} (make -C firmware BOARD={NETDUINO} MODEL={model} VARIANT=bench measure)")
    used = measure(elf)
    limit = json.loads(CATALOG.read_text())["boards"][NETDUINO]
    return NETDUINO if used["flash"] <= limit["flash_bytes"] and used["ram"] <= limit["ram_bytes"] else AN386


def run_bench(image: Path, machine: str, qemu: str = "qemu-system-arm", timeout: float = 300.0) -> list[str]:
    args = [qemu, "-M", machine, "-nographic", "-monitor", "none", "-serial", "stdio",
            "-icount", "shift=0", "-kernel", str(image)]
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.strip())
            if line.strip() == "done" or time.monotonic() > deadline:
                break
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return lines


def parse(lines: list[str]) -> dict:
    out: dict = {"layers": {"ref": [], "opt": []}, "total": {}, "out": {}}
    for line in lines:
        f = line.split()
        if not f:
            continue
        if f[0] == "bench":
            kv = dict(zip(f[1::2], f[2::2]))
            out.update(model=kv["model"], n_layers=int(kv["layers"]), macc=int(kv["macc"]),
                       clock_hz=int(kv["clock"]), dwt=int(kv["dwt"]))
        elif f[0] == "overhead":
            out["overhead"] = int(f[1])
        elif f[0] == "fused":
            out["fused"] = int(f[1])
        elif f[0] == "fused_pool":
            out["fused_pool"] = int(f[1])
        elif f[0] == "layer":
            out["layers"][f[1]].append({"index": int(f[2]), "kind": int(f[3]), "macc": int(f[4]), "ticks": int(f[5])})
        elif f[0] == "total":
            out["total"][f[1]] = int(f[2])
            out["out"][f[1]] = f[4]
        elif f[0] == "match":
            out["match"] = f[1] == "1"
    if "match" not in out or len(out["layers"]["ref"]) != out.get("n_layers"):
        raise RuntimeError("incomplete bench output:\n" + "\n".join(lines[-10:]))
    return out


def layer_shapes(model_id: str, zoo: Path = ROOT / "models" / "zoo") -> list[tuple[str, int, int]]:
    """(a short shape, kernel taps, output bytes) per layer, from the engine (the generated code's
    layer list) on ``zoo``/<id>/model.tflite."""
    try:
        from fleetvote.engine import Engine
    except ImportError:
        return []
    eng = Engine.from_file(zoo / model_id / "model.tflite")
    shapes = []
    for op, k in eng.layers:
        out_bytes = int(math.prod(eng.model.tensors[op.outputs[0]].shape[1:]))
        if op.opcode in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            cin = getattr(k, "cin", "?")
            shapes.append((f"{k.kh}x{k.kw} {cin}->{k.cout} s{k.sh} {k.oh}x{k.ow}", k.kh * k.kw, out_bytes))
        elif op.opcode == "FULLY_CONNECTED":
            shapes.append((f"{k.k}->{k.cout}", 0, out_bytes))
        else:
            shapes.append((f"-> {out_bytes:,} B", 0, out_bytes))
    return shapes


def group_of(layer: dict, first_conv: int, taps: int) -> str:
    kind = KINDS.get(layer["kind"], "?")
    if kind == "CONV_2D":
        if layer["index"] == first_conv:
            return "first layer"
        return "conv 1x1" if taps == 1 else "conv"
    if kind == "DEPTHWISE_CONV_2D":
        return "depthwise"
    if kind == "FULLY_CONNECTED":
        return "fully connected"
    if kind == "MAX_POOL_2D":
        return "max pool"
    if kind == "ADD":
        return "add"
    return "other"


def analyse(b: dict, shapes: list[tuple[str, int]]) -> dict:
    tpi = b["clock_hz"] / 1e9  # SysTick ticks per instruction under -icount shift=0
    convs = (BY_NAME["CONV_2D"].number, BY_NAME["DEPTHWISE_CONV_2D"].number)
    first_conv = next((l["index"] for l in b["layers"]["ref"] if l["kind"] in convs), -1)
    rows = []
    groups = {g: {"macc": 0, "ref": 0.0, "opt": 0.0, "out_bytes": 0} for g in GROUPS}
    for ref, opt in zip(b["layers"]["ref"], b["layers"]["opt"]):
        # the first layer's count includes fv_run's input quantisation: take it off
        extra = b.get("overhead", 0) if ref["index"] == 0 else 0
        r = (ref["ticks"] - extra) / tpi
        o = (opt["ticks"] - extra) / tpi
        g = group_of(ref, first_conv, shapes[ref["index"]][1] if ref["index"] < len(shapes) else 0)
        groups[g]["macc"] += ref["macc"]
        groups[g]["out_bytes"] += shapes[ref["index"]][2] if ref["index"] < len(shapes) else 0
        groups[g]["ref"] += r
        groups[g]["opt"] += o
        rows.append({"index": ref["index"], "kind": KINDS.get(ref["kind"], "?"), "group": g, "macc": ref["macc"],
                     "ref_instructions": round(r), "opt_instructions": round(o)})
    total = {v: b["total"][v] / tpi for v in ("ref", "opt")}
    return {"model": b["model"], "macc": b["macc"], "layers": rows, "groups": groups,
            "total_instructions": {k: round(v) for k, v in total.items()}, "match": b["match"],
            "outputs": b["out"], "overhead_instructions": round(b.get("overhead", 0) / tpi),
            "fused_pairs": b.get("fused"), "fused_pool_pairs": b.get("fused_pool"),
            "pools": sum(1 for l in b["layers"]["ref"] if KINDS.get(l["kind"]) == "MAX_POOL_2D")}


# pairs_problem's last four arguments for each kind of fused pair: the macro in fv_dsp_limits.h,
# the pair, the rule in tools/dsp_limits.py that counts them, the one in the firmware that fuses them
DEPTHWISE_PAIRS = ("FV_DSP_FUSED_PAIRS", "convolution, depthwise", "fused_plane_words", "fv_dw_planes_ok")
POOL_PAIRS = ("FV_DSP_POOL_PAIRS", "convolution, max pool", "pool_words_of", "fv_conv_pool_ok")


def pairs_problem(fused: int | None, limits: Path, macro: str, pair_name: str, python_rule: str,
                  c_rule: str) -> str | None:
    """Why the pairs the runner fused at prepare (the bench's `fused` or `fused_pool` line) are
    not the `macro` the build planned for (`limits`, its fv_dsp_limits.h from tools/dsp_limits.py);
    None when they agree. Used for FV_DSP_FUSED_PAIRS, the (convolution, depthwise) pairs
    (fused_plane_words against fv_dw_planes_ok), and FV_DSP_POOL_PAIRS, the (convolution, max pool)
    pairs (pool_words_of against fv_conv_pool_ok). A pair dsp_limits.py counts that the firmware
    refuses would keep the planes' or pool's RAM and the fused kernels' flash for nothing; one the
    firmware fuses that dsp_limits.py does not count would run with buffers sized for another layer."""
    try:
        found = re.search(rf"#define {macro} (\d+)", limits.read_text())
    except OSError as exc:
        return f"cannot read the build's planned ({pair_name}) pairs: {exc}"
    if found is None:
        return f"{limits} has no {macro} (rebuild the bench image)"
    if fused is None:
        return f"the bench image reports no fused ({pair_name}) pairs (a bench.c before the count: rebuild it)"
    planned = int(found.group(1))
    if fused != planned:
        return (f"the runner fused {fused} ({pair_name}) pairs at prepare, dsp_limits.py planned "
                f"{macro} {planned}: make its {python_rule} agree with {c_rule} (core/fv_kernels_dsp.c), "
                f"or see whether the runner refused for a cause it alone checks "
                f"(core/fv_runner.c, plan_fusion): another layer reads the convolution's output "
                f"(only_next_reads), a pool whose output overlaps both the convolution's input and its "
                f"output (it would need the copy into place and write over what it reads), or a pair "
                f"from layer 64 on (the runner's masks have 64 bits)")
    return None


def per_mac(instr: float, macc: int) -> str:
    return f"{instr / macc:6.2f}" if macc else "     -"


def report(a: dict, shapes: list[tuple[str, int]]) -> str:
    out = [f"== {a['model']} on {a['machine']}: {a['macc']:,} MACs, outputs {'identical' if a['match'] else 'DIFFER'} "
           f"(ref {a['outputs']['ref']}, dsp {a['outputs']['opt']})",
           f"{'#':>3} {'layer':<18} {'shape':<22} {'MACs':>10} {'ref instr':>11} {'/MAC':>6} "
           f"{'dsp instr':>11} {'/MAC':>6} {'speed-up':>8}"]
    for r in a["layers"]:
        shape = shapes[r["index"]][0] if r["index"] < len(shapes) else ""
        sp = r["ref_instructions"] / r["opt_instructions"] if r["opt_instructions"] else 0
        out.append(f"{r['index']:>3} {r['kind'][:18]:<18} {shape:<22} {r['macc']:>10,} {r['ref_instructions']:>11,} "
                   f"{per_mac(r['ref_instructions'], r['macc'])} {r['opt_instructions']:>11,} "
                   f"{per_mac(r['opt_instructions'], r['macc'])} {sp:>7.2f}x")
    out.append("  by group:")
    for g in GROUPS:
        v = a["groups"][g]
        if v["ref"] == 0:
            continue
        if g in PER_BYTE and v["out_bytes"]:  # pooling, ADD: per output byte
            fused = (f", {a['fused_pool_pairs']} of {a['pools']} fused into the convolution before (counted there)"
                     if g == "max pool" and a.get("fused_pool_pairs") else "")
            out.append(f"    {g:<16} {v['out_bytes']:>10,} B     ref {v['ref']:>11,.0f} ({v['ref'] / v['out_bytes']:.2f}/byte)"
                       f"  dsp {v['opt']:>11,.0f} ({v['opt'] / v['out_bytes']:.2f}/byte{fused})")
            continue
        out.append(f"    {g:<16} {v['macc']:>10,} MACs  ref {v['ref']:>11,.0f} ({per_mac(v['ref'], v['macc']).strip()}/MAC)"
                   f"  dsp {v['opt']:>11,.0f} ({per_mac(v['opt'], v['macc']).strip()}/MAC)")
    t = a["total_instructions"]
    out.append(f"    {'total':<16} {a['macc']:>10,} MACs  ref {t['ref']:>11,} ({t['ref'] / a['macc']:.2f}/MAC)"
               f"  dsp {t['opt']:>11,} ({t['opt'] / a['macc']:.2f}/MAC)")
    for v, name in (("ref", "reference C"), ("opt", "DSP kernels")):
        ms = t[v] * CPI / F411_HZ * 1e3
        lo, hi = (t[v] * c / F411_HZ * 1e3 for c in CPI_RANGE)
        out.append(f"  est. NUCLEO-F411RE @100 MHz, {name:<11}: {ms:6.1f} ms at CPI {CPI} "
                   f"({lo:.1f}-{hi:.1f} ms for CPI {CPI_RANGE[0]}-{CPI_RANGE[1]}), "
                   f"{a['macc'] / (t[v] * CPI):.2f} MAC/cycle")
    board = f411()
    if board is not None:  # the planner's per-board CPI and energy (fleetvote plan, offline/bom.py)
        from fleetvote.offline.bom import cycles_per_instruction, energy_mj

        cpi, _ = cycles_per_instruction(board, t["opt"] / a["macc"])
        ms = t["opt"] * cpi / F411_HZ * 1e3
        mj = energy_mj(board, ms)
        out.append(f"  est. NUCLEO-F411RE, DSP kernels, CPI from its {board['flash_wait_states']} flash wait states: "
                   f"CPI {cpi}, {ms:.1f} ms, MCU energy per answer "
                   + ("-" if mj is None else f"{mj:.2f} mJ") + " (fleetvote plan's model)")
    return "\n".join(out)


def f411() -> dict | None:
    """The catalogue's NUCLEO-F411RE, or None without a catalogue."""
    try:
        return json.loads(CATALOG.read_text())["boards"]["nucleo-f411re"]
    except (OSError, KeyError, json.JSONDecodeError):
        return None


def compiler_of(elf: Path) -> str:
    """The compiler named in the image's .comment section (gcc writes "GCC: (<build>) <version>")."""
    found = re.search(rb"GCC: ([^\0]+)", elf.read_bytes())
    return "GCC " + found.group(1).decode(errors="replace") if found else "unknown"


def qemu_version(qemu: str) -> str:
    out = subprocess.run([qemu, "--version"], capture_output=True, text=True).stdout
    found = re.search(r"version (\S+)", out)
    return f"QEMU {found.group(1) if found else '?'}"


def card_record(res: dict, emulator: str, compiler: str) -> dict:
    """What a card keeps of a count: whole-inference instructions over the model's MACC, both
    kernel sets, 3 decimals (the count is exact; 0.001 per MAC is 0.05 % of the DSP kernels'
    ~2), and how to get it again."""
    t = res["total_instructions"]
    return {"instructions_per_mac": {v: round(t[v] / res["macc"], 3) for v in ("ref", "opt")},
            "machine": res["machine"], "emulator": f"{emulator}, -icount shift=0", "compiler": compiler,
            "command": f"make -C firmware bench-firmware MODELS={res['model']} CARDS=1"}


def record_in_card(zoo: Path, record: dict, model: str, macc: int) -> None:
    from fleetvote.offline.cards import BENCH_KEY

    path = zoo / model / "card.json"
    card = json.loads(path.read_text())
    if card.get("macc") != macc:  # the image is not the card's model: count nothing into it
        raise ValueError(f"{path}: macc {card.get('macc')} != the firmware's {macc}")
    card[BENCH_KEY] = record
    path.write_text(json.dumps(card, indent=2) + "\n")


def table_record(res: dict) -> dict:
    """One model's row of the committed table: per layer kind and whole model, instructions and
    instructions per MAC with the reference and the optimised kernels (kinds without MACs, the
    pooling, ADD and the rest, give instructions only)."""
    kinds = {}
    for g in GROUPS:
        v = res["groups"][g]
        if v["ref"] == 0:
            continue
        row = {"macc": v["macc"], "ref_instructions": round(v["ref"]), "opt_instructions": round(v["opt"])}
        if v["macc"]:
            row.update(ref_per_mac=round(v["ref"] / v["macc"], 3), opt_per_mac=round(v["opt"] / v["macc"], 3))
        elif g in PER_BYTE and v["out_bytes"]:
            row.update(out_bytes=v["out_bytes"], ref_per_out_byte=round(v["ref"] / v["out_bytes"], 3),
                       opt_per_out_byte=round(v["opt"] / v["out_bytes"], 3))
        if g == "max pool":  # a fused pool's work is its convolution's (the module's docstring)
            row.update(pools=res.get("pools", 0), fused_pools=res.get("fused_pool_pairs") or 0)
        kinds[g] = row
    t = res["total_instructions"]
    return {"model": res["model"], "machine": res["machine"], "macc": res["macc"], "total_instructions": t,
            "instructions_per_mac": {v: round(t[v] / res["macc"], 3) for v in ("ref", "opt")}, "kinds": kinds}


# the layer kinds whose instructions the (convolution, max pool) fusion moves between them
POOL_FUSION_KINDS = ("first layer", "conv", "max pool")


def before_after(path: Path, results: list[dict]) -> list[str]:
    """Per model counted now that has a row in the table at ``path``: the whole model's
    instructions per MAC and the instructions of the kinds in POOL_FUSION_KINDS, the table's row
    (before) beside this count (after), and the max pool's per output byte."""
    try:
        old = {r["model"]: r for r in json.loads(path.read_text()).get("models", [])}
    except (OSError, json.JSONDecodeError):
        return []
    lines = []
    for res in results:
        was = old.get(res["model"])
        if was is None:
            continue
        now = table_record(res)
        moved = [sum(r["kinds"].get(g, {}).get("opt_instructions", 0) for g in POOL_FUSION_KINDS) for r in (was, now)]
        pool = [r["kinds"].get("max pool", {}).get("opt_per_out_byte") for r in (was, now)]
        per_mac_ = [r["instructions_per_mac"]["opt"] for r in (was, now)]
        total = [r["total_instructions"]["opt"] for r in (was, now)]
        lines.append(f"{res['model']}: whole model {per_mac_[0]:.3f} -> {per_mac_[1]:.3f} instructions/MAC "
                     f"({total[0]:,} -> {total[1]:,}); first layer + conv + max pool {moved[0]:,} -> {moved[1]:,} "
                     f"({moved[1] - moved[0]:+,})" + (f"; max pool {pool[0]} -> {pool[1]} per output byte"
                                                      if pool[0] is not None or pool[1] is not None else ""))
    return lines


def write_table(path: Path, results: list[dict], emulator: str) -> None:
    """The committed table (firmware/bench/instructions.json): what fleetvote plan reads when no
    build of the bench is at hand. The rows of models counted now replace theirs; the other rows
    stay, so one model can be (re)counted without the others' minutes of emulation, as long as the
    emulator is the same (another emulator starts a new table)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = {}
    if path.exists():
        old = json.loads(path.read_text())
        if old.get("emulator") == f"{emulator}, -icount shift=0":
            rows = {r["model"]: r for r in old.get("models", [])}
    rows.update((r["model"], table_record(r)) for r in results)
    models = list(rows)
    path.write_text(json.dumps({
        "_doc": "instructions per MAC per layer kind and per model, reference beside optimised (DSP) kernels, "
                "counted under QEMU -icount shift=0 by firmware/tools/bench_firmware.py; written by the command "
                "below (rows of models counted alone replace theirs), read by fleetvote plan (offline/bom.py) "
                "when firmware/build/bench-firmware.json is absent; a max pool row's fused_pools of its pools "
                "were fused into the convolution before them (their work is counted in that convolution's row; "
                "the pool layers keep only a copy where the arena plan needs one)",
        "command": "make bench-firmware MODELS=\"" + " ".join(models) + "\" TABLE=firmware/bench/instructions.json",
        "emulator": f"{emulator}, -icount shift=0", "cpi": CPI, "cpi_range": CPI_RANGE,
        "models": list(rows.values())}, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    what = ap.add_mutually_exclusive_group(required=True)
    what.add_argument("--models", nargs="+", help="zoo ids to count")
    what.add_argument("--machine", metavar="MODEL", help="print the machine that counts MODEL and exit")
    ap.add_argument("--build", type=Path, default=ROOT / "firmware" / "build")
    ap.add_argument("--qemu", default="qemu-system-arm")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--zoo", type=Path, default=ROOT / "models" / "zoo",
                    help="where the models live (the firmware build's ZOO; default %(default)s)")
    ap.add_argument("--cards", type=Path, metavar="ZOO", help="record each count in ZOO/<id>/card.json")
    ap.add_argument("--table", type=Path, metavar="JSON",
                    help="write the per-layer-kind table of every counted model (firmware/bench/instructions.json)")
    a = ap.parse_args(argv)
    if a.machine:
        try:
            print(machine_for(a.machine, a.build))
        except FileNotFoundError as exc:
            print(f"{a.machine}: no measured bench image: {exc}", file=sys.stderr)
            return 2
        return 0
    emulator = qemu_version(a.qemu)
    results, ok = [], True
    for m in a.models:
        try:
            machine = machine_for(m, a.build)
        except FileNotFoundError as exc:
            print(f"{m}: cannot choose a machine without {exc}")
            ok = False
            continue
        path, how = IMAGES[machine]
        image = a.build / path.format(m=m)
        if not image.exists():
            print(f"{m}: no bench image {image} ({how.format(m=m)})")
            ok = False
            continue
        shapes = layer_shapes(m, a.zoo)
        try:
            res = {"machine": machine, **analyse(parse(run_bench(image, machine, a.qemu)), shapes)}
        except (RuntimeError, KeyError, ValueError) as exc:
            print(f"{m}: bench failed on {machine}: {exc}")
            ok = False
            continue
        ok = ok and res["match"]
        results.append(res)
        print(report(res, shapes))
        limits = image.parent / "fv_dsp_limits.h"
        for problem in (pairs_problem(res["fused_pairs"], limits, *DEPTHWISE_PAIRS),
                        pairs_problem(res["fused_pool_pairs"], limits, *POOL_PAIRS)):
            if problem is not None:
                print(f"{m}: {problem}")
                ok = False
        if a.cards and res["match"]:
            try:
                record = card_record(res, emulator, compiler_of(image.with_suffix(".elf")))
                record_in_card(a.cards, record, m, res["macc"])
                print(f"  recorded in {a.cards / m / 'card.json'}")
            except (OSError, ValueError) as exc:
                print(f"{m}: not recorded: {exc}")
                ok = False
        print()
    print(f"instructions counted under {emulator} -icount shift=0 (1 ns of virtual time per instruction; SysTick at "
          f"the core clock each bench reports: clock / 1 GHz ticks per instruction); latency = instructions x CPI "
          f"/ 100 MHz, CPI {CPI} assumed (see bench_firmware.py)")
    print(REFERENCE_FIGURES)
    if a.table:
        for line in before_after(a.table, results):
            print(line)
    if a.table and ok:
        write_table(a.table, results, emulator)
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({"cpi": CPI, "cpi_range": CPI_RANGE, "clock_hz": F411_HZ,
                                      "models": results}, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
