"""Images/s of the full GAN step (G + multi-scale D, both updates) at 256x256.

Every setting runs in its own subprocess (the dtype policy is global and XLA
caches are per process), one after another, so figures are side by side on the
same machine state. The figure is the median step time after warm-up (step times
on a shared 2-core VM vary by +-15%, so the minimum is reported too). Prints a
table and writes JSON with the machine's CPU flags and the TF build.

    python benchmarks/train_step.py                       # batch 4 and 16, fp32/bf16, XLA off/on
    python benchmarks/train_step.py --batch 4 --steps 6 --no-xla

CPU thread pools: every setting runs with the training loop's ``auto`` pools
(``colourise_tf.training.runtime.configure_threads``); the XLA-off settings also run with
TensorFlow's default pools (``threads=tf``), side by side, so the JSON shows what
the auto setting buys (``--threads auto`` to skip those rows).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _worker(
    preset: str, batch: int, precision: str, xla: bool, steps: int, warmup: int, size: int, threads: str
) -> dict:
    import keras
    import numpy as np
    import tensorflow as tf

    from colourise_tf import config as config_lib
    from colourise_tf.training.runtime import configure_threads, set_precision
    from colourise_tf.training.trainer import GANTrainer

    pools = configure_threads(None, None, xla=xla) if threads == "auto" else configure_threads(0, 0)
    policy = set_precision(precision)
    cfg = config_lib.apply_overrides(
        config_lib.get_preset(preset), [f"data.batch_size={batch}", f"model.image_size={size}"]
    )
    keras.utils.set_random_seed(0)
    trainer = GANTrainer(cfg, precision=policy, jit_compile=xla)
    rng = np.random.default_rng(0)
    images = tf.constant(rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8))
    batch_in = {"image": images}
    t0 = time.perf_counter()
    for _ in range(warmup):
        m = trainer.train_step(batch_in)
    float(m["loss/g_total"])
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        m = trainer.train_step(batch_in)
        float(m["loss/g_total"])  # sync
        times.append(time.perf_counter() - t)
    med = statistics.median(times)
    from colourise_tf.training.runtime import _onednn_enabled, cpu_bf16_fast

    return {
        "min_step_s": min(times),
        "onednn": _onednn_enabled(),
        "cpu_native_bf16": cpu_bf16_fast(),
        "tensorflow": tf.__version__,
        "preset": preset,
        "batch": batch,
        "precision": policy,
        "xla": xla,
        "threads": threads,
        "intra_inter_op_threads": list(pools),
        "image_size": size,
        "median_step_s": med,
        "images_per_s": batch / med,
        "step_times_s": times,
        "warmup_s": compile_s,
        "g_params": int(trainer.generator.count_params()),
        "d_params": int(trainer.discriminator.count_params()) if trainer.discriminator else 0,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="gorriz-ibn-sn-md")
    p.add_argument("--batch", type=int, nargs="+", default=[4, 16])
    p.add_argument("--precision", nargs="+", default=["float32", "mixed_bfloat16"])
    p.add_argument("--no-xla", action="store_true", help="skip the XLA settings")
    p.add_argument(
        "--threads",
        nargs="+",
        choices=["auto", "tf"],
        default=["auto", "tf"],
        help="CPU thread pools: the training loop's auto setting and/or TensorFlow's default",
    )
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "train_step.json"))
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.worker:
        batch, precision, xla, threads = args.worker.split(",")
        res = _worker(args.preset, int(batch), precision, xla == "1", args.steps, args.warmup, args.size, threads)
        print("RESULT " + json.dumps(res))
        return

    settings = [
        (b, prec, xla, threads)
        for b in args.batch
        for prec in args.precision
        for xla in ([False] if args.no_xla else [False, True])
        for threads in (args.threads if not xla else ["auto"])
    ]
    results = []
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(REPO))
    for b, prec, xla, threads in settings:
        cmd = [
            sys.executable,
            __file__,
            "--preset",
            args.preset,
            "--steps",
            str(args.steps),
            "--warmup",
            str(args.warmup),
            "--size",
            str(args.size),
            "--worker",
            f"{b},{prec},{int(xla)},{threads}",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
        if proc.returncode or not line:
            res = {
                "batch": b,
                "precision": prec,
                "xla": xla,
                "threads": threads,
                "error": proc.stderr.strip().splitlines()[-1:],
            }
        else:
            res = json.loads(line[0][7:])
        results.append(res)
        shown = (
            f"{res['images_per_s']:.2f} img/s (median step {res['median_step_s']:.2f}s, min {res['min_step_s']:.2f}s)"
            if "images_per_s" in res
            else f"FAILED {res['error']}"
        )
        print(f"batch {b:3d}  {prec:15s} xla={'on ' if xla else 'off'} threads={threads:4s}  {shown}", flush=True)
    ok = [r for r in results if "images_per_s" in r]
    best = max(ok, key=lambda r: r["images_per_s"]) if ok else None
    ratios = {}
    for r in ok:
        same = [q for q in ok if q["batch"] == r["batch"] and not q["xla"]]
        base = [q for q in same if q["precision"] == "float32" and q["threads"] == "auto"]
        if r["threads"] == "auto" and base and r is not base[0]:
            key = f"batch{r['batch']}_{r['precision']}_xla{'on' if r['xla'] else 'off'}_vs_float32"
            ratios[key] = r["images_per_s"] / base[0]["images_per_s"]
        tf_pools = [q for q in same if q["precision"] == r["precision"] and q["threads"] == "tf"]
        if r["threads"] == "auto" and not r["xla"] and tf_pools:
            key = f"batch{r['batch']}_{r['precision']}_threads_auto_vs_tf"
            ratios[key] = r["images_per_s"] / tf_pools[0]["images_per_s"]
    for k, v in ratios.items():
        print(f"{k}: x{v:.2f}")
    from colourise_tf.cpu import cpu_summary

    out = {
        "preset": args.preset,
        "image_size": args.size,
        "cpu": cpu_summary(),
        "cpu_count": os.cpu_count(),
        "results": results,
        "speedup_vs_float32": ratios,
        "fastest": best and {k: best[k] for k in ("batch", "precision", "xla", "threads", "images_per_s")},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    if best:
        print(
            f"fastest: batch {best['batch']} {best['precision']} xla={best['xla']} threads={best['threads']} "
            f"-> {best['images_per_s']:.2f} img/s"
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
