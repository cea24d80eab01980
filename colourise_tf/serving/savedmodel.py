"""SavedModel export for TF Serving, with explicit serving signatures.

``export_savedmodel(run_dir, "exports/colourise")`` writes
``exports/colourise/<version>/`` (the layout TF Serving watches: one integer
directory per version) atomically: the model is saved into a hidden temporary
directory next to it and renamed into place, so a server polling the base
directory never sees a half-written version. :func:`write_models_config` writes
the ``models.config`` file for ``tensorflow_model_server --model_config_file``.

Signatures (all in the graph, TensorFlow ops only; see ``docs/serving.md``):

``serving_default``
    ``images`` tf.string ``[N]`` (JPEG, PNG, GIF (first frame), BMP bytes) ->
    ``images`` tf.string ``[N]`` (PNG, or JPEG if exported with
    ``output_format="jpeg"``), each at its input's own resolution::

        decode -> L at full res -> resize (area) to S x S -> G -> chroma
          -> resize (bilinear) to full res -> + ORIGINAL L -> sRGB -> encode

    Images of different sizes can share a batch (``tf.map_fn``, one image at a
    time). A colour input is colourised from its own L.
``serving_saturation``
    as ``serving_default`` plus ``saturation`` float32 ``[N]``: a gain on the
    predicted chroma (1 = as predicted, 0 = grey, > 1 more vivid; colours pushed
    out of sRGB are clipped). Must be finite and >= 0.
``serving_rest`` / ``serving_saturation_rest``
    the same two signatures with the output named ``images_bytes``. TF Serving's
    REST API base64-encodes a string output (``{"b64": ...}``) only when its name
    ends in ``_bytes``; with ``images`` the JSON response would carry raw PNG
    bytes. REST clients select them with ``"signature_name"``.
``predict_ab``
    ``L`` float32 ``[N, H, W, 1]`` (CIE L in ``[0, 100]``) -> ``ab`` float32
    ``[N, H, W, 2]`` in Lab units, full resolution, through the same path. For
    ``yuv`` models the input is ``100 * Y`` and the output is (U, V) on the float
    BT.601 scale (``[-0.5, 0.5]``).
``generator``
    ``grey`` float32 ``[N, S, S, C_in]`` network range -> ``chroma`` (the raw G
    output, network range; ``2 * n_classes`` channels for ``unet-seg-shared``),
    plus ``segmentation`` logits for ``unet-seg-separate``. For Python clients
    that do their own pre/post-processing.

Noise presets (the DCGAN report) are served with the noise channel drawn from the fixed
stateless seed ``(0, 0)``; mask presets (the IMPA project) with an all-zero mask and no
hints (``generator`` accepts any mask/hints), except models trained with
``loss.mask_target=partial``, which colour inside the mask only and are served with
a full mask.

Untrusted input: every image's pixel count is read from its header (JPEG SOF,
PNG IHDR, GIF logical screen, BMP info header) and checked against
``max_pixels`` BEFORE it is decoded, and checked again after decoding. Empty,
truncated, unknown-format and oversized inputs raise ``InvalidArgumentError``
(TF Serving answers the request with that error and keeps running). A 1x1 image
is valid: it is resized to S x S and back, giving a single colourised pixel.

The resolved experiment config is stored as the SavedModel asset
``assets/colourise_config.json`` (readable with
:func:`colourise_tf.config.load_config`) and the export metadata as
``assets/colourise_export.json`` (see :func:`read_export_metadata`).

The run directory and the base directory may be URIs of any file system TensorFlow
knows (``gs://bucket/models/colourise``, ``ram://``; ``file:///x`` is the local
``/x``); everything is then read and written through ``tf.io.gfile``. Object stores
have no atomic folder rename: there the version is saved into the hidden temporary
folder and its files are then moved into ``<base>/<version>/`` one by one,
``saved_model.pb`` last, so a server that lists the folder early finds no model
to load rather than a model without its variables.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import tempfile
import uuid
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from colourise_tf import colour, fileio, inference
from colourise_tf.config import ExperimentConfig, to_dict
from colourise_tf.fileio import atomic_write_text
from colourise_tf.formats import savedmodel_assets
from colourise_tf.formats.model_description import describe_model
from colourise_tf.models import generator_input_channels
from colourise_tf.runs import load_run

__all__ = [
    "SIGNATURES",
    "REST_SIGNATURES",
    "ALL_SIGNATURES",
    "OUTPUT_FORMATS",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_PNG_COMPRESSION",
    "CONFIG_ASSET",
    "METADATA_ASSET",
    "export_savedmodel",
    "save_serving_model",
    "write_models_config",
    "read_export_metadata",
    "next_version",
]

#: The serving signatures (their names are part of the serving contract, docs/serving.md).
SIGNATURES = ("serving_default", "serving_saturation", "predict_ab", "generator")
#: Twins of the two image signatures whose output is named ``images_bytes`` so
#: that TF Serving's REST API returns it base64-encoded.
REST_SIGNATURES = ("serving_rest", "serving_saturation_rest")
ALL_SIGNATURES = SIGNATURES + REST_SIGNATURES
OUTPUT_FORMATS = ("png", "jpeg")
DEFAULT_MAX_PIXELS = 40_000_000
#: zlib level of PNG outputs. Measured on a 1024x768 photo: level 6 (zlib's
#: default) 0.43 s / 973 kB, level 3 0.10 s / 1050 kB, level 1 0.07 s / 1093 kB;
#: at 6 the encoder alone took most of the end-to-end serving time.
DEFAULT_PNG_COMPRESSION = 3
CONFIG_ASSET = savedmodel_assets.CONFIG_ASSET
METADATA_ASSET = savedmodel_assets.METADATA_ASSET
METADATA_VERSION = 2  # 2: mask_target

# Format codes of the header sniffer (order of the tf.switch_case branches).
_JPEG, _PNG, _GIF, _BMP, _UNKNOWN = range(5)


# --------------------------------------------------------------------------- decoding


def _be32(b: tf.Tensor, i: int) -> tf.Tensor:
    return b[i] * 16777216 + b[i + 1] * 65536 + b[i + 2] * 256 + b[i + 3]


def _le16(b: tf.Tensor, i: int) -> tf.Tensor:
    return b[i] + b[i + 1] * 256


def _le32_signed(b: tf.Tensor, i: int) -> tf.Tensor:
    v = b[i] + b[i + 1] * 256 + b[i + 2] * 65536 + b[i + 3] * 16777216
    return tf.where(v >= 2**31, v - 2**32, v)


def image_header_shape(contents: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Reads ``(height, width)`` (int64) of an encoded image from its header only.

    JPEG: ``tf.io.extract_jpeg_shape`` (parses markers up to SOF, no decoding).
    PNG: IHDR; GIF: logical screen descriptor; BMP: info header (negative
    top-down heights made positive).

    Raises:
        tf.errors.InvalidArgumentError: (when run) not one of these four formats,
            or a JPEG whose header cannot be parsed.
    """
    contents = tf.convert_to_tensor(contents, tf.string)
    # Pad so that every header read below is in range, even for empty input.
    head = tf.io.decode_raw(tf.strings.substr(tf.strings.join([contents, b"\0" * 32]), 0, 32), tf.uint8)
    b = tf.cast(head, tf.int64)

    def eq(offset: int, magic: bytes) -> tf.Tensor:
        return tf.reduce_all(tf.equal(b[offset : offset + len(magic)], tf.constant(list(magic), tf.int64)))

    fmt = tf.where(
        eq(0, b"\xff\xd8\xff"),
        _JPEG,
        tf.where(
            eq(0, b"\x89PNG\r\n\x1a\n"),
            _PNG,
            tf.where(eq(0, b"GIF8"), _GIF, tf.where(eq(0, b"BM"), _BMP, _UNKNOWN)),
        ),
    )

    def jpeg():
        hw = tf.cast(tf.io.extract_jpeg_shape(contents)[:2], tf.int64)
        return tf.stack([hw[0], hw[1]])

    def png():
        return tf.stack([_be32(b, 20), _be32(b, 16)])

    def gif():
        return tf.stack([_le16(b, 8), _le16(b, 6)])

    def bmp():
        header_size = b[14] + b[15] * 256 + b[16] * 65536 + b[17] * 16777216
        core = tf.stack([_le16(b, 20), _le16(b, 18)])  # BITMAPCOREHEADER (12 bytes)
        info = tf.stack([tf.abs(_le32_signed(b, 22)), _le32_signed(b, 18)])
        return tf.where(tf.equal(header_size, 12), core, info)

    def unknown():
        check = tf.debugging.Assert(
            False,
            [
                "Unsupported or empty image data (JPEG, PNG, GIF or BMP expected); length in bytes:",
                tf.strings.length(contents),
            ],
        )
        with tf.control_dependencies([check]):
            return tf.zeros([2], tf.int64)

    hw = tf.switch_case(tf.cast(fmt, tf.int32), [jpeg, png, gif, bmp, unknown])
    return hw[0], hw[1]


