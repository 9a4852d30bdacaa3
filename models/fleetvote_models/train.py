"""``fleetvote train``: seeded training with augmentation, cosine schedule, checkpoints, resume.

A run directory holds:

* ``run.json``        the recipe (arch, seed, schedule, augmentation, data subset) and progress;
* ``checkpoint.keras`` model and optimizer state after the last finished epoch (for --resume);
* ``ema.npz``         the weights' moving average at that point (with ``--ema``);
* ``best.weights.h5`` weights of the epoch with the best validation accuracy (what export reads;
                      the average's, with ``--ema``);
* ``log.jsonl``       one line per epoch: loss, train and validation accuracy, seconds and where
                      they went.

Training images come from the ``train`` split (train minus the fixed validation split), the
validation accuracy from ``val``; the test split is never read here.
"""

from __future__ import annotations

import json
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np


def _progress(total: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="batch", leave=False, dynamic_ncols=True, disable=None)


def _onehot(y: np.ndarray, smoothing: float) -> np.ndarray:
    out = np.full((y.shape[0], 10), smoothing / 10, dtype=np.float32)
    out[np.arange(y.shape[0]), y] += 1.0 - smoothing
    return out


def load_teacher(teacher: str):
    """The teacher's predict function: class probabilities of a batch of [0, 1] float images.

    It runs on each epoch's augmented view, the very inputs the student fits that epoch (online
    distillation): a teacher shown the unaugmented image would teach the crop and flip the
    student never sees (Beyer et al. 2022, "Knowledge distillation: a good teacher is patient and
    consistent", https://arxiv.org/abs/2106.05237, section 3: consistent views)."""
    import keras

    model = keras.models.load_model(teacher, compile=False)

    def predict(x: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict(x, batch_size=500, verbose=0), dtype=np.float32)

    return predict


