"""``colourise-prepare``: decode and resize a source once into prepared shards.

Training on full-size JPEGs decodes every photo at full size every epoch. Preparing
does that once: each colour image of a source (any TFDS dataset and split, a folder,
a glob, or the embedded samples) is decoded, its shorter side resized to a little
above the training crop (``round(1.15 * image_size)``: the largest scale the
training augmentation draws, so augmentation is unchanged), re-encoded as JPEG and
written to TFRecord shards on any ``tf.io.gfile`` path (format:
:mod:`colourise_tf.shards`). Train on them with ``--dataset <folder>``.

Grey images are left out (and listed), unreadable files are skipped (and listed).
Each shard is written to a temporary name and renamed when complete, so an
interrupted run keeps its finished shards and a rerun with the same arguments
writes only the missing ones; ``prepared.json`` is written last.

Example: the Górriz et al. 2019 training split (the 50,000 ImageNet validation
images) at 256 px::

    colourise-prepare imagenet2012 gs://bucket/gorriz-train --split gorriz-train \\
        --manual-dir ~/imagenet --image-size 256
"""

from __future__ import annotations

import json
import logging
import math
import os

import tensorflow as tf

from colourise_tf import data as data_lib
from colourise_tf import fileio
from colourise_tf import shards as shards_lib

log = logging.getLogger("colourise_tf.prepare")

#: Images per shard file by default (about 40-60 MB of JPEGs at 294 px).
EXAMPLES_PER_SHARD = 1024


def default_short_side(image_size: int) -> int:
    """The shorter side prepared for training at ``image_size``: the largest the
    training scale augmentation draws (``round(1.15 * image_size)``)."""
    return max(image_size, int(round(image_size * data_lib.TRAIN_SCALE_JITTER)))


def _resize_shorter(image: tf.Tensor, short_side: int) -> tf.Tensor:
    """Shrinks an image so its shorter side is ``short_side`` (never enlarges)."""
    shape = tf.shape(image)
    h, w = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
    scale = tf.minimum(1.0, short_side / tf.minimum(h, w))
    new = tf.cast(tf.maximum(tf.round(tf.stack([h, w]) * scale), 1.0), tf.int32)

    def resized():
        out = tf.image.resize(image, new, method="bilinear", antialias=True)
        return tf.cast(tf.clip_by_value(tf.round(out), 0.0, 255.0), tf.uint8)

    return tf.cond(scale < 1.0, resized, lambda: image)


def _sidecar(path: str) -> str:
    return path + ".info.json"


