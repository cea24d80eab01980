"""Folder sources decode in TensorFlow: the same pixels as Pillow, EXIF orientation from
the file list, no Python ops in the graph, and a script that stops reading exits."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageOps, features

from colourise_tf import data

REPO = Path(__file__).resolve().parents[1]


def _noise(h, w, c=3, seed=0):
    shape = (h, w) if c == 1 else (h, w, c)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _native(path: str, min_side: int = 10**6) -> np.ndarray:
    """The pipeline's own decode of one file (probe + TensorFlow decode + orientation)."""
    report = data.PipelineReport()
    rec = data._probe_file(path, min_side, report)
    assert rec is not None, report.skipped
    contents = tf.io.read_file(rec.path)
    ratio = tf.constant((1, 2, 4, 8).index(rec.ratio))
    image = data._decode_native(contents, tf.constant(rec.kind), ratio)
    return data._orient(image, tf.constant(rec.orientation)).numpy(), rec


CASES = {
    "rgb.png": lambda: Image.fromarray(_noise(13, 17)),
    "grey.png": lambda: Image.fromarray(_noise(13, 17, 1)),
    "rgba.png": lambda: Image.fromarray(_noise(13, 17, 4)),
    "la.png": lambda: Image.fromarray(_noise(13, 17, 2)[..., :2].copy(), "LA"),
    "palette.png": lambda: Image.fromarray(_noise(13, 17)).convert("P", palette=Image.Palette.ADAPTIVE, colors=32),
    "deep.png": lambda: Image.fromarray(_noise(13, 17, 1).astype(np.uint16) * 251),
    "rgb.bmp": lambda: Image.fromarray(_noise(13, 17)),
    "first.gif": lambda: Image.fromarray(_noise(13, 17)).convert("P"),
    "scan.tif": lambda: Image.fromarray(_noise(13, 17)),
    "cmyk.jpg": lambda: Image.new("CMYK", (17, 13), (0, 200, 255, 10)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_native_decode_matches_pillow(tmp_path, name):
    path = str(tmp_path / name)
    CASES[name]().save(path)
    got, rec = _native(path)
    want = data.decode_image_file(path)
    assert got.shape == want.shape and got.dtype == np.uint8
    # Alpha over white rounds once in each implementation: at most one level apart.
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1, name
    converted = name in ("scan.tif", "cmyk.jpg")
    assert (rec.path != path) == converted  # only what TensorFlow cannot read goes through Pillow


def _with_trailer(path: Path, extra: bytes) -> str:
    path.write_bytes(path.read_bytes() + extra)
    return str(path)


def test_files_pillow_reads_are_not_dropped_or_miscoloured(tmp_path):
    """Cases an end-marker heuristic or a decoder mismatch got wrong: bytes appended
    after the image (motion photos append a video), a 32-bit BMP whose fourth byte is
    padding, a 16-bit BMP, a GIF with a transparent colour, a JPEG Pillow calls MPO.
    Each decodes to Pillow's pixels and none is skipped."""
    rgb = _noise(24, 30, seed=3)
    cases = {}
    Image.fromarray(rgb).save(tmp_path / "motion.jpg", quality=95)
    cases["motion.jpg"] = _with_trailer(tmp_path / "motion.jpg", b"\x00\x00\x00\x18ftypmp42" + bytes(200_000))
    Image.fromarray(rgb).save(tmp_path / "tail.png")
    cases["tail.png"] = _with_trailer(tmp_path / "tail.png", bytes(9000))
    rgba = np.dstack([rgb, np.zeros(rgb.shape[:2], np.uint8)])
    Image.fromarray(rgba).save(tmp_path / "padded32.bmp")  # Pillow: RGB, 4th byte padding
    cases["padded32.bmp"] = str(tmp_path / "padded32.bmp")
    Image.fromarray(rgb).convert("P").save(tmp_path / "transparent.gif", transparency=0)
    cases["transparent.gif"] = str(tmp_path / "transparent.gif")
    for name, path in cases.items():
        got, rec = _native(path)
        want = data.decode_image_file(path)
        assert got.shape == want.shape, name
        assert np.abs(got.astype(int) - want.astype(int)).max() <= 1, name
    assert _native(cases["motion.jpg"])[1].path == cases["motion.jpg"]  # still native


def test_truncation_is_found_behind_an_exif_thumbnail(tmp_path):
    """A truncated JPEG whose EXIF thumbnail (with its own end marker) lies in the last
    kilobytes is still reported as truncated, by path."""
    thumb = io.BytesIO()
    Image.fromarray(_noise(16, 16, seed=1)).save(thumb, format="JPEG")
    exif = Image.Exif()
    exif[0x0112] = 1
    path = tmp_path / "small.jpg"
    Image.fromarray(_noise(40, 40, seed=2)).save(path, quality=90, exif=exif.tobytes() + thumb.getvalue())
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) - 200])
    report = data.PipelineReport()
    assert data._probe_file(str(path), 1, report) is None
    assert report.skipped and report.skipped[0][1].startswith("truncated image")


