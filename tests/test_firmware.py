"""The firmware core: C kernels and codec against shared vectors, the codec under libFuzzer, and
the virtual board (the core built for the host) on real ptys and sockets, byte for byte against
the numpy engine."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time

import numpy as np
import pytest
import serial

from conftest import ROOT, ZOO, need_tool
from fleetvote.engine import Engine
from fleetvote.errors import BoardTimeout
from fleetvote.link import codec
from fleetvote.link.client import BoardClient, Timeouts
from fleetvote.offline.cards import load_cards
from fleetvote.testbed.processes import stop_process
from fleetvote.testbed.virtual import start_board

FIRMWARE = ROOT / "firmware"


def make(*targets: str, **env: str) -> str:
    need_tool("cc")
    r = subprocess.run(["make", "-C", str(FIRMWARE), f"PYTHON={sys.executable}", *targets,
                        *(f"{k}={v}" for k, v in env.items())], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r.stdout + r.stderr


@pytest.fixture(scope="module")
def board_bin():
    make("BOARD=host")
    return FIRMWARE / "build" / "host" / "board"


def members() -> list[str]:
    return [c["id"] for c in load_cards(ZOO) if c["role"] == "member"]


def test_c_kernels_match_the_numpy_engine_vectors():
    out = make("test-kernels")
    assert ", 0 failed" in out and "passed" in out


def test_c_codec_matches_the_shared_protocol_vectors_and_keeps_serving():
    out = make("test-proto")
    assert ", 0 failed" in out


def test_codec_survives_30_seconds_of_libfuzzer():
    need_tool("clang")
    out = make("fuzz-codec", FUZZ_SECONDS="30")
    assert "Done" in out and "runs in" in out


@pytest.mark.parametrize("model_id", members())
async def test_virtual_board_on_a_pty_answers_hello_and_matches_the_engine(board_bin, tmp_path, test_images, model_id):
    engine = Engine.from_file(ZOO / model_id / "model.tflite")
    b = start_board(model_id, f"t-{model_id}", link=tmp_path / "board")
    try:
        client = await BoardClient.open(str(tmp_path / "board"), Timeouts(classify=5))
        try:
            info = await client.hello()
            assert info.model_id == model_id
            assert info.model_sha256 == hashlib.sha256((ZOO / model_id / "model.tflite").read_bytes()).digest()[:8]
            assert info.macc == engine.macc and info.arena_bytes == engine.plan.arena_bytes
            x = test_images.x[::50]  # 200 images, every class
            want = engine.run(x)
            got = np.stack([np.array((await client.classify(img)).scores, np.int8) for img in x])
            assert np.array_equal(got, want), f"{(got != want).any(1).sum()} of {len(x)} differ"
        finally:
            await client.close()
    finally:
        stop_process(b.process)


async def test_two_virtual_boards_report_distinct_ids(board_bin, tmp_path):
    ids = members()[:1] * 2
    if not ids:
        pytest.skip("no zoo member yet")
    boards = [start_board(m, f"board-{k}", link=tmp_path / f"b{k}") for k, m in enumerate(ids)]
    try:
        seen = set()
        for k in range(2):
            c = await BoardClient.open(str(tmp_path / f"b{k}"))
            seen.add((await c.hello()).board_id)
            await c.close()
        assert len(seen) == 2
    finally:
        for b in boards:
            stop_process(b.process)


def _read_frames(port: serial.Serial, n: int, timeout: float = 3.0) -> list:
    dec = codec.FrameDecoder()
    events: list = []
    t0 = time.monotonic()
    while len(events) < n and time.monotonic() - t0 < timeout:
        events += dec.feed(port.read(port.in_waiting or 1))
    return events


def test_virtual_board_answers_bad_frames_with_errors_and_keeps_serving(board_bin, tmp_path):
    ids = members()
    if not ids:
        pytest.skip("no zoo member yet")
    b = start_board(ids[0], "t", link=tmp_path / "board")
    try:
        port = serial.Serial(str(tmp_path / "board"), timeout=0.05)
        hello = codec.encode_frame(codec.MsgType.HELLO, 1, b"")
        classify = codec.encode_frame(codec.MsgType.CLASSIFY, 2, bytes(3072))
        cases = [
            (b"\x01\x02\x03garbage" * 30 + b"\x00", codec.ErrorCode.BAD_FRAME),      # garbage
            (classify[: len(classify) // 2] + b"\x00", None),                         # truncated
            (b"\x07" * 5000 + b"\x00", codec.ErrorCode.BAD_LENGTH),                   # oversize
            (hello[:-3] + bytes([hello[-3] ^ 0x01]) + hello[-2:], codec.ErrorCode.BAD_CRC),
            (codec.encode_frame(codec.MsgType.CLASSIFY, 3, bytes(100)), codec.ErrorCode.BAD_LENGTH),
            (codec.encode_frame(0x55, 4, b""), codec.ErrorCode.UNKNOWN_TYPE),
            (codec.encode_frame(0x41, 5, b""), codec.ErrorCode.UNKNOWN_TYPE),  # reserved test type
        ]
        for wire, code in cases:
            port.write(wire)
            ev = _read_frames(port, 1)
            assert ev and isinstance(ev[0], codec.Error), (wire[:20], ev)
            if code is not None:
                assert ev[0].code == code
            port.write(hello)
            ev = _read_frames(port, 1)
            assert ev and isinstance(ev[0], codec.Info), "board stopped serving"
        port.close()
    finally:
        stop_process(b.process)


async def test_virtual_board_serves_socket_urls(board_bin, test_images):
    ids = members()
    if not ids:
        pytest.skip("no zoo member yet")
    b = start_board(ids[0], "tcp", tcp_port=0)
    try:
        client = await BoardClient.open(f"socket://{b.port}")
        r = await client.classify(test_images.x[0])
        assert list(r.scores) == list(Engine.from_file(ZOO / ids[0] / "model.tflite").run(test_images.x[0]))
        await client.close()
        # the board serves the next connection after the first one left
        client = await BoardClient.open(f"socket://{b.port}")
        assert (await client.hello()).model_id == ids[0]
        await client.close()
    finally:
        stop_process(b.process)


async def test_fault_injection_works_in_the_test_build(board_bin, tmp_path):
    ids = members()
    if not ids:
        pytest.skip("no zoo member yet")
    b = start_board(ids[0], "t", link=tmp_path / "board")
    try:
        client = await BoardClient.open(str(tmp_path / "board"), Timeouts(hello=0.3))
        assert (await client.hello()).test_build
        await client.fault(codec.FaultKind.BAD_CRC, 0)
        with pytest.raises(Exception):
            await client.hello()
        assert (await client.hello()).model_id == ids[0]
        await client.fault(codec.FaultKind.DELAY, 500)
        with pytest.raises(BoardTimeout):
            await client.hello()  # 300 ms timeout, 500 ms delay: the late reply is then dropped
        assert (await client.hello()).model_id == ids[0]
        assert client.counters.dropped_late_replies == 1
        await client.close()
    finally:
        stop_process(b.process)


def test_host_build_follows_a_model_leaving_the_zoo_and_a_second_make_does_nothing(tmp_path):
    """A zoo model's retirement leaves no newer file behind: firmware/Makefile's zoo-ids stamp
    (the sorted ids, rewritten only when they change) regenerates the model table, codegen drops
    the retired model's source, the board relinks; then make has nothing to do. On a copy of two
    zoo models and a build folder of its own."""
    import shutil

    from fleetvote.offline.codegen import c_ident

    ids = sorted((p.stat().st_size, p.parent.name) for p in ZOO.glob("*/model.tflite"))
    if len(ids) < 2:
        pytest.skip("the zoo needs two models")
    (_, keep), (_, leave) = ids[:2]  # the two smallest: the quickest build
    zoo, build = tmp_path / "zoo", tmp_path / "build"
    for mid in (keep, leave):
        (zoo / mid).mkdir(parents=True)
        for name in ("model.tflite", "card.json"):
            shutil.copy(ZOO / mid / name, zoo / mid / name)
    args = ("BOARD=host", f"ZOO={zoo}", f"BUILD={build}")
    make(*args)
    gen, board = build / "gen" / "all", build / "host" / "board"
    assert f"&fv_model_{c_ident(leave)}," in (gen / "models.c").read_text()
    assert "Nothing to be done" in make(*args)
    linked = board.stat().st_mtime_ns
    shutil.rmtree(zoo / leave)  # the copy's retirement
    out = make(*args)
    assert "codegen" in out and board.stat().st_mtime_ns != linked
    table = (gen / "models.c").read_text()
    assert f"&fv_model_{c_ident(keep)}," in table and f"fv_model_{c_ident(leave)}" not in table
    assert (gen / "zoo-ids").read_text().split() == [keep]
    assert not (gen / f"model_{c_ident(leave)}.c").exists() and (gen / f"model_{c_ident(keep)}.c").exists()
    assert "Nothing to be done" in make(*args)


def test_codegen_removes_the_sources_of_models_it_no_longer_writes_and_nothing_else(tmp_path):
    from fleetvote.offline.codegen import generate

    ids = sorted((p.stat().st_size, p.parent.name) for p in ZOO.glob("*/model.tflite"))
    if len(ids) < 2:
        pytest.skip("the zoo needs two models")
    (_, keep), (_, leave) = ids[:2]
    out = tmp_path / "gen"
    first = {p.name for p in generate([(m, ZOO / m / "model.tflite") for m in (keep, leave)], out)}
    (out / "model_mine.c").write_text("/* a hand-written file in the same folder */\n")
    second = {p.name for p in generate([(keep, ZOO / keep / "model.tflite")], out)}
    assert {p.name for p in out.iterdir()} == second | {"model_mine.c"} and len(first) == len(second) + 1


def test_codegen_is_deterministic_and_agrees_with_analyze(tmp_path):
    import re

    from fleetvote.offline.analyze import analyze
    from fleetvote.offline.codegen import generate

    ids = members()
    if not ids:
        pytest.skip("no zoo member yet")
    models = [(i, ZOO / i / "model.tflite") for i in ids]
    a = {p.name: p.read_bytes() for p in generate(models, tmp_path / "a")}
    b = {p.name: p.read_bytes() for p in generate(models, tmp_path / "b")}
    assert a == b
    for i in ids:
        text = a[f"model_{i.replace('-', '_')}.c"].decode()
        arena = int(re.search(r"\.arena_bytes = (\d+)u", text).group(1))
        macc = int(re.search(r"\.macc = (\d+)u", text).group(1))
        t = analyze(ZOO / i / "model.tflite")["total"]
        assert (arena, macc) == (t["arena_bytes"], t["macc"])


def test_dsp_scratch_holds_the_add_tables_of_every_zoo_model_with_an_add():
    """The DSP ADD keeps its two 256-word tables in the column scratch and runs the reference when
    the scratch is smaller (core/fv_kernels_dsp_elementwise.c): dsp_limits.py must reserve them for
    every model with an ADD, with the C side's count."""
    import re

    sys.path.insert(0, str(ROOT / "firmware" / "tools"))
    import dsp_limits
    from fleetvote.engine.kernels import Add

    header = (ROOT / "firmware" / "core" / "fv_kernels_dsp.h").read_text()
    words = int(re.search(r"#define FV_DSP_ADD_TABLE_WORDS (\d+)", header).group(1))
    assert dsp_limits.ADD_TABLE_WORDS == words
    with_add = [p for p in sorted(ZOO.glob("*/model.tflite"))
                if any(isinstance(k, Add) for _, k in Engine.from_file(p).layer_table())]
    assert with_add, "the zoo has no model with an ADD to check"
    for path in with_add:
        assert dsp_limits.max_column(path) >= words, path.parent.name