def _rgb_from_any(image: tf.Tensor) -> tf.Tensor:
    """``[H, W, C]`` uint8 with C in 1..4 -> ``[H, W, 3]``; alpha composited over
    white, as :mod:`colourise_tf.data` does for training images."""

    def over_white(rgb: tf.Tensor, alpha: tf.Tensor) -> tf.Tensor:
        a = tf.cast(alpha, tf.float32) / 255.0
        return tf.cast(tf.round(tf.cast(rgb, tf.float32) * a + 255.0 * (1.0 - a)), tf.uint8)

    branches = [
        lambda: tf.tile(image[..., :1], [1, 1, 3]),
        lambda: tf.tile(over_white(image[..., :1], image[..., 1:2]), [1, 1, 3]),
        lambda: image[..., :3],
        lambda: over_white(image[..., :3], image[..., 3:4]),
    ]
    c = tf.shape(image)[-1]
    out = tf.switch_case(tf.clip_by_value(c, 1, 4) - 1, branches)
    return tf.ensure_shape(out, [None, None, 3])


def _check_pixels(h: tf.Tensor, w: tf.Tensor, max_pixels: int, when: str) -> tf.Operation:
    h = tf.cast(h, tf.int64)
    w = tf.cast(w, tf.int64)
    ok = tf.logical_and(tf.logical_and(h > 0, w > 0), h * w <= max_pixels)
    return tf.debugging.Assert(
        ok,
        [
            f"Image size ({when}): height",
            h,
            "width",
            w,
            f"must be positive with at most {max_pixels} pixels (the export's max_pixels)",
        ],
    )


