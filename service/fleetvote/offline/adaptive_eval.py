"""Board evaluations per image of the adaptive modes (``adaptive.py``), and the cascade's search.

Run by ``fleetvote ensemble-eval`` on the members of the ensemble it writes, from the engine
outputs it has already computed (bit-exact with the boards), so it costs seconds:

* ``all``: every member, ``N`` evaluations per image;
* ``early``: the members answer one at a time, fastest first (fewest MACC: on one kind of board
  the planned latency grows with the MACC), and an image costs the answers the vote needed before
  it was settled (``adaptive.settled_batch``). This is the saving a saturated fleet can bank (the
  queued work of the members not waited for is cancelled); on an idle fleet every member is
  already computing when the vote settles, and early saves latency rather than evaluations. Its
  labels are always ``all``'s;
* ``cascade``: stage 1 costs its members; an image that escalates costs the others too.

The cascade's operating point is searched on the validation split: every proper subset of the
members as stage 1, with and without agreement required, and every threshold at the
percentiles (0, 1, ..., 100) of stage 1's confidence on validation (plus 0 and 1, "always" and
"never"). The point kept has the fewest mean evaluations among those whose validation accuracy is
at most ``tolerance`` below ``all``'s; ties: the higher validation accuracy, the smaller stage 1,
agreement required, the names. The test split only reports: the kept point, and the curve of its
stage 1 over thresholds.

**Alternatives.** With one board per member, a fixed stage 1 gets every image: its boards bound
the fleet's rate at saturation as all's slowest member does, whatever the evaluations saved. So
the search keeps a set of stage 1s to use in turn (``choose_set``): each stage-1 subset at its
own cheapest point within the tolerance; of those costing at most half of all's evaluations,
the set that spreads the images most evenly over the members. The cheapest of the set is the
ensemble file's ``cascade``, the others its ``cascade_alternatives``; the fleet asks, per image,
the least loaded of them. The report gives, for the kept
point alone and for the set used in turn, the busiest member's share of the images: the fleet's
rate at saturation with one board per member is at most all's divided by it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from ..adaptive import settled_batch, stops_batch
from ..fusion import fuse_batch, lookup, probabilities as probs_of

# the accuracy the cascade may lose against all on validation (a fraction): half of the issue's
# 0.2-point target on test, the other half left for the difference between the splits
TOLERANCE = 0.001
PERCENTILES = np.linspace(0, 100, 101)


def early_evaluations(outputs: np.ndarray, order: list[int], strategy: str, weights=None
                      ) -> tuple[np.ndarray, np.ndarray]:
    """outputs (members, images, 10), members answering in ``order`` -> (labels, evaluations per
    image): the settled label, and how many answers it took."""
    m, n, _ = outputs.shape
    labels = np.full(n, -1)
    evals = np.full(n, m)
    known = np.zeros(m, bool)
    for j, k in enumerate(order, start=1):
        known[k] = True
        open_ = labels < 0
        if not open_.any():
            break
        got = settled_batch(outputs[:, open_], known, strategy, weights)
        idx = np.flatnonzero(open_)[got >= 0]
        labels[idx] = got[got >= 0]
        evals[idx] = j
    return labels, evals


@dataclass(frozen=True)
class Point:
    """One cascade operating point, scored on one split."""

    stage1: tuple[int, ...]  # member indices
    agree: bool
    threshold: float
    accuracy: float
    evaluations: float  # mean board evaluations per image
    stage1_share: float  # images answered by stage 1


def cascade_labels(outputs: np.ndarray, full: np.ndarray, stage1: tuple[int, ...], strategy: str, weights,
                   threshold: float, agree: bool) -> tuple[np.ndarray, np.ndarray]:
    """(labels, evaluations per image) of one cascade over a split; ``full`` is all's labels."""
    w = None if weights is None else [weights[k] for k in stage1]
    stops, first = stops_batch(outputs[list(stage1)], strategy, threshold, agree, w)
    m = outputs.shape[0]
    return np.where(stops, first, full), np.where(stops, len(stage1), m)


