#!/usr/bin/env python3
"""Test vectors for firmware/core/fv_kernels_ref.c, computed by the numpy engine.

The numpy engine (fleetvote.engine.kernels) is bit-exact with TFLite Micro's reference kernels;
this script builds single layers by hand (random weights and quantisation parameters, plus
hand-picked extremes), runs them through the engine's own kernel classes, and writes a C header
with, for each case, the C params struct, the input bytes and the expected output bytes. The
multipliers, shifts, paddings and activation ranges in the params are the ones the kernel
classes computed in their ``__init__`` (the values the code generator emits), except where a
case overrides them on purpose (positive shifts, extreme multipliers) to reach corners that
random quantisation parameters rarely hit; the numpy ``__call__`` then uses the overridden values.

It also writes vectors for the fixed-point primitives alone (SRDHM, RDBPOT, MBQM, saturating
shift, CLZ, exp on Q5.26, 1/(1+x)), computed by fleetvote.engine.fixedpoint and the softmax
helpers of fleetvote.engine.kernels.

Usage: make_kernel_vectors.py -o build/test/kernel_vectors.h [--seed N]
Deterministic for a given seed. The header is a build product (firmware/build is git-ignored).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from fleetvote.engine import fixedpoint as fp
from fleetvote.engine import kernels as K
from fleetvote.engine.loader import Operator, Tensor

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


# --- building layers by hand -------------------------------------------------------------------

def tensor(idx: int, shape, scale, zp, data=None, qdim: int = 0, type_name: str = "int8") -> Tensor:
    return Tensor(index=idx, name=f"t{idx}", shape=tuple(int(s) for s in shape), type_name=type_name,
                  scale=np.atleast_1d(np.asarray(scale, np.float32)),
                  zero_point=np.atleast_1d(np.asarray(zp, np.int64)),
                  quantized_dimension=qdim, data=data)


def rand_i8(rng, shape, lo=-128, hi=127) -> np.ndarray:
    return rng.integers(lo, hi + 1, size=shape).astype(np.int8)


def fill_i8(rng, shape, mode) -> np.ndarray:
    """Random int8 data, or extremes: 'max' (all 127), 'min' (all -128), 'pm' (only -128/127), or a
    (lo, hi) tuple: uniform in [lo, hi] (small values, for positive shifts)."""
    if isinstance(mode, tuple):
        return rand_i8(rng, shape, *mode)
    if mode == "rand":
        return rand_i8(rng, shape)
    if mode == "max":
        return np.full(shape, 127, np.int8)
    if mode == "min":
        return np.full(shape, -128, np.int8)
    if mode == "pm":
        return np.where(rng.random(shape) < 0.5, -128, 127).astype(np.int8)
    raise ValueError(mode)


def fit_multipliers(kern, acc: np.ndarray) -> None:
    """Per-channel (multiplier, shift) that map the largest |accumulator| of each channel to about
    120 - |output zero point| output steps: extreme cases then exercise every bit of the
    accumulator instead of saturating. acc: (positions, channels), computed independently of the engine (only the
    choice of multiplier depends on it; the expected outputs come from the engine)."""
    target = max(120.0 - abs(kern.out_zp), 8.0)
    peak = np.maximum(np.abs(acc).max(axis=0), 1)
    ms = [fp.quantize_multiplier(target / float(v)) for v in peak]
    kern.mult = np.array([m for m, _ in ms], np.int64)
    kern.shift = np.array([s for _, s in ms], np.int64)


def refresh(kern) -> None:
    """After changing kern.mult/kern.shift: rebuild whatever the engine derived from them in
    __init__ (its Requantizer), so that __call__ uses the new values."""
    if hasattr(kern, "requant") and hasattr(K, "Requantizer"):
        kern.requant = K.Requantizer(kern.mult, kern.shift, kern.out_zp, kern.lo, kern.hi, len(kern.mult))


def check_requant(name: str, kern, acc: np.ndarray, y: np.ndarray) -> None:
    """Cross-check the engine's output against TFLite's formula applied to an accumulator computed
    here independently: catches an override that the engine did not pick up, and any drift of the
    engine's requantisation from fixedpoint.multiply_by_quantized_multiplier."""
    ref = np.clip(fp.multiply_by_quantized_multiplier(acc, kern.mult, kern.shift) + kern.out_zp, kern.lo, kern.hi)
    if not np.array_equal(ref.reshape(-1), y.astype(np.int64).reshape(-1)):
        raise SystemExit(f"{name}: the engine's output differs from MBQM on an independent accumulator")


def out_scale_for(acc_scale: float, k: int, target: float = 40.0) -> float:
    """An output scale that puts a sum of k products of random int8 values at ~target output steps
    (std of such a sum ~ sqrt(k) * 74^2), so that outputs spread without saturating everything."""
    return float(acc_scale * np.sqrt(k) * 74.0 * 74.0 / target)


# --- C emission --------------------------------------------------------------------------------

def c_int(v: int) -> str:
    v = int(v)
    return "(-2147483647 - 1)" if v == INT32_MIN else str(v)


C_RANGES = {"int8_t": (-128, 127), "int32_t": (INT32_MIN, INT32_MAX)}


def c_array(ctype: str, name: str, values) -> str:
    raw = [int(v) for v in np.asarray(values).reshape(-1).tolist()]
    lo, hi = C_RANGES[ctype]
    if any(v < lo or v > hi for v in raw):
        raise ValueError(f"{name}: value out of {ctype} range")
    vals = [c_int(v) for v in raw]
    if not vals:
        vals = ["0"]
    lines = [", ".join(vals[i:i + 20]) for i in range(0, len(vals), 20)]
    return f"static const {ctype} {name}[{len(vals)}] = {{\n    " + ",\n    ".join(lines) + "\n};\n"


