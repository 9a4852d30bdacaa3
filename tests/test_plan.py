"""``fleetvote plan`` on the board catalogue, and ``fleetvote results`` on its reports."""

from __future__ import annotations

import json

import pytest

from conftest import ZOO, zoo_model
from fleetvote.catalog import FIRMWARE_FLASH_BYTES, FIRMWARE_RAM_BYTES, load_catalog
from fleetvote.offline.cards import load_cards


def members() -> list[dict]:
    cards = [c for c in load_cards(ZOO) if c["role"] == "member"]
    if not cards:
        pytest.skip("no zoo member yet")
    return cards


def counted(ref: float, opt: float, machine: str = "netduinoplus2", mid: str = "x") -> dict:
    """A card's bench_firmware record, as firmware/tools/bench_firmware.py --cards writes it."""
    return {"instructions_per_mac": {"ref": ref, "opt": opt}, "machine": machine,
            "emulator": "QEMU 7.2.22, -icount shift=0", "compiler": "GCC 12.2.1",
            "command": f"make -C firmware bench-firmware MODELS={mid} CARDS=1"}


def baseline_card(**kw) -> dict:
    # the int8 rebuild of the seed: 1.34 M parameters, about 1.35 MB of weights; its count is
    # made on the MPS2 AN386, whose 4 MiB hold it
    return {"id": "baseline", "role": "baseline", "macc": 32_606_208, "flash_bytes": 1_352_000,
            "ram_bytes": 98_304, "arena_bytes": 98_304, "test_accuracy": 0.8,
            "bench_firmware": counted(6.647, 1.599, "mps2-an386", "baseline"), **kw}


def reference_card(**kw) -> dict:
    # MLPerf Tiny's ResNet-8 (models/fleetvote_models/archs.py): about 78 k parameters, 12.5 M MACC
    return {"id": "resnet8", "role": "reference", "macc": 12_501_632, "flash_bytes": 80_000,
            "ram_bytes": 49_152, "arena_bytes": 49_152, "val_accuracy": 0.88, "test_accuracy": 0.87,
            "bench_firmware": counted(8.1, 2.2, mid="resnet8"), **kw}


def write_zoo(zoo, *cards: dict):
    for card in cards:
        (zoo / card["id"]).mkdir(parents=True, exist_ok=True)
        (zoo / card["id"] / "card.json").write_text(json.dumps(card))
    return zoo


def test_every_member_fits_a_nucleo_f411re():
    from fleetvote.offline.bom import fits

    cat = load_catalog()
    for c in members():
        assert fits(c, "nucleo-f411re", cat["nucleo-f411re"], {}, ZOO), c["id"]


def test_the_estimate_adds_the_dsp_buffers_that_the_models_layers_size():
    """Without a size report the planner's RAM is the arena, the firmware's own RAM and the DSP
    kernels' buffers as the firmware's build sizes them from the layers (fv_dsp_limits.h): for a
    model with a fused depthwise pair (dsconv26-s3-r2) those include the pair's int16 planes, 58
    KB for dsconv26's 32x32x26 pair; the estimate without the model file counts none and says so;
    ``fleetvote analyze --board`` counts the same."""
    from fleetvote.offline.analyze import analyze
    from fleetvote.offline.bom import ESTIMATE, requirement
    from fleetvote.offline.dsp_buffers import model_limits, static_ram_bytes

    cards = {c["id"]: c for c in load_cards(ZOO)}
    for mid in (zoo_model(True, "dsconv26-s3-r2"), zoo_model(False, role="member")):
        card, lim = cards[mid], model_limits(ZOO / mid / "model.tflite")
        pad_k = (lim.max_k + 3) // 4 * 4
        dsp = 4 * pad_k + pad_k + 4 + 4 * lim.pw_words + 4 * lim.dw_words  # cols, stage, pw, dw_plane
        dsp += 4 * lim.pool_words if lim.pool_pairs else 0  # pool_max, built with a (conv, pool) pair
        assert static_ram_bytes(lim) == dsp
        f, r, src = requirement(card, "nucleo-f411re", {}, ZOO)
        assert (f, r, src) == (card["flash_bytes"] + FIRMWARE_FLASH_BYTES,
                               card["arena_bytes"] + FIRMWARE_RAM_BYTES + dsp, ESTIMATE), mid
        f0, r0, src0 = requirement(card, "nucleo-f411re", {})
        assert (f0, r0) == (f, r - dsp) and "DSP buffers not counted" in src0
        # fleetvote analyze --board counts the same RAM
        assert analyze(ZOO / mid / "model.tflite", board="nucleo-f411re")["board"]["ram_needed"] == r, mid
        if mid.startswith("dsconv26"):  # the first layer's planes: 26 (32 + 1) + 2 rows of 34 halfwords
            assert lim.dw_words == (26 * 33 + 2) * 34 // 2 and dsp > 58_000


