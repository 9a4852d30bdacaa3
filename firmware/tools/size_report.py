#!/usr/bin/env python3
"""Flash and RAM of every (board, zoo model) firmware image, beside the boards' limits.

    size_report.py --boards B... --models M... [--build firmware/build] [--zoo models/zoo]
                   [--ensemble models/zoo/ensemble.json] [--json OUT]

Reads the release images linked into 64 MiB regions (``make ... VARIANT=release measure``: an
image that does not fit still links, so it can be measured) with ``arm-none-eabi-size -A``:

* flash = the programmed bytes: every section loaded into flash (vector table, config word,
  code, constants - the model's weights among them - and .data's initial values), from the
  start of flash to the end of the last one (the .bin's size);
* RAM = .stack + .data + .bss: the stack, the arena, the frame buffer, the receive ring, the DSP
  kernels' scratch.

Printed beside the catalogue's limits and beside the seed's X-CUBE-AI figures (float32 weights
5,372,584 B in flash, activations 143,468 B in RAM), which fit none of these boards. Exit status
1 only when a model does not fit the board it is assigned: an ensemble member the ``"board"`` the
ensemble file gives it (nucleo-f411re when none); the reference (card role ``reference``, MLPerf
Tiny's ResNet-8) one nucleo-f411re, where ``fleetvote plan`` places it. The baseline is assigned
none: it is expected to fit none of these boards.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CATALOG = ROOT / "firmware" / "boards" / "catalog.json"
FLASH_ORIGIN = 0x08000000
RAM_SECTIONS = (".stack", ".data", ".bss")
SEED = {"flash": 5_372_584, "ram": 143_468}  # X-CUBE-AI report of the seed (float32)
DEFAULT_BOARD = "nucleo-f411re"


def sections(elf: Path, size_tool: str = "arm-none-eabi-size") -> dict[str, tuple[int, int]]:
    """{name: (size, address)} of the allocated sections."""
    out = subprocess.run([size_tool, "-A", "-d", str(elf)], capture_output=True, text=True, check=True).stdout
    res = {}
    for line in out.splitlines():
        f = line.split()
        if len(f) == 3 and f[0].startswith(".") and f[1].isdigit() and f[2].isdigit():
            res[f[0]] = (int(f[1]), int(f[2]))
    return res


def measure(elf: Path, size_tool: str = "arm-none-eabi-size") -> dict[str, int]:
    s = sections(elf, size_tool)
    flash_end = FLASH_ORIGIN
    for name, (size, addr) in s.items():
        if FLASH_ORIGIN <= addr < FLASH_ORIGIN + (64 << 20) and size:
            flash_end = max(flash_end, addr + size)
    data = s.get(".data", (0, 0))[0]
    flash = flash_end - FLASH_ORIGIN + data  # .data's initial values follow the last flash section
    ram = sum(s.get(n, (0, 0))[0] for n in RAM_SECTIONS)
    return {"flash": flash, "ram": ram, "stack": s.get(".stack", (0, 0))[0], "bss": s.get(".bss", (0, 0))[0]}


def card(zoo: Path, model: str) -> dict:
    p = zoo / model / "card.json"
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return {}


def assignments(ensemble: Path, zoo: Path, models: list[str]) -> dict[str, str]:
    """{model: the board it must fit}: the ensemble's members, and the reference among ``models``."""
    try:
        members = json.loads(ensemble.read_text())["members"]
    except (OSError, ValueError, KeyError):
        members = []
    out = {m["id"]: m.get("board", DEFAULT_BOARD) for m in members}
    out.update({m: DEFAULT_BOARD for m in models if card(zoo, m).get("role") == "reference"})
    return out


