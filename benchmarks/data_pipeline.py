"""Throughput of the folder input pipeline, with and without Lab conversion.

Generates ``--n`` (default 300) random-content 500x375 JPEGs (smooth random colour
fields plus noise, so file sizes and decode cost look like photos, not like white
noise), then times ``build_dataset(folder, training=True, batch_size=16,
image_size=256)`` over one pass of all images:

* ``lab_off``: the pipeline as the trainer gets it (uint8 RGB batches);
* ``lab_on``: the same with :func:`colourise_tf.colour.rgb_to_lab` mapped over each
  batch inside the pipeline, a stand-in for the device-side conversion cost;
* ``lab_on_xla``: the same conversion compiled with XLA (``jit_compile=True``), which
  fuses its chain of element-wise ops as a jit-compiled train step does.

Each mode runs ``--repeats`` times (after one untimed warm-up pass that fills the OS
file cache and traces the functions); medians go to stdout and all figures to
``benchmarks/results/data_pipeline.json``.

Usage::

    .venv/bin/python benchmarks/data_pipeline.py [--n 300] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "data_pipeline.json")
WIDTH, HEIGHT = 500, 375


def make_images(folder: str, n: int, seed: int = 0) -> int:
    """Writes ``n`` photo-like JPEGs into ``folder``; returns their total size in bytes."""
    rng = np.random.default_rng(seed)
    total = 0
    for i in range(n):
        coarse = rng.integers(
            0, 256, size=(int(rng.integers(3, 9)), int(rng.integers(3, 9)), 3), dtype=np.uint8
        )
        field = np.asarray(
            Image.fromarray(coarse).resize((WIDTH, HEIGHT), Image.BICUBIC), np.float32
        )
        field += rng.normal(0.0, 6.0, size=field.shape)
        path = os.path.join(folder, f"img_{i:05d}.jpg")
        Image.fromarray(np.clip(field, 0, 255).astype(np.uint8)).save(path, quality=90)
        total += os.path.getsize(path)
    return total


def time_pass(folder: str, lab: bool | str, batch_size: int, image_size: int) -> tuple[float, int]:
    """One full pass over the folder; returns (seconds, images)."""
    import tensorflow as tf

    from colourise_tf.data import build_dataset

    ds = build_dataset(
        folder,
        training=True,
        batch_size=batch_size,
        image_size=image_size,
        repeat=False,
        drop_remainder=False,
    )
    if lab:
        from colourise_tf.colour import rgb_to_lab

        convert = tf.function(rgb_to_lab, jit_compile=True) if lab == "xla" else rgb_to_lab
        ds = ds.map(
            lambda b: {**b, "lab": convert(b["image"])}, num_parallel_calls=tf.data.AUTOTUNE
        )
    start = time.perf_counter()
    count = 0
    for batch in ds:
        count += int(batch["image"].shape[0])
    return time.perf_counter() - start, count


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=300, help="number of JPEGs to generate")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--output", default=RESULTS)
    args = parser.parse_args(argv)

    import tensorflow as tf

    results: dict = {
        "n_images": args.n,
        "source_size": [WIDTH, HEIGHT],
        "batch_size": args.batch_size,
        "image_size": args.image_size,
        "repeats": args.repeats,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "tensorflow": tf.__version__,
        "modes": {},
    }
    with tempfile.TemporaryDirectory(prefix="colourise_bench_") as folder:
        total = make_images(folder, args.n)
        results["mean_jpeg_kib"] = round(total / args.n / 1024, 1)
        for mode, lab in (("lab_off", False), ("lab_on", True), ("lab_on_xla", "xla")):
            time_pass(folder, lab, args.batch_size, args.image_size)  # warm-up
            rates = []
            for _ in range(args.repeats):
                seconds, count = time_pass(folder, lab, args.batch_size, args.image_size)
                rates.append(count / seconds)
            results["modes"][mode] = {
                "images_per_s": [round(r, 1) for r in rates],
                "median_images_per_s": round(statistics.median(rates), 1),
            }
            runs = ", ".join(f"{r:.1f}" for r in rates)
            print(f"{mode}: median {statistics.median(rates):.1f} images/s  (runs: {runs})")
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(results, f, indent=2)
    print(f"mean JPEG size {results['mean_jpeg_kib']} KiB; wrote {args.output}")
    return results


if __name__ == "__main__":
    main()