def test_the_dsp_buffers_counted_are_the_arrays_the_firmware_sizes_by_its_limits():
    """Every static array of the DSP kernels whose length names an FV_DSP_* figure is in
    dsp_buffers.SIZED_BUFFERS with its element size and length, and nothing else is: a new
    model-sized buffer in the C must be counted by the planner too."""
    import re

    from conftest import ROOT
    from fleetvote.offline.dsp_buffers import SIZED_BUFFERS

    width = {"int8_t": 1, "uint8_t": 1, "int16_t": 2, "uint16_t": 2, "int32_t": 4, "uint32_t": 4}
    found = set()
    for name in ("fv_kernels_dsp.c", "fv_kernels_dsp_elementwise.c"):
        c = (ROOT / "firmware" / "core" / name).read_text()
        for typ, var, length in re.findall(r"^static (\w+) (\w+)\[([^\]]*FV_DSP_[^\]]*)\]", c, re.M):
            m = re.fullmatch(r"(FV_DSP_\w+)(?: \+ (\d+))?", length.strip())
            assert m, f"{name}: {var}[{length}]: a length dsp_buffers.SIZED_BUFFERS cannot state"
            found.add((var, width[typ], m.group(1), int(m.group(2) or 0)))
    assert found == set(SIZED_BUFFERS)


def test_baseline_fits_only_boards_with_its_flash_and_goes_on_the_cheapest():
    from fleetvote.offline.bom import cheapest_board, model_row, priced_boards

    cat = load_catalog()
    cards = [baseline_card()] + [c for c in load_cards(ZOO) if c["role"] == "baseline"]
    for card in cards:
        need_f = card["flash_bytes"] + FIRMWARE_FLASH_BYTES
        need_r = card["arena_bytes"] + FIRMWARE_RAM_BYTES
        row = model_row(card, cat, {}, {}, None, None)
        want = sorted(n for n, b in priced_boards(cat).items() if b["flash_bytes"] >= need_f and b["ram_bytes"] >= need_r)
        assert row["fits_boards"] == want and want
        assert all(cat[n]["flash_bytes"] >= need_f for n in row["fits_boards"])
        assert cheapest_board(card, cat, {}) == min(want, key=lambda n: cat[n]["price_usd"])
    assert cheapest_board(baseline_card(), cat, {}) == "nucleo-h743zi2"  # 2 MB flash, $27


def test_latency_is_transfer_plus_compute():
    from fleetvote.offline.bom import latency

    board = {"baud": 921_600, "clock_hz": 100_000_000, "core": "cortex-m4f"}
    lat = latency(1_000_000, board, 7.4)
    assert lat["transfer_ms"] == pytest.approx(3124 * 10 / 921_600 * 1000, abs=0.01)  # 33.9 ms
    assert lat["compute_ms"] == pytest.approx(7.4 * 1.3 * 10)  # 7.4 M instructions at CPI 1.3, 100 MHz
    assert lat["cpi"] == 1.3
    assert lat["total_ms"] == pytest.approx(lat["transfer_ms"] + lat["compute_ms"], abs=0.01)
    assert latency(1_000_000, board, 7.4, cpi=2.0)["compute_ms"] == pytest.approx(148.0)