class Writer:
    def __init__(self):
        self.parts: list[str] = []
        self.table: list[str] = []
        self.max_out = 0
        self.names: set[str] = set()
        self.summary: list[str] = []
        self.table_prim: list[str] = []

    def case(self, name: str, op: str, ptype: str, fields: dict, arrays: dict, in1, in2, expected):
        assert name not in self.names, name
        self.names.add(name)
        pfx = f"v{len(self.table)}"
        for aname, (ctype, vals) in arrays.items():
            self.parts.append(c_array(ctype, f"{pfx}_{aname}", vals))
        init = []
        for k, v in fields.items():
            if isinstance(v, str):  # a reference to an array of this case, or NULL
                init.append(f".{k} = {v if v == 'NULL' else pfx + '_' + v}")
            else:
                init.append(f".{k} = {c_int(v)}")
        self.parts.append(f"static const {ptype} {pfx}_p = {{\n    " + ",\n    ".join(init) + "\n};\n")
        self.parts.append(c_array("int8_t", f"{pfx}_in1", in1))
        if in2 is not None:
            self.parts.append(c_array("int8_t", f"{pfx}_in2", in2))
        exp = np.asarray(expected, np.int8).reshape(-1)
        self.parts.append(c_array("int8_t", f"{pfx}_out", exp))
        self.table.append(f'    {{"{name}", {op}, &{pfx}_p, {pfx}_in1, {pfx + "_in2" if in2 is not None else "NULL"}, '
                          f"{pfx}_out, {exp.size}}},")
        self.max_out = max(self.max_out, exp.size)
        sat = float(np.mean((exp == -128) | (exp == 127)))
        self.summary.append(f"{name:44s} {op:16s} out={exp.size:6d} distinct={len(np.unique(exp)):3d} "
                            f"at_int8_limits={sat:4.0%}")

    def prim(self, name: str, func: str, args: list[np.ndarray], expected: np.ndarray):
        pfx = f"f{len(self.table_prim)}"
        n = len(expected)
        for i, a in enumerate(args):
            self.parts.append(c_array("int32_t", f"{pfx}_a{i}", np.asarray(a, np.int64)))
        for i in range(len(args), 3):
            self.parts.append(f"#define {pfx}_a{i} NULL\n")
        self.parts.append(c_array("int32_t", f"{pfx}_exp", np.asarray(expected, np.int64)))
        self.table_prim.append(f'    {{"{name}", {func}, {pfx}_a0, {pfx}_a1, {pfx}_a2, {pfx}_exp, {n}}},')
        self.summary.append(f"{name:44s} {func:16s} n={n}")

    def header(self, seed: int) -> str:
        head = (
            "/* Generated by firmware/tests/make_kernel_vectors.py (seed %d) from the numpy engine.\n"
            " * Do not edit; do not commit. Included by firmware/tests/test_kernels.c, which defines\n"
            " * fv_kernel_vector, fv_prim_vector and the KV_OP_* / KV_PRIM_* codes before including it. */\n"
            "#ifndef FV_KERNEL_VECTORS_H\n#define FV_KERNEL_VECTORS_H\n\n" % seed)
        body = "".join(self.parts)
        table = ("static const fv_kernel_vector fv_vectors[] = {\n" + "\n".join(self.table) + "\n};\n"
                 f"#define FV_N_VECTORS {len(self.table)}\n#define FV_VECTORS_MAX_OUT {self.max_out}\n\n")
        ptable = ("static const fv_prim_vector fv_prims[] = {\n" + "\n".join(self.table_prim) + "\n};\n"
                  f"#define FV_N_PRIMS {len(self.table_prim)}\n\n#endif /* FV_KERNEL_VECTORS_H */\n")
        return head + body + "\n" + table + ptable


# --- kernel cases ------------------------------------------------------------------------------

def conv_case(w: Writer, rng, name: str, *, h, wd, cin, cout, k, stride=(1, 1), dil=(1, 1), padding="SAME",
              act="NONE", in_zp=None, x_mode="rand", w_mode="rand", bias=True, bias_val=None,
              per_channel=True, override=None, out_target=40.0, fit=False):
    kh, kw = k
    in_scale = float(rng.uniform(0.005, 0.05))
    in_zp = int(rng.integers(-128, 128)) if in_zp is None else in_zp
    w_scale = rng.uniform(0.002, 0.02, cout) if per_channel else float(rng.uniform(0.002, 0.02))
    x = fill_i8(rng, (1, h, wd, cin), x_mode)
    wt = fill_i8(rng, (cout, kh, kw, cin), w_mode)
    kk = kh * kw * cin
    out_scale = out_scale_for(in_scale * float(np.mean(w_scale)), kk, out_target)
    out_zp = int(rng.integers(-100, 100))
    if bias_val is not None:
        b = np.asarray(bias_val, np.int64).reshape(cout).astype(np.int32)
    else:
        b = rng.integers(-40000, 40000, cout).astype(np.int32)
    t = [tensor(0, x.shape, in_scale, in_zp), tensor(1, wt.shape, w_scale, np.zeros(np.size(w_scale)), wt),
         tensor(2, (cout,), in_scale * np.asarray(w_scale), 0, b, type_name="int32"),
         tensor(3, (1, 1, 1, cout), out_scale, out_zp)]
    op = Operator(0, "CONV_2D", (0, 1, 2 if bias else -1), (3,),
                  {"stride": stride, "dilation": dil, "padding": padding, "activation": act})
    kern = K.Conv2D(op, t)
    cols = kern.im2col(x).astype(np.int64) - kern.in_zp  # padded cells hold zp: centred 0
    acc = cols @ wt.reshape(cout, -1).T.astype(np.int64) + (b if bias else 0)
    if fit:
        fit_multipliers(kern, acc)
    if override:
        override(kern)
    refresh(kern)
    y = kern(x)
    check_requant(name, kern, acc, y)
    assert y.shape == (1, kern.oh, kern.ow, cout)
    w.case(name, "KV_OP_CONV", "fv_conv_params", {
        "in_h": h, "in_w": wd, "in_c": cin, "out_h": kern.oh, "out_w": kern.ow, "out_c": cout,
        "k_h": kh, "k_w": kw, "stride_h": stride[0], "stride_w": stride[1], "dil_h": dil[0], "dil_w": dil[1],
        "pad_top": kern.pt, "pad_left": kern.pl, "depth_multiplier": 1,
        "input_offset": -kern.in_zp, "output_offset": kern.out_zp, "act_min": kern.lo, "act_max": kern.hi,
        "weights": "w", "bias": "b" if bias else "NULL", "multiplier": "m", "shift": "s",
    }, {"w": ("int8_t", wt), "b": ("int32_t", b), "m": ("int32_t", kern.mult), "s": ("int32_t", kern.shift)},
        x, None, y)


