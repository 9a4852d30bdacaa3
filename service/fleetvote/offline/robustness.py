"""``fleetvote robustness``: the best single member, the fleet and the int8 baseline on corrupted
test images.

Six corruptions of the test split, each at one moderate severity: severity 3 of CIFAR-10-C
(Hendrycks & Dietterich, ICLR 2019), with the parameters of the script that made it,
``hendrycks/robustness: ImageNet-C/create_c/make_cifar_c.py``. The corruptions are pure numpy (and
Pillow for JPEG and the resizes) on uint8 batches (N, H, W, 3), seeded by a ``numpy.random.Generator``
or an int, so the corrupted copies are the same bytes on every run. Where the code departs from that
script it says so beside the number; what is left is rounding and border handling.

Every model's int8 outputs come from ``ensemble_eval.engine_outputs`` (the numpy engine, bit-exact
with the boards; cached by model sha256 and the corrupted images' fingerprint, so a rerun computes
nothing) and the fleet's label from ``fusion.fuse_batch``, the same rules as the service:

* **best member**: the ensemble member with the best validation accuracy on its card (ties: smaller
  MACC, then the id) -- chosen without looking at the test split;
* **fleet**: the members, strategy and weights of the ensemble file (``models/zoo/ensemble.json``);
* **baseline**: the zoo's model of role ``baseline`` (one board, ~7x the MACC of a member), unless
  ``--no-baseline``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from ..command import add_data, command_line
from ..errors import ConfigError
from ..fusion import STRATEGIES, fuse_batch
from . import pct as _pct
from .ensemble_eval import accuracy, engine_outputs, fingerprint, outputs_cache_dir, subset_indices

DEFAULT_SEED = 2019  # any fixed number (the paper's year); the noise is the only random corruption
DEFAULT_OUT = "runs/results/robustness.json"
CHUNK = 1000  # images corrupted at once
SOURCE = "CIFAR-10-C severity 3 (make_cifar_c.py, Hendrycks & Dietterich 2019)"

Rng = np.random.Generator | int | None


# ---- corruptions: uint8 (N, H, W, 3) -> uint8, same shape ------------------------------------

def _check(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected uint8 images of shape (N, H, W, 3), got {x.dtype} {x.shape}")
    return x


def _to_uint8(f: np.ndarray) -> np.ndarray:
    """[0, 1] floats -> uint8, rounded to the nearest level (make_cifar_c.py truncates with
    np.uint8, which darkens every corrupted image by half a level on average)."""
    return np.clip(np.rint(f * 255.0), 0, 255).astype(np.uint8)


def gaussian_noise(x: np.ndarray, rng: Rng = None, sigma: float = 0.08) -> np.ndarray:
    """Additive N(0, sigma) noise per pixel and channel, on the [0, 1] scale, then clipped.
    sigma 0.08 of full scale (20.4 levels) = CIFAR-10-C severity 3."""
    x = _check(x)
    g = np.random.default_rng(rng)
    return _to_uint8(np.clip(x / 255.0 + g.normal(0.0, sigma, size=x.shape), 0.0, 1.0))


def gaussian_kernel(sigma: float, truncate: float = 4.0) -> np.ndarray:
    """The sampled, normalised 1-D Gaussian of scipy.ndimage / skimage.filters.gaussian: radius
    int(truncate * sigma + 0.5), so sigma 0.7 gives 7 taps that sum to 1."""
    r = int(truncate * sigma + 0.5)
    t = np.arange(-r, r + 1, dtype=np.float64)
    k = np.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(x: np.ndarray, rng: Rng = None, sigma: float = 0.7) -> np.ndarray:
    """Separable Gaussian blur over rows then columns, each channel alone. sigma 0.7 px =
    CIFAR-10-C severity 3 (skimage.filters.gaussian there). Border: reflect about the edge
    (numpy 'symmetric', scipy 'reflect': ...c b a | a b c...); skimage's default there was
    'nearest' -- with 3 taps per side, the two differ only in the outer 3 pixels."""
    x = _check(x)
    k = gaussian_kernel(sigma)
    r = len(k) // 2
    f = x / 255.0
    for axis in (1, 2):
        pad = [(0, 0)] * 4
        pad[axis] = (r, r)
        p = np.pad(f, pad, mode="symmetric")
        n = f.shape[axis]
        f = sum(w * np.take(p, np.arange(i, i + n), axis=axis) for i, w in enumerate(k))
    return _to_uint8(np.clip(f, 0.0, 1.0))


def brightness(x: np.ndarray, rng: Rng = None, delta: float = 0.15) -> np.ndarray:
    """V of HSV raised by ``delta`` (clipped at 1), hue and saturation kept. delta 0.15 =
    CIFAR-10-C severity 3 (+0.3 would be its severity 5).

    Without an HSV round trip: with H and S fixed, R, G and B are each V times a factor of H and
    S only, so the new pixel is the old one times V'/V, V = max(R, G, B), V' = min(V + delta, 1).
    A black pixel (V = 0, S = 0 by convention) becomes the grey V' = delta. The same result as
    skimage's rgb2hsv/hsv2rgb up to float rounding."""
    x = _check(x)
    f = x / 255.0
    v = f.max(axis=-1, keepdims=True)
    v2 = np.minimum(v + delta, 1.0)
    out = np.where(v > 0, f * (v2 / np.where(v > 0, v, 1.0)), v2)
    return _to_uint8(np.clip(out, 0.0, 1.0))