def test_measured_firmware_figures_replace_the_estimates(tmp_path):
    from fleetvote.offline.bom import load_bench_firmware, load_size_report, requirement

    card = members()[0]
    sr = tmp_path / "size.json"
    sr.write_text(json.dumps({"rows": [{"board": "nucleo-f411re", "model": card["id"], "flash_bytes": 150_000,
                                        "ram_bytes": 40_000}]}))
    sizes, note = load_size_report(sr)
    assert note is None
    assert requirement(card, "nucleo-f411re", sizes) == (150_000, 40_000, "size report")
    assert requirement(card, "nucleo-l476rg", sizes)[2].startswith("size report (nucleo-f411re")
    assert requirement(card, "nucleo-f411re", {}, ZOO)[2] == "card + firmware estimate"
    assert load_size_report(tmp_path / "absent.json") == ({}, None)
    bf = tmp_path / "bench.json"  # the layout of firmware/tools/bench_firmware.py
    bf.write_text(json.dumps({"cpi": 1.3, "models": [{"model": card["id"], "machine": "netduinoplus2", "macc": 1000,
                                                       "total_instructions": {"ref": 7900, "opt": 2500}}]}))
    ipms, cpi, note = load_bench_firmware(bf)
    assert ipms[card["id"]][0] == 2.5 and cpi == 1.3 and note is None
    assert "opt" in ipms[card["id"]][1] and "netduinoplus2" in ipms[card["id"]][1]
    bf.write_text(json.dumps({"members": [{"model": card["id"], "dsp": {"instructions_per_mac": 2.25}}]}))
    assert load_bench_firmware(bf)[0][card["id"]][0] == 2.25


def test_plan_and_results_table_from_a_zoo_with_and_without_baseline(tmp_path):
    from fleetvote.offline.bom import run
    from fleetvote.offline.results_table import END, START, render, splice

    m = members()[0]
    zoo = write_zoo(tmp_path / "zoo", m, baseline_card())
    ev = {"dataset": "CIFAR-10 (JPEG copy)", "images": {"val": 10, "test": 10}, "members": [m["id"]],
          "models": [{"id": m["id"], "role": "member", "val_accuracy": 0.8, "test_accuracy": 0.79, "weight": 3.6},
                     {"id": "baseline", "role": "baseline", "val_accuracy": 0.81, "test_accuracy": 0.805, "weight": None}],
          "subsets": [{"members": [m["id"]], "test": {"majority": 0.79, "weighted": 0.79, "soft": 0.79}}],
          "best": {"1": {"members": [m["id"]], "val": {"majority": 0.8, "weighted": 0.8, "soft": 0.8},
                         "test": {"majority": 0.79, "weighted": 0.79, "soft": 0.79}, "best_strategy_on_val": "soft"}},
          "command": "fleetvote ensemble-eval --json x"}
    evp = tmp_path / "ev.json"
    evp.write_text(json.dumps(ev))
    rep = run(zoo, eval_json=evp, size_report=tmp_path / "none.json", bench_firmware=tmp_path / "none.json")
    assert rep["baseline"]["board"] == "nucleo-h743zi2" and rep["baseline"]["test_accuracy"] == 0.805
    (fleet,) = rep["fleets"]
    assert fleet["members"] == [m["id"]] and fleet["bom"][0]["count"] == 1 and fleet["total_usd"] > 0
    assert fleet["latency_ms"] == next(r for r in rep["models"] if r["id"] == m["id"])["latency"]["total_ms"]
    assert any("does not exist yet" in n for n in rep["notes"])
    rep["command"] = "fleetvote plan --eval ev.json"
    body = render(ev, rep, None)
    assert "nucleo-h743zi2" in body and "83.20 %" in body and "fleetvote plan --eval ev.json" in body
    assert "**Robustness**" not in body
    rows = [{"condition": c, "parameter": p, "best_member": 0.7, "fleet": f, "baseline": 0.71,
             "fleet_minus_best_member": f - 0.7} for c, p, f in (("clean", None, 0.8), ("contrast", "factor 0.4", 0.5432))]
    rob = {"images": 10, "dataset": "CIFAR-10 (JPEG copy)", "seed": 1, "computed_with": "the numpy engine",
           "cache": {"hits": 0, "computed": 4}, "best_member": {"id": m["id"], "val_accuracy": 0.8},
           "members": [m["id"]], "strategy": "soft", "baseline": "baseline", "rows": rows,
           "mean_corrupted": {"best_member": 0.7, "fleet": 0.5432, "baseline": 0.71, "fleet_minus_best_member": -0.16},
           "command": "fleetvote robustness --limit 10"}
    with_rob = render(ev, rep, None, rob=rob)
    assert "54.32 %" in with_rob.split("**Robustness**")[1] and "fleetvote robustness --limit 10" in with_rob
    readme = "# x\n\ntext\n"
    once = splice(readme, body)
    assert once.count(START) == 1 and "## Results" in once
    assert splice(splice(once, "other"), body) == once

    (zoo / "baseline" / "card.json").unlink()
    rep = run(zoo, size_report=tmp_path / "none.json", bench_firmware=tmp_path / "none.json")
    assert rep["baseline"] is None and "baseline" in rep["baseline_note"]


