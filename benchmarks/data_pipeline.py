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

``--mode per-core`` (see :func:`per_core`) instead measures the training pipeline per
CPU core, from ImageNet-like JPEGs and from prepared shards of them (JPEG and raw
encodings, windows resized on the host or left to the training step with
``resize_on_device=True``), times :func:`colourise_tf.data.resize_crops` (the
device-side resize) on this CPU, and writes ``benchmarks/results/input_pipeline.json``::

    .venv/bin/python benchmarks/data_pipeline.py --mode per-core
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
PER_CORE_RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "input_pipeline.json")
WIDTH, HEIGHT = 500, 375


def make_images(folder: str, n: int, seed: int = 0) -> int:
    """Writes ``n`` photo-like JPEGs into ``folder``; returns their total size in bytes."""
    rng = np.random.default_rng(seed)
    total = 0
    for i in range(n):
        coarse = rng.integers(0, 256, size=(int(rng.integers(3, 9)), int(rng.integers(3, 9)), 3), dtype=np.uint8)
        field = np.asarray(Image.fromarray(coarse).resize((WIDTH, HEIGHT), Image.BICUBIC), np.float32)
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
        ds = ds.map(lambda b: {**b, "lab": convert(b["image"])}, num_parallel_calls=tf.data.AUTOTUNE)
    start = time.perf_counter()
    count = 0
    for batch in ds:
        count += int(batch["image"].shape[0])
    return time.perf_counter() - start, count


# --------------------------------------------------------------------------- per core
#
# ``--mode per-core``: the training pipeline (``build_dataset(training=True)``) with
# tf.data limited to 1 and to 2 threads, from ImageNet-like JPEGs (a) and from prepared
# shards of the same images: JPEG (b) and raw (c) shards, windows resized on the host,
# and JPEG (d) and raw (e) shards with ``resize_on_device=True`` (the host reads,
# decodes or reshapes, flips and pads each window; the training step resizes it).

PHOTO_QUALITY = 90
SHARD_QUALITY = 95
TARGET_IMAGES_PER_S_PER_CORE = 1500
# Texture added to the photographic content (upscaled crops of the sample photos alone
# come out at ~50 KB at quality 90, against ~110 KB for ImageNet): an unsharp mask,
# like a camera's sharpening, and film-like luminance grain at 1 and 2 pixel scales,
# tuned once to a mean of ~110 KB.
UNSHARP = {"radius": 1.5, "percent": 250, "threshold": 0}
GRAIN_SIGMA = 14.0
COARSE_GRAIN_SIGMA = 7.0
MAX_UPSCALE = 1.3  # crops are taken after upscaling by 1.0-1.3x the least that covers them