def dw_case(w: Writer, rng, name: str, *, h, wd, cin, dm, k, stride=(1, 1), dil=(1, 1), padding="SAME",
            act="NONE", in_zp=None, x_mode="rand", w_mode="rand", bias=True, override=None, fit=False):
    kh, kw = k
    cout = cin * dm
    in_scale = float(rng.uniform(0.005, 0.05))
    in_zp = int(rng.integers(-128, 128)) if in_zp is None else in_zp
    w_scale = rng.uniform(0.002, 0.02, cout)
    x = fill_i8(rng, (1, h, wd, cin), x_mode)
    wt = fill_i8(rng, (1, kh, kw, cout), w_mode)
    out_scale = out_scale_for(in_scale * float(np.mean(w_scale)), kh * kw)
    out_zp = int(rng.integers(-100, 100))
    b = rng.integers(-20000, 20000, cout).astype(np.int32)
    t = [tensor(0, x.shape, in_scale, in_zp), tensor(1, wt.shape, w_scale, np.zeros(cout), wt, qdim=3),
         tensor(2, (cout,), in_scale * w_scale, 0, b, type_name="int32"),
         tensor(3, (1, 1, 1, cout), out_scale, out_zp)]
    op = Operator(0, "DEPTHWISE_CONV_2D", (0, 1, 2 if bias else -1), (3,),
                  {"stride": stride, "dilation": dil, "padding": padding, "activation": act,
                   "depth_multiplier": dm})
    kern = K.DepthwiseConv2D(op, t)
    xp = np.pad(np.repeat(x[0].astype(np.int64) - kern.in_zp, dm, axis=2),
                ((kern.pt, kern.pb), (kern.pl, kern.pr), (0, 0)))
    acc = np.zeros((kern.oh, kern.ow, cout), np.int64)
    for i in range(kh):
        for j in range(kw):
            acc += xp[i * dil[0]: i * dil[0] + (kern.oh - 1) * stride[0] + 1: stride[0],
                      j * dil[1]: j * dil[1] + (kern.ow - 1) * stride[1] + 1: stride[1]] * wt[0, i, j]
    acc = acc.reshape(-1, cout) + (b if bias else 0)
    if fit:
        fit_multipliers(kern, acc)
    if override:
        override(kern)
    refresh(kern)
    y = kern(x)
    check_requant(name, kern, acc, y)
    assert y.shape == (1, kern.oh, kern.ow, cout)
    w.case(name, "KV_OP_DEPTHWISE", "fv_conv_params", {
        "in_h": h, "in_w": wd, "in_c": cin, "out_h": kern.oh, "out_w": kern.ow, "out_c": cout,
        "k_h": kh, "k_w": kw, "stride_h": stride[0], "stride_w": stride[1], "dil_h": dil[0], "dil_w": dil[1],
        "pad_top": kern.pt, "pad_left": kern.pl, "depth_multiplier": dm,
        "input_offset": -kern.in_zp, "output_offset": kern.out_zp, "act_min": kern.lo, "act_max": kern.hi,
        "weights": "w", "bias": "b" if bias else "NULL", "multiplier": "m", "shift": "s",
    }, {"w": ("int8_t", wt), "b": ("int32_t", b), "m": ("int32_t", kern.mult), "s": ("int32_t", kern.shift)},
        x, None, y)


def fc_case(w: Writer, rng, name: str, *, k, cout, act="NONE", in_zp=None, x_mode="rand", w_mode="rand",
            bias=True, bias_val=None, per_channel=False, override=None, out_target=40.0, fit=False, out_zp=None):
    in_scale = float(rng.uniform(0.005, 0.05))
    in_zp = int(rng.integers(-128, 128)) if in_zp is None else in_zp
    w_scale = rng.uniform(0.002, 0.02, cout) if per_channel else float(rng.uniform(0.002, 0.02))
    x = fill_i8(rng, (1, k), x_mode)
    wt = fill_i8(rng, (cout, k), w_mode)
    out_scale = out_scale_for(in_scale * float(np.mean(w_scale)), k, out_target)
    out_zp = int(rng.integers(-100, 100)) if out_zp is None else out_zp
    if bias_val is not None:
        b = np.asarray(bias_val, np.int64).reshape(cout).astype(np.int32)
    else:
        b = rng.integers(-100000, 100000, cout).astype(np.int32)
    t = [tensor(0, x.shape, in_scale, in_zp), tensor(1, wt.shape, w_scale, np.zeros(np.size(w_scale)), wt),
         tensor(2, (cout,), in_scale * np.asarray(w_scale), 0, b, type_name="int32"),
         tensor(3, (1, cout), out_scale, out_zp)]
    op = Operator(0, "FULLY_CONNECTED", (0, 1, 2 if bias else -1), (3,), {"activation": act})
    kern = K.FullyConnected(op, t)
    acc = (x.astype(np.int64) - kern.in_zp) @ wt.T.astype(np.int64) + (b if bias else 0)
    if fit:
        fit_multipliers(kern, acc)
    if override:
        override(kern)
    refresh(kern)
    y = kern(x)
    check_requant(name, kern, acc, y)
    w.case(name, "KV_OP_FC", "fv_fc_params", {
        "depth": k, "out_c": cout, "input_offset": -kern.in_zp, "output_offset": kern.out_zp,
        "act_min": kern.lo, "act_max": kern.hi,
        "weights": "w", "bias": "b" if bias else "NULL", "multiplier": "m", "shift": "s",
    }, {"w": ("int8_t", wt), "b": ("int32_t", b), "m": ("int32_t", kern.mult), "s": ("int32_t", kern.shift)},
        x, None, y)


def pool_case(w: Writer, rng, name: str, kind: str, *, h, wd, c, f, stride, padding, act="NONE", zp=0,
              x_mode="rand", x=None):
    scale = float(rng.uniform(0.01, 0.1))
    if x is None:
        x = fill_i8(rng, (1, h, wd, c), x_mode)
    t = [tensor(0, x.shape, scale, zp), tensor(1, (1, 1, 1, c), scale, zp)]
    op = Operator(0, "MAX_POOL_2D" if kind == "max" else "AVERAGE_POOL_2D", (0,), (1,),
                  {"filter": f, "stride": stride, "padding": padding, "activation": act})
    kern = K.Pool2D(op, t, kind)
    y = kern(x)
    w.case(name, "KV_OP_MAXPOOL" if kind == "max" else "KV_OP_AVGPOOL", "fv_pool_params", {
        "in_h": h, "in_w": wd, "c": c, "out_h": kern.oh, "out_w": kern.ow, "f_h": f[0], "f_w": f[1],
        "stride_h": stride[0], "stride_w": stride[1], "pad_top": kern.pt, "pad_left": kern.pl,
        "act_min": kern.lo, "act_max": kern.hi,
    }, {}, x, None, y)