def test_dsp_limits_sizes_the_fused_depthwise_planes_and_builds_them_only_where_a_pair_fuses():
    """Every depthwise layer of a dsconv model follows a convolution whose output it alone reads:
    dsp_limits.py reserves the largest pair's channel planes (core/fv_kernels_dsp.c: c (in_h + 1)
    + 2 rows of in_w + 2 halfwords; dsconv26's first layer into its stride-2 depthwise,
    32x32x26) and counts the pairs (FV_DSP_FUSED_PAIRS), so that models without one leave the
    fused kernels out; the widths it accepts are those the firmware has pass functions for."""
    import re

    sys.path.insert(0, str(ROOT / "firmware" / "tools"))
    import dsp_limits
    from fleetvote.engine.kernels import DepthwiseConv2D

    c = (ROOT / "firmware" / "core" / "fv_kernels_dsp.c").read_text()
    widths = {int(w) for w in re.findall(r"^DWF_ROWS_W\(1, (\d+),", c, re.M)}
    widths_s2 = {int(w) for w in re.findall(r"^DWF_ROWS_W\(2, (\d+),", c, re.M)}
    assert widths == set(dsp_limits.DWF_WIDTHS)
    assert widths_s2 == set(dsp_limits.DWF_WIDTHS_S2)
    e = re.search(r"#define DWP_E_MIN (\d+)\s.*?#define DWP_E_MAX (\d+)", c, re.S)
    assert (dsp_limits.DWP_E_MIN, dsp_limits.DWP_E_MAX) == (int(e.group(1)), int(e.group(2)))
    models = sorted(ZOO.glob("*/model.tflite"))
    with_dw = [p for p in models if any(isinstance(k, DepthwiseConv2D) for _, k in Engine.from_file(p).layer_table())]
    without = [p for p in models if p not in with_dw]
    assert with_dw and without, "the zoo needs a model with depthwise layers and one without"
    for path in with_dw:
        n_dw = sum(isinstance(k, DepthwiseConv2D) for _, k in Engine.from_file(path).layer_table())
        assert dsp_limits.fused_pairs(path) == n_dw, path.parent.name
        if path.parent.name.startswith("dsconv26"):
            assert dsp_limits.dw_plane_words(path) == (26 * 33 + 2) * 34 // 2, path.parent.name
    for path in without[:3]:
        assert dsp_limits.fused_pairs(path) == 0, path.parent.name