def fmt(n: int) -> str:
    return f"{n:,}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--boards", nargs="+", required=True)
    ap.add_argument("--models", nargs="*", default=[])
    ap.add_argument("--build", type=Path, default=ROOT / "firmware" / "build")
    ap.add_argument("--zoo", type=Path, default=ROOT / "models" / "zoo")
    ap.add_argument("--ensemble", type=Path, default=ROOT / "models" / "zoo" / "ensemble.json")
    ap.add_argument("--size", default="arm-none-eabi-size")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    catalog = json.loads(CATALOG.read_text())["boards"]
    assigned = assignments(a.ensemble, a.zoo, a.models)
    rows = []
    for b in a.boards:
        lim = catalog[b]
        for m in a.models:
            elf = a.build / "stm32f4" / b / m / "release" / "measure.elf"
            if not elf.exists():
                print(f"size_report: missing {elf} (make -C firmware BOARD={b} MODEL={m} VARIANT=release measure)",
                      file=sys.stderr)
                return 2
            s = measure(elf, a.size)
            c = card(a.zoo, m)
            rows.append({
                "board": b, "model": m, "role": c.get("role", "?"), "flash": s["flash"],
                "flash_limit": lim["flash_bytes"], "ram": s["ram"], "ram_limit": lim["ram_bytes"],
                "weights": c.get("flash_bytes"), "arena": c.get("arena_bytes"),
                "firmware_flash": s["flash"] - c["flash_bytes"] if "flash_bytes" in c else None,
                "firmware_ram": s["ram"] - c["arena_bytes"] if "arena_bytes" in c else None,
                "fits_flash": s["flash"] <= lim["flash_bytes"], "fits_ram": s["ram"] <= lim["ram_bytes"],
                "assigned": assigned.get(m) == b,
            })

    head = (f"{'board':<14} {'model':<18} {'flash used':>11} {'/ limit':>10} {'%':>5}  {'weights':>9}  "
            f"{'RAM used':>9} {'/ limit':>8} {'%':>5}  {'arena':>7}  fits")
    print("Release firmware images, measured with arm-none-eabi-size (flash: the programmed bytes; "
          "RAM: stack + .data + .bss)")
    print(head)
    print("-" * len(head))
    for r in rows:
        why = []
        if not r["fits_flash"]:
            why.append(f"flash over by {fmt(r['flash'] - r['flash_limit'])} B")
        if not r["fits_ram"]:
            why.append(f"RAM over by {fmt(r['ram'] - r['ram_limit'])} B")
        verdict = "yes" if not why else "NO: " + ", ".join(why)
        if r["assigned"]:
            verdict += f"  ({r['role']} assigned here)"
        print(f"{r['board']:<14} {r['model']:<18} {fmt(r['flash']):>11} {fmt(r['flash_limit']):>10} "
              f"{100 * r['flash'] / r['flash_limit']:>4.0f}%  {fmt(r['weights'] or 0):>9}  {fmt(r['ram']):>9} "
              f"{fmt(r['ram_limit']):>8} {100 * r['ram'] / r['ram_limit']:>4.0f}%  {fmt(r['arena'] or 0):>7}  {verdict}")
    for b in a.boards:
        lim = catalog[b]
        print(f"{b:<14} {'seed (X-CUBE-AI)':<18} {fmt(SEED['flash']):>11} {fmt(lim['flash_bytes']):>10} "
              f"{100 * SEED['flash'] / lim['flash_bytes']:>4.0f}%  {fmt(SEED['flash']):>9}  {fmt(SEED['ram']):>9} "
              f"{fmt(lim['ram_bytes']):>8} {100 * SEED['ram'] / lim['ram_bytes']:>4.0f}%  {fmt(SEED['ram']):>7}  "
              f"NO (weights and activations alone; the seed's float32 model)")
    fw = [r for r in rows if r["firmware_flash"] is not None]
    if fw:
        print(f"\nfirmware without the model (code, tables, vectors; buffers but the arena): flash "
              f"{fmt(min(r['firmware_flash'] for r in fw))}-{fmt(max(r['firmware_flash'] for r in fw))} B, RAM "
              f"{fmt(min(r['firmware_ram'] for r in fw))}-{fmt(max(r['firmware_ram'] for r in fw))} B")
    failures = []
    for m, b in assigned.items():
        hit = [r for r in rows if r["model"] == m and r["board"] == b]
        role = card(a.zoo, m).get("role", "member")
        if not hit:
            if b not in a.boards:
                failures.append(f"{role} {m} is assigned to {b}, which this port does not build")
            else:
                failures.append(f"{role} {m} is not in the zoo")
        elif not (hit[0]["fits_flash"] and hit[0]["fits_ram"]):
            failures.append(f"{role} {m} does not fit its board {b}")
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({"rows": rows, "seed": SEED, "assigned": assigned, "failures": failures},
                                     indent=2))
    for f in failures:
        print(f"FAIL: {f}")
    if not failures:
        print(f"every assigned model fits its board ({', '.join(f'{m} on {b}' for m, b in assigned.items())})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