def _confidence(outputs: np.ndarray, stage1, strategy, weights) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stage 1's labels, confidence and agreement per image (what ``stops_batch`` thresholds)."""
    w = np.ones(len(stage1)) if weights is None or not lookup(strategy).uses_weights else \
        np.asarray([weights[k] for k in stage1], np.float64)
    p = probs_of(outputs[list(stage1)])
    labels = lookup(strategy).rule(p, w)[1]
    conf = np.take_along_axis(p, labels[None, :, None], axis=2)[:, :, 0].mean(axis=0)
    agree = (np.argmax(p, axis=2) == labels[None, :]).all(axis=0)
    return labels, conf, agree


def search(outputs: np.ndarray, y: np.ndarray, strategy: str, weights=None) -> list[Point]:
    """Every operating point of the grid (module docstring) on one split."""
    m = outputs.shape[0]
    full = fuse_batch(outputs, strategy, weights)
    points = []
    for size in range(1, m):
        for stage1 in itertools.combinations(range(m), size):
            labels, conf, agree = _confidence(outputs, stage1, strategy, weights)
            thresholds = np.unique(np.concatenate([np.percentile(conf, PERCENTILES), [0.0, 1.0]]))
            for need_agree in (True, False):
                gate = agree if need_agree else np.ones_like(agree)
                for t in thresholds:
                    stops = gate & (conf >= t)
                    acc = float(np.mean(np.where(stops, labels, full) == y))
                    share = float(stops.mean())
                    points.append(Point(stage1, need_agree, float(t), acc, size + (m - size) * (1 - share), share))
    return points


def _rank(p: Point) -> tuple:
    return (round(p.evaluations, 9), -p.accuracy, len(p.stage1), not p.agree, p.stage1)


def choose(points: list[Point], all_accuracy: float, tolerance: float = TOLERANCE) -> Point:
    """The fewest evaluations within ``tolerance`` of all's accuracy (ties: module docstring)."""
    ok = [p for p in points if p.accuracy >= all_accuracy - tolerance - 1e-12]
    return min(ok, key=_rank)


def choose_set(points: list[Point], all_accuracy: float, members: int, tolerance: float = TOLERANCE,
               budget: float = 0.5, candidates: int = 12) -> list[Point]:
    """The stage 1s to use in turn (module docstring): each stage-1 subset at its own cheapest
    point within ``tolerance``; of those costing at most ``budget`` of all's evaluations (the
    ``candidates`` cheapest), the set whose busiest member has the smallest share of the images
    (ties: fewer mean evaluations, fewer stage 1s); cheapest first. Only the overall cheapest
    point when none is within the budget."""
    best: dict[tuple[int, ...], Point] = {}
    for p in points:
        if p.accuracy >= all_accuracy - tolerance - 1e-12 and (p.stage1 not in best or _rank(p) < _rank(best[p.stage1])):
            best[p.stage1] = p
    ranked = sorted(best.values(), key=_rank)
    pool = [p for p in ranked if p.evaluations <= budget * members][:candidates]
    if not pool:
        return ranked[:1]

    def cost(ps) -> tuple:
        return (round(busiest_share([p.stage1 for p in ps], [p.stage1_share for p in ps], members), 9),
                round(float(np.mean([p.evaluations for p in ps])), 9), len(ps))

    sets = (c for r in range(1, members + 1) for c in itertools.combinations(pool, r))
    return sorted(min(sets, key=cost), key=_rank)


def busiest_share(stage1s: list[tuple[int, ...]], stage1_shares: list[float], members: int) -> float:
    """The busiest member's share of the images when the stage 1s are used in turn (equally):
    a member is asked for an image when it is in its stage 1, or when stage 1 did not stand."""
    load = np.zeros(members)
    for s1, share in zip(stage1s, stage1_shares):
        for k in range(members):
            load[k] += 1.0 if k in s1 else 1.0 - share
    return float(load.max() / len(stage1s))