def decode_image_checked(contents: tf.Tensor, max_pixels: int = DEFAULT_MAX_PIXELS) -> tf.Tensor:
    """Decodes one encoded image to uint8 RGB ``[H, W, 3]`` with a pixel budget.

    The size is checked from the header before decoding and again after.

    Raises:
        tf.errors.InvalidArgumentError: (when run) empty, truncated, corrupt,
            unsupported or too large input.
    """
    h, w = image_header_shape(contents)
    with tf.control_dependencies([_check_pixels(h, w, max_pixels, "from header")]):
        image = tf.io.decode_image(contents, channels=0, dtype=tf.uint8, expand_animations=False)
    image = tf.ensure_shape(image, [None, None, None])
    shape = tf.shape(image)
    with tf.control_dependencies([_check_pixels(shape[0], shape[1], max_pixels, "decoded")]):
        return _rgb_from_any(image)


# --------------------------------------------------------------------------- the module


def spec_of(cfg: ExperimentConfig) -> inference.ModelSpec:
    """The inference spec of an experiment config."""
    return inference.ModelSpec.from_model_config(cfg.model)


class ColouriseServingModule(tf.Module):
    """Holds the generator and the serving ``tf.function`` s (see module docstring).

    Args:
        generator: the Keras generator (inference mode is forced in every call).
        cfg: the resolved experiment config.
        output_format: ``"png"`` or ``"jpeg"``.
        max_pixels: largest accepted ``height * width`` per image.
        jpeg_quality: JPEG quality when ``output_format == "jpeg"``.
        png_compression: zlib level of the PNG output (0-9).
    """

    def __init__(
        self,
        generator: keras.Model,
        cfg: ExperimentConfig,
        *,
        output_format: str = "png",
        max_pixels: int = DEFAULT_MAX_PIXELS,
        jpeg_quality: int = 95,
        png_compression: int = DEFAULT_PNG_COMPRESSION,
    ) -> None:
        super().__init__(name="colourise")
        if output_format not in OUTPUT_FORMATS:
            raise ValueError(f"output_format must be one of {OUTPUT_FORMATS}, got {output_format!r}")
        if max_pixels < 1:
            raise ValueError(f"max_pixels must be positive, got {max_pixels}")
        if not 1 <= jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in [1, 100], got {jpeg_quality}")
        if not 0 <= png_compression <= 9:
            raise ValueError(f"png_compression must be in [0, 9], got {png_compression}")
        self._png_compression = int(png_compression)
        # Not tracked (see save_serving_model): the generator's Keras variables
        # would be exported a second time, under other resource names.
        object.__setattr__(self, "_generator", generator)
        self._spec = spec_of(cfg)
        self._whole_mask = inference.colours_inside_mask_only(self._spec, cfg)
        self._c_in = generator_input_channels(cfg.model)
        self._output_format = output_format
        self._max_pixels = int(max_pixels)
        self._jpeg_quality = int(jpeg_quality)
        s = self._spec.image_size
        images = tf.TensorSpec([None], tf.string, name="images")
        saturation = tf.TensorSpec([None], tf.float32, name="saturation")
        self.serving_default = tf.function(self._serve, input_signature=[images])
        self.serving_saturation = tf.function(self._serve_saturation, input_signature=[images, saturation])
        self.serving_rest = tf.function(self._serve_rest, input_signature=[images])
        self.serving_saturation_rest = tf.function(self._serve_saturation_rest, input_signature=[images, saturation])
        self.predict_ab = tf.function(
            self._predict_ab, input_signature=[tf.TensorSpec([None, None, None, 1], tf.float32, name="L")]
        )
        grey = tf.TensorSpec([None, s, s, self._c_in], tf.float32, name="grey")
        self.generator_fn = tf.function(self._generator_signature, input_signature=[grey])

    # -- building blocks

    @property
    def generator(self) -> keras.Model:
        """The Keras generator the signatures call."""
        return self._generator

    def _chroma_fn(self, x: tf.Tensor):
        return self._generator(x, training=False)

    def _encode(self, rgb_uint8: tf.Tensor) -> tf.Tensor:
        if self._output_format == "jpeg":
            return tf.io.encode_jpeg(rgb_uint8, quality=self._jpeg_quality)
        return tf.io.encode_png(rgb_uint8, compression=self._png_compression)

    def colourise_bytes(self, contents: tf.Tensor, saturation: tf.Tensor | float = 1.0) -> tf.Tensor:
        """One encoded image -> one encoded colourised image (scalar strings)."""
        rgb = decode_image_checked(contents, self._max_pixels)[tf.newaxis]
        out = inference.colourise_rgb(
            rgb, self._chroma_fn, self._spec, saturation=saturation, full_mask=self._whole_mask
        )
        return self._encode(inference.to_uint8(out)[0])

    def _batch(self, images: tf.Tensor, saturation: tf.Tensor | None) -> tf.Tensor:
        if saturation is None:
            fn = self.colourise_bytes
            elems = images
        else:
            n_img, n_sat = tf.shape(images)[0], tf.shape(saturation)[0]
            checks = [
                tf.debugging.Assert(
                    tf.equal(n_img, n_sat), ["`saturation` needs one value per image: got", n_sat, "for", n_img]
                ),
                tf.debugging.Assert(
                    tf.reduce_all(tf.math.is_finite(saturation) & (saturation >= 0.0)),
                    ["`saturation` values must be finite and >= 0, got", saturation],
                ),
            ]
            with tf.control_dependencies(checks):
                elems = (tf.identity(images), tf.identity(saturation))

            def fn(pair):
                return self.colourise_bytes(pair[0], pair[1])

        # parallel_iterations=1: one full-resolution image in memory at a time.
        return tf.map_fn(fn, elems, fn_output_signature=tf.TensorSpec([], tf.string), parallel_iterations=1)

    # -- signatures

    def _serve(self, images):
        return {"images": self._batch(images, None)}

    def _serve_saturation(self, images, saturation):
        return {"images": self._batch(images, saturation)}

    def _serve_rest(self, images):
        return {"images_bytes": self._batch(images, None)}

    def _serve_saturation_rest(self, images, saturation):
        return {"images_bytes": self._batch(images, saturation)}

    def _predict_ab(self, L):  # noqa: N803 - the signature's input key
        shape = tf.shape(L)
        with tf.control_dependencies([_check_pixels(shape[1], shape[2], self._max_pixels, "L")]):
            grey = colour.normalize_l(L)
        chroma = inference.colourise_grey(grey, self._chroma_fn, self._spec, full_mask=self._whole_mask)
        if self._spec.colour_space == "lab":
            return {"ab": colour.denormalize_ab(chroma)}
        return {"ab": chroma / 2.0}  # yuv: network range = 2 * (U, V)

    def _generator_signature(self, grey):
        out = self._generator(grey, training=False)
        if isinstance(out, (list, tuple)):
            result = {"chroma": tf.cast(out[0], tf.float32)}
            if len(out) > 1:
                result["segmentation"] = tf.cast(out[1], tf.float32)
            return result
        return {"chroma": tf.cast(out, tf.float32)}

    def signatures(self) -> dict[str, Any]:
        """Traces the signatures and tracks the variables they read.

        Keras 3 exports a tracked ``keras.Variable`` as a NEW ``tf.Variable``
        ("Variable_N") that the SavedModel's restore op fills, while the traced
        functions read the underlying variable under its own resource name. TF2's
        ``tf.saved_model.load`` reconciles the two through the object graph, but
        the C++ / TF1 loader that TF Serving uses binds resources by name: the
        functions then read uninitialised variables ("Could not find variable
        enc2/norm/moving_mean"). Tracking exactly the ``tf.Variable`` s the
        functions capture (and not the Keras model) gives one resource per weight.

        Returns:
            The concrete functions to save, keyed by signature name.
        """
        fns = {
            "serving_default": self.serving_default.get_concrete_function(),
            "serving_saturation": self.serving_saturation.get_concrete_function(),
            "serving_rest": self.serving_rest.get_concrete_function(),
            "serving_saturation_rest": self.serving_saturation_rest.get_concrete_function(),
            "predict_ab": self.predict_ab.get_concrete_function(),
            "generator": self.generator_fn.get_concrete_function(),
        }
        captured: dict[int, tf.Variable] = {}
        for fn in fns.values():
            for v in fn.variables:
                captured.setdefault(id(v), v)
        self.captured_variables = list(captured.values())
        return fns


