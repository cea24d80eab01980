"""Prepared shards: the on-disk format of a source decoded and resized once.

``colourise-prepare`` (:mod:`colourise_tf.prepare`) writes, and
:func:`colourise_tf.data.build_dataset` reads, a folder on any ``tf.io.gfile`` path::

    prepared.json                     what is in the folder (written last)
    <split>-00000-of-00016.tfrecord   tf.train.Example records, one per image
    ...

Each record holds one colour image (grey images are left out when preparing) with its
shorter side at ``short_side`` (images already smaller are kept at their size), so
training decodes a small image instead of a full-size photo every epoch. ``encoding``
says how: ``jpeg`` (RGB JPEG, 4:4:4; a few GB for 50,000 images at 294 px) or ``raw``
(the uint8 ``height x width x 3`` pixels; about 4x larger, nothing to decode)::

    image   bytes   JPEG, or raw uint8 pixels
    height  int64   of the stored image
    width   int64
    name    bytes   the source's file name or TFDS id

``prepared.json``::

    {"format": "colourise_tf.prepared", "version": 1, "files": [...], "examples": [...],
     "num_examples": N, "short_side": 294, "encoding": "jpeg", "quality": 95,
     "source": ..., "split": ...,
     "grey_left_out": [...], "skipped": [[name, reason], ...]}

``examples`` is the count per file, in the order of ``files``.
"""

from __future__ import annotations

import json

import tensorflow as tf

from colourise_tf import fileio

INFO_NAME = "prepared.json"
FORMAT = "colourise_tf.prepared"
VERSION = 1

ENCODINGS = ("jpeg", "raw")

FEATURES = {
    "image": tf.io.FixedLenFeature([], tf.string),
    "height": tf.io.FixedLenFeature([], tf.int64),
    "width": tf.io.FixedLenFeature([], tf.int64),
    "name": tf.io.FixedLenFeature([], tf.string),
}


class PreparedShardsError(ValueError):
    """A folder of prepared shards is incomplete or of another format."""


def is_prepared(path: str) -> bool:
    """Whether ``path`` is a folder written by ``colourise-prepare``."""
    if not isinstance(path, str) or path == "samples" or any(c in path for c in "*?["):
        return False
    try:
        return fileio.exists(fileio.join(fileio.normalize(path), INFO_NAME))
    except (tf.errors.OpError, ValueError):
        return False


def shard_name(split: str, index: int, count: int) -> str:
    """``<split>-00003-of-00016.tfrecord``."""
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in split) or "data"
    return f"{safe}-{index:05d}-of-{count:05d}.tfrecord"


def read_info(path: str) -> dict:
    """The folder's ``prepared.json``, checked; raises :class:`PreparedShardsError`."""
    folder = fileio.normalize(path)
    info_path = fileio.join(folder, INFO_NAME)
    try:
        info = json.loads(fileio.read_text(info_path))
    except (ValueError, tf.errors.OpError) as err:
        raise PreparedShardsError(f"{info_path}: not a readable prepared-shards description ({err})") from err
    if info.get("format") != FORMAT or info.get("version") != VERSION:
        raise PreparedShardsError(
            f"{info_path}: format {info.get('format')!r} version {info.get('version')!r}; "
            f"this colourise_tf reads {FORMAT!r} version {VERSION}"
        )
    missing = [f for f in info["files"] if not fileio.exists(fileio.join(folder, f))]
    if missing:
        raise PreparedShardsError(f"{folder}: shard file(s) listed in {INFO_NAME} are missing: {missing[:5]}")
    if info.setdefault("encoding", "jpeg") not in ENCODINGS:
        raise PreparedShardsError(f"{info_path}: unknown encoding {info['encoding']!r}; expected one of {ENCODINGS}")
    if not info["files"] or not info.get("num_examples"):
        raise PreparedShardsError(f"{folder}: holds no image")
    return info


def write_info(path: str, info: dict) -> dict:
    """Writes ``prepared.json`` atomically (the folder is usable once it exists); returns it."""
    info = dict(info, format=FORMAT, version=VERSION)
    fileio.atomic_write_text(fileio.join(fileio.normalize(path), INFO_NAME), json.dumps(info, indent=1) + "\n")
    return info


def shard_paths(path: str, info: dict) -> list[str]:
    """Full paths of the folder's shard files, in order."""
    folder = fileio.normalize(path)
    return [fileio.join(folder, f) for f in info["files"]]


def encode_example(image: bytes, height: int, width: int, name: bytes) -> bytes:
    """One serialised ``tf.train.Example`` of the format above."""
    feature = {
        "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image])),
        "height": tf.train.Feature(int64_list=tf.train.Int64List(value=[height])),
        "width": tf.train.Feature(int64_list=tf.train.Int64List(value=[width])),
        "name": tf.train.Feature(bytes_list=tf.train.BytesList(value=[name])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def parse_example(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
    """A serialised record -> ``{"image": JPEG bytes, "height", "width", "name"}``."""
    return tf.io.parse_single_example(serialized, FEATURES)