def contrast(x: np.ndarray, rng: Rng = None, factor: float = 0.4) -> np.ndarray:
    """Each image's channels pulled towards their own mean: (x - m) * factor + m, m the mean of
    that channel of that image (axis (0, 1) of an HWC image in make_cifar_c.py). Factor 0.4 =
    CIFAR-10-C severity 3: each channel's standard deviation shrinks to 0.4 of its value. Stays
    within [0, 1] (a convex mix of x and m), so the clip never bites."""
    x = _check(x)
    f = x / 255.0
    m = f.mean(axis=(1, 2), keepdims=True)
    return _to_uint8(np.clip((f - m) * factor + m, 0.0, 1.0))


def jpeg(x: np.ndarray, rng: Rng = None, quality: int = 58) -> np.ndarray:
    """Re-compression with Pillow's JPEG encoder at ``quality``, its other settings default
    (4:2:0 chroma subsampling), as make_cifar_c.py does. Quality 58 = CIFAR-10-C severity 3. On
    top of the JPEG artefacts the CIFAR-10 (JPEG copy) images already carry."""
    from PIL import Image

    x = _check(x)
    out = np.empty_like(x)
    for i, img in enumerate(x):
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=quality)
        buf.seek(0)
        with Image.open(buf) as im:
            out[i] = np.asarray(im.convert("RGB"))
    return out


def pixelate(x: np.ndarray, rng: Rng = None, scale: float = 0.85) -> np.ndarray:
    """Box-filter down to int(size * scale) pixels a side, then back up with a box filter (Pillow
    BOX both ways, as make_cifar_c.py). Scale 0.85 = CIFAR-10-C severity 3: 32 -> 27 -> 32. Up-
    sampling by 32/27 with BOX copies one source pixel per output pixel (nearest neighbour), so 5
    of the 31 neighbouring column pairs, and of the row pairs, are equal."""
    from PIL import Image

    x = _check(x)
    h, w = x.shape[1:3]
    small = (int(w * scale), int(h * scale))
    out = np.empty_like(x)
    for i, img in enumerate(x):
        out[i] = np.asarray(Image.fromarray(img).resize(small, Image.BOX).resize((w, h), Image.BOX))
    return out


@dataclass(frozen=True)
class Corruption:
    name: str
    fn: Callable[..., np.ndarray]
    parameter: str