def add_case(w: Writer, rng, name: str, *, shape, s1, s2, so, zp1, zp2, zpo, act="NONE", modes=("rand", "rand"),
             override=None):
    a = fill_i8(rng, (1, *shape), modes[0])
    b = fill_i8(rng, (1, *shape), modes[1])
    t = [tensor(0, a.shape, s1, zp1), tensor(1, b.shape, s2, zp2), tensor(2, a.shape, so, zpo)]
    op = Operator(0, "ADD", (0, 1), (2,), {"activation": act})
    kern = K.Add(op, t)
    if override:
        override(kern)
    y = kern(a, b)
    mbqm = fp.multiply_by_quantized_multiplier
    ref = mbqm(mbqm((a.astype(np.int64) - kern.zp1) << 20, kern.m1, kern.s1)
               + mbqm((b.astype(np.int64) - kern.zp2) << 20, kern.m2, kern.s2), kern.mo, kern.so) + kern.out_zp
    if not np.array_equal(np.clip(ref, kern.lo, kern.hi), y.astype(np.int64)):
        raise SystemExit(f"{name}: the engine's ADD differs from TFLite's formula")
    w.case(name, "KV_OP_ADD", "fv_add_params", {
        "size": a.size, "in1_offset": -kern.zp1, "in2_offset": -kern.zp2, "left_shift": kern.LEFT_SHIFT,
        "in1_multiplier": kern.m1, "in1_shift": kern.s1, "in2_multiplier": kern.m2, "in2_shift": kern.s2,
        "out_multiplier": kern.mo, "out_shift": kern.so, "output_offset": kern.out_zp,
        "act_min": kern.lo, "act_max": kern.hi,
    }, {}, a, b, y)


def mean_case(w: Writer, rng, name: str, *, h, wd, c, s_in, s_out, zp_in, zp_out, x_mode="rand"):
    x = fill_i8(rng, (1, h, wd, c), x_mode)
    axes = np.array([1, 2], np.int32)
    t = [tensor(0, x.shape, s_in, zp_in), tensor(1, (2,), 1.0, 0, axes, type_name="int32"),
         tensor(2, (1, c), s_out, zp_out)]
    kern = K.Mean(Operator(0, "MEAN", (0, 1), (2,), {}), t)
    y = kern(x)
    w.case(name, "KV_OP_MEAN", "fv_mean_params", {
        "h": h, "w": wd, "c": c, "input_zero_point": kern.in_zp, "multiplier": int(kern.mult),
        "shift": int(kern.shift), "output_offset": kern.out_zp,
    }, {}, x, None, y)


def pad_case(w: Writer, rng, name: str, *, h, wd, c, pads, zp):
    x = rand_i8(rng, (1, h, wd, c))
    pt, pb, pl, pr = pads
    pdata = np.array([[0, 0], [pt, pb], [pl, pr], [0, 0]], np.int32)
    t = [tensor(0, x.shape, 0.02, zp), tensor(1, (4, 2), 1.0, 0, pdata, type_name="int32"),
         tensor(2, (1, h + pt + pb, wd + pl + pr, c), 0.02, zp)]
    kern = K.Pad(Operator(0, "PAD", (0, 1), (2,), {}), t)
    y = kern(x)
    w.case(name, "KV_OP_PAD", "fv_pad_params", {
        "in_h": h, "in_w": wd, "c": c, "pad_top": pt, "pad_bottom": pb, "pad_left": pl, "pad_right": pr,
        "value": kern.value,
    }, {}, x, None, y)


def softmax_case(w: Writer, rng, name: str, *, x: np.ndarray, in_scale: float, beta: float = 1.0):
    x = np.asarray(x, np.int8).reshape(1, -1)
    t = [tensor(0, x.shape, in_scale, int(rng.integers(-128, 128))), tensor(1, x.shape, 1.0 / 256, -128)]
    kern = K.Softmax(Operator(0, "SOFTMAX", (0,), (1,), {"beta": beta}), t)
    y = kern(x)
    w.case(name, "KV_OP_SOFTMAX", "fv_softmax_params", {
        "size": x.size, "input_multiplier": kern.input_multiplier, "input_left_shift": kern.input_left_shift,
        "diff_min": kern.diff_min,
    }, {}, x, None, y)


def softmax_floor_sum(x: np.ndarray, mult: int, left_shift: int, diff_min: int) -> np.ndarray:
    """The int8 softmax with one deliberate error: the sum of exps truncates each Q0.31 exp to
    Q12.19 with a floor shift instead of RoundingDivideByPOT. Used only to SELECT rows whose output
    depends on the low bits of the sum (rare: about 1 row in 900); the expected outputs always
    come from the engine. x: (rows, size) int8."""
    xi = x.astype(np.int64)
    diff = xi - xi.max(axis=1, keepdims=True)
    valid = diff >= diff_min
    e = K._exp_on_negative_values(fp.saturating_rounding_doubling_high_mul(
        fp.wrap_int32(diff << left_shift), mult), 5)
    total = np.where(valid, e >> 12, 0).sum(axis=1)
    clz = K._count_leading_zeros_u32(total)
    scale = K._one_over_one_plus_x_for_x_in_0_1(fp.wrap_int32((total << clz) - (1 << 31)))[:, None]
    u = fp.rounding_divide_by_pot(fp.saturating_rounding_doubling_high_mul(scale, e), (12 - clz + 23)[:, None])
    return np.where(valid, np.clip(u - 128, -128, 127), -128).astype(np.int8)


def sum_sensitive_softmax_rows(rng, count: int):
    """Rows (x, in_scale) whose engine output differs from softmax_floor_sum's."""
    found = []
    while len(found) < count:
        size = int(rng.integers(8, 65))
        scale = float(np.exp(rng.uniform(np.log(0.004), np.log(1.0))))
        x = rand_i8(rng, (2000, size), int(rng.integers(-128, 100)), 127)
        t = [tensor(0, (1, size), scale, 0), tensor(1, (1, size), 1.0 / 256, -128)]
        kern = K.Softmax(Operator(0, "SOFTMAX", (0,), (1,), {"beta": 1.0}), t)
        y = K.softmax_int8(x, kern.input_multiplier, kern.input_left_shift, kern.diff_min)
        bad = np.nonzero(np.any(y != softmax_floor_sum(x, kern.input_multiplier, kern.input_left_shift,
                                                       kern.diff_min), axis=1))[0]
        found += [(x[i], scale) for i in bad[: count - len(found)]]
    return found