# --------------------------------------------------------------------------- writing


def export_metadata(
    cfg: ExperimentConfig,
    *,
    step: int | None = None,
    checkpoint: str | None = None,
    output_format: str = "png",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    jpeg_quality: int = 95,
    png_compression: int = DEFAULT_PNG_COMPRESSION,
) -> dict:
    """The ``colourise_export.json`` content (keys shared with the TFLite sidecar)."""
    m = cfg.model
    return {
        "format_version": METADATA_VERSION,
        "kind": "savedmodel",
        **describe_model(cfg),
        "step": step,
        "checkpoint": checkpoint,
        "output_format": output_format,
        "jpeg_quality": jpeg_quality,
        "png_compression": png_compression,
        "max_pixels": int(max_pixels),
        "serving_noise_seed": [0, 0] if m.noise_channel else None,
        "serving_hints": _serving_hints(cfg),
        "signatures": list(ALL_SIGNATURES),
    }


def _serving_hints(cfg: ExperimentConfig) -> str | None:
    """What the serving signatures give a mask model's mask and hint channels."""
    if not cfg.model.mask_channel:
        return None
    if inference.colours_inside_mask_only(spec_of(cfg), cfg):
        return "none (a full mask: the model colours inside its mask only; zero hint chroma)"
    return "none (zero mask and hint chroma)"