def test_dsp_limits_refuses_the_pairs_fv_dw_planes_ok_refuses_on_shape_stride_padding_and_activation():
    """fused_plane_words mirrors fv_dw_planes_ok's cheap conditions: each change below, made to a
    dsconv26 pair that fuses, makes it refuse (the rest the bench's fused count checks)."""
    import copy

    sys.path.insert(0, str(ROOT / "firmware" / "tools"))
    import dsp_limits
    from fleetvote.engine.kernels import DepthwiseConv2D

    path = next(iter(sorted(ZOO.glob("dsconv26*/model.tflite"))), None)
    if path is None:
        pytest.skip("the zoo has no dsconv26 model")
    kernels = [k for _, k in Engine.from_file(path).layer_table()]
    conv, dw = next((a, b) for a, b in zip(kernels, kernels[1:])
                    if isinstance(b, DepthwiseConv2D) and b.sw == 1 and dsp_limits.fused_plane_words(a, b) > 0)
    changes = {"stride_h 2 under stride_w 1": {"sh": 2}, "dilation 2": {"dh": 2, "dw": 2},
               "pad_top 0 (VALID)": {"pt": 0}, "depth multiplier 2": {"mult_depth": 2, "cout": 2 * dw.cout},
               "a ReLU6 range": {"hi": 0}, "a right shift of 4": {"shift": dw.shift * 0 - 4},
               "a right shift of 14": {"shift": dw.shift * 0 - 14}}
    for what, fields in changes.items():
        d = copy.copy(dw)
        for k, v in fields.items():
            setattr(d, k, v)
        assert dsp_limits.fused_plane_words(conv, d) == 0, what
    c = copy.copy(conv)
    c.lo = 0
    assert dsp_limits.fused_plane_words(c, dw) == 0, "a producer without the whole int8 range"