def test_plan_refuses_a_model_without_its_own_instruction_count(tmp_path):
    from fleetvote.errors import ConfigError
    from fleetvote.offline.bom import run

    m = members()[0]
    uncounted = {k: v for k, v in m.items() if k != "bench_firmware"} | {"id": "uncounted"}
    zoo = write_zoo(tmp_path / "zoo", m, uncounted)
    bench = tmp_path / "bench.json"  # the firmware bench counted another model only
    bench.write_text(json.dumps({"cpi": 1.3, "models": [{"model": m["id"], "macc": 1000,
                                                         "total_instructions": {"ref": 7900, "opt": 2500}}]}))
    with pytest.raises(ConfigError, match=r"uncounted: no instruction count of its own.*"
                                          r"make bench-firmware MODELS=uncounted CARDS=1"):
        run(zoo, size_report=tmp_path / "none.json", bench_firmware=bench)
    # a figure given for every model is used, and labelled as given
    rep = run(zoo, size_report=tmp_path / "none.json", bench_firmware=bench, ipm=3.0)
    row = next(r for r in rep["models"] if r["id"] == "uncounted")
    assert row["latency"]["instructions_per_mac"] == 3.0 and "given" in row["ipm_source"]
    assert any("3.0 for every model (given" in n for n in rep["notes"])


def test_plan_uses_exactly_each_models_own_count(tmp_path):
    from fleetvote.offline.bom import run

    m = members()[0]
    a = m | {"id": "a", "bench_firmware": counted(7.0, 1.5, mid="a")}
    b = m | {"id": "b", "bench_firmware": counted(9.0, 3.25, mid="b")}
    zoo = write_zoo(tmp_path / "zoo", a, b, baseline_card())
    bench = tmp_path / "bench.json"  # a newer count of b only: 2.5 per MAC with the DSP kernels
    bench.write_text(json.dumps({"cpi": 1.3, "models": [{"model": "b", "machine": "netduinoplus2", "macc": 1000,
                                                         "total_instructions": {"ref": 7900, "opt": 2500}}]}))
    cat = load_catalog()
    for bf, want in ((tmp_path / "none.json", {"a": 1.5, "b": 3.25, "baseline": 1.599}),
                     (bench, {"a": 1.5, "b": 2.5, "baseline": 1.599})):
        rep = run(zoo, size_report=tmp_path / "none.json", bench_firmware=bf)
        rows = {r["id"]: r for r in rep["models"]}
        assert {i: r["latency"]["instructions_per_mac"] for i, r in rows.items()} == want
        for i, r in rows.items():
            lat, spec = r["latency"], cat[r["board"]]
            assert lat["compute_ms"] == pytest.approx(r["macc"] * want[i] * lat["cpi"] / spec["clock_hz"] * 1000,
                                                      abs=0.01)
        assert "its card" in rows["a"]["ipm_source"] and "mps2-an386" in rows["baseline"]["ipm_source"]
        assert ("measured under QEMU" in rows["b"]["ipm_source"]) == (bf == bench)