def save_serving_model(
    generator: keras.Model,
    cfg: ExperimentConfig,
    export_dir: str | os.PathLike,
    *,
    step: int | None = None,
    checkpoint: str | None = None,
    output_format: str = "png",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    jpeg_quality: int = 95,
    png_compression: int = DEFAULT_PNG_COMPRESSION,
) -> Path | str:
    """Saves a generator as a serving SavedModel in ``export_dir`` (not atomic;
    :func:`export_savedmodel` wraps it with versioning and an atomic rename).
    ``export_dir`` may be a URI (``gs://...``).

    Returns:
        ``export_dir`` (a :class:`pathlib.Path` if local, else the URI string).
    """
    export_dir = fileio.local_path_or_uri(export_dir)
    module = ColouriseServingModule(
        generator,
        cfg,
        output_format=output_format,
        max_pixels=max_pixels,
        jpeg_quality=jpeg_quality,
        png_compression=png_compression,
    )
    meta = export_metadata(
        cfg,
        step=step,
        checkpoint=checkpoint,
        output_format=output_format,
        max_pixels=max_pixels,
        jpeg_quality=jpeg_quality,
        png_compression=png_compression,
    )
    with tempfile.TemporaryDirectory(prefix="colourise_assets_") as tmp:
        cfg_path = Path(tmp) / CONFIG_ASSET
        meta_path = Path(tmp) / METADATA_ASSET
        cfg_path.write_text(json.dumps(to_dict(cfg), indent=2, sort_keys=True) + "\n", encoding="utf-8")
        meta_path.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        # Tracked Assets are copied into <export>/assets/ and listed in the
        # MetaGraphDef's asset_file_def, which TF Serving's loader handles as is.
        module.config_asset = tf.saved_model.Asset(str(cfg_path))
        module.metadata_asset = tf.saved_model.Asset(str(meta_path))
        tf.saved_model.save(module, os.fspath(export_dir), signatures=module.signatures())
    return export_dir