CORRUPTIONS: dict[str, Corruption] = {c.name: c for c in (
    Corruption("gaussian_noise", gaussian_noise, "sigma 0.08 of full scale"),
    Corruption("gaussian_blur", gaussian_blur, "sigma 0.7 px"),
    Corruption("brightness", brightness, "V of HSV + 0.15"),
    Corruption("contrast", contrast, "factor 0.4 around each image's channel means"),
    Corruption("jpeg", jpeg, "quality 58, Pillow encoder"),
    Corruption("pixelate", pixelate, "box 32 -> 27 -> 32 px"),
)}


def corruption_rng(seed: int, name: str) -> np.random.Generator:
    """One generator per (seed, corruption), independent of the order corruptions are run in."""
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def corrupt(name: str, x: np.ndarray, seed: int = DEFAULT_SEED, chunk: int = CHUNK) -> np.ndarray:
    """The corrupted copy of a whole split, ``chunk`` images at a time from one generator (the
    float64 intermediates of 10,000 images would take ~1 GB); the same (seed, chunk), the same bytes."""
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; use one of {', '.join(CORRUPTIONS)}")
    fn, g = CORRUPTIONS[name].fn, corruption_rng(seed, name)
    x = _check(x)
    out = np.empty_like(x)
    for s in range(0, len(x), chunk):
        out[s : s + chunk] = fn(x[s : s + chunk], g)
    return out


# ---- the measurement -------------------------------------------------------------------------

def _best_member(ens, zoo: Path, data: str | None, cache: Path | None, progress: bool) -> tuple[str, float]:
    """The member with the best validation accuracy (card; the engine on "val" when a card lacks
    it). Ties: smaller MACC, then the id."""
    from ..data import load_split

    val = None
    scored = []
    for m in ens.members:
        va = m.card.get("val_accuracy")
        if va is None:
            if val is None:
                ds = load_split("val", data)
                val = (ds.x, ds.y, fingerprint(ds.x, ds.y))
            out, _ = engine_outputs(zoo / m.id / "model.tflite", "val", val[0], val[2], "all", cache, progress)
            va = accuracy(np.argmax(out, axis=1), val[1])
        scored.append((-float(va), int(m.card.get("macc") or 0), m.id))
    va, _, ident = min(scored)
    return ident, -va


def _baseline_id(zoo: Path) -> str | None:
    from .cards import load_cards

    ids = sorted(c["id"] for c in load_cards(zoo)
                 if c.get("role") == "baseline" and (zoo / c["id"] / "model.tflite").exists())
    return ids[0] if ids else None