def set_mult(mult=None, shift=None):
    """Override a conv/fc kernel's per-channel (multiplier, shift) with fixed or per-channel values."""
    def f(kern):
        n = len(kern.mult)
        if mult is not None:
            kern.mult = np.resize(np.asarray(mult, np.int64), n)
        if shift is not None:
            kern.shift = np.resize(np.asarray(shift, np.int64), n)
    return f


def kernel_cases(w: Writer, rng) -> None:
    # CONV_2D: SAME/VALID, strides 1 and 2 (odd and even sizes: asymmetric padding), activations
    conv_case(w, rng, "conv_3x3_same_s1_relu", h=8, wd=8, cin=3, cout=8, k=(3, 3), act="RELU")
    conv_case(w, rng, "conv_3x3_same_s2_odd_relu6", h=9, wd=9, cin=4, cout=6, k=(3, 3), stride=(2, 2), act="RELU6")
    conv_case(w, rng, "conv_3x3_same_s2_even", h=8, wd=10, cin=5, cout=4, k=(3, 3), stride=(2, 2))
    conv_case(w, rng, "conv_4x4_same_s1_even_kernel", h=7, wd=6, cin=3, cout=5, k=(4, 4))
    conv_case(w, rng, "conv_2x2_same_s2", h=7, wd=7, cin=3, cout=4, k=(2, 2), stride=(2, 2), act="RELU")
    conv_case(w, rng, "conv_5x5_valid_s2", h=11, wd=10, cin=2, cout=7, k=(5, 5), stride=(2, 2), padding="VALID")
    conv_case(w, rng, "conv_3x3_valid_s1_relu6", h=6, wd=5, cin=8, cout=3, k=(3, 3), padding="VALID", act="RELU6")
    conv_case(w, rng, "conv_1x1_valid_pointwise", h=4, wd=4, cin=64, cout=32, k=(1, 1), padding="VALID")
    conv_case(w, rng, "conv_3x1_same_stride_1x2", h=6, wd=9, cin=3, cout=4, k=(3, 1), stride=(1, 2))
    conv_case(w, rng, "conv_3x3_same_dilation2", h=9, wd=8, cin=3, cout=4, k=(3, 3), dil=(2, 2))
    conv_case(w, rng, "conv_3x3_same_no_bias_per_tensor", h=5, wd=5, cin=4, cout=4, k=(3, 3), bias=False,
              per_channel=False)
    conv_case(w, rng, "conv_kernel_bigger_than_image_same", h=2, wd=3, cin=2, cout=3, k=(5, 5))
    conv_case(w, rng, "conv_1x1_input_1x1", h=1, wd=1, cin=16, cout=8, k=(1, 1))
    # long accumulations (K = 3*3*224 = 2016) with extreme operands: all x = -128 with zp 127 gives
    # x - zp = -255, weights all -128: every product is +32640, |acc| = 65.8 M
    # (fit=True: multipliers chosen so that the largest accumulator lands near 110, not saturated)
    conv_case(w, rng, "conv_k2016_x_min_zp127_w_min", h=4, wd=4, cin=224, cout=3, k=(3, 3), in_zp=127,
              x_mode="min", w_mode="min", fit=True)
    conv_case(w, rng, "conv_k2016_x_min_zp127_w_min_saturated", h=3, wd=3, cin=224, cout=2, k=(3, 3), in_zp=127,
              x_mode="min", w_mode="min")
    conv_case(w, rng, "conv_k2016_x_max_zpm128_w_pm", h=4, wd=4, cin=224, cout=4, k=(3, 3), in_zp=-128,
              x_mode="max", w_mode="pm", fit=True)
    conv_case(w, rng, "conv_k2016_random", h=5, wd=5, cin=224, cout=4, k=(3, 3), act="RELU")
    conv_case(w, rng, "conv_k2016_pm_pm", h=3, wd=3, cin=224, cout=4, k=(3, 3), x_mode="pm", w_mode="pm",
              fit=True)
    # requantisation corners: positive shifts (small accumulators), 2^30, INT32_MAX, tiny
    conv_case(w, rng, "conv_positive_shifts", h=4, wd=4, cin=1, cout=4, k=(1, 1), bias=False, in_zp=0,
              x_mode=(-6, 6), w_mode=(-5, 5),
              override=set_mult([1 << 30, 1518500250, INT32_MAX, 1 << 30], [1, 2, 3, 0]))
    conv_case(w, rng, "conv_shift_m31_and_large_bias", h=4, wd=4, cin=8, cout=4, k=(3, 3),
              bias_val=[2_000_000_000, -2_000_000_000, 1 << 30, -(1 << 30)],
              override=set_mult([INT32_MAX, 1 << 30, 1 << 30, 1 << 30], [-23, -31, -22, -22]))
    conv_case(w, rng, "conv_zero_multiplier", h=3, wd=3, cin=2, cout=2, k=(3, 3), override=set_mult([0], [0]))

    # DEPTHWISE_CONV_2D: depth multiplier 1 and 2, SAME/VALID, strides 1 and 2
    dw_case(w, rng, "dw_3x3_same_s1_dm1_relu", h=8, wd=8, cin=8, dm=1, k=(3, 3), act="RELU")
    dw_case(w, rng, "dw_3x3_same_s2_dm1_odd", h=9, wd=7, cin=6, dm=1, k=(3, 3), stride=(2, 2))
    dw_case(w, rng, "dw_3x3_same_s1_dm2_relu6", h=6, wd=6, cin=4, dm=2, k=(3, 3), act="RELU6")
    dw_case(w, rng, "dw_3x3_valid_s2_dm2", h=9, wd=10, cin=3, dm=2, k=(3, 3), stride=(2, 2), padding="VALID")
    dw_case(w, rng, "dw_5x5_same_s1_dm3", h=6, wd=5, cin=2, dm=3, k=(5, 5))
    dw_case(w, rng, "dw_3x3_same_dilation2", h=7, wd=7, cin=3, dm=1, k=(3, 3), dil=(2, 2))
    dw_case(w, rng, "dw_extreme_x_min_zp127_w_min", h=5, wd=5, cin=4, dm=2, k=(3, 3), in_zp=127,
            x_mode="min", w_mode="min", fit=True)
    dw_case(w, rng, "dw_extreme_pm_no_bias", h=5, wd=5, cin=4, dm=1, k=(3, 3), x_mode="pm", w_mode="pm", bias=False,
            fit=True)
    dw_case(w, rng, "dw_positive_shifts", h=4, wd=4, cin=4, dm=1, k=(1, 1), bias=False, in_zp=0,
            x_mode=(-4, 4), w_mode=(-4, 4),
            override=set_mult([1 << 30, INT32_MAX, 1431655765, 1 << 30], [1, 2, 3, 1]))

    # FULLY_CONNECTED: K from 1 to 2000, per-tensor and per-channel, extremes
    fc_case(w, rng, "fc_k1", k=1, cout=8, out_target=2.0)
    fc_case(w, rng, "fc_k10_relu", k=10, cout=10, act="RELU")
    fc_case(w, rng, "fc_k64_relu6_per_channel", k=64, cout=12, act="RELU6", per_channel=True)
    fc_case(w, rng, "fc_k256_no_bias", k=256, cout=10, bias=False)
    fc_case(w, rng, "fc_k1000", k=1000, cout=10)
    fc_case(w, rng, "fc_k2000_random", k=2000, cout=10, act="RELU")
    fc_case(w, rng, "fc_k2000_x_min_zp127_w_min", k=2000, cout=4, in_zp=127, x_mode="min", w_mode="min",
            fit=True)
    fc_case(w, rng, "fc_k2000_x_max_zpm128_w_min", k=2000, cout=4, in_zp=-128, x_mode="max", w_mode="min",
            fit=True)
    fc_case(w, rng, "fc_k2000_pm_pm", k=2000, cout=16, x_mode="pm", w_mode="pm", fit=True)
    fc_case(w, rng, "fc_k2000_pm_pm_per_channel", k=2000, cout=16, x_mode="pm", w_mode="pm", per_channel=True,
            fit=True)
    fc_case(w, rng, "fc_k2000_extreme_fold_shift", k=2000, cout=4, in_zp=127, x_mode="min", w_mode="min",
            override=set_mult([INT32_MAX, 1 << 30, 1 << 30, 1518500250], [-19, -20, -31, -25]))
    fc_case(w, rng, "fc_positive_shifts_small_acc", k=4, cout=8, bias=False, in_zp=0, x_mode=(-3, 3),
            w_mode=(-3, 3), override=set_mult([1 << 30, INT32_MAX, 1 << 30, 1518500250], [1, 2, 3, 1]))
    fc_case(w, rng, "fc_positive_shift_wraps", k=64, cout=4, bias_val=[0, 1 << 29, -(1 << 29), 123456],
            override=set_mult([1 << 30, INT32_MAX, 1 << 30, 1518500250], [4, 3, 2, 10]))
    fc_case(w, rng, "fc_int32_limit_bias", k=16, cout=4, out_zp=0,
            bias_val=[INT32_MAX - 16 * 32640, INT32_MIN + 16 * 32640, 0, -1],
            override=set_mult([INT32_MAX, INT32_MAX, 1 << 30, 1 << 30], [-25, -25, 0, 0]))
    # every shift from -31 to +8 once (one channel each), the per-channel multiplier random
    shifts = list(range(-31, 9))
    fc_case(w, rng, "fc_all_shifts", k=32, cout=len(shifts),
            override=set_mult(rng.integers(1 << 30, 1 << 31, len(shifts)), shifts))

    # MAX_POOL_2D / AVERAGE_POOL_2D: edge windows under SAME see fewer cells
    for kind in ("max", "avg"):
        pool_case(w, rng, f"{kind}pool_2x2_valid_s2", kind, h=8, wd=8, c=4, f=(2, 2), stride=(2, 2), padding="VALID")
        pool_case(w, rng, f"{kind}pool_3x3_same_s2_odd", kind, h=7, wd=9, c=3, f=(3, 3), stride=(2, 2), padding="SAME")
        pool_case(w, rng, f"{kind}pool_3x3_same_s1_relu", kind, h=5, wd=6, c=3, f=(3, 3), stride=(1, 1),
                  padding="SAME", act="RELU", zp=-20)
        pool_case(w, rng, f"{kind}pool_2x2_same_s2_relu6", kind, h=5, wd=5, c=2, f=(2, 2), stride=(2, 2),
                  padding="SAME", act="RELU6", zp=-100)
        pool_case(w, rng, f"{kind}pool_4x4_same_s3_min", kind, h=8, wd=7, c=2, f=(4, 4), stride=(3, 3),
                  padding="SAME", x_mode="min")
        pool_case(w, rng, f"{kind}pool_3x3_same_s2_max", kind, h=5, wd=5, c=2, f=(3, 3), stride=(2, 2),
                  padding="SAME", x_mode="max")
        pool_case(w, rng, f"{kind}pool_2x3_valid_s1_pm", kind, h=6, wd=6, c=5, f=(2, 3), stride=(1, 1),
                  padding="VALID", x_mode="pm")
    # the shapes the optimised max pool unrolls (2x2 windows, channels in words) with each clamp
    pool_case(w, rng, "maxpool_2x2_valid_s2_c12", "max", h=8, wd=6, c=12, f=(2, 2), stride=(2, 2), padding="VALID")
    pool_case(w, rng, "maxpool_2x2_same_s2_c8_relu6", "max", h=7, wd=7, c=8, f=(2, 2), stride=(2, 2),
              padding="SAME", act="RELU6", zp=-100)
    # rounding ties: windows of 2 cells summing to odd values (x.5 averages) of both signs
    ties = np.array([-3, -2, -1, 0, 1, 2, 3, 4, -128, -127, 127, 126, 5, -6, -7, 8], np.int8).reshape(1, 1, 16, 1)
    pool_case(w, rng, "avgpool_1x2_valid_ties", "avg", h=1, wd=16, c=1, f=(1, 2), stride=(1, 2), padding="VALID",
              x=ties)
    ties3 = np.array([-1, -1, 0, 1, 1, 0, -2, -2, -1, 2, 2, 1, -128, -128, -127], np.int8).reshape(1, 1, 15, 1)
    pool_case(w, rng, "avgpool_1x3_valid_thirds", "avg", h=1, wd=15, c=1, f=(1, 3), stride=(1, 3), padding="VALID",
              x=ties3)

    # ADD: scales, zero points and activations; extreme inputs
    add_case(w, rng, "add_random", shape=(4, 4, 8), s1=0.05, s2=0.03, so=0.06, zp1=3, zp2=-10, zpo=-5)
    add_case(w, rng, "add_relu", shape=(3, 5, 4), s1=0.02, s2=0.02, so=0.03, zp1=-128, zp2=-128, zpo=-128, act="RELU")
    add_case(w, rng, "add_relu6", shape=(3, 3, 7), s1=0.04, s2=0.07, so=0.05, zp1=20, zp2=-30, zpo=-60, act="RELU6")
    add_case(w, rng, "add_scale_ratio_1000", shape=(2, 2, 16), s1=1.0, s2=0.001, so=0.5, zp1=0, zp2=100, zpo=0)
    add_case(w, rng, "add_extreme_min_min", shape=(2, 2, 4), s1=0.1, s2=0.1, so=0.05, zp1=127, zp2=127, zpo=0,
             modes=("min", "min"))
    add_case(w, rng, "add_extreme_max_max", shape=(2, 2, 4), s1=0.1, s2=0.2, so=0.3, zp1=-128, zp2=-128, zpo=-128,
             modes=("max", "max"))
    add_case(w, rng, "add_extreme_pm", shape=(4, 4, 4), s1=0.013, s2=0.029, so=0.04, zp1=-7, zp2=12, zpo=3,
             modes=("pm", "pm"))
    # long enough (>= 512 elements) for the optimised ADD's tables of scaled inputs
    add_case(w, rng, "add_long_random", shape=(8, 8, 12), s1=0.05, s2=0.03, so=0.06, zp1=3, zp2=-10, zpo=-5)
    add_case(w, rng, "add_long_relu6", shape=(16, 8, 5), s1=0.04, s2=0.07, so=0.05, zp1=20, zp2=-30, zpo=-60,
             act="RELU6", modes=("pm", "rand"))
    add_case(w, rng, "add_out_scale_large", shape=(4, 4, 2), s1=0.01, s2=0.012, so=2.0, zp1=0, zp2=0, zpo=0)
    add_case(w, rng, "add_positive_out_shift", shape=(4, 4, 2), s1=0.5, s2=0.25, so=0.4, zp1=5, zp2=-5, zpo=0,
             override=lambda k: setattr(k, "so", 2))

    # MEAN over H, W: equal scales (M = 2^30, S = 1), different scales, sizes up to 32x32
    mean_case(w, rng, "mean_8x8_equal_scales", h=8, wd=8, c=16, s_in=0.05, s_out=0.05, zp_in=-3, zp_out=-3)
    mean_case(w, rng, "mean_4x4_diff_scales", h=4, wd=4, c=10, s_in=0.05, s_out=0.02, zp_in=10, zp_out=-20)
    mean_case(w, rng, "mean_5x3_non_pot", h=5, wd=3, c=7, s_in=0.031, s_out=0.017, zp_in=-20, zp_out=5)
    mean_case(w, rng, "mean_32x32", h=32, wd=32, c=4, s_in=0.1, s_out=0.003, zp_in=0, zp_out=0)
    mean_case(w, rng, "mean_1x1", h=1, wd=1, c=8, s_in=0.02, s_out=0.05, zp_in=4, zp_out=-4)
    mean_case(w, rng, "mean_7x7_x_min_zp127", h=7, wd=7, c=3, s_in=0.01, s_out=0.03, zp_in=127, zp_out=0,
              x_mode="min")
    mean_case(w, rng, "mean_7x7_x_min_zp127_saturated", h=7, wd=7, c=3, s_in=0.01, s_out=0.01, zp_in=127,
              zp_out=0, x_mode="min")
    mean_case(w, rng, "mean_6x6_x_max_zpm128", h=6, wd=6, c=3, s_in=0.02, s_out=0.05, zp_in=-128, zp_out=-100,
              x_mode="max")
    # in/out scale ratio 40: S = 6, sh = 5, folded shift S2 = +1 (a left shift)
    mean_case(w, rng, "mean_6x6_positive_shift", h=6, wd=6, c=8, s_in=0.04, s_out=0.001, zp_in=0, zp_out=0,
              x_mode=(-3, 3))
    mean_case(w, rng, "mean_3x3_pm_tiny_ratio", h=3, wd=3, c=5, s_in=1e-6, s_out=0.5, zp_in=0, zp_out=-1,
              x_mode="pm")

    # PAD
    pad_case(w, rng, "pad_1111", h=4, wd=5, c=3, pads=(1, 1, 1, 1), zp=-128)
    pad_case(w, rng, "pad_asym", h=3, wd=3, c=2, pads=(0, 2, 1, 0), zp=7)
    pad_case(w, rng, "pad_none", h=2, wd=3, c=4, pads=(0, 0, 0, 0), zp=0)

    # SOFTMAX: equal rows (ties), large spreads, elements below diff_min, several input scales
    for scale in (0.0625, 0.1, 0.25, 1.0, 1.0 / 256, 0.0123):
        softmax_case(w, rng, f"softmax_10_random_s{scale:g}", x=rand_i8(rng, 10), in_scale=scale)
    softmax_case(w, rng, "softmax_10_equal", x=np.full(10, 17), in_scale=0.1)
    softmax_case(w, rng, "softmax_2_equal", x=np.full(2, -128), in_scale=0.1)
    softmax_case(w, rng, "softmax_1", x=[5], in_scale=0.1)
    softmax_case(w, rng, "softmax_one_hot_spread", x=[127] + [-128] * 9, in_scale=0.05)
    softmax_case(w, rng, "softmax_spread_below_diff_min", x=[127, 100, 112, 111, -128, 0, 126, 113, 97, 98],
                 in_scale=1.0)
    softmax_case(w, rng, "softmax_beta_2", x=rand_i8(rng, 10), in_scale=0.1, beta=2.0)
    softmax_case(w, rng, "softmax_100_random", x=rand_i8(rng, 100), in_scale=0.05)
    softmax_case(w, rng, "softmax_255_equal", x=np.full(255, 3), in_scale=0.2)
    softmax_case(w, rng, "softmax_256_equal", x=np.full(256, 3), in_scale=0.2)
    softmax_case(w, rng, "softmax_511_equal", x=np.full(511, -5), in_scale=0.2)
    softmax_case(w, rng, "softmax_1000_narrow", x=rand_i8(rng, 1000, -10, 10), in_scale=0.3)
    # sum of exps >= 512 (exponent > 31): TFLM aborts (TFLITE_CHECK); the engine returns -128s
    softmax_case(w, rng, "softmax_600_equal_beyond_tflm", x=np.full(600, 0), in_scale=0.2)
    for i in range(8):  # rows with a big spread: a few near the max, the rest far below
        x = rand_i8(rng, 10, -128, 60)
        top = rng.choice(10, size=1 + i % 3, replace=False)
        x[top] = 127 - rng.integers(0, 12, top.size)
        softmax_case(w, rng, f"softmax_spread_{i}", x=x, in_scale=float(rng.uniform(0.02, 0.3)))
    for i in range(16):  # CIFAR-10-like logits
        softmax_case(w, rng, f"softmax_logits_{i}", x=rand_i8(rng, 10), in_scale=float(rng.uniform(0.01, 0.08)))
    # many small random rows: the low bits of the sum of exps and of the reciprocal only show in
    # the output when a value sits near a rounding boundary, so it takes many rows to see them
    for i in range(400):
        size = int(rng.integers(2, 41))
        lo = int(rng.integers(-128, 120))
        softmax_case(w, rng, f"softmax_rows_{i:03d}", x=rand_i8(rng, size, lo, 127),
                     in_scale=float(np.exp(rng.uniform(np.log(0.004), np.log(1.0)))))
    for i, (x, scale) in enumerate(sum_sensitive_softmax_rows(rng, 8)):
        softmax_case(w, rng, f"softmax_sum_rounding_{i}", x=x, in_scale=scale)