def epoch_views(x: np.ndarray, y: np.ndarray, ids: np.ndarray, seed: int, epoch: int,
                augmentations: list[str], smoothing: float, teacher=None,
                distill_alpha: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """One epoch's augmented inputs (float, [0, 1]) and targets: a pure function of (seed, epoch),
    so that --resume reproduces the run it continues. With a ``teacher`` (``load_teacher``), the
    targets mix its predictions on these same augmented inputs into the smoothed one-hot labels."""
    from .augment import augment

    erng = np.random.default_rng([seed, epoch])
    order = erng.permutation(len(x))
    xa = augment(x[order], augmentations, erng, ids=ids[order], epoch=epoch,
                 seed=seed).astype(np.float32) / 255.0
    ya = _onehot(y[order], smoothing)
    if teacher is not None:
        ya = with_teacher(xa, ya, teacher, distill_alpha)
    return xa, ya


def with_teacher(xa: np.ndarray, ya: np.ndarray, teacher, distill_alpha: float) -> np.ndarray:
    """The targets ``ya`` of the view ``xa`` with the teacher's predictions on that view mixed in."""
    return distill_alpha * teacher(xa) + (1 - distill_alpha) * ya


def run_id(path: str | None) -> str | None:
    """What a recipe or card records for ``--init`` or ``--teacher``: the run's id (its folder's
    name), never the path, which belongs to one machine."""
    if not path:
        return None
    p = Path(path)
    return p.parent.name if p.suffix else p.name


class WeightAverage:
    """Exponential moving average of every weight, BatchNorm statistics included (Polyak
    averaging; airbench and the timm recipes evaluate the average, not the last step).

    ``decay`` is per optimizer step; with 352 steps an epoch, 0.999 averages over about three
    epochs. Early on the average follows the weights faster ((1 + t) / (10 + t), as TensorFlow's
    ExponentialMovingAverage with num_updates), so the first epochs' random weights fade. The
    average is updated every ``every`` steps with the decay raised to that power: get_weights()
    copies ~100 k floats, cheap, but not free at every step.
    """

    def __init__(self, decay: float, every: int = 4):
        self.decay, self.every = decay, every
        self.step = 0
        self.avg: list[np.ndarray] | None = None

    def update(self, weights: list[np.ndarray]) -> None:
        self.step += 1
        if self.avg is None:
            self.avg = [w.astype(np.float32, copy=True) for w in weights]
            return
        if self.step % self.every:
            return
        d = min(self.decay, (1 + self.step) / (10 + self.step)) ** self.every
        for a, w in zip(self.avg, weights):
            a *= d
            a += (1 - d) * w

    def save(self, path: Path) -> None:
        assert self.avg is not None
        np.savez(path, step=self.step, *self.avg)

    def load(self, path: Path) -> None:
        with np.load(path) as z:
            self.step = int(z["step"])
            self.avg = [z[f"arr_{i}"] for i in range(len(z.files) - 1)]


def train(
    out: Path,
    arch: str,
    seed: int = 0,
    epochs: int = 30,
    batch_size: int = 128,
    lr: float = 0.05,
    augmentations: tuple[str, ...] = ("crop", "flip"),
    label_smoothing: float = 0.1,
    subset: float = 1.0,
    limit: int | None = None,
    data: str | None = None,
    resume: bool = False,
    teacher: str | None = None,
    distill_alpha: float = 0.5,
    init: str | None = None,
    weight_decay: float = 5e-4,
    ema: float = 0.0,
    stop_after: int | None = None,
) -> dict:
    """Train (or resume) the run in ``out``; ``stop_after`` ends this process after that many
    epochs of the schedule (``--resume`` later goes on: a long run in slices)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    from fleetvote.data import load_split

    from .archs import build, keras_macc, parse_arch

    try:  # before the data is loaded and the run directory made: a typo costs nothing
        parse_arch(arch)
    except ValueError as exc:
        raise SystemExit(f"--arch: {exc}") from None
    out.mkdir(parents=True, exist_ok=True)
    run_file, ckpt, best = out / "run.json", out / "checkpoint.keras", out / "best.weights.h5"
    ema_file = out / "ema.npz"

    recipe = {
        "arch": arch, "seed": seed, "epochs": epochs, "batch_size": batch_size, "lr": lr,
        "optimizer": f"SGD nesterov momentum 0.9, L2 {weight_decay:g}",
        "schedule": "cosine decay with 1 warm-up epoch",
        "augmentation": list(augmentations), "label_smoothing": label_smoothing,
        "subset": subset, "limit": limit, "teacher": run_id(teacher),
        "distill_alpha": distill_alpha if teacher else None,
        # the teacher labels each epoch's augmented view (since 2026-12-02; before, the unaugmented
        # images once): a run with a teacher from before cannot resume under the new targets
        "distill_views": "augmented" if teacher else None,
        "init": run_id(init),
        "weight_decay": weight_decay, "ema": ema or None,
        "backend": keras.backend.backend(),
    }
    state = {"recipe": recipe, "epoch": 0, "best_val_accuracy": -1.0, "best_epoch": 0, "train_seconds": 0.0}
    if resume and run_file.exists() and ckpt.exists():
        prev = json.loads(run_file.read_text())
        # keys added to the recipe later read as None in older runs
        changed = [k for k, v in recipe.items() if k != "backend" and prev["recipe"].get(k) != v]
        if changed:
            raise SystemExit(f"{run_file}: --resume with a different recipe ({', '.join(changed)}); "
                             f"use a new --out or the same flags")
        state = prev
    elif ckpt.exists() and not resume:
        raise SystemExit(f"{out} already holds a run: pass --resume to continue it or choose another --out")

    keras.utils.set_random_seed(seed)
    tr, va = load_split("train", data), load_split("val", data)
    rng = np.random.default_rng(seed)
    ids = np.arange(len(tr))
    if subset < 1.0:  # bagging: a seeded subset of the training split
        keep = np.sort(rng.choice(len(tr), size=int(len(tr) * subset), replace=False))
        tr, ids = type(tr)(tr.x[keep], tr.y[keep]), ids[keep]
    if limit:  # splits are sorted by class: take a seeded sample, not the first N
        pick = np.sort(rng.choice(len(tr), size=min(limit, len(tr)), replace=False))
        vpick = np.sort(rng.choice(len(va), size=min(max(limit // 4, 50), len(va)), replace=False))
        tr, va, ids = type(tr)(tr.x[pick], tr.y[pick]), type(va)(va.x[vpick], va.y[vpick]), ids[pick]
    n = len(tr)
    steps = math.ceil(n / batch_size)
    teacher_predict = load_teacher(teacher) if teacher else None

    average = WeightAverage(ema) if ema else None
    if state["epoch"] > 0:
        model = keras.models.load_model(ckpt)
        if average is not None:
            average.load(ema_file)
        print(f"resuming {out} after epoch {state['epoch']}/{epochs}")
    else:
        model = build(arch, weight_decay)
        if init:  # warm restart (SGDR): the parent's best weights, then a fresh cosine cycle
            parent = Path(init) / "best.weights.h5"
            if not parent.exists():
                raise SystemExit(f"--init {init}: no best.weights.h5 there; train that run first")
            model.load_weights(parent)
        schedule = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=lr / 10, decay_steps=max(1, steps * (epochs - 1)),
            warmup_target=lr, warmup_steps=steps, alpha=0.0,
        )
        model.compile(
            optimizer=keras.optimizers.SGD(schedule, momentum=0.9, nesterov=True),
            loss=keras.losses.CategoricalCrossentropy(),
            metrics=["accuracy"],
        )
    print(f"{arch}: {keras_macc(model):,} MACC, {model.count_params():,} parameters, "
          f"{n} training images, {epochs} epochs")

    def views(epoch: int) -> tuple[np.ndarray, np.ndarray]:
        # without the teacher: Keras promises no thread safety for a predict beside a fit, so the
        # teacher labels the view in the main thread, between fits (with_teacher below)
        return epoch_views(tr.x, tr.y, ids, seed, epoch, list(augmentations), label_smoothing)

    xv = va.x.astype(np.float32) / 255.0
    # the next epoch's views are made in a thread while this epoch fits (numpy releases the GIL
    # in its copies), so augmentation costs no wall time beside fit
    last = min(epochs, stop_after) if stop_after else epochs
    pool = ThreadPoolExecutor(max_workers=1)
    upcoming = pool.submit(views, state["epoch"]) if state["epoch"] < last else None
    try:
        for epoch in range(state["epoch"], last):
            t0 = time.time()
            assert upcoming is not None
            xa, ya = upcoming.result()
            if teacher_predict is not None:  # a full pass of the teacher over the view: not free
                ya = with_teacher(xa, ya, teacher_predict, distill_alpha)
            upcoming = pool.submit(views, epoch + 1) if epoch + 1 < last else None
            t_views = time.time()
            bar = _progress(steps, f"epoch {epoch + 1}/{epochs}")

            class _Batch(keras.callbacks.Callback):
                def on_train_batch_end(self, batch, logs=None):
                    bar.update(1)
                    if logs:
                        bar.set_postfix(loss=f"{logs['loss']:.3f}", acc=f"{logs['accuracy']:.3f}")
                    if average is not None:
                        average.update(self.model.get_weights())

            hist = model.fit(xa, ya, batch_size=batch_size, epochs=1, verbose=0, shuffle=False,
                             callbacks=[_Batch()])
            bar.close()
            t_fit = time.time()
            live = None
            if average is not None and average.avg is not None:  # validate the average
                live = model.get_weights()
                model.set_weights(average.avg)
            pv = model.predict(xv, batch_size=500, verbose=0)
            val_acc = float(np.mean(np.argmax(pv, 1) == va.y))
            t_val = time.time()
            if val_acc > state["best_val_accuracy"]:
                state["best_val_accuracy"], state["best_epoch"] = val_acc, epoch + 1
                model.save_weights(best)
            if live is not None:
                model.set_weights(live)
            seconds = time.time() - t0
            entry = {"epoch": epoch + 1, "loss": float(hist.history["loss"][-1]),
                     "train_accuracy": float(hist.history["accuracy"][-1]),
                     "val_accuracy": val_acc, "seconds": round(seconds, 1),
                     # where the epoch's wall time went (views: waiting for the augmentation thread)
                     "split_s": {"views": round(t_views - t0, 2), "fit": round(t_fit - t_views, 2),
                                 "validate": round(t_val - t_fit, 2)}}
            print(f"epoch {epoch + 1}/{epochs}  loss {entry['loss']:.4f}  train {entry['train_accuracy']:.4f}"
                  f"  val {val_acc:.4f}  {seconds:.0f}s (fit {t_fit - t_views:.0f}s)", flush=True)
            state["epoch"] = epoch + 1
            state["train_seconds"] = round(state["train_seconds"] + seconds, 1)
            with (out / "log.jsonl").open("a") as f:
                f.write(json.dumps(entry) + "\n")
            # checkpoint (and the average) before run.json: a crash between them repeats one epoch
            model.save(ckpt)
            if average is not None:
                average.save(ema_file)
            tmp = run_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(state, indent=2))
            tmp.replace(run_file)
    finally:
        if upcoming is not None:
            upcoming.cancel()
        pool.shutdown(wait=True)
    return state