def run(zoo: Path, ensemble: Path, limit: int | None = None, data: str | None = None, seed: int = DEFAULT_SEED,
        baseline: bool = True, cache: Path | None = None, progress: bool = True) -> dict:
    from ..data import load_split
    from ..ensemble import load_ensemble

    zoo, ensemble = Path(zoo), Path(ensemble)
    ens = load_ensemble(ensemble, zoo)
    ids = [m.id for m in ens.members]
    best, best_val = _best_member(ens, zoo, data, cache, progress)
    base = _baseline_id(zoo) if baseline else None
    if baseline and base is None:
        raise ConfigError(f"{zoo}: no model of role 'baseline' (use --no-baseline)")
    models = ids + ([base] if base and base not in ids else [])

    ds = load_split("test", data)
    idx = subset_indices(len(ds), limit)
    x, y = ds.x[idx], ds.y[idx]
    tag = "all" if len(idx) == len(ds) else f"n{len(idx)}"
    conditions = ["clean", *CORRUPTIONS]
    rows = []
    hits = computed = 0
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(conditions, desc="robustness", unit="condition", disable=None)
    for name in conditions:
        if bar is not None:
            bar.set_postfix_str(name)
        xc = x if name == "clean" else corrupt(name, x, seed)
        # "test" for the clean copy: the same cache entry as fleetvote ensemble-eval
        split = "test" if name == "clean" else f"test-{name}"
        fp = fingerprint(xc, y)
        outs = {}
        for i in models:
            outs[i], hit = engine_outputs(zoo / i / "model.tflite", split, xc, fp, tag, cache, progress)
            hits += hit
            computed += not hit
        member_acc = {i: accuracy(np.argmax(outs[i], axis=1), y) for i in models}
        stacked = np.stack([outs[i] for i in ids])
        fleet_by = {s: accuracy(fuse_batch(stacked, s, ens.weights), y) for s in STRATEGIES}
        fleet = fleet_by[ens.strategy]
        rows.append({
            "condition": name,
            "parameter": None if name == "clean" else CORRUPTIONS[name].parameter,
            "best_member": round(member_acc[best], 4),
            "fleet": round(fleet, 4),
            "baseline": round(member_acc[base], 4) if base else None,
            "fleet_minus_best_member": round(fleet - member_acc[best], 4),
            "members": {i: round(member_acc[i], 4) for i in ids},
            "fleet_by_strategy": {s: round(v, 4) for s, v in fleet_by.items()},
        })
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    corrupted = rows[1:]
    mean = {k: round(float(np.mean([r[k] for r in corrupted])), 4) if corrupted and corrupted[0][k] is not None
            else None for k in ("best_member", "fleet", "baseline", "fleet_minus_best_member")}
    return {
        "zoo": str(zoo), "ensemble": str(ensemble), "members": ids, "strategy": ens.strategy,
        "weights": {m.id: m.weight for m in ens.members},
        "best_member": {"id": best, "val_accuracy": round(best_val, 4),
                        "rule": "ensemble member with the best validation accuracy (card); ties: smaller MACC, id"},
        "baseline": base, "seed": seed, "limit": limit, "images": int(len(y)),
        "dataset": "CIFAR-10 (JPEG copy)" if "jpeg" in str(data or os.environ.get("CIFAR10_PATH", ""))
        else "CIFAR-10",
        "computed_with": "numpy engine (bit-exact with TFLite Micro reference kernels and the boards); "
                         "fusion.fuse_batch",
        "corruptions": {n: {"parameter": c.parameter, "source": SOURCE} for n, c in CORRUPTIONS.items()},
        "cache": {"dir": str(cache or outputs_cache_dir()), "hits": hits, "computed": computed},
        "rows": rows,
        "mean_corrupted": mean,
    }


# ---- the report ------------------------------------------------------------------------------

def _pp(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:+.2f} pp"


def format_report(rep: dict) -> str:
    b = rep["best_member"]
    lines = [f"{rep['images']:,} test images of {rep['dataset']}, seed {rep['seed']}; {rep['computed_with']}; "
             f"cache: {rep['cache']['hits']} hits, {rep['cache']['computed']} computed",
             f"best member: {b['id']} (val {_pct(b['val_accuracy'])}); fleet: {', '.join(rep['members'])}, "
             f"{rep['strategy']} vote; baseline: {rep['baseline'] or 'not run'}",
             f"corruptions: {SOURCE}", "",
             f"| condition | best member `{b['id']}` | fleet ({len(rep['members'])}, {rep['strategy']}) | "
             f"int8 baseline{' `' + rep['baseline'] + '`' if rep['baseline'] else ''} | fleet - best member |",
             "|---|---|---|---|---|"]
    for r in rep["rows"]:
        name = r["condition"] + (f" ({r['parameter']})" if r["parameter"] else "")
        lines.append(f"| {name} | {_pct(r['best_member'])} | {_pct(r['fleet'])} | {_pct(r['baseline'])} | "
                     f"{_pp(r['fleet_minus_best_member'])} |")
    m = rep["mean_corrupted"]
    lines.append(f"| mean of the {len(rep['rows']) - 1} corruptions | {_pct(m['best_member'])} | {_pct(m['fleet'])} | "
                 f"{_pct(m['baseline'])} | {_pp(m['fleet_minus_best_member'])} |")
    return "\n".join(lines)