def report(val: np.ndarray, test: np.ndarray, y_val: np.ndarray, y_test: np.ndarray, ids: list[str],
           strategy: str, weights: list[float], macc: dict[str, int], tolerance: float = TOLERANCE) -> dict:
    """The adaptive section of ensemble-eval's report: outputs (members, images, 10) of the
    ensemble's members on both splits -> the chosen cascade, and accuracy against mean board
    evaluations on test for all, early and the cascade's thresholds."""
    m = len(ids)
    w = list(weights)
    full = {s: fuse_batch(o, strategy, w) for s, o in (("val", val), ("test", test))}
    acc_all = {s: float(np.mean(full[s] == y)) for s, y in (("val", y_val), ("test", y_test))}
    order = sorted(range(m), key=lambda k: (macc.get(ids[k], 0), k))
    early_labels, early_evals = early_evaluations(test, order, strategy, w)
    assert np.array_equal(early_labels, full["test"]), "an early label differs from all's"
    points = search(val, y_val, strategy, w)
    kept = choose_set(points, acc_all["val"], m, tolerance)
    chosen = kept[0]
    labels, evals = cascade_labels(test, full["test"], chosen.stage1, strategy, w, chosen.threshold, chosen.agree)
    alternatives = []
    for p in kept:
        lab, ev = cascade_labels(test, full["test"], p.stage1, strategy, w, p.threshold, p.agree)
        alternatives.append({"stage1": [ids[k] for k in p.stage1], "agree": p.agree, "threshold": p.threshold,
                             "val": round(p.accuracy, 4), "val_evaluations": round(p.evaluations, 4),
                             "test": round(float(np.mean(lab == y_test)), 4), "evaluations": round(float(ev.mean()), 4),
                             "stage1_share": round(float(np.mean(ev == len(p.stage1))), 4)})
    one = busiest_share([chosen.stage1], [alternatives[0]["stage1_share"]], m)
    turn = busiest_share([p.stage1 for p in kept], [a["stage1_share"] for a in alternatives], m)
    _, conf, _ = _confidence(val, chosen.stage1, strategy, w)
    curve = []
    for t in np.unique(np.concatenate([np.percentile(conf, np.linspace(0, 100, 21)), [chosen.threshold]])):
        lab, ev = cascade_labels(test, full["test"], chosen.stage1, strategy, w, float(t), chosen.agree)
        curve.append({"threshold": round(float(t), 6), "accuracy": round(float(np.mean(lab == y_test)), 4),
                      "evaluations": round(float(ev.mean()), 4)})
    return {
        "members": ids, "strategy": strategy, "tolerance": tolerance,
        "early_order": [ids[k] for k in order],
        "all": {"val": round(acc_all["val"], 4), "test": round(acc_all["test"], 4), "evaluations": m},
        "early": {"test": round(float(np.mean(early_labels == y_test)), 4),
                  "evaluations": round(float(early_evals.mean()), 4),
                  "evaluations_histogram": np.bincount(early_evals, minlength=m + 1)[1:].tolist()},
        "cascade": {"stage1": [ids[k] for k in chosen.stage1], "agree": chosen.agree,
                    "threshold": chosen.threshold, "val": round(chosen.accuracy, 4),
                    "val_evaluations": round(chosen.evaluations, 4),
                    "test": round(float(np.mean(labels == y_test)), 4), "evaluations": round(float(evals.mean()), 4),
                    "stage1_share": round(float(np.mean(evals == len(chosen.stage1))), 4), "curve": curve,
                    "busiest_share": round(one, 4)},
        # the kept point first, then its alternatives; used in turn (test figures: the mean)
        "rotation": {"cascades": alternatives, "busiest_share": round(turn, 4),
                     "test": round(float(np.mean([a["test"] for a in alternatives])), 4),
                     "evaluations": round(float(np.mean([a["evaluations"] for a in alternatives])), 4)},
    }