def prepare_shards(
    source: str,
    out_dir: str,
    *,
    split: str = "train",
    short_side: int = 294,
    num_shards: int | None = None,
    quality: int = 95,
    encoding: str = "jpeg",
    data_dir: str | None = None,
    manual_dir: str | None = None,
    progress: bool = True,
) -> dict:
    """Writes ``source`` as prepared shards into ``out_dir``; returns ``prepared.json``'s dict.

    Args:
        source: as :func:`colourise_tf.data.build_dataset` (TFDS name, folder, glob,
            ``"samples"``).
        out_dir: a new folder (local or any ``tf.io.gfile`` URI).
        split: TFDS split (incl. ``gorriz-train``); ignored for files.
        short_side: shorter side of the stored images (larger images are shrunk).
        num_shards: shard files; default one per :data:`EXAMPLES_PER_SHARD` images.
        quality: JPEG quality (chroma is stored at full resolution, 4:4:4).
        encoding: ``jpeg``, or ``raw`` pixels (about 4x the bytes, no decoding when
            training: for hosts whose cores cannot decode JPEGs fast enough).
        data_dir, manual_dir: TFDS directories.
        progress: show a progress bar.

    Raises:
        FileExistsError: ``out_dir`` already holds prepared shards.
        ValueError: bad arguments, or a rerun with other arguments than the
            unfinished one in ``out_dir``.
    """
    from tqdm.auto import tqdm

    if encoding not in shards_lib.ENCODINGS:
        raise ValueError(f"encoding must be one of {shards_lib.ENCODINGS}, got {encoding!r}")
    if short_side < 1 or not 1 <= quality <= 100:
        raise ValueError(f"short_side must be >= 1 and quality in 1..100, got {short_side}, {quality}")
    out_dir = fileio.normalize(out_dir)
    if shards_lib.is_prepared(out_dir):
        raise FileExistsError(f"{out_dir} already holds prepared shards ({shards_lib.INFO_NAME}); choose a new folder")
    if split == "gorriz-test":
        raise ValueError("gorriz-test is an evaluation split read in TFDS order; prepare gorriz-train or a TFDS split")
    report = data_lib.PipelineReport()
    src = data_lib._make_source(
        source,
        split=split,
        training=False,
        data_dir=data_dir,
        manual_dir=manual_dir,
        segmentation_key=None,
        report=report,
        shuffle_buffer=1,
        min_side=short_side,
    )
    records = src.records(repeat=False, shuffle=False, seed=0)
    count = int(records.cardinality())
    if count < 0:
        count = int(records.reduce(0, lambda n, _: n + 1))
    if count == 0:
        raise data_lib.NoUsableImagesError(f"no usable image in {source!r}. " + report.summary())
    num_shards = num_shards or max(1, math.ceil(count / EXAMPLES_PER_SHARD))
    if num_shards < 1 or num_shards > count:
        raise ValueError(f"num_shards must be in 1..{count} (the source's images), got {num_shards}")
    params = {
        "source": str(source),
        "split": split,
        "short_side": short_side,
        "encoding": encoding,
        "quality": quality,
        "num_shards": num_shards,
        "records": count,
    }
    fileio.makedirs(out_dir)
    for stale in fileio.listdir(out_dir):  # pieces of shards an earlier, killed run was writing
        if ".tfrecord.tmp-" in stale:
            fileio.remove(fileio.join(out_dir, stale))

    def encode(ex):
        image = _resize_shorter(ex["image"], short_side)
        # raw: the pixels themselves (their bytes are taken on the host, below)
        data = image if encoding == "raw" else tf.io.encode_jpeg(image, quality=quality, chroma_downsampling=False)
        return data, tf.shape(image)[0], tf.shape(image)[1], ex["name"]

    def named(rec):
        ex = src.decode_full(rec)
        name = rec["name"] if "name" in rec else rec.get("file_name", rec.get("tfds_id", tf.constant("")))
        return dict(ex, name=name)

    bounds = [count * k // num_shards for k in range(num_shards + 1)]
    files, examples, grey = [], [], []
    bar = tqdm(total=count, disable=not progress, unit="img", desc="preparing shards", dynamic_ncols=True)
    for k in range(num_shards):
        name = shards_lib.shard_name(split, k, num_shards)
        path = fileio.join(out_dir, name)
        files.append(name)
        if fileio.exists(path) and fileio.exists(_sidecar(path)):
            done = json.loads(fileio.read_text(_sidecar(path)))
            if done.get("params") != params:
                raise ValueError(
                    f"{out_dir} holds an unfinished preparation with other arguments ({done.get('params')}); "
                    "use a new folder"
                )
            examples.append(done["examples"])
            grey += done["grey"]
            bar.update(bounds[k + 1] - bounds[k])
            continue
        grey_before = set(report.grey)
        part = records.skip(bounds[k]).take(bounds[k + 1] - bounds[k])
        part = data_lib._kept(part.map(named, num_parallel_calls=tf.data.AUTOTUNE), src.filters)
        part = part.map(encode, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
        tmp = f"{path}.tmp-{os.getpid()}"
        n = 0
        with tf.io.TFRecordWriter(tmp) as writer:
            for data, h, w, ex_name in part.as_numpy_iterator():
                payload = data.tobytes() if encoding == "raw" else data
                writer.write(shards_lib.encode_example(payload, int(h), int(w), ex_name))
                n += 1
                bar.update(1)
        tf.io.gfile.rename(tmp, path, overwrite=True)
        shard_grey = sorted(set(report.grey) - grey_before)
        fileio.atomic_write_text(_sidecar(path), json.dumps({"params": params, "examples": n, "grey": shard_grey}))
        bar.update(bounds[k + 1] - bounds[k] - n - len(shard_grey))
        examples.append(n)
        grey += shard_grey
    bar.close()
    total = sum(examples)
    if total == 0:
        raise data_lib.NoUsableImagesError(f"no usable colour image in {source!r}. " + report.summary())
    # A shard whose whole range was grey or unreadable holds nothing: leave it out (an
    # input pipeline given only empty files would wait forever for an image).
    kept = [(f, n) for f, n in zip(files, examples) if n]
    info = shards_lib.write_info(
        out_dir,
        dict(
            params,
            files=[f for f, _ in kept],
            examples=[n for _, n in kept],
            num_examples=total,
            grey_left_out=grey,
            skipped=[list(x) for x in report.skipped],
        ),
    )
    for f, n in zip(files, examples):  # the sidecars only served an interrupted run
        fileio.remove(_sidecar(fileio.join(out_dir, f)))
        if n == 0:
            fileio.remove(fileio.join(out_dir, f))
    return info