def test_dsp_limits_counts_the_max_pools_that_fuse_with_their_convolution_and_sizes_the_running_maximum():
    """Every zoo max pool (2x2, stride 2, VALID, over an even output) follows a convolution whose
    output it alone reads: dsp_limits.py counts the pairs (FV_DSP_POOL_PAIRS: the bench fails
    when the runner fuses another number) and reserves one int32 per output channel of the
    widest such convolution (FV_DSP_POOL_WORDS, core/fv_kernels_dsp.c: pool_max); models without
    a pool leave the fused kernels out."""
    sys.path.insert(0, str(ROOT / "firmware" / "tools"))
    import dsp_limits
    from fleetvote.engine.kernels import Pool2D

    with_pool = without = 0
    for path in sorted(ZOO.glob("*/model.tflite")):
        kernels = [k for _, k in Engine.from_file(path).layer_table()]
        pairs = [(a, b) for a, b in zip(kernels, kernels[1:]) if isinstance(b, Pool2D) and b.kind == "max"]
        assert dsp_limits.pool_fusion(path) == (len(pairs), max([2] + [a.cout for a, _ in pairs])), path.parent.name
        with_pool += bool(pairs)
        without += not pairs
    assert with_pool and without, "the zoo needs a model with max pools and one without"


def test_dsp_limits_refuses_the_pool_pairs_fv_conv_pool_ok_refuses_on_shape_padding_and_range():
    """pool_words_of mirrors fv_conv_pool_ok's cheap conditions: each change below, made to a zoo
    (convolution, max pool) pair that fuses, makes it refuse (the C kernel's own refusals are in
    firmware/tests/test_kernels_dsp_pool.c)."""
    import copy

    sys.path.insert(0, str(ROOT / "firmware" / "tools"))
    import dsp_limits
    from fleetvote.engine.kernels import Pool2D

    found = None
    for path in sorted(ZOO.glob("*/model.tflite")):
        kernels = [k for _, k in Engine.from_file(path).layer_table()]
        found = next(((a, b) for a, b in zip(kernels, kernels[1:]) if isinstance(b, Pool2D) and b.kind == "max"), None)
        if found:
            break
    if found is None:
        pytest.skip("the zoo has no max pool")
    conv, pool = found
    assert dsp_limits.pool_words_of(conv, pool) == conv.cout
    changes = {"a 3x3 window": {"fh": 3, "fw": 3}, "stride 1": {"sh": 1, "sw": 1}, "padding": {"pt": 1, "pl": 1},
               "an average pool": {"kind": "avg"}, "a range narrower than the convolution's": {"hi": 100},
               "an output of another size": {"oh": pool.oh - 1}}
    for what, fields in changes.items():
        p = copy.copy(pool)
        for k, v in fields.items():
            setattr(p, k, v)
        assert dsp_limits.pool_words_of(conv, p) == 0, what
    c = copy.copy(conv)
    c.oh, c.ow = conv.oh - 1, conv.ow - 1  # odd: the reference pool drops a row and a column
    p = copy.copy(pool)
    p.oh, p.ow = c.oh // 2, c.ow // 2
    assert dsp_limits.pool_words_of(c, p) == 0, "an odd convolution output"
    assert dsp_limits.pool_words_of(pool, pool) == 0, "a producer that is not a convolution"


