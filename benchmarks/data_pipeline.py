"""Throughput of the folder input pipeline, with and without Lab conversion.

Generates ``--n`` (default 300) random-content 500x375 JPEGs (smooth random colour
fields plus noise, so file sizes and decode cost look like photos, not like white
noise), then times ``build_dataset(folder, training=True, batch_size=16,
image_size=256)`` over one pass of all images:

* ``lab_off``: the pipeline as the trainer gets it (uint8 RGB batches), decoding in
  TensorFlow;
* ``pillow_before``: the same pipeline with the decoder it had before, Pillow in a
  parallel ``tf.numpy_function`` (rebuilt here from ``decode_image_file``), for a
  side-by-side comparison in one run;
* ``lab_on``: the same with :func:`colourise_tf.colour.rgb_to_lab` mapped over each
  batch inside the pipeline, a stand-in for the device-side conversion cost;
* ``lab_on_xla``: the same conversion compiled with XLA (``jit_compile=True``), which
  fuses its chain of element-wise ops as a jit-compiled train step does.

Each mode runs ``--repeats`` times, the modes interleaved round by round (after one
untimed warm-up pass each that fills the OS file cache and traces the functions);
medians, also per CPU core, go to stdout and all figures to
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


def pillow_dataset(folder: str, batch_size: int, image_size: int):
    """The folder pipeline as it was before decoding moved into TensorFlow: Pillow in a
    parallel ``tf.numpy_function``, then the same geometry, batching and prefetch."""
    import tensorflow as tf

    from colourise_tf import data

    paths = data.list_image_files(folder)
    min_side = max(image_size, int(round(image_size * data.TRAIN_SCALE_JITTER)))

    def decode(path: bytes):
        image = data.decode_image_file(path.decode(), min_side=min_side)
        return image, not data.is_greyscale(image)

    def tf_decode(path):
        image, keep = tf.numpy_function(decode, [path], [tf.uint8, tf.bool], stateful=False)
        image.set_shape([None, None, 3])
        return {"image": image, "_keep": keep}

    ds = tf.data.Dataset.from_tensor_slices(paths).shuffle(len(paths), seed=0)
    ds = ds.map(tf_decode, num_parallel_calls=tf.data.AUTOTUNE).filter(lambda ex: ex["_keep"])
    ds = ds.map(lambda ex: {"image": ex["image"]}).enumerate()
    ds = ds.map(data._make_geometry_fn(image_size, True, False, 0), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def time_pass(folder: str, lab: bool | str, batch_size: int, image_size: int) -> tuple[float, int]:
    """One full pass over the folder; returns (seconds, images)."""
    import tensorflow as tf

    from colourise_tf.data import build_dataset

    if lab == "pillow":
        ds, lab = pillow_dataset(folder, batch_size, image_size), False
    else:
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
        modes = {"lab_off": False, "pillow_before": "pillow", "lab_on": True, "lab_on_xla": "xla"}
        for lab in modes.values():
            time_pass(folder, lab, args.batch_size, args.image_size)  # warm-up
        rates: dict[str, list[float]] = {mode: [] for mode in modes}
        for _ in range(args.repeats):  # interleaved: load on the machine hits every mode alike
            for mode, lab in modes.items():
                seconds, count = time_pass(folder, lab, args.batch_size, args.image_size)
                rates[mode].append(count / seconds)
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        results["cores"] = cores
        for mode, r in rates.items():
            med = statistics.median(r)
            results["modes"][mode] = {
                "images_per_s": [round(x, 1) for x in r],
                "median_images_per_s": round(med, 1),
                "median_images_per_s_per_core": round(med / cores, 1),
            }
            runs = ", ".join(f"{x:.1f}" for x in r)
            print(f"{mode}: median {med:.1f} images/s, {med / cores:.1f} per core  (runs: {runs})")
        ratio = statistics.median(rates["lab_off"]) / statistics.median(rates["pillow_before"])
        results["tf_decode_vs_pillow"] = round(ratio, 2)
        print(f"TensorFlow decoding vs Pillow (before): x{ratio:.2f}")
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(results, f, indent=2)
    print(f"mean JPEG size {results['mean_jpeg_kib']} KiB; wrote {args.output}")
    return results


if __name__ == "__main__":
    main()
