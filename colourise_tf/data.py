"""tf.data input pipeline: image sources -> uint8 RGB batches.

Data flow (host side, one direction)::

    records                      cheap: file paths | TFDS encoded examples
      -> [repeat, shuffle]       training: an endless seeded shuffle before decoding
                                 (paths / JPEG bytes are small)
      -> decode (parallel)       uint8 RGB of any input mode; corrupt files skipped + reported
      -> drop greyscale          images that are already grey carry no colour to learn
      -> [gorriz-test selection] first 10 colour images per class, TFDS order
      -> [cache]                 decoded, un-augmented images
      -> [repeat]                when not repeated above (caching, selection, eval)
      -> [shuffle, seeded]       only when caching / selecting (otherwise done above)
      -> geometry (parallel)     train: random scale + crop + flip; eval: resize + centre crop
      -> [mask]                  synthetic partial-colour masks (the IMPA project)
      -> batch -> prefetch(AUTOTUNE)

The output is ``{"image": uint8 [B, S, S, 3]}`` (plus ``"mask"`` float32 ``[B, S, S, 1]``
and/or ``"segmentation"`` int32 ``[B, S, S]`` on request). Colour conversion to Lab is
NOT done here: it runs in the train step on the device, through
:mod:`colourise_tf.colour`, so the host only ships bytes.

Choices, and why:

* **Decoding files in TensorFlow.** The file list is probed once, in Python, when the
  dataset is built: each file's header (format, mode, size) and EXIF orientation
  are read without decoding pixels, and a cheap end-marker check catches truncated
  JPEG and PNG files. The dataset then decodes JPEG (grey and RGB, DCT-downscaled to
  just above the size the crop needs, as Pillow's ``draft``), PNG (8 and 16 bits,
  palette, alpha), GIF (first frame), BMP and WebP with TensorFlow's own ops and
  applies the orientation in the graph, so no Python runs while it is iterated (an
  iterator still alive at interpreter exit no longer hangs the process waiting for
  Pillow calls that cannot take the GIL). What TensorFlow cannot decode (TIFF, CMYK
  JPEG, 32-bit and float images...) is decoded by Pillow once, when the list is
  built, and kept as PNG bytes in memory: a bounded branch for a few scans, not for
  thousands of TIFFs. TFDS images are decoded by TF (they were re-encoded by TFDS at
  preparation time, so they are well-formed RGB JPEG/PNG).
* **Input modes** -> uint8 RGB: ``L``/``1`` are replicated to three channels;
  16-bit (``I;16*``, ``I``) is scaled by 1/257 (65535 -> 255); images with alpha
  (``LA``, ``RGBA``, ``PA``, palette or grey with a transparency key) are composited
  over **white**, i.e. what a viewer shows, rather than exposing the arbitrary colour
  stored under transparent pixels; ``CMYK`` (incl. Adobe-inverted JPEGs) goes through
  Pillow's conversion. GIF/APNG/WebP animations give their first frame.
* **Corrupt / truncated files** never stop an epoch: empty, unrecognised and
  truncated files (and files Pillow cannot convert) are left out when the list is
  built, logged once (logger ``colourise_tf.data``) and recorded with their reason in
  :class:`PipelineReport`. A file whose data is corrupt behind an intact header and
  end marker fails in TensorFlow's decoder; it is dropped there (``ignore_errors``,
  whose warning names no path).
* **Greyscale images** (all channels within ``tol=2`` levels; JPEG chroma noise on grey
  photos is about one level) are left out of training **and evaluation** and recorded in
  :attr:`PipelineReport.grey`: colour metrics against a grey ground truth would
  penalise any colourisation, so a grey image in a test split only adds noise. (To
  colourise grey photos use the inference path, not this pipeline.)
* **Training geometry**: equivalent to resizing the shorter side to a random integer
  in ``[S, round(1.15 S)]`` and taking a random ``S x S`` crop, then a random
  horizontal flip; implemented crop-first (a random square of 87-100 % of the
  shorter side, resized to ``S x S``) so no pixel is resized only to be cropped away.
  **Evaluation**: resize the shorter side to ``S`` and centre-crop (the centre square
  of side ``min(h, w)``, offset ``(h - side) // 2``, resized to ``S x S``), no flip.
  Resizing is bilinear, antialiased when shrinking more than 2x. Segmentation masks
  follow the same geometry with nearest-neighbour resizing.
* **Determinism**: every random decision of an example comes from stateless ops seeded
  by ``(seed, running index of the example)``, and every shuffle is seeded, so two
  pipelines built with the same arguments give the same batches (with
  ``deterministic=True``); repeated epochs see fresh crops and a fresh order.
  Training shuffles one endless stream (``repeat`` then ``shuffle``) rather than
  reshuffling each epoch: tf.data restores per-epoch reshuffle seeds inconsistently
  when a checkpoint is taken while prefetching has crossed an epoch boundary. A
  training source with no usable image raises :class:`NoUsableImagesError` up front
  instead of filtering an endless stream forever.
* **Checkpointable iterators**: ``tf.train.Checkpoint`` can save a training iterator
  mid-epoch (shuffle buffers included) and a resumed run continues at the same
  example instead of re-reading what it already saw. The grey-image record (a hash
  table) is declared external state (``ExternalStatePolicy.IGNORE``) and the masks'
  Python function stateless.
* **Masks** (``partial-mask`` preset) are drawn by :func:`colourise_tf.masks.random_mask`
  in TensorFlow from the example's stateless seed.
* **Window first**: without caching, each example's crop window is drawn from its
  seed and the image's size (the file header, or ``tf.image.extract_jpeg_shape``)
  before decoding, and JPEGs decode only that window
  (``tf.io.decode_and_crop_jpeg``); the grey test then runs on the window.
* **Distribution**: with an ``input_context`` each input pipeline reads its own
  files; ``skip_batches`` resumes a pipeline whose iterator was not saved.
"""

from __future__ import annotations

import dataclasses
import glob as _glob
import logging
import os
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import tensorflow as tf
from PIL import Image, ImageOps

from colourise_tf import masks as masks_lib
from colourise_tf import shards as shards_lib

__all__ = [
    "SAMPLE_NAMES",
    "IMAGE_EXTENSIONS",
    "MASK_KINDS",
    "TRAIN_SCALE_JITTER",
    "GORRIZ_PER_CLASS",
    "ImageDecodeError",
    "NoUsableImagesError",
    "DatasetUnavailableError",
    "PipelineReport",
    "sample_image_paths",
    "load_samples",
    "decode_image_file",
    "is_greyscale",
    "list_image_files",
    "build_dataset",
    "resize_crops",
]

logger = logging.getLogger("colourise_tf.data")

#: The real photographs shipped inside packages we depend on (no download needed).
SAMPLE_NAMES: tuple[str, ...] = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "motorcycle_left",
    "motorcycle_right",
    "china",
    "flower",
    "grace_hopper",
)

#: File name endings accepted from folders and globs (compared case-insensitively).
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")

MASK_KINDS = masks_lib.MASK_KINDS  # the mask kinds of the partial-mask preset

#: Training resizes the shorter side to a random size in ``[S, round(S * jitter)]``.
TRAIN_SCALE_JITTER = 1.15

#: Górriz et al. (2019, §IV-A) test split: this many images per class from ``train``.
GORRIZ_PER_CLASS = 10

_SKIMAGE_FILES = {
    "astronaut": "astronaut.png",
    "chelsea": "chelsea.png",
    "coffee": "coffee.png",
    "rocket": "rocket.jpg",
    "motorcycle_left": "motorcycle_left.png",
    "motorcycle_right": "motorcycle_right.png",
}
_SKLEARN_FILES = {"china": "china.jpg", "flower": "flower.jpg"}

_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


# --------------------------------------------------------------------------- samples