# --- primitive cases ---------------------------------------------------------------------------

def int32_edge(rng, n: int) -> np.ndarray:
    edges = np.array([0, 1, -1, 2, -2, INT32_MAX, INT32_MIN, INT32_MAX - 1, INT32_MIN + 1, 1 << 30, -(1 << 30),
                      (1 << 30) - 1, 1 << 15, -(1 << 15), 1 << 24, -(1 << 24)], np.int64)
    rand = rng.integers(INT32_MIN, INT32_MAX, n - edges.size, endpoint=True)
    small = rng.integers(-70000, 70000, n // 4)
    return np.concatenate([edges, rand[: rand.size - small.size], small])


def prim_cases(w: Writer, rng) -> None:
    n = 2048
    a = int32_edge(rng, n)
    b = np.concatenate([rng.permutation(int32_edge(rng, n))[: n - 4], [INT32_MIN, INT32_MIN, INT32_MAX, -1]])
    a[-4:] = [INT32_MIN, INT32_MAX, INT32_MIN, INT32_MIN]
    w.prim("srdhm", "KV_PRIM_SRDHM", [a, b], fp.saturating_rounding_doubling_high_mul(a, b))

    x = int32_edge(rng, n)
    e = rng.integers(0, 32, n)
    e[:32] = np.arange(32)
    w.prim("rdbpot", "KV_PRIM_RDBPOT", [x, e], fp.rounding_divide_by_pot(x, e))
    # ties: x = (2k + 1) * 2^(e-1), both signs
    e2 = rng.integers(1, 31, 512)
    k = rng.integers(-(1 << 10), 1 << 10, 512)
    x2 = np.clip((2 * k + 1) << (e2 - 1), INT32_MIN, INT32_MAX)
    w.prim("rdbpot_ties", "KV_PRIM_RDBPOT", [x2, e2], fp.rounding_divide_by_pot(x2, e2))

    xm = int32_edge(rng, n)
    mm = rng.integers(1 << 30, 1 << 31, n)
    mm[:4] = [1 << 30, INT32_MAX, 0, 1 << 30]
    sm = rng.integers(-31, 9, n)
    xm[n // 2:] = rng.integers(-(1 << 20), 1 << 20, n - n // 2)  # realistic accumulators
    w.prim("mbqm", "KV_PRIM_MBQM", [xm, mm, sm], fp.multiply_by_quantized_multiplier(xm, mm, sm))

    xs = int32_edge(rng, n)
    es = rng.integers(1, 32, n)
    xs[n // 2:] = rng.integers(-(1 << 26), 1 << 26, n - n // 2)
    # the saturation thresholds +-(2^(31-e) - 1) and one past them, for every exponent
    e_one = np.arange(1, 32, dtype=np.int64)
    thr = (np.int64(1) << (31 - e_one)) - 1
    x_edge = np.stack([thr, thr + 1, -thr, -thr - 1], axis=1).reshape(-1)
    e_edge = np.repeat(e_one, 4)
    xs = np.concatenate([xs, x_edge])
    es = np.concatenate([es, e_edge])
    w.prim("sat_shl", "KV_PRIM_SAT_SHL", [xs, es], K._sat_shl(xs, es))

    u = np.concatenate([[0, 1, 2, 3, INT32_MAX, INT32_MIN, -1], rng.integers(INT32_MIN, INT32_MAX, 249, endpoint=True),
                        [1 << i for i in range(31)], [(1 << i) - 1 for i in range(1, 31)]]).astype(np.int64)
    # the numpy CLZ takes uint32 values carried in int64
    w.prim("clz32", "KV_PRIM_CLZ", [u], K._count_leading_zeros_u32(u & 0xFFFFFFFF))

    ea = np.concatenate([[0, -1, -2, INT32_MIN, INT32_MIN + 1, -(1 << 24), -(1 << 24) - 1, -(1 << 26), -(31 << 26)],
                         -rng.integers(0, 1 << 31, 2039), -rng.integers(0, 1 << 27, 1024)])
    w.prim("exp_q5_26", "KV_PRIM_EXP", [ea], K._exp_on_negative_values(ea, 5))

    oa = np.concatenate([[0, 1, INT32_MAX, INT32_MAX - 1, 1 << 30], rng.integers(0, 1 << 31, 2043)])
    w.prim("one_over_one_plus_x", "KV_PRIM_RECIP", [oa], K._one_over_one_plus_x_for_x_in_0_1(oa))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-o", "--output", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=20240611)
    ap.add_argument("-v", "--verbose", action="store_true", help="print one line per vector")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    w = Writer()
    kernel_cases(w, rng)
    prim_cases(w, rng)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(w.header(args.seed))
    if args.verbose:
        print("\n".join(w.summary))
    print(f"{args.output}: {len(w.table)} kernel vectors, {len(w.table_prim)} primitive tables")
    return 0


if __name__ == "__main__":
    sys.exit(main())
