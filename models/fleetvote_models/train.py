"""``fleetvote train``: seeded training with augmentation, cosine schedule, checkpoints, resume.

A run directory holds:

* ``run.json``        the recipe (arch, seed, schedule, augmentation, data subset) and progress;
* ``checkpoint.keras`` model and optimizer state after the last finished epoch (for --resume);
* ``best.weights.h5`` weights of the epoch with the best validation accuracy (what export reads);
* ``log.jsonl``       one line per epoch: loss, train and validation accuracy, seconds.

Training images come from the ``train`` split (train minus the fixed validation split), the
validation accuracy from ``val``; the test split is never read here.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import numpy as np


def _progress(total: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="batch", leave=False, dynamic_ncols=True, disable=None)


def _onehot(y: np.ndarray, smoothing: float) -> np.ndarray:
    out = np.full((y.shape[0], 10), smoothing / 10, dtype=np.float32)
    out[np.arange(y.shape[0]), y] += 1.0 - smoothing
    return out


def _teacher_targets(teacher: str, x: np.ndarray) -> np.ndarray:
    import keras

    model = keras.models.load_model(teacher, compile=False)
    return np.asarray(model.predict(x.astype(np.float32) / 255.0, batch_size=500, verbose=0))


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
) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    from fleetvote.data import load_split

    from .archs import build, keras_macc
    from .augment import augment

    out.mkdir(parents=True, exist_ok=True)
    run_file, ckpt, best = out / "run.json", out / "checkpoint.keras", out / "best.weights.h5"

    recipe = {
        "arch": arch, "seed": seed, "epochs": epochs, "batch_size": batch_size, "lr": lr,
        "optimizer": "SGD nesterov momentum 0.9, L2 5e-4",
        "schedule": "cosine decay with 1 warm-up epoch",
        "augmentation": list(augmentations), "label_smoothing": label_smoothing,
        "subset": subset, "limit": limit, "teacher": teacher,
        "distill_alpha": distill_alpha if teacher else None,
        "init": init,
        "backend": keras.backend.backend(),
    }
    state = {"recipe": recipe, "epoch": 0, "best_val_accuracy": -1.0, "best_epoch": 0, "train_seconds": 0.0}
    if resume and run_file.exists() and ckpt.exists():
        prev = json.loads(run_file.read_text())
        # keys added to the recipe later read as None in older runs
        if any(prev["recipe"].get(k) != v for k, v in recipe.items() if k != "backend"):
            raise SystemExit(f"{run_file}: --resume with a different recipe; use a new --out or the same flags")
        state = prev
    elif ckpt.exists() and not resume:
        raise SystemExit(f"{out} already holds a run: pass --resume to continue it or choose another --out")

    keras.utils.set_random_seed(seed)
    tr, va = load_split("train", data), load_split("val", data)
    rng = np.random.default_rng(seed)
    if subset < 1.0:  # bagging: a seeded subset of the training split
        keep = np.sort(rng.choice(len(tr), size=int(len(tr) * subset), replace=False))
        tr = type(tr)(tr.x[keep], tr.y[keep])
    if limit:  # splits are sorted by class: take a seeded sample, not the first N
        pick = np.sort(rng.choice(len(tr), size=min(limit, len(tr)), replace=False))
        vpick = np.sort(rng.choice(len(va), size=min(max(limit // 4, 50), len(va)), replace=False))
        tr, va = type(tr)(tr.x[pick], tr.y[pick]), type(va)(va.x[vpick], va.y[vpick])
    n = len(tr)
    steps = math.ceil(n / batch_size)
    soft = _teacher_targets(teacher, tr.x) if teacher else None

    if state["epoch"] > 0:
        model = keras.models.load_model(ckpt)
        print(f"resuming {out} after epoch {state['epoch']}/{epochs}")
    else:
        model = build(arch)
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

    xv = va.x.astype(np.float32) / 255.0
    for epoch in range(state["epoch"], epochs):
        t0 = time.time()
        erng = np.random.default_rng([seed, epoch])  # reproducible under --resume
        order = erng.permutation(n)
        xa = augment(tr.x[order], list(augmentations), erng).astype(np.float32) / 255.0
        ya = _onehot(tr.y[order], label_smoothing)
        if soft is not None:
            ya = distill_alpha * soft[order] + (1 - distill_alpha) * ya
        bar = _progress(steps, f"epoch {epoch + 1}/{epochs}")

        class _Bar(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                bar.update(1)
                if logs:
                    bar.set_postfix(loss=f"{logs['loss']:.3f}", acc=f"{logs['accuracy']:.3f}")

        hist = model.fit(xa, ya, batch_size=batch_size, epochs=1, verbose=0, shuffle=False,
                         callbacks=[_Bar()])
        bar.close()
        pv = model.predict(xv, batch_size=500, verbose=0)
        val_acc = float(np.mean(np.argmax(pv, 1) == va.y))
        seconds = time.time() - t0
        entry = {"epoch": epoch + 1, "loss": float(hist.history["loss"][-1]),
                 "train_accuracy": float(hist.history["accuracy"][-1]),
                 "val_accuracy": val_acc, "seconds": round(seconds, 1)}
        print(f"epoch {epoch + 1}/{epochs}  loss {entry['loss']:.4f}  train {entry['train_accuracy']:.4f}"
              f"  val {val_acc:.4f}  {seconds:.0f}s", flush=True)
        if val_acc > state["best_val_accuracy"]:
            state["best_val_accuracy"], state["best_epoch"] = val_acc, epoch + 1
            model.save_weights(best)
        state["epoch"] = epoch + 1
        state["train_seconds"] = round(state["train_seconds"] + seconds, 1)
        with (out / "log.jsonl").open("a") as f:
            f.write(json.dumps(entry) + "\n")
        model.save(ckpt)  # checkpoint before run.json: a crash between them repeats one epoch
        tmp = run_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(run_file)
    return state
