"""``fleetvote analyze``: the per-layer table X-CUBE-AI gave the seed, for an int8 ``.tflite``.

Per operator: MACC (our convention: multiply-accumulates of CONV_2D, DEPTHWISE_CONV_2D and
FULLY_CONNECTED), parameters (elements of its constant tensors), read-only bytes of those
constants (int8 weights, int32 biases), and the activation bytes it reads and writes. Totals add
the peak live activation bytes of the buffer plan and the arena that plan needs, and whether the
model fits a board of the catalogue (flash for weights plus firmware, RAM for the arena plus
firmware plus the DSP kernels' buffers the model's layers size, ``dsp_buffers``; the firmware's
own figures, ``fleetvote.catalog``, come from the size report of the STM32 port).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ..catalog import FIRMWARE_FLASH_BYTES, FIRMWARE_RAM_BYTES, get_board
from ..engine import Engine, load_model
from .dsp_buffers import limits_of, static_ram_bytes


# The seed's single-board model as X-CUBE-AI's analysis reported it (the project's starting brief;
# README.md, results row "seed, float (as reported)")
SEED = {"macc": 32_997_984, "params": 1_343_146, "weight_bytes": 5_372_584, "activation_bytes": 143_468,
        "accuracy": 0.8320, "latency_s": 0.2749832}


def analyze(model_path: Path, board: str | None = None, vs_seed: bool | None = None) -> dict:
    model = load_model(model_path)
    engine = Engine(model)
    layers, seen_const = [], set()
    for (op, kernel) in engine.layers:
        params = wbytes = 0
        for i in op.inputs:
            if i < 0:
                continue
            t = model.tensors[i]
            if t.is_constant and t.type_name in ("int8", "int32") and i not in seen_const:
                # shape constants (MEAN axes, RESHAPE shape, PAD sizes) are not parameters
                if op.opcode in ("MEAN", "RESHAPE", "PAD") and i == op.inputs[1]:
                    continue
                seen_const.add(i)
                params += int(np.prod(t.shape))
                wbytes += t.nbytes
        out = model.tensors[op.outputs[0]]
        act_in = sum(model.tensors[i].nbytes for i in op.inputs if i >= 0 and not model.tensors[i].is_constant)
        layers.append({"index": op.index, "op": op.opcode, "output": out.name, "shape": list(out.shape),
                       "macc": int(kernel.macc), "params": params, "weight_bytes": wbytes,
                       "activation_bytes": act_in + out.nbytes})
    total = {
        "macc": int(sum(l["macc"] for l in layers)),
        "params": int(sum(l["params"] for l in layers)),
        "weight_bytes": int(sum(l["weight_bytes"] for l in layers)),
        "peak_activation_bytes": int(engine.plan.peak_bytes),
        "peak_at_layer": int(engine.plan.peak_op),
        "arena_bytes": int(engine.plan.arena_bytes),
        "file_bytes": model.size,
    }
    rep = {"model": str(model_path), "sha256": model.sha256, "layers": layers, "total": total,
           "macc_convention": "multiply-accumulates of conv, depthwise conv and dense layers only"}
    if vs_seed is None:  # by default for the zoo's baseline, the model rebuilt after the seed
        card = Path(model_path).parent / "card.json"
        vs_seed = card.exists() and '"role": "baseline"' in card.read_text()
    if vs_seed:
        rep["seed"] = SEED
    if board:
        b = get_board(board)
        flash_need = total["weight_bytes"] + FIRMWARE_FLASH_BYTES
        # the firmware's own RAM and the DSP kernels' buffers this model's layers size (bom.requirement)
        dsp_ram = static_ram_bytes(limits_of(k for _, k in engine.layer_table()))
        ram_need = total["arena_bytes"] + FIRMWARE_RAM_BYTES + dsp_ram
        rep["board"] = {"name": board, "flash_bytes": b["flash_bytes"], "ram_bytes": b["ram_bytes"],
                        "flash_needed": flash_need, "ram_needed": ram_need,
                        "fits": flash_need <= b["flash_bytes"] and ram_need <= b["ram_bytes"]}
        rep["fits"] = rep["board"]["fits"]
    return rep


def _human(n: int) -> str:
    return f"{n / 1024:.2f} KiB" if n < 1 << 20 else f"{n / (1 << 20):.2f} MiB"


def format_analysis(rep: dict) -> str:
    lines = [f"{rep['model']}  sha256 {rep['sha256'][:16]}",
             f"{'#':>3} {'operator':<18}{'output shape':<18}{'MACC':>12}{'params':>10}{'weights B':>11}{'act. B':>9}"]
    for l in rep["layers"]:
        lines.append(f"{l['index']:>3} {l['op']:<18}{str(tuple(l['shape'])):<18}{l['macc']:>12,}"
                     f"{l['params']:>10,}{l['weight_bytes']:>11,}{l['activation_bytes']:>9,}")
    t = rep["total"]
    lines += [
        "",
        f"MACC            {t['macc']:>12,}   ({rep['macc_convention']})",
        f"parameters      {t['params']:>12,}",
        f"weights (ro)    {t['weight_bytes']:>12,} B = {_human(t['weight_bytes'])}  (int8 weights, int32 biases)",
        f"activations (rw){t['peak_activation_bytes']:>12,} B = {_human(t['peak_activation_bytes'])}  "
        f"(peak live tensors, at layer {t['peak_at_layer']})",
        f"arena           {t['arena_bytes']:>12,} B = {_human(t['arena_bytes'])}  (greedy buffer plan, 16-byte aligned)",
    ]
    if "seed" in rep:
        sd = rep["seed"]
        lines += ["", "beside the seed (X-CUBE-AI's analysis of the float model, as the project's brief reports it):",
                  f"{'':<22}{'this model (int8)':>20}{'seed (float32)':>18}{'ratio':>8}"]
        for label, ours, theirs in (("MACC", t["macc"], sd["macc"]), ("parameters", t["params"], sd["params"]),
                                    ("weights (ro), bytes", t["weight_bytes"], sd["weight_bytes"]),
                                    ("activations (rw), B", t["peak_activation_bytes"], sd["activation_bytes"])):
            lines.append(f"{label:<22}{ours:>20,}{theirs:>18,}{ours / theirs:>8.2f}")
        lines.append("MACC conventions differ: ours counts conv and dense multiply-accumulates only; X-CUBE-AI's "
                     "count also includes pooling, activations and softmax. Weights: int8 here, float32 there.")
    if "board" in rep:
        b = rep["board"]
        verdict = "fits" if b["fits"] else "DOES NOT FIT"
        lines.append(f"board {b['name']}: flash {b['flash_needed']:,} of {b['flash_bytes']:,} B, "
                     f"RAM {b['ram_needed']:,} of {b['ram_bytes']:,} B (firmware included): {verdict}")
    return "\n".join(lines)


# ---- `fleetvote analyze` -----------------------------------------------------------------------

def add_parser(sub: argparse._SubParsersAction) -> None:
    an = sub.add_parser("analyze", help="per-layer MACC, parameters, flash and RAM of a .tflite",
                        description="The table X-CUBE-AI gave the seed, for an int8 .tflite: per layer MACC, "
                                    "parameters, weight bytes, and the peak activation bytes of a buffer "
                                    "plan over tensor lifetimes. Exit status 3 when it does not fit --board.",
                        epilog="example: fleetvote analyze models/zoo/vgg12-s31/model.tflite --board nucleo-f411re",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    an.add_argument("model")
    an.add_argument("--board", help="a board of firmware/boards/catalog.json")
    an.add_argument("--json", action="store_true")
    an.add_argument("--vs-seed", action="store_true", help="print the figures beside the seed's (default for the "
                                                           "zoo's baseline)")
    an.set_defaults(func=_cmd)


def _cmd(a: argparse.Namespace) -> int:
    rep = analyze(Path(a.model), board=a.board, vs_seed=True if a.vs_seed else None)
    print(json.dumps(rep, indent=2) if a.json else format_analysis(rep))
    return 0 if rep.get("fits", True) else 3