def test_reference_model_is_planned_on_one_nucleo_f411re_beside_the_baseline(tmp_path):
    from fleetvote.offline.bom import format_report, run
    from fleetvote.offline.results_table import render

    m = members()[0]
    zoo = write_zoo(tmp_path / "zoo", m, baseline_card(), reference_card())
    ev = {"dataset": "CIFAR-10 (JPEG copy)", "images": {"val": 10, "test": 10}, "members": [m["id"]],
          "models": [{"id": m["id"], "role": "member", "val_accuracy": 0.8, "test_accuracy": 0.79, "weight": 3.6}],
          "subsets": [{"members": [m["id"]], "test": {"majority": 0.79, "weighted": 0.79, "soft": 0.79}}],
          "best": {"1": {"members": [m["id"]], "val": {"majority": 0.8, "weighted": 0.8, "soft": 0.8},
                         "test": {"majority": 0.79, "weighted": 0.79, "soft": 0.79}, "best_strategy_on_val": "soft"}}}
    evp = tmp_path / "ev.json"
    evp.write_text(json.dumps(ev))
    # no bench build and no committed table: the cards' own counts (the zoo's real resnet8, of the
    # same MACC, is in the committed table)
    rep = run(zoo, eval_json=evp, size_report=tmp_path / "none.json", bench_firmware=tmp_path / "none.json",
              bench_table=tmp_path / "none.json")
    ref = rep["reference"]
    assert ref["id"] == "resnet8" and ref["board"] == "nucleo-f411re" and ref["price_usd"] == 13
    assert ref["latency"]["instructions_per_mac"] == 2.2 and ref["latency_ms"] == ref["latency"]["total_ms"]
    assert rep["reference_note"] is None and all("resnet8" not in f["members"] for f in rep["fleets"])
    text = format_report(rep)
    assert "reference resnet8 (int8, one board): nucleo-f411re ($13)" in text
    body = render(ev, rep, None)
    lines = body.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("| int8 baseline `baseline`"))
    assert lines[at + 1].startswith("| reference `resnet8` (MLPerf Tiny) | 1 | 87.00 %")
    assert "1 x nucleo-f411re ($13)" in lines[at + 1]
    # its members-table row has the card's accuracies: ensemble-eval scores members only
    assert any(line.startswith("| `resnet8` | reference | 88.00 % | 87.00 % |") for line in lines)
    # too large for a nucleo-f411re: said so, not moved to a bigger board
    write_zoo(zoo, reference_card(flash_bytes=600_000))
    ref = run(zoo, size_report=tmp_path / "none.json", bench_firmware=tmp_path / "none.json",
              bench_table=tmp_path / "none.json")["reference"]
    assert ref["board"] is None and ref["latency"] is None
    rep_without = run(write_zoo(tmp_path / "zoo2", m), size_report=tmp_path / "none.json",
                      bench_firmware=tmp_path / "none.json",
              bench_table=tmp_path / "none.json")
    assert rep_without["reference"] is None and "resnet8" in rep_without["reference_note"]


def test_reports_record_their_command_only_when_made_by_the_fleetvote_command(monkeypatch):
    import sys

    from fleetvote.command import command_line

    monkeypatch.setattr(sys, "argv", ["/venv/bin/fleetvote", "plan", "--json", "a b.json"])
    assert command_line() == "fleetvote plan --json 'a b.json'"
    monkeypatch.setattr(sys, "argv", ["/repo/service/fleetvote/cli.py", "robustness", "--limit", "50"])
    assert command_line() == "fleetvote robustness --limit 50"
    monkeypatch.setattr(sys, "argv", ["/venv/bin/pytest", "-q"])
    assert command_line() is None