def test_png_probe_reads_no_pixels(tmp_path, monkeypatch):
    """Probing a PNG reads its chunk headers (and eXIf), never its pixels."""
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "p.png"
    Image.fromarray(_noise(30, 40)).save(path, exif=exif)
    loads = []
    real_load = Image.Image.load
    monkeypatch.setattr(Image.Image, "load", lambda self: loads.append(1) or real_load(self))
    from PIL import PngImagePlugin

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", lambda self: loads.append(1) or real_load(self))
    rec = data._probe_file(str(path), 1, data.PipelineReport())
    assert rec.orientation == 6 and loads == []


@pytest.mark.skipif(not features.check("webp") or not hasattr(tf.io, "decode_webp"), reason="no WebP")
def test_native_webp_matches_pillow(tmp_path):
    path = str(tmp_path / "a.webp")
    Image.fromarray(_noise(13, 17)).save(path, lossless=True)
    got, rec = _native(path)
    np.testing.assert_array_equal(got, data.decode_image_file(path))
    assert rec.path == path


def test_jpeg_decodes_like_pillow_with_the_same_dct_downscale(tmp_path):
    path = str(tmp_path / "p.jpg")
    Image.fromarray(_noise(200, 300)).resize((300, 200)).save(path, quality=92)
    for min_side in (10**6, 40, 90):
        got, rec = _native(path, min_side)
        want = data.decode_image_file(path, min_side=min_side)
        assert got.shape == want.shape, min_side
        assert np.abs(got.astype(int) - want.astype(int)).mean() < 1.0, min_side
    assert _native(path, 40)[1].ratio == 4


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_from_the_file_list_matches_pillow(tmp_path, orientation):
    stored = _noise(12, 20, seed=orientation)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = str(tmp_path / f"o{orientation}.png")
    Image.fromarray(stored).save(path, exif=exif)
    with Image.open(path) as img:
        want = np.asarray(ImageOps.exif_transpose(img).convert("RGB"))
    got, rec = _native(path)
    assert rec.orientation == orientation and rec.path == path
    np.testing.assert_array_equal(got, want)


def _graph_op_types(ds: tf.data.Dataset) -> set[str]:
    """Op types of a dataset's graph and of every function in it."""
    from tensorflow.core.framework import graph_pb2

    graph_def = graph_pb2.GraphDef.FromString(ds._as_serialized_graph().numpy())
    types = {n.op for n in graph_def.node}
    for fn in graph_def.library.function:
        types |= {n.op for n in fn.node_def}
    return types


TFDS_BUILDER = """
import numpy as np
import tensorflow_datasets as tfds


class ColouriseExitPhotos(tfds.core.GeneratorBasedBuilder):
    \"\"\"A real TFDS builder (TFRecord files on disk): 64 colour images.\"\"\"

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self, features=tfds.features.FeaturesDict({"image": tfds.features.Image(shape=(None, None, 3))})
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        rng = np.random.default_rng(0)
        for i in range(64):
            yield i, {"image": rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)}
"""