PAIR_MACROS = ("FV_DSP_FUSED_PAIRS", "FV_DSP_POOL_PAIRS")


@pytest.mark.parametrize("pairs_name, macro, planned, named, rules, bench_line", [
    pytest.param("DEPTHWISE_PAIRS", "FV_DSP_FUSED_PAIRS", 6, "(convolution, depthwise)",
                 "fused_plane_words agree with fv_dw_planes_ok", "fused", id="depthwise"),
    pytest.param("POOL_PAIRS", "FV_DSP_POOL_PAIRS", 3, "(convolution, max pool)",
                 "pool_words_of agree with fv_conv_pool_ok", "fused_pool", id="max-pool"),
])
def test_bench_firmware_fails_when_the_runner_fuses_other_pairs_than_the_build_planned(
        tmp_path, pairs_name, macro, planned, named, rules, bench_line):
    """The bench image reports the pairs of each kind fused at prepare (its `fused` and
    `fused_pool` lines); bench_firmware.py compares them with the build's FV_DSP_FUSED_PAIRS and
    FV_DSP_POOL_PAIRS, reading only the kind's own macro, and names the mismatch."""
    sys.path.insert(0, str(ROOT / "firmware" / "tools"))
    import bench_firmware

    limits = tmp_path / "fv_dsp_limits.h"
    # the other kind's macro at 0: the kind's own must be the one read
    limits.write_text("#define FV_DSP_MAX_K 28\n" + "".join(
        f"#define {m} {planned if m == macro else 0}\n" for m in PAIR_MACROS))
    pairs = getattr(bench_firmware, pairs_name)
    assert bench_firmware.pairs_problem(planned, limits, *pairs) is None
    problem = bench_firmware.pairs_problem(planned - 1, limits, *pairs)
    assert f"fused {planned - 1} {named}" in problem and rules in problem
    # the causes only the runner checks, which dsp_limits.py cannot mirror, are named too
    assert "only_next_reads" in problem and "overlaps both" in problem and "layer 64 on" in problem
    assert f"reports no fused {named} pairs" in bench_firmware.pairs_problem(None, limits, *pairs)
    assert "cannot read" in bench_firmware.pairs_problem(planned, tmp_path / "missing.h", *pairs)
    limits.write_text("".join(f"#define {m} 0\n" for m in PAIR_MACROS if m != macro))
    assert f"no {macro}" in bench_firmware.pairs_problem(planned, limits, *pairs)
    lines = ["bench model m layers 1 macc 9 clock 25000000 dwt 0", "overhead 5", f"{bench_line} {planned}",
             "layer ref 0 3 9 100", "total ref 100 out 00", "layer opt 0 3 9 50", "total opt 50 out 00",
             "match 1", "done"]
    assert bench_firmware.parse(lines)[bench_line] == planned