# ---- cycles per instruction, energy per answer, a board's own count -------------------------------

def test_cycles_per_instruction_grow_with_the_boards_flash_wait_states():
    from fleetvote.offline.bom import LINE_INSTRUCTIONS, LOOP_CPI, cycles_per_instruction

    f411 = load_catalog()["nucleo-f411re"]
    assert f411["flash_wait_states"] == 3 and "RM0383" in f411["flash_wait_states_source"]
    cpi, how = cycles_per_instruction(f411, 1.5)
    assert cpi == pytest.approx(LOOP_CPI + (1 - 1.125 / 1.5) * 3 / LINE_INSTRUCTIONS, abs=1e-3)
    assert "3 flash wait states" in how
    # more wait states (the F446 at 180 MHz: 5), or more instructions outside the DSP loop: slower
    assert cycles_per_instruction(load_catalog()["nucleo-f446re"], 1.5)[0] > cpi
    assert cycles_per_instruction(f411, 3.0)[0] > cpi
    # all inside the loop: the loop's own CPI whatever the flash
    assert cycles_per_instruction(f411, 1.125)[0] == pytest.approx(LOOP_CPI, abs=1e-3)
    # a board without the figure keeps the stated assumption, and says so
    cpi, how = cycles_per_instruction({"core": "cortex-m7"}, 1.5)
    assert cpi == 1.3 and "assumed" in how


def test_energy_per_answer_is_supply_times_run_current_times_compute_time():
    from fleetvote.offline.bom import energy_mj, latency

    f411 = load_catalog()["nucleo-f411re"]
    assert "DS10314" in f411["run_current_source"]
    # 100 uA/MHz x 100 MHz = 10 mA at 3.3 V = 33 mW: 100 ms of compute is 3.3 mJ
    assert energy_mj(f411, 100.0) == pytest.approx(3.3)
    lat = latency(4_000_000, f411, 1.5)
    assert lat["energy_mj"] == pytest.approx(3.3 * 0.01 * lat["compute_ms"], abs=1e-3)
    assert energy_mj({"clock_hz": 480_000_000}, 100.0) is None  # no sourced run current: none
    # the baseline's board: 110 mA at 480 MHz (DS12110, Table 130) at 3.3 V = 363 mW: 36.3 mJ in 100 ms
    h743 = load_catalog()["nucleo-h743zi2"]
    assert "DS12110" in h743["run_current_source"] and "Table 130" in h743["run_current_source"]
    assert energy_mj(h743, 100.0) == pytest.approx(36.3, abs=0.01)


def test_fleet_energy_is_the_sum_of_its_members(tmp_path):
    from fleetvote.offline.bom import run

    ids = [c["id"] for c in members()[:2]]
    rep = run(ZOO, fleets=[ids], size_report=tmp_path / "none.json", bench_firmware=tmp_path / "none.json",
              measured_dir=tmp_path / "none")
    rows = {r["id"]: r for r in rep["models"]}
    fleet = next(f for f in rep["fleets"] if f["members"] == ids)
    assert all(rows[i]["board"] == "nucleo-f411re" for i in ids)
    assert fleet["energy_mj"] == pytest.approx(sum(rows[i]["latency"]["energy_mj"] for i in ids), abs=1e-2)
    # without the bench's build, the committed table's counts (firmware/bench/instructions.json)
    table = json.loads((ZOO.parent.parent / "firmware" / "bench" / "instructions.json").read_text())
    counted_ids = {m["model"]: m["instructions_per_mac"]["opt"] for m in table["models"]}
    for i in ids:
        if i in counted_ids:
            assert rows[i]["latency"]["instructions_per_mac"] == pytest.approx(counted_ids[i], abs=1e-3)