def make_photo_jpegs(folder: str, n: int, seed: int = 0) -> dict:
    """Writes ``n`` ImageNet-like 500x375 JPEGs (quality 90) made of the real sample photos.

    Each is a random 500x375 crop of one of the photos of
    :func:`colourise_tf.data.load_samples` (taken in turn), upscaled by 1.0x-``MAX_UPSCALE``
    the least that covers 500x375, flipped with probability 1/2, with a slight colour jitter
    (saturation x0.85-1.15, per-channel gain x0.93-1.07, brightness +-8) and the texture
    above. Returns file statistics.
    """
    from PIL import ImageFilter

    from colourise_tf.data import load_samples

    photos = [image for _, image in load_samples()]
    rng = np.random.default_rng(seed)
    sizes: list[int] = []
    dims: dict[str, int] = {}
    for i in range(n):
        src = photos[i % len(photos)]
        h, w = src.shape[:2]
        scale = max(WIDTH / w, HEIGHT / h) * rng.uniform(1.0, MAX_UPSCALE)
        sw, sh = max(WIDTH, round(w * scale)), max(HEIGHT, round(h * scale))
        image = Image.fromarray(src).resize((sw, sh), Image.BICUBIC)
        left, top = int(rng.integers(0, sw - WIDTH + 1)), int(rng.integers(0, sh - HEIGHT + 1))
        image = image.crop((left, top, left + WIDTH, top + HEIGHT))
        if rng.random() < 0.5:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
        x = np.asarray(image.filter(ImageFilter.UnsharpMask(**UNSHARP)), np.float32)
        grey = x.mean(axis=2, keepdims=True)
        x = grey + (x - grey) * rng.uniform(0.85, 1.15)
        x = x * rng.uniform(0.93, 1.07, size=3) + rng.uniform(-8.0, 8.0)
        x += rng.normal(0.0, GRAIN_SIGMA, size=(HEIGHT, WIDTH, 1))
        coarse = rng.normal(0.0, COARSE_GRAIN_SIGMA, size=(HEIGHT // 2 + 1, WIDTH // 2 + 1))
        x += np.asarray(Image.fromarray(coarse.astype(np.float32), mode="F").resize((WIDTH, HEIGHT), Image.BILINEAR))[
            ..., None
        ]
        out = Image.fromarray(np.clip(np.round(x), 0, 255).astype(np.uint8))
        path = os.path.join(folder, f"img_{i:05d}.jpg")
        out.save(path, "JPEG", quality=PHOTO_QUALITY)
        sizes.append(os.path.getsize(path))
        key = f"{out.width}x{out.height}"
        dims[key] = dims.get(key, 0) + 1
    return {
        "count": n,
        "dimensions": dims,
        "quality": PHOTO_QUALITY,
        "chroma_subsampling": "4:2:0 (Pillow default)",
        "mean_bytes": round(statistics.mean(sizes)),
        "mean_kb": round(statistics.mean(sizes) / 1000, 1),
        "mean_kib": round(statistics.mean(sizes) / 1024, 1),
        "min_kb": round(min(sizes) / 1000, 1),
        "max_kb": round(max(sizes) / 1000, 1),
        "total_mb": round(sum(sizes) / 1e6, 2),
    }


def _folder_bytes(folder: str) -> int:
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(folder) for f in files)


def _shard_records(shard_dir: str) -> list[bytes]:
    """Every serialised record of a prepared-shards folder."""
    import tensorflow as tf

    from colourise_tf import shards

    paths = shards.shard_paths(shard_dir, shards.read_info(shard_dir))
    return [bytes(r) for r in tf.data.TFRecordDataset(paths).as_numpy_iterator()]


def _limited(ds, threads: int):
    """``ds`` on a private tf.data threadpool of ``threads`` threads, autotuned for as many."""
    import tensorflow as tf

    options = tf.data.Options()
    options.threading.private_threadpool_size = threads
    options.autotune.cpu_budget = threads
    return ds.with_options(options)


def _timed_run(ds, warmup: int, batches: int) -> dict:
    """A fresh iterator: ``warmup`` untimed batches, then ``batches`` timed ones."""
    it = iter(ds)
    for _ in range(warmup):
        next(it)
    cpu0, t0 = time.process_time(), time.perf_counter()
    count = 0
    for _ in range(batches):
        count += int(next(it)["image"].shape[0])
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    del it
    return {
        "images_per_s": count / wall,
        "cpu_utilisation": cpu / wall,  # process CPU seconds per wall second (all threads)
        "images_per_cpu_s": count / cpu,
    }


def _interleaved_medians_ms(cases: dict, calls: int) -> dict:
    """Median wall time in ms of each ``fn(*make_args(i))`` of ``cases`` (name -> (fn,
    make_args)) over ``calls`` calls, the cases called round-robin so that the machine's
    speed swings hit them alike (one untimed tracing call each first)."""
    for fn, make_args in cases.values():
        fn(*make_args(0))
    times: dict = {name: [] for name in cases}
    for i in range(calls):
        for name, (fn, make_args) in cases.items():
            args = make_args(i + 1)
            t0 = time.perf_counter()
            fn(*args)
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) * 1000.0 for name, t in times.items()}


#: Ops per tf.function call in the breakdown (on as many separate arguments holding the
#: same image, so nothing is deduplicated): spreads the ~0.1-0.4 ms call overhead.
OPS_PER_CALL = 8


