"""``make bench-engine``: images per second of the numpy engine against LiteRT and tflite-micro.

For every zoo model, in one run and with the same thread count on every side:

* the engine at batch 1 (one image per call) and at batch 256;
* LiteRT's default interpreter (ai-edge-litert, XNNPACK), image by image;
* the tflite-micro interpreter (reference kernels), image by image;

then the ratios the targets are stated in, and the engine's peak Python/numpy memory for one
batch of 256 (tracemalloc, which numpy reports its buffers to).

    python -m fleetvote.testbed.bench_engine [--threads 1] [--seconds 3] [--zoo models/zoo]
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
from pathlib import Path

import numpy as np

from ..command import add_data

# measured on this project's 2-core machine for a 6.3 M-MACC VGG-style CNN, one image at a time
# (LiteRT's default interpreter and the tflite-micro Python interpreter; make bench-engine)
ANCHOR_LITERT = 3960.0
ANCHOR_MICRO = 145.0


def _rate(fn, n_items: int, seconds: float) -> float:
    """Calls fn() (which processes n_items images) for at least `seconds`; images per second."""
    fn()  # warm-up: first-call allocations, BLAS thread start
    done, t0 = 0, time.perf_counter()
    while True:
        fn()
        done += n_items
        dt = time.perf_counter() - t0
        if dt >= seconds:
            return done / dt


def bench_model(path: Path, images: np.ndarray, threads: int, seconds: float) -> dict:
    from ai_edge_litert.interpreter import Interpreter

    from ..engine import Engine
    from ..offline.oracle import MicroInterpreter

    engine = Engine.from_file(path)
    q = engine.quantize_input(images)
    one = images[:1]
    b256 = images[:256]
    r = {"model": path.parent.name, "macc": engine.macc, "threads": threads}
    r["engine_b1"] = _rate(lambda: engine.run(one), 1, seconds)
    r["engine_b256"] = _rate(lambda: engine.run(b256), 256, seconds)

    lite = Interpreter(model_path=str(path), num_threads=threads)
    lite.allocate_tensors()
    i_idx = lite.get_input_details()[0]["index"]
    o_idx = lite.get_output_details()[0]["index"]
    k = [0]

    def lite_one():
        lite.set_tensor(i_idx, q[k[0] % len(q)][None])
        lite.invoke()
        lite.get_tensor(o_idx)
        k[0] += 1

    r["litert_b1"] = _rate(lite_one, 1, seconds)

    micro = MicroInterpreter(path)
    r["micro_b1"] = _rate(lambda: micro.run_quantized(q[:8]), 8, seconds)

    tracemalloc.start()
    engine.run(b256)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    r["engine_b256_peak_bytes"] = peak
    return r


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--zoo", default="models/zoo")
    p.add_argument("--threads", type=int, default=1, help="threads for BLAS (engine) and LiteRT (default 1)")
    p.add_argument("--seconds", type=float, default=3.0, help="measuring time per figure")
    add_data(p)
    a = p.parse_args(argv)

    from threadpoolctl import threadpool_limits

    from ..data import load_split

    images = load_split("test", a.data).x[:512]
    rows = []
    with threadpool_limits(limits=a.threads):
        for path in sorted(Path(a.zoo).glob("*/model.tflite")):
            rows.append(bench_model(path, images, a.threads, a.seconds))
            r = rows[-1]
            print(f"{r['model']}: done", flush=True)
    print()
    print(f"threads: {a.threads} on every side (BLAS via threadpoolctl, LiteRT num_threads); images/s")
    hdr = (f"{'model':<16}{'MACC':>11}{'engine b1':>11}{'engine b256':>13}{'LiteRT b1':>11}{'micro b1':>10}"
           f"{'b256/LiteRT':>13}{'LiteRT/b1':>11}{'b1/micro':>10}{'peak MB':>9}")
    print(hdr)
    for r in rows:
        print(f"{r['model']:<16}{r['macc']:>11,}{r['engine_b1']:>11.0f}{r['engine_b256']:>13.0f}"
              f"{r['litert_b1']:>11.0f}{r['micro_b1']:>10.0f}{r['engine_b256'] / r['litert_b1']:>13.2f}"
              f"{r['litert_b1'] / r['engine_b1']:>11.2f}{r['engine_b1'] / r['micro_b1']:>10.1f}"
              f"{r['engine_b256_peak_bytes'] / 1e6:>9.1f}")
    print("\ntargets: b256/LiteRT >= 1 (engine at batch 256 at least as fast as LiteRT image by image); "
          "LiteRT/b1 <= 3 (batch 1 within 3x of LiteRT)")
    print(f"anchor (measured on this project's machine, 6.3 M-MACC CNN; make bench-engine): LiteRT {ANCHOR_LITERT:.0f} images/s, "
          f"tflite-micro {ANCHOR_MICRO:.0f} images/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