def existing_versions(base_dir: str | os.PathLike) -> list[int]:
    """Integer version directories under ``base_dir`` (what TF Serving would load)."""
    base = fileio.normalize(base_dir)
    if not fileio.isdir(base):
        return []
    return sorted(
        int(name) for name in fileio.listdir(base) if name.isdigit() and fileio.isdir(fileio.join(base, name))
    )


def next_version(base_dir: str | os.PathLike) -> int:
    """One more than the largest existing version, or 1."""
    versions = existing_versions(base_dir)
    return versions[-1] + 1 if versions else 1


def export_savedmodel(
    source: str | os.PathLike,
    base_dir: str | os.PathLike,
    version: int | None = None,
    *,
    output_format: str = "png",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    jpeg_quality: int = 95,
    png_compression: int = DEFAULT_PNG_COMPRESSION,
) -> Path:
    """Exports a training run's generator to ``<base_dir>/<version>/``.

    Args:
        source: a run directory (latest checkpoint) or a checkpoint prefix
            (``runs/x/checkpoints/ckpt-300``); local or a URI (``gs://``, ``ram://``,
            ``file://``).
        base_dir: the model's base path, as TF Serving watches it; local or a URI.
        version: a positive integer; ``None`` = one more than the largest existing.
        output_format: ``"png"`` (lossless) or ``"jpeg"``.
        max_pixels: per-image pixel budget enforced by the image signatures.
        jpeg_quality: JPEG output quality.
        png_compression: zlib level of PNG outputs (see
            :data:`DEFAULT_PNG_COMPRESSION`).

    Returns:
        The version directory: a :class:`pathlib.Path` for a local ``base_dir``, the URI
        string otherwise.

    Raises:
        colourise_tf.runs.RunDirectoryError: ``source`` is not a run / checkpoint.
        FileExistsError: ``<base_dir>/<version>`` already exists.
        ValueError: bad version, output format, pixel budget or quality.
    """
    if output_format not in OUTPUT_FORMATS:
        raise ValueError(f"output_format must be one of {OUTPUT_FORMATS}, got {output_format!r}")
    if version is not None and (int(version) != version or version < 1):
        raise ValueError(f"version must be a positive integer, got {version!r}")
    run = load_run(source)
    base = fileio.normalize(base_dir)
    fileio.makedirs(base)
    version = next_version(base) if version is None else int(version)
    target = fileio.join(base, str(version))
    if fileio.exists(target):
        raise FileExistsError(f"{target} exists; TF Serving versions are immutable, pick another version")
    tmp = fileio.join(base, f".tmp-{version}-{uuid.uuid4().hex[:8]}")  # not an integer: TF Serving ignores it
    try:
        save_serving_model(
            run.generator,
            run.cfg,
            tmp,
            step=run.step,
            checkpoint=run.checkpoint,
            output_format=output_format,
            max_pixels=max_pixels,
            jpeg_quality=jpeg_quality,
            png_compression=png_compression,
        )
        if fileio.exists(target):
            raise FileExistsError(f"{target} appeared while exporting")
        if fileio.is_remote(base):
            _move_tree_remote(tmp, target)
        else:
            os.rename(tmp, target)
    finally:
        if fileio.exists(tmp):
            fileio.rmtree(tmp)
    return fileio.local_path_or_uri(target)