def test_bench_firmware_table_counts_fused_pools_as_the_convolutions_work():
    """The table's max pool row says how many of its pools were fused (their work is the
    convolution's, so the row counts them at 0 instructions)."""
    sys.path.insert(0, str(ROOT / "firmware" / "tools"))
    import bench_firmware

    pool = next(o.number for o in bench_firmware.OPS if o.label == "MAX_POOL_2D")
    conv = next(o.number for o in bench_firmware.OPS if o.label == "CONV_2D")
    lines = ["bench model m layers 2 macc 9 clock 1000000000 dwt 0", "overhead 0", "fused 0", "fused_pool 1",
             f"layer ref 0 {conv} 9 100", f"layer ref 1 {pool} 0 40", "total ref 140 out 00",
             f"layer opt 0 {conv} 9 50", f"layer opt 1 {pool} 0 0", "total opt 50 out 00", "match 1", "done"]
    b = bench_firmware.parse(lines)
    assert b["fused_pool"] == 1
    res = {"machine": "netduinoplus2", **bench_firmware.analyse(b, [("conv", 9, 16), ("pool", 0, 4)])}
    row = bench_firmware.table_record(res)["kinds"]["max pool"]
    assert (row["pools"], row["fused_pools"], row["opt_instructions"]) == (1, 1, 0)


def _conv(kh: int, kw: int, cin: int, cout: int, out_px: int = 64, lo: int = -128, hi: int = 127):
    """A CONV_2D kernel with only the fields dsp_limits.pw_words_of reads."""
    from fleetvote.engine.kernels import Conv2D

    k = object.__new__(Conv2D)
    k.kh, k.kw, k.cin, k.cout, k.oh, k.ow, k.lo, k.hi = kh, kw, cin, cout, out_px, 1, lo, hi
    return k


def _prewidened_path(k, words: int) -> tuple[str, int]:
    """What core/fv_kernels_dsp.c's conv2d_prewidened does with ``words`` of buffer (its
    conditions, in Python): ("whole", pairs) or ("chunks", pairs per chunk) or ("none", 0)."""
    pairs, rec = k.cout // 2, 4 * ((k.kh * k.kw * k.cin + 3) // 4) + 8
    cap = words // rec
    if (k.lo, k.hi) != (-128, 127) or pairs == 0 or k.oh * k.ow < 2:
        return "none", 0
    if pairs <= cap:
        return "whole", pairs
    if k.kh == k.kw == 1 and k.cin % 4 == 0 and cap >= 12:
        return "chunks", cap
    return "none", 0