def cascade_section(adaptive: dict) -> dict:
    """The ensemble file's ``cascade``: the chosen operating point (the threshold unrounded: JSON
    keeps a float exactly, and a rounded one could let through an image the search did not)."""
    c = adaptive["cascade"]
    return {"stage1": c["stage1"], "threshold": c["threshold"], "agree": c["agree"]}


def alternatives_section(adaptive: dict) -> list[dict]:
    """The ensemble file's ``cascade_alternatives``: the rotation's other stage-1 choices."""
    rot = adaptive.get("rotation", {}).get("cascades", [])[1:]
    return [{"stage1": c["stage1"], "threshold": c["threshold"], "agree": c["agree"]} for c in rot]


def format_table(a: dict) -> str:
    """Accuracy against mean board evaluations on test, as a markdown table."""
    m = a["all"]["evaluations"]
    c = a["cascade"]
    rows = [("all", "every member", a["all"]["test"], m),
            ("early", f"members answering fastest first ({', '.join(a['early_order'])})", a["early"]["test"],
             a["early"]["evaluations"]),
            ("cascade (kept)", f"stage 1 {', '.join(c['stage1'])}, threshold {c['threshold']:.4f}"
                               f"{', agreement' if c['agree'] else ''}; stage 1 answers {c['stage1_share'] * 100:.1f} %",
             c["test"], c["evaluations"])]
    rot = a.get("rotation")
    if rot and len(rot["cascades"]) > 1:
        rows.append((f"cascade, {len(rot['cascades'])} stage 1s in turn",
                     "; ".join(f"{', '.join(c['stage1'])} (threshold {c['threshold']:.4f}, {c['test'] * 100:.2f} %, "
                               f"{c['evaluations']:.3f})" for c in rot["cascades"]), rot["test"], rot["evaluations"]))
    L = ["| mode | how | test accuracy | board evaluations per image | of all's |", "|---|---|---|---|---|"]
    for name, how, acc, ev in rows:
        L.append(f"| {name} | {how} | {acc * 100:.2f} % | {ev:.3f} | {ev / m * 100:.1f} % |")
    if rot:
        L += ["", f"Busiest member's share of the images (with one board per member, the rate at saturation is at most "
                  f"all's divided by it): all 100 %, the kept cascade {c['busiest_share'] * 100:.1f} %, "
                  f"its stage 1s in turn {rot['busiest_share'] * 100:.1f} % (at most "
                  f"{1 / rot['busiest_share']:.2f} x all's rate)."]
    return "\n".join(L)


def draw(a: dict, ax) -> None:
    """Accuracy against mean board evaluations per image (test), on a matplotlib Axes."""
    m = a["all"]["evaluations"]
    curve = sorted(a["cascade"]["curve"], key=lambda p: p["evaluations"])
    ax.plot([p["evaluations"] for p in curve], [p["accuracy"] * 100 for p in curve], "o-", ms=3,
            label=f"cascade, stage 1 {'+'.join(a['cascade']['stage1'])}, thresholds")
    ax.plot([a["cascade"]["evaluations"]], [a["cascade"]["test"] * 100], "*", ms=14, label="cascade (kept, on val)")
    rot = a.get("rotation")
    if rot and len(rot["cascades"]) > 1:
        ax.plot([rot["evaluations"]], [rot["test"] * 100], "P", ms=11,
                label=f"cascade, {len(rot['cascades'])} stage 1s in turn (kept, on val)")
    ax.plot([a["early"]["evaluations"]], [a["early"]["test"] * 100], "D", ms=8, label="early (exact)")
    ax.plot([m], [a["all"]["test"] * 100], "s", ms=8, label="all")
    ax.axhline(a["all"]["test"] * 100 - 0.2, color="grey", ls=":", lw=0.8, label="all - 0.2 points")
    ax.axvline(m / 2, color="grey", ls="--", lw=0.8, label="half of all's evaluations")
    ax.set_xlabel("board evaluations per image (mean, test split)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"fleetvote: accuracy against board evaluations ({a['strategy']} vote)")
    ax.legend(fontsize=8)


def plot(a: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    draw(a, ax)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