def breakdown(
    record: bytes, folder_jpeg: bytes, shard_dir: str, size: int, calls: int, raw: tuple[bytes, str] | None = None
) -> dict:
    """Per-image cost of the steps of the pipeline's map function, in ms: each step in
    its own tf.function that applies it to :data:`OPS_PER_CALL` copies of one image,
    (median call time - median call time of an empty function with as many arguments)
    / OPS_PER_CALL, over ``calls`` round-robin calls (TensorFlow's op pools at 1 thread,
    set by the caller). ``raw``: the same image's record in raw shards and their folder,
    for the raw per-example functions."""
    import tensorflow as tf

    from colourise_tf import data, shards

    k = OPS_PER_CALL
    # The training window's side is 87-100 % of the shorter side (a drawn scale in
    # [S, 1.15 S]); time the middle one, centred.
    mid_short = (size + max(size, int(round(size * data.TRAIN_SCALE_JITTER)))) / 2

    def window_for(hh: int, ww: int):
        side = int(round(min(hh, ww) * size / mid_short))
        return tf.constant([(hh - side) // 2, (ww - side) // 2, side, side], tf.int32), side

    @tf.function
    def empty(xs):
        return [tf.strings.length(x) for x in xs]

    @tf.function
    def parse(xs):
        return [shards.parse_example(x)["height"] for x in xs]

    @tf.function
    def decode_full(xs):
        return [tf.io.decode_jpeg(x, channels=3, dct_method="INTEGER_ACCURATE") for x in xs]

    @tf.function
    def decode_crop(xs, window):
        return [tf.io.decode_and_crop_jpeg(x, window, channels=3, dct_method="INTEGER_ACCURATE") for x in xs]

    @tf.function
    def resize(xs):  # as data._resize_square_uint8 for a crop under 2x the output
        out = [tf.image.resize(x, [size, size], method="bilinear") for x in xs]
        return [tf.cast(tf.clip_by_value(tf.round(x), 0.0, 255.0), tf.uint8) for x in out]

    @tf.function
    def flip(xs):
        return [tf.reverse(x, axis=[1]) for x in xs]

    def copies(t: tf.Tensor) -> list:
        return [tf.identity(t) for _ in range(k)]

    serialized = tf.constant(record)
    rec = shards.parse_example(serialized)
    images = {"shard_image": (rec["image"], int(rec["height"]), int(rec["width"]))}
    folder_contents = tf.constant(folder_jpeg)
    fh, fw = (int(v) for v in tf.io.extract_jpeg_shape(folder_contents)[:2])
    images["folder_image"] = (folder_contents, fh, fw)

    out: dict = {}
    records = copies(serialized)
    cases: dict = {"empty": (empty, lambda i: (records,))}
    for part, (contents, hh, ww) in images.items():
        window, side = window_for(hh, ww)
        crop = tf.io.decode_and_crop_jpeg(contents, window, channels=3, dct_method="INTEGER_ACCURATE")
        image = resize([crop])[0]
        xs, crops, outs = copies(contents), copies(crop), copies(image)
        out[part] = {"image": f"{ww}x{hh}, {int(tf.strings.length(contents))} bytes", "window_side": side}
        if part == "shard_image":
            cases[f"{part}/parse_example"] = (parse, lambda i: (records,))
        cases[f"{part}/decode_and_crop_jpeg_window"] = (decode_crop, lambda i, x=xs, w=window: (x, w))
        cases[f"{part}/resize_bilinear_to_S_round_cast"] = (resize, lambda i, c=crops: (c,))
        cases[f"{part}/flip"] = (flip, lambda i, x=outs: (x,))
        cases[f"{part}/decode_jpeg_full_image"] = (decode_full, lambda i, x=xs: (x,))
    # Reference, not the pipeline: the same pixels stored with 4:2:0 chroma (as most
    # photo JPEGs are) instead of the shards' 4:4:4, also at quality 95.
    contents, hh, ww = images["shard_image"]
    jpeg420 = tf.io.encode_jpeg(
        tf.io.decode_jpeg(contents, channels=3, dct_method="INTEGER_ACCURATE"),
        quality=SHARD_QUALITY,
        chroma_downsampling=True,
    )
    window, _ = window_for(hh, ww)
    xs420 = copies(jpeg420)
    cases["reference_420"] = (decode_crop, lambda i: (xs420, window))
    # The pipeline's own per-example functions: parse, draw window, decode (JPEG) or
    # reshape (raw) the window, then resize + flip (host) or flip + pad (resize_on_device).
    variants = {"shard_image": (shard_dir, records)}
    if raw is not None:
        raw_record, raw_dir = raw
        raw_records = copies(tf.constant(raw_record))
        variants["raw_shard_image"] = (raw_dir, raw_records)
        raw_rec = shards.parse_example(raw_records[0])
        out["raw_shard_image"] = {
            "image": f"{int(raw_rec['width'])}x{int(raw_rec['height'])}, {len(raw_record)} bytes per record"
        }
        cases["raw_shard_image/parse_example"] = (parse, lambda i: (raw_records,))
    indices = [[tf.constant(i * k + j, tf.int64) for j in range(k)] for i in range(calls + 1)]
    for part, (sdir, recs) in variants.items():
        try:  # private API of colourise_tf.data
            src = data._ShardSource(sdir, shuffle_buffer=1)
            for suffix, on_device in (("random_windows", False), ("resize_on_device", True)):
                extra = {"resize_on_device": True} if on_device else {}

                @tf.function
                def per_example(xs, idx, src=src, extra=extra):
                    return [
                        src.decode_crop(
                            index, shards.parse_example(x), size=size, training=True, masks=False, seed=0, **extra
                        )["image"]
                        for x, index in zip(xs, idx)
                    ]

                cases[f"{part}/whole_map_function_{suffix}"] = (per_example, lambda i, r=recs: (r, indices[i]))
        except Exception as err:
            out[part]["whole_map_function_error"] = repr(err)

    ms = _interleaved_medians_ms(cases, calls)
    call = ms.pop("empty")
    per_op = {name: round((v - call) / k, 4) for name, v in ms.items()}
    out["ops_per_call"] = k
    out["call_ms_empty_function"] = round(call, 4)
    out["shard_image"]["reference_same_image_as_420_q95"] = {
        "bytes": int(tf.strings.length(jpeg420)),
        "decode_and_crop_jpeg_window_ms": per_op.pop("reference_420"),
    }
    for part in images:
        steps = {name.split("/", 1)[1]: v for name, v in per_op.items() if name.startswith(part + "/")}
        in_pipeline = {
            n: v for n, v in steps.items() if n != "decode_jpeg_full_image" and not n.startswith("whole_map_function")
        }
        out[part]["ms"] = steps
        out[part]["sum_of_steps_ms"] = round(sum(in_pipeline.values()), 4)
        out[part]["images_per_s_implied_by_sum"] = round(1000.0 / sum(in_pipeline.values()), 1)
        if "whole_map_function_random_windows" in steps:
            out[part]["images_per_s_implied_by_whole_map_function"] = round(
                1000.0 / steps["whole_map_function_random_windows"], 1
            )
        if "whole_map_function_resize_on_device" in steps:
            out[part]["images_per_s_implied_by_whole_map_function_resize_on_device"] = round(
                1000.0 / steps["whole_map_function_resize_on_device"], 1
            )
    if "raw_shard_image" in out:
        steps = {name.split("/", 1)[1]: v for name, v in per_op.items() if name.startswith("raw_shard_image/")}
        out["raw_shard_image"]["ms"] = steps
        for suffix in ("random_windows", "resize_on_device"):
            if f"whole_map_function_{suffix}" in steps:
                out["raw_shard_image"][f"images_per_s_implied_by_whole_map_function_{suffix}"] = round(
                    1000.0 / steps[f"whole_map_function_{suffix}"], 1
                )
    return out


def _lscpu() -> dict:
    import subprocess

    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return {}
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    keep = (
        "Model name",
        "CPU family",
        "Model",
        "Vendor ID",
        "CPU(s)",
        "Thread(s) per core",
        "Hypervisor vendor",
        "L2 cache",
        "L3 cache",
    )
    return {k: fields[k].strip() for k in keep if k in fields}


#: ``--mode per-core`` sources: name -> (label, shard encoding or None for the JPEG
#: folder, resize_on_device).
PER_CORE_SOURCES = {
    "a_folder": ("JPEG folder", None, False),
    "b_shards": ("JPEG shards, host resize", "jpeg", False),
    "c_raw_shards": ("raw shards, host resize", "raw", False),
    "d_shards_resize_on_device": ("JPEG shards, resize_on_device=True", "jpeg", True),
    "e_raw_shards_resize_on_device": ("raw shards, resize_on_device=True", "raw", True),
}


def resize_crops_gflop_per_image(size: int, padded: int) -> float:
    """Multiply-adds x 2 of :func:`colourise_tf.data.resize_crops` per image: rows
    ``[S, P] x [P, P*3]`` then columns ``[S, P] x [P, S*3]`` (the one-hot weights are
    dense matrices)."""
    return 2.0 * 3 * size * padded * (padded + size) / 1e9


def time_resize_crops(images, crop_size, size: int, calls: int) -> dict:
    """Median wall time of :func:`colourise_tf.data.resize_crops` on one batch of padded
    windows, as a tf.function and jit-compiled with XLA (both called round-robin, one
    untimed tracing call each), on the TensorFlow op threads set by the caller."""
    import tensorflow as tf

    from colourise_tf.data import resize_crops

    graph = tf.function(lambda x, c: resize_crops(x, c, size))
    xla = tf.function(lambda x, c: resize_crops(x, c, size), jit_compile=True)
    batch = int(images.shape[0])
    a, b = graph(images, crop_size), xla(images, crop_size)
    diff = int(tf.reduce_max(tf.abs(tf.cast(a, tf.int32) - tf.cast(b, tf.int32))))
    ms = _interleaved_medians_ms(
        {"tf_function": (graph, lambda i: (images, crop_size)), "xla": (xla, lambda i: (images, crop_size))},
        calls,
    )
    out: dict = {"batch": batch, "input": list(images.shape), "calls": calls}
    for name, v in ms.items():
        out[name] = {"ms_per_batch": round(v, 2), "ms_per_image": round(v / batch, 3)}
    out["max_abs_diff_tf_function_vs_xla"] = diff
    return out


def per_core(args, argv) -> dict:
    """``--mode per-core``: images/s per CPU core of the training pipeline from JPEGs (a),
    JPEG (b) and raw (c) prepared shards, and JPEG (d) and raw (e) shards with
    ``resize_on_device=True``; the cost of ``resize_crops`` on this CPU; see the module
    docstring and ``benchmarks/README.md``."""
    import shlex

    import tensorflow as tf

    # The breakdown's and resize_crops' tf.functions on one thread (tf.data uses its own
    # pools below).
    try:
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass

    from colourise_tf.cpu import cpu_summary
    from colourise_tf.data import build_dataset
    from colourise_tf.prepare import default_short_side, prepare_shards

    threads = [int(t) for t in args.threads.split(",")]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    command = ".venv/bin/python benchmarks/data_pipeline.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    short = default_short_side(args.image_size)
    results: dict = {
        "what": "training input pipeline (build_dataset training=True, deterministic=False), "
        "images/s with tf.data's private threadpool and autotune cpu_budget at 1 and 2 threads, "
        "from a JPEG folder and from prepared shards (JPEG / raw, resize on the host / "
        "resize_on_device=True); and colourise_tf.data.resize_crops timed on this CPU",
        "date": time.strftime("%Y-%m-%d"),
        "command": command,
        "machine": {
            "cpu": cpu_summary(),
            "lscpu": _lscpu(),
            "cpu_count": os.cpu_count(),
            "cores_available": cores,
            "platform": platform.platform(),
            "python": platform.python_version(),
            "tensorflow": tf.__version__,
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        },
        "settings": {
            "image_size": args.image_size,
            "batch_size": args.batch_size,
            "threads": threads,
            "warmup_batches": args.warmup,
            "timed_batches": args.batches,
            "repeats": args.repeats,
            "order": "interleaved: for each repeat, for each thread count: sources (a), (b), (c), (d), (e)",
            "sources": {name: label for name, (label, _, _) in PER_CORE_SOURCES.items()},
            "breakdown_calls": args.calls,
            "resize_crops_calls": args.resize_calls,
        },
        "notes": [],
    }
    intra = tf.config.threading.get_intra_op_parallelism_threads()
    inter = tf.config.threading.get_inter_op_parallelism_threads()
    results["settings"]["tf_op_threads_for_breakdown"] = {"intra_op": intra, "inter_op": inter}
    with tempfile.TemporaryDirectory(prefix="colourise_percore_") as tmp:
        folder = os.path.join(tmp, "jpegs")
        shard_dirs = {"jpeg": os.path.join(tmp, "shards"), "raw": os.path.join(tmp, "shards_raw")}
        shard_dir = shard_dirs["jpeg"]
        os.makedirs(folder)
        t0 = time.perf_counter()
        results["jpegs"] = make_photo_jpegs(folder, args.n)
        results["jpegs"]["content"] = (
            "random 500x375 crops of the scikit-image / scikit-learn / matplotlib sample photos "
            f"(colourise_tf.data.load_samples), upscaled 1.0-{MAX_UPSCALE}x the least that covers the crop, "
            "random horizontal flip, colour jitter (saturation x0.85-1.15, channel gain "
            "x0.93-1.07, brightness +-8)"
        )
        results["jpegs"]["texture_added"] = (
            f"unsharp mask {UNSHARP} and luminance grain (Gaussian, sigma {GRAIN_SIGMA} per pixel "
            f"plus sigma {COARSE_GRAIN_SIGMA} at 2-pixel scale): the crops alone compress to "
            "~50 KB at quality 90 (the photos are small, so upscaled and smooth)"
        )
        results["notes"].append(
            f"The JPEGs have texture added to reach ImageNet's ~110 KB mean "
            f"(mean here {results['jpegs']['mean_kb']} kB): {results['jpegs']['texture_added']}."
        )
        print(
            f"{args.n} JPEGs: mean {results['jpegs']['mean_kb']} kB, {results['jpegs']['dimensions']} "
            f"({time.perf_counter() - t0:.0f} s)"
        )
        t0 = time.perf_counter()
        info = prepare_shards(
            folder, shard_dir, short_side=short, num_shards=args.num_shards, quality=SHARD_QUALITY, progress=False
        )
        records = _shard_records(shard_dir)
        decoded = [
            tf.io.parse_single_example(
                r,
                {
                    "image": tf.io.FixedLenFeature([], tf.string),
                    "height": tf.io.FixedLenFeature([], tf.int64),
                    "width": tf.io.FixedLenFeature([], tf.int64),
                },
            )
            for r in records
        ]
        jpeg_sizes = [int(tf.strings.length(d["image"])) for d in decoded]
        shard_dims: dict[str, int] = {}
        for d in decoded:
            key = f"{int(d['width'])}x{int(d['height'])}"
            shard_dims[key] = shard_dims.get(key, 0) + 1
        folder_bytes = _folder_bytes(shard_dir)
        results["shards"] = {
            "prepare": f"prepare_shards(folder, out, short_side={short}, num_shards={args.num_shards}, "
            f"quality={SHARD_QUALITY})",
            "cli_equivalent": f"colourise-prepare FOLDER OUT --image-size {args.image_size} "
            f"--shards {args.num_shards} --quality {SHARD_QUALITY}",
            "short_side": short,
            "quality": SHARD_QUALITY,
            "chroma_subsampling": "4:4:4",
            "num_shards": len(info["files"]),
            "num_examples": info["num_examples"],
            "grey_left_out": len(info["grey_left_out"]),
            "dimensions": shard_dims,
            "mean_jpeg_kb": round(statistics.mean(jpeg_sizes) / 1000, 1),
            "folder_bytes": folder_bytes,
            "folder_kb_per_image": round(folder_bytes / info["num_examples"] / 1000, 1),
            "folder_size_vs_jpegs": round(folder_bytes / (results["jpegs"]["mean_bytes"] * args.n), 3),
            "prepare_seconds": round(time.perf_counter() - t0, 1),
        }
        print(f"shards: {results['shards']['folder_kb_per_image']} kB per image, {shard_dims}")
        t0 = time.perf_counter()
        raw_info = prepare_shards(
            folder, shard_dirs["raw"], short_side=short, num_shards=args.num_shards, encoding="raw", progress=False
        )
        raw_bytes = _folder_bytes(shard_dirs["raw"])
        results["raw_shards"] = {
            "prepare": f"prepare_shards(folder, out, short_side={short}, num_shards={args.num_shards}, encoding='raw')",
            "cli_equivalent": f"colourise-prepare FOLDER OUT --image-size {args.image_size} "
            f"--shards {args.num_shards} --encoding raw",
            "short_side": short,
            "num_shards": len(raw_info["files"]),
            "num_examples": raw_info["num_examples"],
            "folder_bytes": raw_bytes,
            "folder_kb_per_image": round(raw_bytes / raw_info["num_examples"] / 1000, 1),
            "folder_size_vs_jpeg_shards": round(raw_bytes / folder_bytes, 2),
            "folder_size_vs_jpegs": round(raw_bytes / (results["jpegs"]["mean_bytes"] * args.n), 2),
            "prepare_seconds": round(time.perf_counter() - t0, 1),
        }
        print(
            f"raw shards: {results['raw_shards']['folder_kb_per_image']} kB per image "
            f"(x{results['raw_shards']['folder_size_vs_jpeg_shards']} the JPEG shards)"
        )

        sources = list(PER_CORE_SOURCES)
        datasets = {}
        for t in threads:
            for name, (_, encoding, on_device) in PER_CORE_SOURCES.items():
                src = folder if encoding is None else shard_dirs[encoding]
                ds = build_dataset(
                    src,
                    image_size=args.image_size,
                    batch_size=args.batch_size,
                    training=True,
                    deterministic=False,
                    resize_on_device=on_device,
                )
                datasets[name, t] = _limited(ds, t)
        runs: dict = {(name, t): [] for name in sources for t in threads}
        for rep in range(args.repeats):
            for t in threads:
                for name in sources:
                    r = _timed_run(datasets[name, t], args.warmup, args.batches)
                    runs[name, t].append(r)
                    print(
                        f"repeat {rep + 1} {name} {t} thread(s): {r['images_per_s']:.0f} images/s "
                        f"(cpu {r['cpu_utilisation']:.2f}, {r['images_per_cpu_s']:.0f} images per CPU-s)",
                        flush=True,
                    )
        pipeline: dict = {}
        for name in sources:
            pipeline[name] = {"source": PER_CORE_SOURCES[name][0]}
            for t in threads:
                rs = runs[name, t]
                rates = [r["images_per_s"] for r in rs]
                pipeline[name][f"{t}_thread"] = {
                    "images_per_s": [round(x, 1) for x in rates],
                    "median_images_per_s": round(statistics.median(rates), 1),
                    "median_images_per_s_per_thread": round(statistics.median(rates) / t, 1),
                    "cpu_utilisation": [round(r["cpu_utilisation"], 2) for r in rs],
                    "median_images_per_cpu_second": round(statistics.median(r["images_per_cpu_s"] for r in rs), 1),
                }
        results["pipeline"] = pipeline
        t_max = max(threads)
        summary: dict = {}
        for name in sources:
            p = pipeline[name]
            summary[name] = {
                "source": PER_CORE_SOURCES[name][0],
                "images_per_s_per_core": round(p[f"{t_max}_thread"]["median_images_per_s"] / t_max, 1),
                "images_per_s_1_thread": p[f"{min(threads)}_thread"]["median_images_per_s"],
                "images_per_cpu_second_all_runs_median": round(
                    statistics.median(r["images_per_cpu_s"] for t in threads for r in runs[name, t]), 1
                ),
            }

        def ratios_to(base: str, name: str) -> dict:
            out = {}
            for t in threads:
                per_rep = [b["images_per_s"] / a["images_per_s"] for a, b in zip(runs[base, t], runs[name, t])]
                out[f"{t}_thread"] = {
                    "per_repeat": [round(x, 2) for x in per_rep],
                    "median": round(statistics.median(per_rep), 2),
                    "ratio_of_medians": round(
                        pipeline[name][f"{t}_thread"]["median_images_per_s"]
                        / pipeline[base][f"{t}_thread"]["median_images_per_s"],
                        2,
                    ),
                }
            return out

        summary["shards_vs_folder"] = ratios_to("a_folder", "b_shards")
        summary["vs_b_shards"] = {name: ratios_to("b_shards", name) for name in sources[2:]}
        summary["target_images_per_s_per_core"] = TARGET_IMAGES_PER_S_PER_CORE
        summary["target_met"] = {
            name: summary[name]["images_per_s_per_core"] >= TARGET_IMAGES_PER_S_PER_CORE for name in sources
        }
        summary["target_met_by_1_thread_rate"] = {
            name: summary[name]["images_per_s_1_thread"] >= TARGET_IMAGES_PER_S_PER_CORE for name in sources
        }
        summary["definition"] = (
            f"per core = median {t_max}-thread rate / {t_max}; the 1-thread rate "
            "is the median with tf.data on one thread (the Python consumer and "
            "tf.data's coordinating threads come on top, see cpu_utilisation); "
            "ratios are medians of the per-repeat ratios (measured side by side)"
        )
        results["summary"] = summary

        # resize_crops on this CPU, on a batch of (e) (the padded windows the step gets).
        batch = next(iter(datasets["e_raw_shards_resize_on_device", t_max]))
        padded = int(batch["image"].shape[1])
        resize = time_resize_crops(batch["image"], batch["crop_size"], args.image_size, args.resize_calls)
        gflop = resize_crops_gflop_per_image(args.image_size, padded)
        step_gflop = _train_step_gflop_per_image()
        resize.update(
            {
                "what": f"colourise_tf.data.resize_crops(images, crop_size, {args.image_size}) on one batch "
                f"of source (e), uint8 [{args.batch_size}, {padded}, {padded}, 3] -> [{args.batch_size}, "
                f"{args.image_size}, {args.image_size}, 3], median of {args.resize_calls} calls (tf.function "
                "and XLA round-robin, one untimed tracing call each), TensorFlow op pools at "
                f"{intra} intra / {inter} inter-op thread(s)",
                "gflop_per_image": round(gflop, 3),
                "gflop_per_image_formula": "2 * 3 * S * P * (P + S), S = image size, P = padded side",
                "train_step_gflop_per_image": step_gflop,
                "resize_vs_train_step_flop": round(gflop / step_gflop, 4) if step_gflop else None,
            }
        )
        for variant in ("tf_function", "xla"):
            ms = resize[variant]["ms_per_image"]
            resize[variant]["gflop_per_s"] = round(gflop / ms * 1000.0, 1)
            resize[variant]["images_per_s_1_thread"] = round(1000.0 / ms, 1)
            # If the step runs on this CPU: host pipeline per core + resize on the same core.
            resize[variant]["images_per_s_per_core_with_host_pipeline"] = {
                name: round(1000.0 / (1000.0 / summary[name]["images_per_s_per_core"] + ms), 1)
                for name in ("d_shards_resize_on_device", "e_raw_shards_resize_on_device")
            }
        results["resize_crops_on_cpu"] = resize

        first = records[sorted(range(len(records)), key=lambda i: jpeg_sizes[i])[len(records) // 2]]

        def name_of(record: bytes) -> bytes:
            return bytes(
                tf.io.parse_single_example(record, {"name": tf.io.FixedLenFeature([], tf.string)})["name"].numpy()
            )

        # The same image's record in the raw shards.
        raw_first = {name_of(r): r for r in _shard_records(shard_dirs["raw"])}[name_of(first)]
        folder_files = sorted(os.listdir(folder))
        sizes = [os.path.getsize(os.path.join(folder, f)) for f in folder_files]
        median_file = folder_files[sorted(range(len(sizes)), key=lambda i: sizes[i])[len(sizes) // 2]]
        with open(os.path.join(folder, median_file), "rb") as f:
            folder_jpeg = f.read()
        results["breakdown"] = {
            "what": "one image of median file size; each step in its own tf.function applied to "
            f"{OPS_PER_CALL} copies of the image (separate arguments), ms per image = (median call - "
            f"median call of an empty function with as many arguments) / {OPS_PER_CALL}, {args.calls} "
            f"calls, the steps round-robin; TensorFlow op pools at {intra} intra / {inter} inter-op "
            "thread(s); the window is the training window of the middle drawn scale, centred; "
            "sum_of_steps_ms = the steps the pipeline runs (parse for shards, decode_and_crop, resize, "
            "flip); 'whole_map_function_random_windows' is the pipeline's per-example function "
            "(parse + window draw + decode_and_crop + resize + flip) with a new window per image; "
            "'whole_map_function_resize_on_device' the same with resize_on_device=True (parse + window "
            "draw + decode_and_crop + flip + pad to the stored shorter side); raw_shard_image: the same "
            "image's record in the raw shards (decode_raw + reshape + slice instead of decode_and_crop)",
            **breakdown(first, folder_jpeg, shard_dir, args.image_size, args.calls, raw=(raw_first, shard_dirs["raw"])),
        }
    results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    util = [r["cpu_utilisation"] for name in sources for r in runs[name, t_max]]
    results["notes"] += [
        f"The {args.n} JPEGs are crops of the same 9 sample photos, so their content repeats; "
        "file sizes, dimensions and quality are ImageNet-like, the decode work per file too.",
        f"At {t_max} threads the process got {min(util):.2f}-{max(util):.2f} CPU seconds per wall "
        f"second (cpu_utilisation) on this {cores}-core machine (load averages at start and end in "
        f"'machine'); anything else running lowers 'images_per_s_per_core' ({t_max}-thread rate / "
        f"{t_max}). 'images_per_cpu_second' (images per process CPU second, consumer thread included) "
        "does not depend on how much CPU the process got.",
        "Breakdown figures are differences of medians; values within about +-0.05 ms of 0 (the "
        "record parse) are below the resolution on this machine.",
        "With resize_on_device=True the batch is uint8 [B, P, P, 3] padded windows (P = the stored "
        "shorter side) plus 'crop_size'; the training step resizes them with resize_crops. The "
        "trainer's data.resize_on_device 'auto' leaves it off on a CPU-only host, where the step's "
        "CPU would do that work ('resize_crops_on_cpu').",
    ]

    for name in sources:
        s = summary[name]
        print(
            f"{name}: {s['images_per_s_per_core']:.0f} images/s per core ({t_max} threads / {t_max}), "
            f"{s['images_per_s_1_thread']:.0f} images/s on 1 thread"
        )
    print(f"shards vs folder: {summary['shards_vs_folder']}")
    print(f"vs JPEG shards (b): { {n: r[f'{t_max}_thread']['median'] for n, r in summary['vs_b_shards'].items()} }")
    print(f"raw shards: {results['raw_shards']['folder_kb_per_image']} kB per image")
    print(f"target {TARGET_IMAGES_PER_S_PER_CORE} images/s/core met: {summary['target_met']}")
    print(
        f"resize_crops on this CPU: tf.function {resize['tf_function']['ms_per_image']} ms/image, "
        f"XLA {resize['xla']['ms_per_image']} ms/image ({resize['gflop_per_image']} GFLOP per image)"
    )
    for part in ("shard_image", "folder_image"):
        b = results["breakdown"][part]
        print(
            f"{part} ({b['image']}, window {b['window_side']}): ms {b['ms']}, "
            f"sum of the pipeline's steps {b['sum_of_steps_ms']} ms"
        )
    if "raw_shard_image" in results["breakdown"]:
        b = results["breakdown"]["raw_shard_image"]
        print(f"raw_shard_image ({b['image']}): ms {b.get('ms')}")
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(results, f, indent=2)
    print(f"wrote {args.output}")
    return results


def _train_step_gflop_per_image() -> float | None:
    """The training step's GFLOP per image from ``results/flops.json`` (None if absent)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "flops.json")
    try:
        with open(path) as f:
            return float(json.load(f)["step"]["reference_gflop_per_image"])
    except (OSError, KeyError, ValueError, TypeError):
        return None


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--mode",
        choices=("folder", "per-core"),
        default="folder",
        help="folder: the modes above (default); per-core: images/s per CPU core from "
        "JPEGs and from prepared shards, JPEG and raw, resized on the host or on the device "
        "(input_pipeline.json)",
    )
    parser.add_argument("--n", type=int, default=300, help="number of JPEGs to generate")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=None, help="default 16 (folder), 64 (per-core)")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--output", default=None, help=f"default {RESULTS} (folder), {PER_CORE_RESULTS} (per-core)")
    parser.add_argument("--batches", type=int, default=40, help="per-core: timed batches per run")
    parser.add_argument("--warmup", type=int, default=5, help="per-core: untimed batches per run")
    parser.add_argument("--threads", default="1,2", help="per-core: tf.data thread counts")
    parser.add_argument("--num-shards", type=int, default=4, help="per-core: shard files")
    parser.add_argument("--calls", type=int, default=300, help="per-core: calls per op in the breakdown")
    parser.add_argument("--resize-calls", type=int, default=7, help="per-core: timed calls of resize_crops")
    args = parser.parse_args(argv)
    if args.mode == "per-core":
        args.batch_size = args.batch_size or 64
        args.output = args.output or PER_CORE_RESULTS
        return per_core(args, argv)
    args.batch_size = args.batch_size or 16
    args.output = args.output or RESULTS

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