def test_dsp_limits_reserves_the_prewidened_words_the_firmware_really_uses():
    """Hand-derived from conv2d_prewidened (core/fv_kernels_dsp.c): a channel pair's record is
    4 words per group of 4 values plus 8 (PW_REC_EXTRA); a layer whose records fit the buffer
    takes them all, a 1x1 layer over whole groups goes in chunks of buffer / record pairs when
    that is at least 12 (PW_MIN_CHUNK_PAIRS), any other layer widens in its inner loop."""
    import re

    sys.path.insert(0, str(ROOT / "firmware" / "tools"))
    import dsp_limits

    c = (ROOT / "firmware" / "core" / "fv_kernels_dsp.c").read_text()
    assert dsp_limits.PW_REC_EXTRA == int(re.search(r"#define PW_REC_EXTRA (\d+)", c).group(1))
    assert dsp_limits.PW_MIN_CHUNK_PAIRS == int(re.search(r"#define PW_MIN_CHUNK_PAIRS (\d+)", c).group(1))
    pw = dsp_limits.pw_words_of
    # the first layer, 3x3 over RGB to 32 channels: k = 27, 7 groups, records of 36 words, 16 pairs
    assert pw([_conv(3, 3, 3, 32)]) == 16 * 36 == 576
    # a 1x1 over 332 channels to 64: records of 4 * 83 + 8 = 340 words, 32 pairs (10,880 words) do
    # not fit 4096; 4096 // 340 = 12 pairs a chunk, 12 * 340 = 4080 words, not the whole 4096
    assert pw([_conv(1, 1, 332, 64)]) == 4080
    # over 336 channels: records of 344 words, 4096 // 344 = 11 pairs, under 12: the firmware does
    # not pre-widen, so nothing is reserved for it (4096 were, before)
    assert pw([_conv(1, 1, 336, 64)]) == pw([_conv(1, 1, 512, 512)]) == 2
    # dsconv26's 1x1 over 208 channels: records of 216 words, chunks of 18 pairs: 3888 words
    assert pw([_conv(1, 1, 208, 208)]) == 18 * 216
    # a layer that fits whole and needs more sets the figure (3x3 over 16 to 52: records of 152,
    # 26 pairs, 3952 words); the 1x1's chunks stay at 3952 // 216 = 18 pairs
    assert pw([_conv(1, 1, 208, 208), _conv(3, 3, 16, 52)]) == 26 * 152 == 3952
    # not whole groups (a 1x1 over 330), not 1x1 (3x3 over 36 to 28: 14 records of 332 = 4648 words),
    # an activation range narrower than int8's, one output pixel: none pre-widen
    assert pw([_conv(1, 1, 330, 64), _conv(3, 3, 36, 28), _conv(3, 3, 3, 32, lo=-128, hi=100),
               _conv(1, 1, 64, 64, out_px=1)]) == 2


def test_the_prewidened_words_reserved_change_no_layers_path_in_the_firmware():
    """With the words dsp_limits.py reserves for a zoo model, every convolution of it takes the
    path (whole, chunks of as many pairs, or none) that the firmware's cap of 4096 words gives."""
    sys.path.insert(0, str(ROOT / "firmware" / "tools"))
    import dsp_limits
    from fleetvote.engine.kernels import Conv2D, DepthwiseConv2D

    for path in sorted(ZOO.glob("*/model.tflite")):
        convs = [k for _, k in Engine.from_file(path).layer_table()
                 if isinstance(k, Conv2D) and not isinstance(k, DepthwiseConv2D)]
        words = dsp_limits.pw_words_of(convs)
        assert words <= dsp_limits.PW_CAP_WORDS
        for k in convs:
            assert _prewidened_path(k, words) == _prewidened_path(k, dsp_limits.PW_CAP_WORDS), (path.parent.name, k.cin)
        used = [_prewidened_path(k, words) for k in convs]
        rec = {id(k): 4 * ((k.kh * k.kw * k.cin + 3) // 4) + 8 for k in convs}
        # and not a word more than the largest layer's records (whole or one chunk)
        assert words == max([2] + [n * rec[id(k)] for k, (how, n) in zip(convs, used) if how != "none"]), \
            path.parent.name


def test_the_services_virtual_boards_run_in_its_session_in_process_groups_of_their_own(board_bin, tmp_path):
    """Their own groups: Ctrl-C in a terminal reaches the service, which stops the boards in order.
    The service's session: where the scheduler groups processes by session (autogroup), a board
    in a session of its own would weigh as much as the whole service (testbed/virtual.py). A
    board started alone (a test's) keeps a session of its own."""
    import os

    from fleetvote.testbed.processes import stop_process
    from fleetvote.testbed.virtual import VirtualFleet

    with VirtualFleet(members()[:2], tmp_path / "boards") as fleet:
        for b in fleet.boards:
            assert os.getsid(b.process.pid) == os.getsid(0)
            assert os.getpgid(b.process.pid) == b.process.pid != os.getpgid(0)
    alone = start_board(members()[0], "t-session", link=tmp_path / "board")
    try:
        assert os.getsid(alone.process.pid) == alone.process.pid != os.getsid(0)
    finally:
        stop_process(alone.process)