PY_OPS = {"PyFunc", "EagerPyFunc", "PyFuncStateless"}


def _tfds_source(data_dir: Path) -> str:
    namespace: dict = {}
    exec(TFDS_BUILDER, namespace)  # noqa: S102 - the builder class above, registered by name
    namespace["ColouriseExitPhotos"](data_dir=str(data_dir)).download_and_prepare()
    return "colourise_exit_photos"


def test_folder_and_tfds_graphs_have_no_python_ops(tmp_path):
    for i in range(3):
        Image.fromarray(_noise(20, 30, seed=i)).save(tmp_path / f"{i}.jpg")
    Image.fromarray(_noise(20, 30, seed=9)).save(tmp_path / "scan.tif")
    for training in (True, False):
        types = _graph_op_types(data.build_dataset(str(tmp_path), image_size=16, batch_size=2, training=training))
        assert not types & PY_OPS, types
        assert "ReadFile" in types
        # Window first: JPEGs decode only the crop (training) or the centre square.
        assert "DecodeAndCropJpeg" in types
    name = _tfds_source(tmp_path / "tfds")
    for masks in (False, True):
        types = _graph_op_types(
            data.build_dataset(name, data_dir=str(tmp_path / "tfds"), image_size=16, batch_size=2, masks=masks)
        )
        assert not types & PY_OPS, types
    # The masks (partial-mask preset) are drawn with TensorFlow ops too.
    masked = data.build_dataset(str(tmp_path), image_size=16, batch_size=2, masks=True)
    assert not _graph_op_types(masked) & PY_OPS
    # The check sees a Python function where there is one.
    with_python = masked.map(lambda ex: tf.numpy_function(lambda x: x, [ex["mask"]], tf.float32))
    assert _graph_op_types(with_python) & PY_OPS


EXIT_SCRIPT = """
import sys
from colourise_tf import data
source, data_dir = sys.argv[1], None
if source == "tfds":
    data_dir = sys.argv[2]
    exec(open(sys.argv[3]).read())
    ColouriseExitPhotos(data_dir=data_dir).download_and_prepare()
    source = "colourise_exit_photos"
ds = data.build_dataset(source, data_dir=data_dir, training=True, repeat=True, image_size=32, batch_size=16)
it = iter(ds)  # left alive in a module global on purpose
for _ in range(60):
    next(it)
print("read", flush=True)
"""


@pytest.mark.parametrize("source", ["folder", "tfds"])
def test_a_script_that_stops_reading_exits(tmp_path, source):
    """A script that reads part of an endless dataset, keeps the iterator in a global
    and returns, exits (with Pillow in the graph it hung at interpreter exit on
    in-flight decoder calls, in 5 of 6 runs of a folder of JPEGs here)."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(24):
        exif = Image.Exif()
        exif[0x0112] = 6 if i % 4 == 0 else 1  # some phone photos, rotated in the graph
        Image.fromarray(_noise(150, 200, seed=i)).save(folder / f"{i}.jpg", quality=90, exif=exif)
    script = tmp_path / "read_some.py"
    script.write_text(EXIT_SCRIPT)
    builder = tmp_path / "builder.py"
    builder.write_text(TFDS_BUILDER)
    args = [str(folder)] if source == "folder" else ["tfds", str(tmp_path / "tfds"), str(builder)]
    for _ in range(3):
        proc = subprocess.run(
            [sys.executable, str(script), *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "0"},
        )
        assert proc.returncode == 0 and "read" in proc.stdout, proc.stderr[-2000:]
        # No error-level line (oneDNN's "supports DT_UINT8 only..." from a uint8 transpose).
        assert not [ln for ln in proc.stderr.splitlines() if ln.startswith("E0000")], proc.stderr[-2000:]
