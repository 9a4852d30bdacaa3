"""``fleetvote robustness``: each corruption is seeded, keeps the batch's form and has the strength
it claims; the command reports every condition for the best member, the fleet and the baseline."""

from __future__ import annotations

import colorsys
import json

import numpy as np
import pytest

from conftest import ZOO
from fleetvote.offline import robustness as rb


def smooth_images(n: int = 32, seed: int = 0) -> np.ndarray:
    """Photo-like uint8 images: a few low-frequency waves per channel plus a little grain."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 2 * np.pi, 32)
    yy, xx = np.meshgrid(t, t, indexing="ij")
    f = np.zeros((n, 32, 32, 3))
    for _ in range(3):
        a, b, ph = rng.uniform(0.3, 2.0, (3, n, 1, 1, 3))
        f += np.sin(a * yy[None, ..., None] + b * xx[None, ..., None] + 3 * ph)
    f = 128 + 30 * f + rng.normal(0, 3, f.shape)
    return np.clip(np.rint(f), 0, 255).astype(np.uint8)


def noise_images(n: int = 16, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


@pytest.mark.parametrize("name", list(rb.CORRUPTIONS))
def test_each_corruption_is_deterministic_for_a_seed_and_keeps_dtype_and_shape(name):
    x = smooth_images()
    fn = rb.CORRUPTIONS[name].fn
    a = fn(x, np.random.default_rng(7))
    assert a.dtype == np.uint8 and a.shape == x.shape
    assert np.array_equal(a, fn(x, np.random.default_rng(7)))
    assert np.array_equal(a, fn(x, 7))  # an int seed is the same as its generator
    assert np.array_equal(rb.corrupt(name, x, seed=5), rb.corrupt(name, x, seed=5))
    assert np.array_equal(x, smooth_images())  # the input is left alone


@pytest.mark.parametrize("name", list(rb.CORRUPTIONS))
def test_each_corruption_changes_every_image(name):
    x = smooth_images()
    diff = np.abs(rb.corrupt(name, x).astype(int) - x).mean(axis=(1, 2, 3))
    assert diff.min() > 0.3, f"{name} leaves an image (almost) as it was: {diff.min():.2f} levels"


def test_corruptions_reject_anything_but_uint8_rgb_batches():
    with pytest.raises(ValueError):
        rb.gaussian_noise(np.zeros((2, 32, 32, 3), np.float32))
    with pytest.raises(ValueError):
        rb.contrast(np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(ValueError):
        rb.corrupt("fog", smooth_images(2))


def test_noise_has_its_sigma_and_no_bias_and_depends_on_the_seed():
    grey = np.full((64, 32, 32, 3), 128, np.uint8)  # mid-grey: the clip at 0 and 1 is 6 sigma away
    d = (rb.gaussian_noise(grey, 0).astype(float) - 128) / 255
    assert d.std() == pytest.approx(0.08, abs=0.002)
    assert abs(d.mean()) < 0.002
    assert not np.array_equal(rb.corrupt("gaussian_noise", grey, seed=1), rb.corrupt("gaussian_noise", grey, seed=2))


def test_chunked_corruption_is_the_same_for_every_run_of_the_split():
    x = smooth_images(10)
    assert np.array_equal(rb.corrupt("gaussian_noise", x, seed=3, chunk=4),
                          rb.corrupt("gaussian_noise", x, seed=3, chunk=4))


def test_contrast_shrinks_each_channels_spread_by_its_factor_around_its_mean():
    x = smooth_images()
    c = rb.contrast(x).astype(float)
    ratio = c.std(axis=(1, 2)) / x.astype(float).std(axis=(1, 2))
    assert ratio == pytest.approx(np.full_like(ratio, 0.4), abs=0.01)
    assert np.abs(c.mean(axis=(1, 2)) - x.mean(axis=(1, 2))).max() < 0.5


def test_blur_has_its_sigma_and_removes_high_frequencies():
    impulse = np.zeros((1, 15, 15, 3), np.uint8)
    impulse[0, 7, 7] = 255
    b = rb.gaussian_blur(impulse)[0, :, :, 0].astype(float)
    row = b.sum(axis=0)
    t = np.arange(15) - 7
    assert (row * t**2).sum() / row.sum() == pytest.approx(0.7**2, abs=0.05)  # variance = sigma^2
    assert b.sum() == pytest.approx(255, abs=6)  # the kernel sums to 1 (up to rounding per pixel)
    flat = np.full((2, 32, 32, 3), 77, np.uint8)
    assert np.array_equal(rb.gaussian_blur(flat), flat)  # reflect padding: no dark border

    def hf(img):
        f = img.astype(float)
        return (np.diff(f, axis=1) ** 2).mean() + (np.diff(f, axis=2) ** 2).mean()

    x = noise_images()
    assert hf(rb.gaussian_blur(x)) < 0.25 * hf(x)


def test_brightness_adds_its_delta_to_hsv_value_and_keeps_hue_and_saturation():
    x = noise_images(4)
    y = rb.brightness(x)
    for p, q in zip(x.reshape(-1, 3)[::7], y.reshape(-1, 3)[::7]):
        h, s, v = colorsys.rgb_to_hsv(*(p / 255))
        want = np.rint(np.array(colorsys.hsv_to_rgb(h, s, min(v + 0.15, 1.0))) * 255)
        assert np.abs(want - q).max() <= 1, (p, q, want)
    black = np.zeros((1, 2, 2, 3), np.uint8)
    assert (rb.brightness(black) == round(0.15 * 255)).all()  # black turns to the grey V = 0.15


def test_jpeg_recompression_differs_but_stays_close():
    x = smooth_images()
    y = rb.jpeg(x)
    mse = ((y.astype(float) - x) ** 2).mean(axis=(1, 2, 3))
    assert (mse > 0).all()
    assert (10 * np.log10(255**2 / mse)).min() > 25  # PSNR: artefacts, not a different picture


def test_pixelate_repeats_five_of_the_columns_and_rows():
    x = noise_images()
    y = rb.pixelate(x)
    for img in y:
        cols = sum(np.array_equal(img[:, j], img[:, j + 1]) for j in range(31))
        rows = sum(np.array_equal(img[j], img[j + 1]) for j in range(31))
        assert cols == rows == 32 - int(32 * 0.85)  # 32 -> 27 -> 32: 5 duplicated lines each way


# ---- the command, on 50 real test images ---------------------------------------------------

@pytest.fixture(scope="module")
def report(tmp_path_factory, cifar_path):
    from fleetvote.cli import main

    d = tmp_path_factory.mktemp("robustness")
    args = ["robustness", "--limit", "50", "--data", cifar_path, "--cache-dir", str(d / "cache"), "--no-progress"]
    assert main([*args, "--out", str(d / "first.json")]) == 0
    assert main([*args, "--out", str(d / "second.json")]) == 0
    return (json.loads((d / "first.json").read_text()), json.loads((d / "second.json").read_text()), d)


def test_robustness_reports_every_condition_for_best_member_fleet_and_baseline(report):
    rep, _, d = report
    assert [r["condition"] for r in rep["rows"]] == ["clean", *rb.CORRUPTIONS]
    assert rep["images"] == 50 and rep["baseline"] == "baseline"
    for r in rep["rows"]:
        for k in ("best_member", "fleet", "baseline"):
            assert 0.0 <= r[k] <= 1.0
        assert r["fleet_minus_best_member"] == pytest.approx(r["fleet"] - r["best_member"], abs=1e-4)
        assert r["fleet"] == r["fleet_by_strategy"][rep["strategy"]]
        assert r["best_member"] == r["members"][rep["best_member"]["id"]]
    assert (d / "first.png").stat().st_size > 1000


def test_best_member_is_the_fleet_member_with_the_best_validation_accuracy(report):
    from fleetvote.offline.cards import load_cards

    rep = report[0]
    ens = json.loads((ZOO / "ensemble.json").read_text())
    assert rep["members"] == [m["id"] for m in ens["members"]] and rep["strategy"] == ens["strategy"]
    val = {c["id"]: c["val_accuracy"] for c in load_cards(ZOO) if c["id"] in rep["members"]}
    assert rep["best_member"]["val_accuracy"] == max(val.values())
    assert val[rep["best_member"]["id"]] == max(val.values())


def test_a_second_run_with_the_same_seed_makes_the_same_images_and_numbers(report):
    first, second, _ = report
    n = len(first["rows"]) * (len(first["members"]) + 1)
    assert first["cache"]["computed"] == n and first["cache"]["hits"] == 0
    # every output came from the cache: the corrupted copies had the same fingerprints
    assert second["cache"] == {**first["cache"], "hits": n, "computed": 0}
    assert second["rows"] == first["rows"]


def test_robustness_help_names_its_options(capsys):
    from fleetvote.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["robustness", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for opt in ("--limit", "--zoo", "--ensemble", "--seed", "--out", "--data", "--no-baseline"):
        assert opt in out