def test_plan_prefers_a_fake_boards_own_cycle_count_written_by_probe(tmp_path):
    import asyncio

    import numpy as np
    from fakeboard import FakeBoard, TcpBoard, default_info

    from fleetvote.engine import Engine
    from fleetvote.link.codec import Classify, Result
    from fleetvote.offline.bom import run
    from fleetvote.testbed.bringup import _probe
    from fleetvote.testbed.flashing import model_sha8

    card = members()[0]
    model = ZOO / card["id"] / "model.tflite"
    images = np.random.default_rng(7).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    expected = {img.tobytes(): tuple(int(v) for v in row) for img, row in zip(images, Engine.from_file(model).run(images))}
    cycles = 9_876_543

    class Measured(FakeBoard):
        """A release board with the DSP kernels that answers as the engine does and counts cycles."""

        def _answer(self, msg):
            if isinstance(msg, Classify):
                return Result(msg.seq, expected[bytes(msg.pixels)], cycles // 100, cycles)
            return super()._answer(msg)

    info = default_info(test_build=False)
    import dataclasses
    info = dataclasses.replace(info, board_name="nucleo-f411re", model_id=card["id"], model_sha256=model_sha8(card["id"]),
                               macc=card["macc"], flags=2)

    async def go(path):
        board = await TcpBoard(Measured(test_build=False, info=info)).start()
        try:
            return await _probe(board.url, 921_600, images, 5.0, ZOO, path)
        finally:
            await board.stop()

    measured = tmp_path / "measured"
    assert asyncio.run(go(measured / "f411.json")) == 0
    rec = json.loads((measured / "f411.json").read_text())
    assert rec["inference_cycles_p50"] == cycles and rec["differ"] == 0 and rec["kernels"] == "dsp"
    rep = run(ZOO, size_report=tmp_path / "none.json", bench_firmware=tmp_path / "none.json", measured_dir=measured)
    row = next(r for r in rep["models"] if r["id"] == card["id"])
    assert row["latency"]["compute_ms"] == pytest.approx(cycles / 100_000_000 * 1000, abs=0.01)
    assert "measured" in row["latency"]["cpi_source"] and row["measured_from"].endswith("f411.json")
    # a record whose answers differed from the engine's is not a count of this model: ignored
    (measured / "f411.json").write_text(json.dumps({**rec, "differ": 1}))
    rep = run(ZOO, size_report=tmp_path / "none.json", bench_firmware=tmp_path / "none.json", measured_dir=measured)
    row = next(r for r in rep["models"] if r["id"] == card["id"])
    assert row["measured_from"] is None and "measured" not in row["latency"]["cpi_source"]


def test_counting_one_model_into_the_table_replaces_its_row_and_keeps_the_others(tmp_path):
    """`make bench-firmware MODELS=<one> TABLE=...` (firmware/tools/bench_firmware.py): a model
    counted alone replaces its row; the rows of models not counted now stay, unless the emulator
    changed (its counts would not compare)."""
    import sys

    from conftest import ROOT

    sys.path.insert(0, str(ROOT / "firmware" / "tools"))
    import bench_firmware as bf

    def result(model: str, opt: int) -> dict:
        groups = {g: {"macc": 0, "ref": 0.0, "opt": 0.0, "out_bytes": 0} for g in bf.GROUPS}
        groups["conv"] = {"macc": 1000, "ref": 8000.0, "opt": float(opt), "out_bytes": 64}
        return {"model": model, "machine": "netduinoplus2", "macc": 1000,
                "total_instructions": {"ref": 8000, "opt": opt}, "groups": groups}

    table = tmp_path / "instructions.json"
    bf.write_table(table, [result("a", 2000), result("b", 1500)], "QEMU 7.2.22")
    bf.write_table(table, [result("b", 1200)], "QEMU 7.2.22")
    t = json.loads(table.read_text())
    assert [(r["model"], r["instructions_per_mac"]["opt"]) for r in t["models"]] == [("a", 2.0), ("b", 1.2)]
    assert 'MODELS="a b"' in t["command"]
    bf.write_table(table, [result("b", 1100)], "QEMU 8.0.0")
    assert [r["model"] for r in json.loads(table.read_text())["models"]] == ["b"]


# ---- the member budget (issue 16): fits the F411, planned latency at most 160 ms ----------------

def f411() -> dict:
    from fleetvote.offline.bom import MEMBER_BOARD

    return load_catalog()[MEMBER_BOARD]


def test_member_budget_accepts_a_member_that_fits_and_states_its_margins():
    from fleetvote.offline.bom import MEMBER_LATENCY_BUDGET_MS, latency, member_budget

    board = f411()
    v = member_budget(5_000_000, 200_000, 50_000, 1.3, board)
    assert v["problems"] == []
    # the planner's own estimate, not a second formula
    assert v["latency"] == latency(5_000_000, board, 1.3)
    assert v["latency_margin_ms"] == pytest.approx(MEMBER_LATENCY_BUDGET_MS - v["latency"]["total_ms"], abs=0.01)
    assert v["flash_share"] == round(200_000 / board["flash_bytes"], 3)


def test_a_member_over_the_latency_budget_is_refused():
    from fleetvote.errors import ConfigError
    from fleetvote.offline.bom import check_member_budget, latency

    board = f411()
    # ResNet-8's 12.5 M MACC at 1.3 instructions per MAC: about 200 ms of compute alone
    assert latency(12_501_632, board, 1.3)["total_ms"] > 160
    with pytest.raises(ConfigError, match=r"resnet8 is over the member budget.*planned latency .* > 160 ms"):
        check_member_budget("resnet8", 12_501_632, 120_000, 50_000, 1.3, board)
    # the same MACs at a slower count cross the line that a faster count stays under: the model's
    # own instructions per MAC decide, not its MACC alone
    macc = 5_800_000
    assert check_member_budget("m", macc, 200_000, 50_000, 1.26, board)["problems"] == []
    with pytest.raises(ConfigError, match="planned latency"):
        check_member_budget("m", macc, 200_000, 50_000, 2.0, board)


def test_a_member_that_does_not_fit_the_board_is_refused():
    from fleetvote.errors import ConfigError
    from fleetvote.offline.bom import check_member_budget

    board = f411()
    with pytest.raises(ConfigError, match=r"flash 600,000 B > the board's 524,288 B"):
        check_member_budget("big", 1_000_000, 600_000, 50_000, 1.3, board)
    with pytest.raises(ConfigError, match=r"RAM 140,000 B > the board's 131,072 B"):
        check_member_budget("big", 1_000_000, 100_000, 140_000, 1.3, board)


def test_bench_firmware_reads_a_model_from_a_scratch_zoo(tmp_path):
    """A candidate counted before it enters the zoo (python -m fleetvote_models.budget): the bench's
    layer table comes from the ZOO the firmware was built from, not from models/zoo."""
    import shutil
    import subprocess
    import sys

    from conftest import ROOT

    member = members()[0]["id"]
    (tmp_path / "candidate").mkdir()
    shutil.copy(ZOO / member / "model.tflite", tmp_path / "candidate" / "model.tflite")
    code = "import sys, bench_firmware as b; from pathlib import Path; print(b.layer_shapes(sys.argv[1], Path(sys.argv[2])))"
    run = [sys.executable, "-c", code]
    tools = ROOT / "firmware" / "tools"
    scratch = subprocess.run([*run, "candidate", str(tmp_path)], cwd=tools, capture_output=True, text=True, check=True)
    zoo = subprocess.run([*run, member, str(ZOO)], cwd=tools, capture_output=True, text=True, check=True)
    assert scratch.stdout == zoo.stdout and "3x3 3->" in scratch.stdout
    missing = subprocess.run([*run, "candidate", str(ZOO)], cwd=tools, capture_output=True, text=True)
    assert missing.returncode != 0 and "cannot read" in missing.stderr