def sample_image_paths() -> dict[str, str]:
    """Returns the file paths of the embedded sample photos, keyed by name.

    The photos are the real ones that ship inside scikit-image, scikit-learn and
    matplotlib wheels, so nothing is downloaded.

    Returns:
        Mapping from each of :data:`SAMPLE_NAMES` to an existing file path.

    Raises:
        FileNotFoundError: if a package is installed without its sample data.
    """
    import matplotlib.cbook
    import skimage.data
    import sklearn.datasets

    paths: dict[str, str] = {}
    skimage_dir = os.path.dirname(skimage.data.__file__)
    sklearn_dir = os.path.join(os.path.dirname(sklearn.datasets.__file__), "images")
    for name in SAMPLE_NAMES:
        if name in _SKIMAGE_FILES:
            path = os.path.join(skimage_dir, _SKIMAGE_FILES[name])
        elif name in _SKLEARN_FILES:
            path = os.path.join(sklearn_dir, _SKLEARN_FILES[name])
        else:  # grace_hopper
            path = str(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
        if not os.path.isfile(path):
            raise FileNotFoundError(f"sample image {name!r} not found at {path}")
        paths[name] = path
    return paths


def load_samples() -> list[tuple[str, np.ndarray]]:
    """Loads the embedded sample photos.

    Returns:
        ``(name, image)`` pairs in :data:`SAMPLE_NAMES` order, each image uint8
        ``[H, W, 3]`` RGB.
    """
    return [(name, decode_image_file(path)) for name, path in sample_image_paths().items()]


# --------------------------------------------------------------------------- decoding


class DatasetUnavailableError(FileNotFoundError):
    """A TFDS dataset is neither prepared nor preparable here (e.g. ImageNet
    without its manually downloaded tarballs)."""


class NoUsableImagesError(ValueError):
    """A training source in which every image is unreadable or greyscale."""


class ImageDecodeError(ValueError):
    """An image file could not be decoded.

    Attributes:
        path: the file.
        reason: what went wrong, without the path.
    """

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def _composite_on_white(rgba: np.ndarray) -> np.ndarray:
    rgb = rgba[..., :3].astype(np.uint32)
    alpha = rgba[..., 3:4].astype(np.uint32)
    out = (rgb * alpha + 255 * (255 - alpha) + 127) // 255
    return out.astype(np.uint8)


def _pil_to_rgb_array(img: Image.Image) -> np.ndarray:
    """Converts a loaded Pillow image of any mode to uint8 ``[H, W, 3]``."""
    mode = img.mode
    if mode == "RGB":
        return np.asarray(img, dtype=np.uint8)
    if mode in _SIXTEEN_BIT_MODES:
        wide = np.asarray(img).astype(np.float32)
        grey = np.clip(np.rint(wide / 257.0), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=-1)
    if mode == "F":
        flt = np.asarray(img, dtype=np.float32)
        if flt.size and float(np.nanmax(flt)) <= 1.0:  # [0, 1] floats
            flt = flt * 255.0
        grey = np.clip(np.rint(np.nan_to_num(flt)), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=-1)
    if "A" in mode or "a" in mode or "transparency" in img.info:
        return _composite_on_white(np.asarray(img.convert("RGBA"), dtype=np.uint8))
    if mode in ("L", "1"):
        grey = np.asarray(img.convert("L"), dtype=np.uint8)
        return np.repeat(grey[..., None], 3, axis=-1)
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def decode_image_file(path: str | os.PathLike, *, min_side: int | None = None) -> np.ndarray:
    """Decodes an image file of any mode to uint8 RGB with Pillow.

    Handles ``L``, ``LA``, ``RGBA``, ``P`` (palette, with or without transparency),
    16-bit (``I;16``), ``CMYK`` and the rest; the first frame of animations (GIF,
    APNG, WebP); and the EXIF orientation tag. Alpha is composited over white.

    Args:
        path: image file.
        min_side: if given, JPEGs may be decoded at a reduced DCT scale (1/2, 1/4,
            1/8) as long as both sides stay ``>= min_side``. The pipeline passes the
            largest shorter side it will resize to, so this only skips pixels the
            resize would have averaged away anyway.

    Returns:
        uint8 array ``[H, W, 3]`` (C-contiguous), in display orientation.

    Raises:
        ImageDecodeError: (a ``ValueError``) naming the file and the problem, for
            missing, empty, unrecognised, corrupt or truncated files.
    """
    path = os.fspath(path)
    try:
        size = os.path.getsize(path)
    except OSError as err:
        raise ImageDecodeError(path, f"cannot read file ({err.strerror or err})") from err
    if size == 0:
        raise ImageDecodeError(path, "empty file (0 bytes)")
    try:
        with Image.open(path) as img:
            if min_side and img.format in ("JPEG", "MPO"):
                img.draft(None, (int(min_side), int(min_side)))
            img.load()
            if img.getexif().get(0x0112, 1) != 1:  # Orientation tag
                img = ImageOps.exif_transpose(img)
            rgb = _pil_to_rgb_array(img)
    except Image.UnidentifiedImageError as err:
        raise ImageDecodeError(path, "not a recognised image format") from err
    except Image.DecompressionBombError as err:
        raise ImageDecodeError(path, f"image too large ({err})") from err
    except Exception as err:  # Pillow raises OSError, SyntaxError, struct.error, ...
        kind = "truncated image" if "truncated" in str(err).lower() else "corrupt image"
        raise ImageDecodeError(path, f"{kind} ({type(err).__name__}: {err})") from err
    if rgb.ndim != 3 or rgb.shape[-1] != 3 or rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ImageDecodeError(path, f"unexpected decoded shape {rgb.shape}")
    return np.ascontiguousarray(rgb)


def is_greyscale(rgb_uint8: np.ndarray, tol: int = 2) -> bool:
    """Tells whether an image carries no colour: all channels equal within ``tol``.

    Args:
        rgb_uint8: ``[..., 3]`` image (``[..., 1]`` and 2-D arrays count as grey).
        tol: largest per-pixel ``max(R, G, B) - min(R, G, B)`` still called grey.

    Returns:
        ``True`` if every pixel has ``max - min <= tol`` over its channels.
    """
    arr = np.asarray(rgb_uint8)
    if arr.ndim < 3 or arr.shape[-1] == 1:
        return True
    flat = arr.reshape(-1, arr.shape[-1])[:, :3]

    def spread_ok(pixels: np.ndarray) -> bool:
        if pixels.size == 0:
            return True
        spread = pixels.max(axis=1).astype(np.int32) - pixels.min(axis=1).astype(np.int32)
        return int(spread.max()) <= tol

    # A sparse sample rejects almost every colour photo without touching all pixels.
    return spread_ok(flat[::97]) and spread_ok(flat)


def _is_greyscale_tf(image: tf.Tensor, tol: int = 2) -> tf.Tensor:
    """:func:`is_greyscale` in TensorFlow: a sparse sample first (it rejects almost every
    colour photo), then every pixel only when the sample looked grey."""

    def grey(x: tf.Tensor) -> tf.Tensor:
        spread = tf.cast(tf.reduce_max(x, axis=-1), tf.int16) - tf.cast(tf.reduce_min(x, axis=-1), tf.int16)
        return tf.reduce_max(spread) <= tol

    return tf.cond(grey(image[::7, ::7]), lambda: grey(image), lambda: tf.constant(False))


# --------------------------------------------------------------------------- report


class PipelineReport:
    """What the pipeline left out, filled while the dataset is built and iterated.

    Each path is recorded (and logged) once, however many epochs revisit it. Safe to
    share between threads. Grey images found while a dataset runs are recorded inside
    the graph, in a TensorFlow hash table (:meth:`grey_table`), so that decoding runs
    no Python; :attr:`grey` reads it.

    Attributes:
        skipped: ``(path, reason)`` of files that could not be decoded.
        grey: paths (or TFDS ids / file names) left out because already greyscale.
    """

    def __init__(self) -> None:
        self.skipped: list[tuple[str, str]] = []
        self._grey: list[str] = []
        self._lock = threading.Lock()
        self._seen_skipped: set[str] = set()
        self._seen_grey: set[str] = set()
        self._table = None

    def grey_table(self):
        """The in-graph record of grey images: a ``MutableHashTable`` string -> int64
        that pipelines insert the grey paths into (and ``""`` for the others)."""
        with self._lock:
            if self._table is None:
                with tf.init_scope():
                    self._table = tf.lookup.experimental.MutableHashTable(tf.string, tf.int64, default_value=0)
            return self._table

    @property
    def grey(self) -> list[str]:
        with self._lock:
            table, listed = self._table, list(self._grey)
        if table is not None:
            keys = table.export()[0].numpy()
            found = sorted(k.decode("utf-8", "surrogateescape") for k in keys if k)
            for name in found:
                if name not in self._seen_grey:
                    self.add_grey(name)
            with self._lock:
                listed = list(self._grey)
        return listed

    def add_skipped(self, path: str, reason: str) -> None:
        """Records an undecodable file (first time only) and logs a warning."""
        with self._lock:
            if path in self._seen_skipped:
                return
            self._seen_skipped.add(path)
            self.skipped.append((path, reason))
        logger.warning("skipping unreadable image %s: %s", path, reason)

    def add_grey(self, name: str) -> None:
        """Records an image left out because it is already greyscale."""
        with self._lock:
            if name in self._seen_grey:
                return
            self._seen_grey.add(name)
            self._grey.append(name)
        logger.info("leaving out greyscale image %s", name)

    def summary(self) -> str:
        """One human-readable paragraph: counts, then the skipped files and reasons."""
        n_grey = len(self.grey)
        with self._lock:
            skipped = list(self.skipped)
        lines = [f"{len(skipped)} file(s) skipped as unreadable, {n_grey} greyscale image(s) left out"]
        lines += [f"  skipped {path}: {reason}" for path, reason in skipped]
        return "\n".join(lines)


# --------------------------------------------------------------------------- files


def _has_glob_magic(pattern: str) -> bool:
    return any(ch in pattern for ch in "*?[")


def _is_image_name(path: str) -> bool:
    return path.lower().endswith(IMAGE_EXTENSIONS)


def list_image_files(source: str) -> list[str]:
    """Lists the image files of a folder (recursively), a glob or a single file.

    Args:
        source: a directory, a file, or a glob pattern (``**`` recurses).

    Returns:
        Sorted paths whose names end in one of :data:`IMAGE_EXTENSIONS`
        (case-insensitive).

    Raises:
        FileNotFoundError: if nothing matches, naming the pattern.
    """
    source = os.path.expanduser(os.fspath(source))
    if os.path.isdir(source):
        found = [
            os.path.join(root, name)
            for root, _, names in os.walk(source, followlinks=True)
            for name in names
            if _is_image_name(name)
        ]
        where = f"folder {source!r} (searched recursively for {', '.join(IMAGE_EXTENSIONS)})"
    elif os.path.isfile(source):
        found = [source] if _is_image_name(source) else []
        where = f"file {source!r} (not one of {', '.join(IMAGE_EXTENSIONS)})"
    else:
        found = [p for p in _glob.glob(source, recursive=True) if os.path.isfile(p) and _is_image_name(p)]
        where = f"pattern {source!r}"
    if not found:
        raise FileNotFoundError(f"no image files found for {where}")
    return sorted(found)


# Formats and modes TensorFlow decodes itself (everything else goes through Pillow once).
_NATIVE = {
    "JPEG": {"L", "RGB"},  # not CMYK/YCCK: libjpeg-turbo in TF gives no RGB for them
    "MPO": {"L", "RGB"},  # JPEGs with a multi-picture block (many phone photos): the first image
    "PNG": {"1", "L", "LA", "P", "PA", "RGB", "RGBA", "I;16", "I;16B", "I;16L", "I"},
    "GIF": {"P", "L", "RGB", "RGBA"},
    "BMP": {"RGB"},
}
if hasattr(tf.io, "decode_webp"):
    _NATIVE["WEBP"] = {"RGB", "RGBA"}
_KIND = {"JPEG": 0, "MPO": 0, "PNG": 1, "GIF": 2, "BMP": 3, "WEBP": 4}
_RATIOS = (1, 2, 4, 8)
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclasses.dataclass(frozen=True)
class _FileRecord:
    """What the file list says about one image, from its header alone."""

    name: str  # the user's file (reports)
    path: str  # what the graph reads: the file, or its PNG conversion
    kind: int  # _KIND
    orientation: int  # EXIF orientation tag, 1..8
    ratio: int  # JPEG DCT downscale (1, 2, 4, 8)
    height: int  # of the pixels the graph decodes (stored orientation, after the DCT downscale)
    width: int


def _jpeg_ratio(width: int, height: int, min_side: int) -> int:
    """The DCT downscale Pillow's ``draft`` picks for a requested ``min_side`` square:
    the largest of 8, 4, 2 not above ``min(width // min_side, height // min_side)``."""
    scale = min(width // max(min_side, 1), height // max(min_side, 1))
    return next((r for r in (8, 4, 2) if r <= scale), 1)


def _jpeg_complete(f, size: int) -> bool:
    """Whether a JPEG has its end-of-image marker after the start of its (first) scan.

    Walks the marker segments to the first start-of-scan (header only). Entropy-coded
    data cannot contain ``FF D9`` (0xFF bytes are stuffed), so an end marker after
    that point is the image's own; one inside an EXIF thumbnail comes before it. The
    last 64 KiB are searched first; only files whose end marker is not there (bytes
    appended after the image, such as a phone's motion-photo video, or a truncated
    file) are read to the end.
    """
    pos = 2
    while pos + 4 <= size:
        f.seek(pos)
        marker = f.read(4)
        if len(marker) < 4 or marker[0] != 0xFF:
            return False
        if marker[1] == 0xDA:  # start of scan
            break
        if marker[1] == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker[1] in (0xD8, 0x01) or 0xD0 <= marker[1] <= 0xD7:
            pos += 2
            continue
        pos += 2 + int.from_bytes(marker[2:4], "big")
    else:
        return False
    start = max(pos, size - 65536)
    f.seek(start)
    if b"\xff\xd9" in f.read():
        return True
    f.seek(pos)
    tail = b""
    while chunk := f.read(1 << 20):  # whole file: only for the rare cases above
        if b"\xff\xd9" in tail[-1:] + chunk:
            return True
        tail = chunk
    return False


def _png_chunks(f, size: int) -> tuple[bool, bytes | None]:
    """``(complete, exif)``: walks a PNG's chunk headers (seeking over their data) to
    ``IEND``; ``exif`` is the ``eXIf`` chunk's payload wherever it sits."""
    f.seek(0)
    if f.read(8) != _PNG_SIGNATURE:
        return False, None
    pos, exif = 8, None
    while pos + 8 <= size:
        f.seek(pos)
        header = f.read(8)
        length, kind = int.from_bytes(header[:4], "big"), header[4:8]
        if kind == b"eXIf":
            exif = f.read(length)
        if kind == b"IEND":
            return True, exif
        pos += 12 + length
    return False, exif


def _orientation(exif_bytes: bytes | None) -> int:
    if not exif_bytes:
        return 1
    exif = Image.Exif()
    exif.load(exif_bytes)
    return int(exif.get(0x0112, 1) or 1)


_converted_dir: str | None = None


def _conversion_path(path: str, min_side: int) -> str:
    """Where the PNG conversion of ``path`` goes: a per-process temporary folder, removed
    at exit (converted pixels stay out of the dataset graph and its checkpoints)."""
    global _converted_dir
    if _converted_dir is None:
        import atexit
        import shutil
        import tempfile

        _converted_dir = tempfile.mkdtemp(prefix="colourise_converted_")
        atexit.register(shutil.rmtree, _converted_dir, True)
    import hashlib

    stat = os.stat(path)
    key = f"{os.path.abspath(path)}|{stat.st_size}|{stat.st_mtime_ns}|{min_side}".encode("utf-8", "surrogateescape")
    return os.path.join(_converted_dir, hashlib.sha1(key).hexdigest() + ".png")


def _convert_once(path: str, min_side: int) -> tuple[str, tuple[int, int]]:
    """Decodes a file TensorFlow cannot (TIFF, CMYK JPEG, 32-bit BMP, GIF with a
    transparent colour...) with Pillow, once, into a PNG of its display-oriented uint8
    RGB pixels; returns the PNG's path and its ``(width, height)``."""
    out = _conversion_path(path, min_side)
    if not os.path.exists(out):
        rgb = decode_image_file(path, min_side=min_side)
        Image.fromarray(rgb).save(out + ".tmp", format="PNG", compress_level=1)
        os.replace(out + ".tmp", out)
    with Image.open(out) as img:
        return out, img.size


def _probe_file(path: str, min_side: int, report: PipelineReport) -> _FileRecord | None:
    """Reads one file's header (format, mode, size, EXIF orientation, end marker): a
    record for the graph, or ``None`` (reported) for a file that cannot be used. Only
    files TensorFlow cannot decode are decoded here (with Pillow, once)."""
    try:
        size = os.path.getsize(path)
    except OSError as err:
        report.add_skipped(path, f"cannot read file ({err.strerror or err})")
        return None
    if size == 0:
        report.add_skipped(path, "empty file (0 bytes)")
        return None
    native = False
    try:
        with Image.open(path) as img:  # lazy: the header only
            fmt, mode, (width, height) = img.format, img.mode, img.size
            native = mode in _NATIVE.get(fmt, ())
            if fmt == "BMP":  # 24-bit only: TF reads a 32-bit BMP's padding byte as alpha
                native = native and img.tile and img.tile[0][3][0] == "BGR"
            if fmt == "GIF":  # TF gives transparent pixels black, not white
                native = native and "transparency" not in img.info
            problem = None
            with open(path, "rb") as f:
                if fmt in ("JPEG", "MPO"):
                    orientation = _orientation(img.info.get("exif"))
                    if not _jpeg_complete(f, size):
                        problem = "truncated image (no end-of-image marker after the scan)"
                elif fmt == "PNG":
                    complete, exif = _png_chunks(f, size)
                    orientation = _orientation(exif or img.info.get("exif"))
                    if not complete:
                        problem = "truncated image (no IEND chunk)"
                else:
                    orientation = _orientation(img.info.get("exif"))
    except Image.UnidentifiedImageError:
        problem = "not a recognised image format"
    except Exception as err:  # Pillow raises OSError, SyntaxError, struct.error, ...
        problem = f"corrupt image ({type(err).__name__}: {err})"
    if problem:
        report.add_skipped(path, problem)
        return None
    if native and 1 <= orientation <= 8:
        ratio = _jpeg_ratio(width, height, min_side) if _KIND[fmt] == _KIND["JPEG"] else 1
        # libjpeg's scaled size: ceil(side / ratio).
        return _FileRecord(path, path, _KIND[fmt], orientation, ratio, -(-height // ratio), -(-width // ratio))
    try:
        converted, (width, height) = _convert_once(path, min_side)
    except ImageDecodeError as err:
        report.add_skipped(path, err.reason)
        return None
    return _FileRecord(path, converted, _KIND["PNG"], 1, 1, height, width)


def _probe_files(paths: Sequence[str], min_side: int, report: PipelineReport) -> list[_FileRecord]:
    """:func:`_probe_file` over a file list, with a progress bar for long lists."""
    from tqdm.auto import tqdm

    bar = tqdm(paths, desc="reading image headers", unit="file", disable=len(paths) < 2000, leave=False)
    return [r for r in (_probe_file(p, min_side, report) for p in bar) if r is not None]


def _transpose_hw(image: tf.Tensor) -> tf.Tensor:
    """Swaps height and width of a uint8 ``[H, W, 3]`` image.

    As float32 bit patterns (four bytes a pixel, bit-exact): TensorFlow's oneDNN
    transpose of 8- and 32-bit integer tensors prints an error-level "oneDNN supports
    DT_UINT8 only on platforms with AVX-512" line, even on AVX-512 CPUs.
    """
    packed = tf.bitcast(tf.pad(image, [[0, 0], [0, 0], [0, 1]]), tf.float32)  # [H, W]
    return tf.bitcast(tf.transpose(packed), tf.uint8)[..., :3]


def _orient(image: tf.Tensor, orientation: tf.Tensor) -> tf.Tensor:
    """Applies an EXIF orientation (1..8) as Pillow's ``ImageOps.exif_transpose`` does."""
    branches = [
        lambda: image,  # 1
        lambda: tf.reverse(image, [1]),  # 2: mirror left-right
        lambda: tf.reverse(image, [0, 1]),  # 3: 180
        lambda: tf.reverse(image, [0]),  # 4: mirror top-bottom
        lambda: _transpose_hw(image),  # 5: transpose
        lambda: tf.reverse(_transpose_hw(image), [1]),  # 6: 90 clockwise
        lambda: tf.reverse(_transpose_hw(image), [0, 1]),  # 7: transverse
        lambda: tf.reverse(_transpose_hw(image), [0]),  # 8: 90 counter-clockwise
    ]
    return tf.cond(
        tf.equal(orientation, 1),
        lambda: image,
        lambda: tf.switch_case(tf.clip_by_value(orientation - 1, 0, 7), branches),
    )


def _decode_native(contents: tf.Tensor, kind, ratio) -> tf.Tensor:
    """Encoded bytes -> uint8 ``[H, W, 3]`` in TensorFlow, for :data:`_NATIVE` files.

    ``kind`` (:data:`_KIND`) and ``ratio`` (index of the JPEG DCT downscale 1, 2, 4, 8)
    are tensors, or Python ints when every file of the dataset shares them: control
    flow in a tf.data function costs throughput, so a folder of JPEGs of one size
    class decodes without any.
    """

    def jpeg(r: int):
        # ISLOW, as Pillow (TensorFlow's default is the faster, coarser integer DCT).
        return lambda: tf.io.decode_jpeg(contents, channels=3, ratio=r, dct_method="INTEGER_ACCURATE")

    def png():
        wide = tf.io.decode_png(contents, channels=0, dtype=tf.uint16)  # 8-bit: x 257
        narrow = tf.cast(tf.round(tf.cast(wide, tf.float32) / 257.0), tf.uint8)
        return _rgb_from_any_tf(narrow)

    def gif():
        return _rgb_from_any_tf(tf.io.decode_gif(contents)[0])

    def bmp():
        return _rgb_from_any_tf(tf.io.decode_bmp(contents, channels=0))

    def webp():
        if not hasattr(tf.io, "decode_webp"):
            return tf.zeros([0, 0, 3], tf.uint8)
        frames = tf.io.decode_webp(contents)
        image = frames[0] if frames.shape.rank == 4 else frames
        return _rgb_from_any_tf(image)

    jpegs = [jpeg(1), jpeg(2), jpeg(4), jpeg(8)]

    def jpeg_any():
        return jpegs[ratio]() if isinstance(ratio, int) else tf.switch_case(ratio, jpegs)

    branches = [jpeg_any, png, gif, bmp, webp]
    if isinstance(kind, int):
        image = branches[kind]()
    else:
        image = tf.cond(tf.equal(kind, _KIND["JPEG"]), jpeg_any, lambda: tf.switch_case(kind, branches))
    image.set_shape([None, None, 3])
    return image


def _static_or_tensor(values: np.ndarray, tensor: tf.Tensor):
    """The one value every record shares (a Python int), else the record's tensor."""
    return int(values[0]) if len(set(values.tolist())) == 1 else tensor  # empty: the tensor


def _record_grey(table, grey: tf.Tensor, name: tf.Tensor) -> tf.Tensor:
    """``not grey``, after writing ``name`` into the report's table when ``grey``.

    Every example writes one key (``""`` unless grey): the report's table ends up with
    the grey names, with no Python in the graph and no control flow around it.
    """
    recorded = table.insert(tf.where(grey, name, "")[None], tf.constant([1], tf.int64))
    with tf.control_dependencies([recorded]):
        return tf.logical_not(grey)


class _Source:
    """One image source, split into cheap records and their decoding.

    ``records`` are small (a path, or encoded bytes) so they repeat and shuffle
    before decoding. ``decode_full`` gives a whole image (for caching, the per-class
    selection, segmentation labels and preparing shards); ``decode_crop`` draws the
    example's window first and decodes only it (JPEG) or decodes and slices it, then
    resizes (``None`` when the source cannot). Decoded examples carry ``_keep``
    (False for grey images) unless ``filters`` is False.
    """

    filters = True

    def records(self, *, repeat: bool, shuffle: bool, seed: int, input_context=None) -> tf.data.Dataset:
        raise NotImplementedError

    def decode_full(self, rec: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        raise NotImplementedError

    decode_crop = None

    def postprocess(self, ds: tf.data.Dataset) -> tf.data.Dataset:
        """Applied to the decoded examples of the whole-image path."""
        return ds


def _shard(ds: tf.data.Dataset, input_context, what: str, count: int | None) -> tf.data.Dataset:
    """Keeps input pipeline ``i``'s share (every ``n``-th element) of a record list."""
    if input_context is None or input_context.num_input_pipelines == 1:
        return ds
    n = input_context.num_input_pipelines
    if count is not None and count < n:
        raise ValueError(
            f"{what} has {count} file(s), fewer than the {n} input pipelines (one per worker) "
            f"that read it: give each worker at least one"
        )
    return ds.shard(n, input_context.input_pipeline_id)


class _FileSource(_Source):
    """Probed files (:func:`_probe_files`) decoded in TensorFlow.

    The file list was probed once in Python (header, EXIF orientation, a truncation
    check; files TensorFlow cannot decode converted by Pillow to PNG); the dataset
    decodes in TensorFlow only, so no Python runs while it is iterated. Grey images
    are found in the graph and recorded in ``report``'s table.
    """

    def __init__(self, probed: Sequence[_FileRecord], report: PipelineReport, what: str):
        self.probed = list(probed)
        self.report = report
        self.what = what
        self.columns = {
            "name": [r.name for r in self.probed],
            "path": [r.path for r in self.probed],
            "kind": np.array([r.kind for r in self.probed], np.int32),
            "orientation": np.array([r.orientation for r in self.probed], np.int32),
            "ratio": np.array([_RATIOS.index(r.ratio) for r in self.probed], np.int32),
            "height": np.array([r.height for r in self.probed], np.int32),
            "width": np.array([r.width for r in self.probed], np.int32),
        }
        self.all_upright = all(r.orientation == 1 for r in self.probed)

    def records(self, *, repeat, shuffle, seed, input_context=None):
        if not self.probed:
            return tf.data.Dataset.from_tensor_slices({k: v[:0] for k, v in self._tensors().items()})
        ds = tf.data.Dataset.from_tensor_slices(self._tensors())
        ds = _shard(ds, input_context, self.what, len(self.probed))
        if repeat:
            ds = ds.repeat()
        if shuffle:  # records are cheap: shuffle all of them
            ds = _seeded_shuffle(ds, len(self.probed), seed, endless=repeat)
        return ds

    def _tensors(self) -> dict:
        c = self.columns
        return {k: tf.constant(v, tf.string if k in ("name", "path") else tf.int32) for k, v in c.items()}

    def _static(self, rec, key):
        return _static_or_tensor(self.columns[key], rec[key])

    def decode_full(self, rec):
        contents = tf.io.read_file(rec["path"])
        image = _decode_native(contents, self._static(rec, "kind"), self._static(rec, "ratio"))
        if not self.all_upright:
            image = _orient(image, rec["orientation"])
        keep = _record_grey(self.report.grey_table(), _is_greyscale_tf(image), rec["name"])
        return {"image": image, "_keep": keep}

    def decode_crop(self, index, rec, *, size, training, masks, seed):
        seeds = _example_seeds(seed, index)
        height, width = rec["height"], rec["width"]
        if not self.all_upright:  # display size
            swap = rec["orientation"] >= 5
            height, width = tf.where(swap, width, height), tf.where(swap, height, width)
        top, left, side = _draw_window(seeds, height, width, size, training)
        if not self.all_upright:
            top, left = _stored_window(rec["orientation"], top, left, side, height, width)
        contents = tf.io.read_file(rec["path"])
        crop = _decode_window(contents, self._static(rec, "kind"), self._static(rec, "ratio"), top, left, side)
        if not self.all_upright:
            crop = _orient(crop, rec["orientation"])
        keep = _record_grey(self.report.grey_table(), _is_greyscale_tf(crop), rec["name"])
        return dict(_finish(crop, seeds, size, training, masks), _keep=keep)


class _ShardSource(_Source):
    """Prepared shards (:mod:`colourise_tf.shards`): small JPEGs in TFRecord files.

    Grey images were left out when the shards were written, and the records are
    well-formed, so nothing is dropped after decoding (``filters`` is False): a
    resumed pipeline skips its records before decoding them. Input pipelines read
    disjoint files (every ``n``-th).
    """

    filters = False

    def __init__(self, path: str, *, shuffle_buffer: int):
        self.info = shards_lib.read_info(path)
        self.paths = shards_lib.shard_paths(path, self.info)
        self.what = f"prepared shards {path!r}"
        self.shuffle_buffer = shuffle_buffer

    def records(self, *, repeat, shuffle, seed, input_context=None):
        files = _shard(tf.data.Dataset.from_tensor_slices(self.paths), input_context, self.what, len(self.paths))
        n_files = len(self.paths) if input_context is None else -(-len(self.paths) // input_context.num_input_pipelines)
        if repeat:
            files = files.repeat()
        if shuffle:
            files = _seeded_shuffle(files, n_files, seed, endless=repeat)
        ds = files.interleave(
            tf.data.TFRecordDataset,
            cycle_length=max(1, min(n_files, 16)),
            block_length=1,
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
        if shuffle:
            ds = _seeded_shuffle(ds, self.shuffle_buffer, seed, endless=repeat)
        return ds.map(shards_lib.parse_example, num_parallel_calls=tf.data.AUTOTUNE)

    def _pixels(self, rec) -> tf.Tensor:
        shape = tf.stack([tf.cast(rec["height"], tf.int32), tf.cast(rec["width"], tf.int32), 3])
        return tf.reshape(tf.io.decode_raw(rec["image"], tf.uint8), shape)

    def decode_full(self, rec):
        if self.info["encoding"] == "raw":
            return {"image": self._pixels(rec)}
        return {"image": tf.io.decode_jpeg(rec["image"], channels=3, dct_method="INTEGER_ACCURATE")}

    def decode_crop(self, index, rec, *, size, training, masks, seed, resize_on_device=False):
        seeds = _example_seeds(seed, index)
        top, left, side = _draw_window(seeds, rec["height"], rec["width"], size, training)
        if self.info["encoding"] == "raw":
            crop = self._pixels(rec)[top : top + side, left : left + side]
        else:
            crop = _decode_window(rec["image"], _KIND["JPEG"], 0, top, left, side)
        if not resize_on_device:
            return _finish(crop, seeds, size, training, masks)
        # The window is never larger than the stored shorter side: pad it to that square
        # (top-left) and let the training step resize it (:func:`resize_crops`). A flip
        # commutes with the resize, so it stays here.
        if training:
            flip = tf.random.stateless_uniform([], seeds[2]) < 0.5
            crop = tf.cond(flip, lambda: tf.reverse(crop, axis=[1]), lambda: crop)
        pad = self.padded_side(size)
        crop = tf.pad(crop, [[0, pad - side], [0, pad - side], [0, 0]])
        crop.set_shape([pad, pad, 3])
        out = {"image": crop, "crop_size": side}
        if masks:
            out["mask"] = masks_lib.random_mask(size, seeds[3])[1]
        return out

    def padded_side(self, size: int) -> int:
        """Side of the padded windows of ``resize_on_device`` (the largest window)."""
        return max(int(self.info["short_side"]), 1)


# --------------------------------------------------------------------------- TFDS


def _rgb_from_any_tf(image: tf.Tensor) -> tf.Tensor:
    """[H, W, C] uint8 (C in 1..4) -> [H, W, 3] uint8; alpha composited over white."""
    if image.dtype != tf.uint8:
        image = tf.image.convert_image_dtype(image, tf.uint8, saturate=True)
    channels = image.shape[-1]

    def over_white(rgb: tf.Tensor, alpha: tf.Tensor) -> tf.Tensor:
        rgb = tf.cast(rgb, tf.float32)
        a = tf.cast(alpha, tf.float32) / 255.0
        return tf.cast(tf.round(rgb * a + 255.0 * (1.0 - a)), tf.uint8)

    def convert(c: int) -> tf.Tensor:
        if c == 1:
            return tf.tile(image[..., :1], [1, 1, 3])
        if c == 2:
            return tf.tile(over_white(image[..., :1], image[..., 1:2]), [1, 1, 3])
        if c == 3:
            return image
        return over_white(image[..., :3], image[..., 3:4])

    if channels is not None:
        return convert(int(channels))
    c = tf.shape(image)[-1]
    return tf.switch_case(tf.clip_by_value(c, 1, 4) - 1, [lambda k=k: convert(k) for k in (1, 2, 3, 4)])


def _select_first_per_class(ds: tf.data.Dataset, num_classes: int, per_class: int) -> tf.data.Dataset:
    """Keeps the first ``per_class`` examples of each label; stops once all are full.

    A ``scan`` carries per-class counters, so the input is read only until the rarest
    class has its quota (plus one look-ahead element), never materialised.
    """

    def step(counts: tf.Tensor, ex: dict[str, tf.Tensor]):
        label = tf.cast(ex["label"], tf.int32)
        full_before = tf.reduce_all(counts >= per_class)
        keep = tf.gather(counts, label) < per_class
        counts = tf.tensor_scatter_nd_add(counts, [[label]], [tf.cast(keep, tf.int32)])
        return counts, (ex, keep, full_before)

    ds = ds.scan(tf.zeros([num_classes], tf.int32), step)
    ds = ds.take_while(lambda ex, keep, full_before: tf.logical_not(full_before))
    ds = ds.filter(lambda ex, keep, full_before: keep)
    return ds.map(lambda ex, keep, full_before: ex)


class _TfdsSource(_Source):
    """A TFDS builder's split (``gorriz-test``: the per-class selection).

    Records are the still-encoded examples; file-level sharding over input pipelines
    uses ``tfds.ReadConfig(input_context=...)``. Image features encoded as JPEG are
    decoded window-first; others (and segmentation labels) decode whole.
    """

    def __init__(
        self,
        source: str,
        *,
        split: str,
        training: bool,
        data_dir: str | None,
        manual_dir: str | None,
        segmentation_key: str | None,
        report: PipelineReport,
        shuffle_buffer: int,
    ):
        import tensorflow_datasets as tfds

        try:
            builder = tfds.builder(source, data_dir=data_dir)
        except ValueError as err:  # DatasetNotFoundError, or a name TFDS cannot even parse
            first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise FileNotFoundError(
                f"{source!r} is neither an existing folder/file/glob of images nor a "
                f"registered TFDS dataset ({first_line})"
            ) from err
        if not builder.is_prepared():
            try:
                builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
            except (AssertionError, tf.errors.NotFoundError) as err:
                # TFDS reports a missing manual_dir with an AssertionError, a manual_dir
                # without the expected files with NotFoundError.
                reason = getattr(err, "message", None) or str(err)
                raise DatasetUnavailableError(
                    f"TFDS dataset {source!r} is not prepared in {builder.data_dir} and cannot be "
                    f"built: {reason}\nPass --manual-dir (data.manual_dir) with the files it names, "
                    f"or --data-dir (data.data_dir) pointing at an already prepared copy."
                ) from err
            except OSError as err:  # includes requests' ConnectionError: no internet
                raise DatasetUnavailableError(
                    f"TFDS dataset {source!r} is not prepared in {builder.data_dir} and could not be "
                    f"downloaded ({type(err).__name__}: {str(err).splitlines()[0][:300] if str(err) else ''})."
                    f"\nPrepare it where there is internet and pass --data-dir (data.data_dir) "
                    f"pointing at the prepared copy."
                ) from err
        features = builder.info.features
        if "image" not in features:
            raise ValueError(f"TFDS dataset {source!r} has no 'image' feature: {list(features)}")

        select = split == "gorriz-test"
        tfds_split = {"gorriz-train": "validation", "gorriz-test": "train"}.get(split, split)

        def feature(key: str) -> Any:
            return features[key] if key in features else None

        if split.startswith("gorriz-") and not isinstance(feature("label"), tfds.features.ClassLabel):
            raise ValueError(f"split {split!r} needs a ClassLabel 'label' feature in {source!r}")

        wanted: dict[str, bool] = {"image": True}
        decoders: dict[str, Any] = {"image": tfds.decode.SkipDecoding()}
        if select:
            wanted["label"] = True
        if segmentation_key is not None:
            if segmentation_key not in features:
                raise ValueError(
                    f"segmentation_key {segmentation_key!r} is not a feature of {source!r}: {list(features)}"
                )
            wanted[segmentation_key] = True
            if isinstance(features[segmentation_key], tfds.features.Image):
                decoders[segmentation_key] = tfds.decode.SkipDecoding()
        name_key = "file_name" if isinstance(feature("file_name"), tfds.features.Text) else None
        if name_key:
            wanted[name_key] = True

        self.tfds, self.builder, self.source, self.split = tfds, builder, source, split
        self.training, self.select, self.tfds_split = training, select, tfds_split
        self.wanted, self.decoders, self.name_key = wanted, decoders, name_key
        self.segmentation_key, self.report, self.shuffle_buffer = segmentation_key, report, shuffle_buffer
        self.image_feature = features["image"]
        self.seg_feature = features[segmentation_key] if segmentation_key else None
        self.num_classes = int(features["label"].num_classes) if select else 0
        fmt = getattr(self.image_feature, "encoding_format", None)
        if fmt == "jpeg" and not segmentation_key and not select:
            self.decode_crop = self._decode_crop

    def records(self, *, repeat, shuffle, seed, input_context=None):
        tfds = self.tfds
        ds = self.builder.as_dataset(
            split=self.tfds_split,
            shuffle_files=self.training and not self.select,
            # The same file order every epoch: a reshuffle per epoch draws from a seed
            # generator that tf.data does not restore consistently from a checkpoint.
            read_config=tfds.ReadConfig(
                shuffle_seed=seed,
                shuffle_reshuffle_each_iteration=False,
                add_tfds_id=self.name_key is None,
                input_context=input_context,
            ),
            decoders=tfds.decode.PartialDecoding(self.wanted, decoders=self.decoders),
        )
        if repeat:
            ds = ds.repeat()
        if shuffle:  # still encoded: a large buffer is cheap
            ds = _seeded_shuffle(ds, self.shuffle_buffer, seed, endless=repeat)
        return ds

    def _name(self, ex):
        return ex[self.name_key] if self.name_key else ex["tfds_id"]

    def decode_full(self, ex):
        image = _rgb_from_any_tf(self.image_feature.decode_example(ex["image"]))
        out = {"image": image}
        if self.select:
            out["label"] = ex["label"]
        if self.segmentation_key:
            seg = ex[self.segmentation_key]
            if isinstance(self.seg_feature, self.tfds.features.Image):
                seg = self.seg_feature.decode_example(seg)
            seg = tf.cast(seg, tf.int32)
            if seg.shape.rank == 3:
                seg = seg[..., 0]
            out["segmentation"] = seg
        out["_keep"] = _record_grey(self.report.grey_table(), _is_greyscale_tf(image), self._name(ex))
        return out

    def _decode_crop(self, index, ex, *, size, training, masks, seed):
        seeds = _example_seeds(seed, index)
        contents = ex["image"]
        shape = tf.image.extract_jpeg_shape(contents)
        top, left, side = _draw_window(seeds, shape[0], shape[1], size, training)
        crop = _decode_window(contents, _KIND["JPEG"], 0, top, left, side)
        keep = _record_grey(self.report.grey_table(), _is_greyscale_tf(crop), self._name(ex))
        return dict(_finish(crop, seeds, size, training, masks), _keep=keep)

    def postprocess(self, ds: tf.data.Dataset) -> tf.data.Dataset:
        """The per-class selection of ``gorriz-test`` (decoded examples in TFDS order)."""
        if not self.select:
            return ds
        ds = _select_first_per_class(ds, self.num_classes, GORRIZ_PER_CLASS)
        return ds.map(lambda ex: {k: v for k, v in ex.items() if k != "label"})


# --------------------------------------------------------------------------- geometry


def _resize_square_uint8(image: tf.Tensor, size: int) -> tf.Tensor:
    """Resizes an ``[h, w, 3]`` uint8 crop to ``[size, size, 3]`` uint8.

    Bilinear; antialiased only when shrinking by more than 2x. Between 1x and 2x plain
    bilinear interpolation already uses every source pixel and costs half as much
    (about 1.1 vs 2.0 ms per 256x256 output on this CPU); JPEG files reach this
    step already DCT-downscaled to under 2x by :func:`decode_image_file`.
    """
    shape = tf.shape(image)

    def resize(antialias: bool) -> tf.Tensor:
        out = tf.image.resize(image, [size, size], method="bilinear", antialias=antialias)
        return tf.cast(tf.clip_by_value(tf.round(out), 0.0, 255.0), tf.uint8)

    same = tf.logical_and(tf.equal(shape[0], size), tf.equal(shape[1], size))
    heavy = tf.reduce_max(shape[:2]) > 2 * size
    return tf.cond(same, lambda: image, lambda: tf.cond(heavy, lambda: resize(True), lambda: resize(False)))


def _example_seeds(seed: int, index: tf.Tensor) -> tf.Tensor:
    """Four stateless seeds of one example: scale, position, flip, mask."""
    example_seed = tf.stack([tf.constant(seed, tf.int64), tf.cast(index, tf.int64)])
    return tf.random.experimental.stateless_split(example_seed, num=4)


def _draw_window(seeds: tf.Tensor, height, width, size: int, training: bool):
    """``(top, left, side)`` of the square an example keeps, in display coordinates.

    * training: draw ``short`` uniformly in ``[S, round(1.15 S)]``; the square window
      of side ``round(min(h, w) * S / short)`` (87-100 % of the shorter side) at a
      uniformly random position.
    * evaluation: the centre square of side ``min(h, w)`` (offset ``(h - side) // 2``,
      ``(w - side) // 2``).
    """
    height, width = tf.cast(height, tf.int32), tf.cast(width, tf.int32)
    shorter = tf.minimum(height, width)
    if not training:
        return (height - shorter) // 2, (width - shorter) // 2, shorter
    max_short = max(size, int(round(size * TRAIN_SCALE_JITTER)))
    short = tf.random.stateless_uniform([], seeds[0], minval=size, maxval=max_short + 1, dtype=tf.int32)
    side = tf.cast(tf.round(tf.cast(shorter, tf.float32) * size / tf.cast(short, tf.float32)), tf.int32)
    side = tf.clip_by_value(side, 1, tf.maximum(shorter, 1))
    offsets = tf.random.stateless_uniform([2], seeds[1], minval=0, maxval=2**30, dtype=tf.int32)
    return offsets[0] % (height - side + 1), offsets[1] % (width - side + 1), side


def _finish(crop: tf.Tensor, seeds: tf.Tensor, size: int, training: bool, masks: bool, seg=None):
    """The kept square -> the example: resized to ``S x S``, flipped with probability
    1/2 in training, plus a mask when asked for."""
    image = _resize_square_uint8(crop, size)
    image.set_shape([size, size, 3])
    if seg is not None:
        seg = tf.cast(tf.image.resize(seg[..., None], [size, size], method="nearest")[..., 0], tf.int32)
        seg.set_shape([size, size])
    if training:
        flip = tf.random.stateless_uniform([], seeds[2]) < 0.5
        image = tf.cond(flip, lambda: tf.reverse(image, axis=[1]), lambda: image)
        if seg is not None:
            seg = tf.cond(flip, lambda: tf.reverse(seg, axis=[1]), lambda: seg)
    out = {"image": image}
    if seg is not None:
        out["segmentation"] = seg
    if masks:
        out["mask"] = masks_lib.random_mask(size, seeds[3])[1]
    return out


def _make_geometry_fn(
    image_size: int, training: bool, masks: bool, seed: int
) -> Callable[[tf.Tensor, dict[str, tf.Tensor]], dict[str, tf.Tensor]]:
    """Per-example crop/resize/flip (+ mask) of a decoded image, seeded by ``(seed,
    example index)`` (used where whole images are decoded first: caching, the
    per-class selection, segmentation labels; elsewhere :func:`_crop_decoder` draws
    the same window before decoding).

    ``training`` here means the random geometry (``build_dataset``'s ``training and
    augment``); without it every example gets the evaluation geometry. Crop-then-resize
    is the same geometry as resize-then-crop (:func:`_draw_window`) but never resizes
    pixels that the crop throws away.
    """
    size = int(image_size)

    def apply(index: tf.Tensor, ex: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        image = ex["image"]
        seg = ex.get("segmentation")
        seeds = _example_seeds(seed, index)
        shape = tf.shape(image)
        if seg is not None:  # align the labels to the image grid first (no-op normally)
            seg_shape = tf.shape(seg)
            seg = tf.cond(
                tf.reduce_all(tf.equal(seg_shape[:2], shape[:2])),
                lambda: seg,
                lambda: tf.cast(tf.image.resize(seg[..., None], shape[:2], method="nearest")[..., 0], tf.int32),
            )
        top, left, side = _draw_window(seeds, shape[0], shape[1], size, training)
        if seg is not None:
            seg = seg[top : top + side, left : left + side]
        return _finish(image[top : top + side, left : left + side], seeds, size, training, masks, seg)

    return apply


def _stored_window(orientation: tf.Tensor, top, left, side, height, width):
    """Maps a square window in display coordinates to the stored pixels' coordinates,
    for an EXIF ``orientation`` (1..8) and the DISPLAY size ``height x width``; the
    decoded square then gets :func:`_orient`."""
    candidates = tf.stack([top, left, height - top - side, width - left - side])
    o = tf.clip_by_value(orientation, 1, 8) - 1
    stored_top = tf.gather(candidates, tf.gather(tf.constant([0, 0, 2, 2, 1, 3, 3, 1]), o))
    stored_left = tf.gather(candidates, tf.gather(tf.constant([1, 3, 3, 1, 0, 0, 2, 2]), o))
    return stored_top, stored_left


def _decode_window(contents: tf.Tensor, kind, ratio, top, left, side) -> tf.Tensor:
    """The ``side x side`` square at ``(top, left)`` of an image, uint8 ``[side, side, 3]``.

    JPEG: only that window is decoded (``tf.io.decode_and_crop_jpeg``; coordinates are
    those of the DCT-downscaled image, ``ratio`` as in :func:`_decode_native`). Other
    formats are decoded whole and sliced.
    """
    window = tf.stack([top, left, side, side])

    def jpeg(r: int):
        return lambda: tf.io.decode_and_crop_jpeg(contents, window, channels=3, ratio=r, dct_method="INTEGER_ACCURATE")

    jpegs = [jpeg(1), jpeg(2), jpeg(4), jpeg(8)]

    def jpeg_any():
        return jpegs[ratio]() if isinstance(ratio, int) else tf.switch_case(ratio, jpegs)

    def other():
        return _decode_native(contents, kind, ratio)[top : top + side, left : left + side]

    if isinstance(kind, int):
        crop = jpeg_any() if kind == _KIND["JPEG"] else other()
    else:
        crop = tf.cond(tf.equal(kind, _KIND["JPEG"]), jpeg_any, other)
    crop.set_shape([None, None, 3])
    return crop


# --------------------------------------------------------------------------- public


def _seeded_shuffle(ds: tf.data.Dataset, buffer: int, seed: int, *, endless: bool) -> tf.data.Dataset:
    """Seeded shuffle; ``endless`` when ``ds`` already repeats forever.

    Training shuffles one endless stream (``repeat`` then ``shuffle``) rather than
    reshuffling each epoch of a ``shuffle().repeat()``: all the shuffle's randomness
    then lives in its own iterator state. tf.data restores per-epoch reshuffle seeds
    inconsistently when a checkpoint is taken while prefetching has already crossed
    an epoch boundary, which made resumed runs diverge from straight ones at the next
    epoch. Epoch boundaries blur by at most one buffer, which training does not mind.
    """
    return ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=not endless)


def _require_one_image(ds: tf.data.Dataset, source: str, report: PipelineReport) -> None:
    """Raises :class:`NoUsableImagesError` naming ``source`` if no image survives."""
    for _ in ds.take(1):
        return
    raise NoUsableImagesError(
        f"no usable colour image in {source!r}: every image was unreadable or greyscale. " + report.summary()
    )


def resize_crops(images: tf.Tensor, crop_size: tf.Tensor, size: int) -> tf.Tensor:
    """Resizes a batch of padded windows to ``size x size`` (``build_dataset(...,
    resize_on_device=True)``), on whatever device runs it.

    ``images`` uint8 ``[B, P, P, 3]`` holds each window of side ``crop_size[b]`` in its
    top-left corner. Bilinear with half-pixel centres and edge clamping, as
    ``tf.image.resize`` without antialiasing (what the host pipeline does for the
    <= 1.15x shrink of prepared shards), computed as two batched matrix products with
    interpolation matrices, so GPUs, TPUs and XLA run it as ordinary matmuls (about
    0.25 GFLOP per 256x256 image). Results match the host's to within one level
    (float summation order; TF32/bf16 matmul passes on accelerators).
    """
    pad = images.shape[1] if images.shape[1] is not None else tf.shape(images)[1]
    side = tf.cast(crop_size, tf.float32)[:, None]  # [B, 1]
    src = (tf.range(size, dtype=tf.float32)[None, :] + 0.5) * side / float(size) - 0.5  # [B, S]
    floor = tf.floor(src)
    frac = src - floor
    last = tf.cast(crop_size, tf.int32)[:, None] - 1
    lower = tf.clip_by_value(tf.cast(floor, tf.int32), 0, last)
    upper = tf.clip_by_value(tf.cast(tf.math.ceil(src), tf.int32), 0, last)
    weights = tf.one_hot(lower, pad) * (1.0 - frac)[..., None] + tf.one_hot(upper, pad) * frac[..., None]  # [B, S, P]
    x = tf.cast(images, tf.float32)
    rows = tf.einsum("bip,bpqc->biqc", weights, x)  # [B, S, P, 3]
    out = tf.einsum("bjq,biqc->bijc", weights, rows)  # [B, S, S, 3]
    return tf.cast(tf.clip_by_value(tf.round(out), 0.0, 255.0), tf.uint8)


def _kept(ds: tf.data.Dataset, filters: bool) -> tf.data.Dataset:
    """Drops examples that failed to decode or are grey, and the ``_keep`` flag.

    A file whose data is corrupt between an intact header and end marker fails in the
    decoder: it is dropped (tf.data logs a warning, without the path) instead of
    ending the epoch, and is not in the report.
    """
    ds = ds.ignore_errors(log_warning=True)
    if not filters:
        return ds
    ds = ds.filter(lambda ex: ex["_keep"])
    return ds.map(lambda ex: {k: v for k, v in ex.items() if k != "_keep"})


def _decoded(src: _Source, records: tf.data.Dataset) -> tf.data.Dataset:
    """Whole decoded images of ``records`` (in order when the source selects per class)."""
    deterministic = True if getattr(src, "select", False) else None
    ds = records.map(src.decode_full, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    return _kept(ds, src.filters)


def _make_source(
    source: str,
    *,
    split: str,
    training: bool,
    data_dir,
    manual_dir,
    segmentation_key,
    report: PipelineReport,
    shuffle_buffer: int,
    min_side: int,
) -> _Source:
    """The source ``build_dataset`` reads: samples, prepared shards, files, or TFDS."""
    if shards_lib.is_prepared(source):
        if segmentation_key is not None:
            raise ValueError("segmentation_key needs a TFDS source, not prepared shards")
        return _ShardSource(source, shuffle_buffer=shuffle_buffer)
    if source == "samples" or _looks_like_files(source):
        if segmentation_key is not None:
            raise ValueError("segmentation_key needs a TFDS source")
        paths = list(sample_image_paths().values()) if source == "samples" else list_image_files(source)
        return _FileSource(_probe_files(paths, min_side, report), report, source)  # probed once
    return _TfdsSource(
        source,
        split=split,
        training=training,
        data_dir=data_dir,
        manual_dir=manual_dir,
        segmentation_key=segmentation_key,
        report=report,
        shuffle_buffer=shuffle_buffer,
    )


def build_dataset(
    source: str = "samples",
    *,
    split: str = "train",
    image_size: int = 256,
    batch_size: int = 4,
    training: bool = True,
    seed: int = 0,
    deterministic: bool = True,
    cache: bool = False,
    shuffle_buffer: int = 1000,
    data_dir: str | None = None,
    manual_dir: str | None = None,
    masks: bool = False,
    segmentation_key: str | None = None,
    augment: bool = True,
    repeat: bool | None = None,
    drop_remainder: bool | None = None,
    report: PipelineReport | None = None,
    input_context: tf.distribute.InputContext | None = None,
    skip_batches: int = 0,
    resize_on_device: bool = False,
) -> tf.data.Dataset:
    """Builds the batched input pipeline of uint8 RGB images.

    Args:
        source: ``"samples"`` (the embedded photos of :data:`SAMPLE_NAMES`), a folder
            of prepared shards (``colourise-prepare``; any ``tf.io.gfile`` path), a folder
            (searched recursively), a glob or a single image file, or a TFDS name
            with optional config/version (``"imagenet2012"``, ``"voc/2012"``,
            ``"cifar10:3.0.2"``). Existing paths and globs win over TFDS names.
        split: TFDS split (any TFDS split expression), or ``"gorriz-train"`` (the
            50,000 ImageNet ``validation`` images) / ``"gorriz-test"`` (the first
            :data:`GORRIZ_PER_CLASS` colour images of each class in TFDS's
            deterministic ``train`` order), the Górriz et al. 2019 protocol. Ignored for files.
        image_size: side ``S`` of the square output.
        batch_size: examples per batch (per input pipeline: under ``tf.distribute``
            the caller passes ``input_context.get_per_replica_batch_size(...)``).
        training: random scale/crop/flip and seeded shuffling if ``True``; resize +
            centre crop, in order, if ``False``.
        seed: seeds file shuffling, the shuffle buffers, the augmentation and masks.
        deterministic: value of ``tf.data.Options.deterministic``; ``False`` lets
            parallel maps return elements out of order (faster, not reproducible).
        cache: cache the decoded, un-augmented images in memory after the first
            epoch (the shuffle buffer then holds decoded images).
        shuffle_buffer: size of the shuffle buffer for TFDS records (or for decoded
            images when caching). File paths are always shuffled in full.
        data_dir: TFDS data directory.
        manual_dir: TFDS manual download directory (ImageNet tarballs).
        masks: add a ``"mask"`` of a random :data:`MASK_KINDS` kind per example.
        segmentation_key: TFDS feature holding a segmentation mask, returned as
            ``"segmentation"`` with the image's geometry (nearest-neighbour).
        augment: with ``training``, the random scale/crop/flip; ``False`` gives every
            training example the evaluation geometry (resize + centre crop) while
            keeping the shuffling and repetition (the DCGAN report trains without augmentation).
        repeat: repeat forever; default ``training``.
        drop_remainder: drop a last partial batch; default ``training``.
        report: filled with skipped files and greyscale images as the dataset runs.
        input_context: from ``strategy.distribute_datasets_from_function``: this input
            pipeline reads its own files only (every ``n``-th file of a folder or of
            prepared shards; TFDS's ``ReadConfig(input_context=...)``).
        skip_batches: start this many batches in (a resumed run whose iterator was
            not saved). Prepared shards skip their records before decoding; other
            sources decode what they skip, since grey and corrupt images change
            which records make a batch.
        resize_on_device: prepared shards only (other sources ignore it): leave the
            resize of each window to ``S x S`` to the training step. ``"image"`` is
            then uint8 ``[B, P, P, 3]``, each window top-left in a zero-padded square
            of the stored shorter side ``P``, and ``"crop_size"`` int32 ``[B]`` its
            side; :func:`resize_crops` gives the batch the host would have made.

    Returns:
        A dataset of dicts: ``"image"`` uint8 ``[B, S, S, 3]``; ``"mask"`` float32
        ``[B, S, S, 1]`` if ``masks``; ``"segmentation"`` int32 ``[B, S, S]`` if
        ``segmentation_key``.

    Raises:
        FileNotFoundError: if a folder/glob matches no image file, or ``source`` is
            neither a path nor a TFDS dataset.
        NoUsableImagesError: (a ``ValueError``) when training repeats a source in
            which no image decodes to colour.
        ValueError: on bad arguments or a TFDS dataset without the needed features.

    Note:
        The pipeline is TensorFlow ops only (no Python function in its graph), so an
        unfinished iterator left alive at interpreter exit does not hang the process,
        and tf.data service or a TPU host can run it.
    """
    if image_size < 1 or batch_size < 1:
        raise ValueError(f"image_size and batch_size must be positive, got {image_size}, {batch_size}")
    if skip_batches < 0:
        raise ValueError(f"skip_batches must be >= 0, got {skip_batches}")
    report = report if report is not None else PipelineReport()
    repeat = training if repeat is None else repeat
    drop_remainder = training if drop_remainder is None else drop_remainder
    jitter = training and augment
    max_short = max(image_size, int(round(image_size * TRAIN_SCALE_JITTER))) if jitter else image_size
    src = _make_source(
        source,
        split=split,
        training=training,
        data_dir=data_dir,
        manual_dir=manual_dir,
        segmentation_key=segmentation_key,
        report=report,
        shuffle_buffer=shuffle_buffer,
        min_side=max_short,
    )
    selected = getattr(src, "select", False)
    window_first = src.decode_crop is not None and not cache
    # Records are cheap: they repeat and shuffle before decoding, unless something after
    # decoding must see whole epochs (caching, the per-class selection).
    early_shuffle = training and not cache and not selected
    early_repeat = repeat and (early_shuffle or window_first)
    if early_repeat and src.filters:
        # An endless stream of records filtered down to nothing would never yield:
        # check first that one image survives decoding and the grey filter.
        records = src.records(repeat=False, shuffle=False, seed=seed, input_context=input_context)
        _require_one_image(_decoded(src, records), source, report)
    ds = src.records(repeat=early_repeat, shuffle=early_shuffle, seed=seed, input_context=input_context)
    skip_records = skip_batches * batch_size if window_first and not src.filters else 0
    if window_first:
        ds = ds.enumerate()  # running index -> per-example stateless seeds
        if skip_records:  # nothing is dropped after decoding: skip before it
            ds = ds.skip(skip_records)

        extra = {"resize_on_device": True} if resize_on_device and isinstance(src, _ShardSource) else {}

        def load(index, rec):
            return src.decode_crop(index, rec, size=image_size, training=jitter, masks=masks, seed=seed, **extra)

        ds = _kept(ds.map(load, num_parallel_calls=tf.data.AUTOTUNE), src.filters)
        if repeat and not early_repeat:
            ds = ds.repeat()
    else:
        ds = src.postprocess(_decoded(src, ds))
        if cache:
            ds = ds.cache()
        if repeat and not early_repeat:
            ds = ds.repeat()
        if training and (cache or selected):
            ds = _seeded_shuffle(ds, shuffle_buffer, seed, endless=repeat)
        ds = ds.enumerate()
        ds = ds.map(_make_geometry_fn(image_size, jitter, masks, seed), num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    if skip_batches and not skip_records:
        ds = ds.skip(skip_batches)
    ds = ds.prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.deterministic = deterministic
    # The only state outside the iterator is the report's table of grey images (a log,
    # not input state): iterators stay checkpointable (exact resume) without it.
    options.experimental_external_state_policy = tf.data.experimental.ExternalStatePolicy.IGNORE
    return ds.with_options(options)


def _looks_like_files(source: str) -> bool:
    """True for existing paths and globs; other strings are tried as TFDS names."""
    expanded = os.path.expanduser(source)
    return os.path.exists(expanded) or _has_glob_magic(expanded)