def plot(rep: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = rep["rows"]
    cols = [("best_member", f"best member {rep['best_member']['id']}"),
            ("fleet", f"fleet ({len(rep['members'])}, {rep['strategy']})")]
    if rep["baseline"]:
        cols.append(("baseline", f"int8 baseline {rep['baseline']}"))
    xs = np.arange(len(rows))
    width = 0.8 / len(cols)
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for j, (key, label) in enumerate(cols):
        ax.bar(xs + (j - (len(cols) - 1) / 2) * width, [r[key] for r in rows], width, label=label)
    low = min(r[k] for r in rows for k, _ in cols)
    ax.set_ylim(max(0.0, np.floor(low * 10) / 10 - 0.1), 1.0)
    ax.set_xticks(xs, [r["condition"].replace("_", " ") for r in rows], rotation=20)
    ax.set_ylabel(f"test accuracy ({rep['images']:,} images)")
    ax.set_title(f"fleetvote: accuracy on corrupted images ({SOURCE.split(' (')[0]}), seed {rep['seed']}")
    ax.legend(fontsize=8, loc="lower left")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _cmd(a: argparse.Namespace) -> int:
    rep = run(Path(a.zoo), Path(a.ensemble), limit=a.limit, data=a.data, seed=a.seed, baseline=not a.no_baseline,
              cache=Path(a.cache_dir) if a.cache_dir else None, progress=not a.no_progress)
    rep["command"] = command_line()
    rep["date"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    png = out.with_suffix(".png")
    try:
        plot(rep, png)
        rep["png"] = str(png)
    except ImportError:
        print("matplotlib is not installed: no plot", file=sys.stderr)
    out.write_text(json.dumps(rep, indent=1) + "\n")
    print(format_report(rep))
    print(f"\nreport: {out}" + (f"; plot: {png}" if rep.get("png") else ""))
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser(
        "robustness", help="accuracy of the best member, the fleet and the baseline on corrupted test images",
        description="Makes seeded corrupted copies of the test split (Gaussian noise, Gaussian blur, brightness, "
                    "contrast, JPEG re-compression, pixelation; each at CIFAR-10-C severity 3) and reports, for the "
                    "clean and each corrupted copy, the accuracy of the ensemble member with the best validation "
                    "accuracy, of the fleet (members, strategy and weights of the ensemble file) and of the int8 "
                    "baseline, side by side. Outputs come from the numpy engine, cached like ensemble-eval's; the "
                    "full split takes about 10-20 minutes on 2 busy cores, a rerun seconds.",
        epilog="examples:\n"
               "  fleetvote robustness                               # all 10,000 test images\n"
               "  fleetvote robustness --limit 500 --no-baseline     # a quick look\n"
               "  fleetvote robustness --ensemble runs/results/ensemble-best.json --out runs/rob.json",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--zoo", default="models/zoo", help="model zoo (default: %(default)s)")
    p.add_argument("--ensemble", default="models/zoo/ensemble.json",
                   help="ensemble file: the fleet's members, strategy and weights (default: %(default)s)")
    p.add_argument("--limit", type=int, help="an evenly spread subset of N test images")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED,
                   help="seed of the corruptions' random numbers (default: %(default)s)")
    p.add_argument("--out", default=DEFAULT_OUT,
                   help="JSON report; the bar plot goes beside it as .png (default: %(default)s)")
    p.add_argument("--no-baseline", action="store_true",
                   help="skip the int8 baseline (one 33 M-MACC model, ~7x a member: a third of the run time)")
    p.add_argument("--cache-dir", help="engine outputs cache (default $FLEETVOTE_CACHE/outputs)")
    p.add_argument("--no-progress", action="store_true")
    add_data(p)
    p.set_defaults(func=_cmd)