def _move_tree_remote(src: str, dst: str) -> None:
    """Moves the SavedModel folder ``src`` to the new folder ``dst`` on a non-local file
    system, file by file (``tf.io.gfile.rename`` of a folder is not supported
    everywhere: ``ram://`` loses its content), ``saved_model.pb``/``.pbtxt`` last. If a
    move fails, what reached ``dst`` is deleted again."""
    gfile = tf.io.gfile
    src = src.rstrip("/")
    files: list[tuple[str, str]] = []  # (source file, path relative to src)
    for folder, _, names in gfile.walk(src):
        rel = folder.rstrip("/")[len(src) :].strip("/")
        files += [(posixpath.join(folder, name), posixpath.join(rel, name) if rel else name) for name in names]
    files.sort(key=lambda f: (f[1] in ("saved_model.pb", "saved_model.pbtxt"), f[1]))
    try:
        fileio.makedirs(dst)
        for path, rel in files:
            out = fileio.join(dst, rel)
            fileio.makedirs(posixpath.dirname(out))
            gfile.rename(path, out, overwrite=False)
    except BaseException:
        with contextlib.suppress(Exception):
            fileio.rmtree(dst)
        raise


def write_models_config(
    base_dir: str | os.PathLike,
    model_name: str,
    *,
    base_path: str | None = None,
) -> Path:
    """Writes ``<base_dir>/models.config`` for ``--model_config_file``.

    Args:
        base_dir: the export base directory (the file goes inside it).
        model_name: the name clients use (``/v1/models/<model_name>``).
        base_path: the base path as the SERVER sees it; default
            ``/models/<model_name>`` (the ``tensorflow/serving`` Docker image with
            ``base_dir`` mounted there).

    Returns:
        The path of the written file (a :class:`pathlib.Path` for a local ``base_dir``,
        the URI string otherwise).
    """
    if not model_name or any(c in model_name for c in '"\n/\\'):
        raise ValueError(f"invalid model name {model_name!r}")
    base = fileio.normalize(base_dir)
    fileio.makedirs(base)
    base_path = base_path or f"/models/{model_name}"
    text = (
        "model_config_list {\n"
        "  config {\n"
        f'    name: "{model_name}"\n'
        f'    base_path: "{base_path}"\n'
        '    model_platform: "tensorflow"\n'
        "    model_version_policy { latest { num_versions: 1 } }\n"
        "  }\n"
        "}\n"
    )
    path = fileio.local_path_or_uri(fileio.join(base, "models.config"))
    atomic_write_text(path, text)
    return path


def read_export_metadata(export_dir: str | os.PathLike) -> dict:
    """Reads ``assets/colourise_export.json`` of an exported version directory.

    The resolved experiment config is ``assets/colourise_config.json``
    (``colourise_tf.config.load_config`` reads it). ``export_dir`` may be a URI.
    """
    return json.loads(fileio.read_text(fileio.join(export_dir, savedmodel_assets.ASSETS, METADATA_ASSET)))
