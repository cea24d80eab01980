"""SavedModel export: layout, signatures, numerics against the Keras path, bad input.

One tiny run directory (random, deliberately colourful weights) and one export are
built per module; every test reloads that export with ``tf.saved_model.load``.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from colourise_tf import colour, inference
from colourise_tf.config import apply_overrides, get_preset, load_config, save_config
from colourise_tf.data import load_samples
from colourise_tf.models import build_generator
from colourise_tf.serving import savedmodel as sm

REPO = Path(__file__).resolve().parents[1]
PY_FUNC_OPS = {"PyFunc", "PyFuncStateless", "EagerPyFunc"}


# --------------------------------------------------------------------------- fixtures

from helpers import randomise_generator  # noqa: E402


def make_run_dir(path: Path, preset: str = "tiny", overrides=(), step: int = 7):
    """A run directory as training writes it (config.json + checkpoints/)."""
    cfg = apply_overrides(get_preset(preset), list(overrides))
    generator = build_generator(cfg.model)
    randomise_generator(generator)
    path.mkdir(parents=True, exist_ok=True)
    save_config(cfg, path / "config.json")
    ckpt = tf.train.Checkpoint(generator=generator, step=tf.Variable(step, dtype=tf.int64))
    tf.train.CheckpointManager(ckpt, str(path / "checkpoints"), 1).save()
    return cfg, generator


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    path = tmp_path_factory.mktemp("run") / "tiny-run"
    cfg, generator = make_run_dir(path)
    return path, cfg, generator


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("exports") / "colourise"


@pytest.fixture(scope="module")
def export_dir(run, base_dir):
    return sm.export_savedmodel(run[0], base_dir)


@pytest.fixture(scope="module")
def loaded(export_dir):
    return tf.saved_model.load(str(export_dir))


@pytest.fixture(scope="module")
def samples():
    # Every second sample keeps the module fast; sizes still differ.
    return load_samples()[::2]


def encode(rgb: np.ndarray, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, fmt, **kw)
    return buf.getvalue()


def keras_reference(rgb, generator, cfg, saturation: float = 1.0) -> np.ndarray:
    spec = inference.ModelSpec.from_model_config(cfg.model)
    out = inference.colourise_rgb(
        tf.convert_to_tensor(rgb)[tf.newaxis], inference.keras_chroma_fn(generator), spec, saturation=saturation
    )
    return inference.to_uint8(out)[0].numpy()


def serve(loaded, images: list[bytes], signature: str = "serving_default", **extra) -> list[np.ndarray]:
    out = loaded.signatures[signature](images=tf.constant(images), **extra)
    key = "images_bytes" if signature.endswith("_rest") else "images"
    return [tf.io.decode_image(b, channels=3, expand_animations=False).numpy() for b in out[key].numpy()]


# --------------------------------------------------------------------------- layout


def test_layout_assets_and_metadata(run, base_dir, export_dir):
    _, cfg, _ = run
    assert export_dir == base_dir / "1"
    assert (export_dir / "saved_model.pb").is_file() and (export_dir / "variables").is_dir()
    assert not [p for p in base_dir.iterdir() if p.name.startswith(".tmp")]
    assert load_config(export_dir / "assets" / sm.CONFIG_ASSET) == cfg
    meta = sm.read_export_metadata(export_dir)
    assert meta["image_size"] == 32 and meta["colour_space"] == "lab" and meta["preset"] == "tiny"
    assert meta["max_pixels"] == sm.DEFAULT_MAX_PIXELS and meta["output_format"] == "png"
    assert meta["step"] == 7 and meta["signatures"] == list(sm.ALL_SIGNATURES)


def test_assets_are_registered_in_the_metagraph(export_dir):
    """TF Serving's loader knows assets through MetaGraphDef.asset_file_def."""
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel.FromString((export_dir / "saved_model.pb").read_bytes())
    names = {a.filename for a in proto.meta_graphs[0].asset_file_def}
    assert names == {sm.CONFIG_ASSET, sm.METADATA_ASSET}


def test_versions_and_models_config(tmp_path, run):
    for name in ("1", "3", "junk", ".tmp-4-abc"):
        (tmp_path / name).mkdir()
    assert sm.existing_versions(tmp_path) == [1, 3]
    assert sm.next_version(tmp_path) == 4
    assert sm.next_version(tmp_path / "missing") == 1
    with pytest.raises(FileExistsError):
        sm.export_savedmodel(run[0], tmp_path, version=3)
    with pytest.raises(ValueError):
        sm.export_savedmodel(run[0], tmp_path, version=0)
    with pytest.raises(ValueError):
        sm.export_savedmodel(run[0], tmp_path, output_format="webp")
    text = sm.write_models_config(tmp_path, "colourise").read_text()
    assert 'name: "colourise"' in text and 'base_path: "/models/colourise"' in text
    assert 'model_platform: "tensorflow"' in text
    custom = sm.write_models_config(tmp_path, "c2", base_path="/srv/models/c2").read_text()
    assert 'base_path: "/srv/models/c2"' in custom


# --------------------------------------------------------------------------- signatures


def test_signature_keys_and_dtypes(loaded):
    assert set(loaded.signatures) == set(sm.ALL_SIGNATURES)
    expect = {
        "serving_default": ({"images": tf.string}, {"images": tf.string}),
        "serving_saturation": ({"images": tf.string, "saturation": tf.float32}, {"images": tf.string}),
        "serving_rest": ({"images": tf.string}, {"images_bytes": tf.string}),
        "serving_saturation_rest": (
            {"images": tf.string, "saturation": tf.float32},
            {"images_bytes": tf.string},
        ),
        "predict_ab": ({"L": tf.float32}, {"ab": tf.float32}),
        "generator": ({"grey": tf.float32}, {"chroma": tf.float32}),
    }
    for name, (inputs, outputs) in expect.items():
        fn = loaded.signatures[name]
        got_in = {k: v.dtype for k, v in fn.structured_input_signature[1].items()}
        got_out = {k: v.dtype for k, v in fn.structured_outputs.items()}
        assert got_in == inputs, name
        assert got_out == outputs, name
    assert loaded.signatures["generator"].structured_input_signature[1]["grey"].shape.as_list() == [None, 32, 32, 1]
    assert loaded.signatures["predict_ab"].structured_input_signature[1]["L"].shape.as_list() == [None, None, None, 1]


def _graph_ops(graph_def) -> set[str]:
    ops = {n.op for n in graph_def.node}
    for f in graph_def.library.function:
        ops |= {n.op for n in f.node_def}
    return ops


def test_no_python_only_ops(loaded, export_dir):
    from tensorflow.core.protobuf import saved_model_pb2

    for name in sm.ALL_SIGNATURES:
        ops = _graph_ops(loaded.signatures[name].graph.as_graph_def())
        assert not ops & PY_FUNC_OPS, (name, ops & PY_FUNC_OPS)
        assert ops, name
    proto = saved_model_pb2.SavedModel.FromString((export_dir / "saved_model.pb").read_bytes())
    all_ops = _graph_ops(proto.meta_graphs[0].graph_def)
    assert not all_ops & PY_FUNC_OPS
    # The whole pipeline really is in the graph.
    assert {"DecodeImage", "ExtractJpegShape", "EncodePng", "ResizeArea", "ResizeBilinear"} <= all_ops


# --------------------------------------------------------------------------- numerics


def test_serving_default_matches_keras_path(loaded, run, samples):
    _, cfg, generator = run
    images = [encode(rgb) for _, rgb in samples]  # PNG: lossless, so the input is exact
    outputs = serve(loaded, images)  # different sizes in one batch
    assert len({rgb.shape for _, rgb in samples}) > 1
    for (name, rgb), out in zip(samples, outputs):
        assert out.shape == rgb.shape, name
        ref = keras_reference(rgb, generator, cfg)
        diff = np.abs(out.astype(int) - ref.astype(int))
        assert diff.max() <= 1, (name, diff.max())
        # Recombined with the original L: lightness changes only by 8-bit rounding,
        # except where a colour left sRGB and was clipped (a channel at 0 or 255).
        d_l = np.abs((colour.rgb_to_lab(out)[..., 0] - colour.rgb_to_lab(rgb)[..., 0]).numpy())
        in_gamut = np.all((out > 0) & (out < 255), axis=-1)
        assert in_gamut.mean() > 0.3, name  # the random test model is very colourful
        assert d_l[in_gamut].max() < 0.5 and d_l[in_gamut].mean() < 0.15, (name, d_l[in_gamut].max())
        # ...and it is really coloured.
        assert np.abs(colour.rgb_to_lab(out)[..., 1:]).mean() > 5.0, name


def test_jpeg_bmp_gif_grey_and_alpha_inputs(loaded, run, samples):
    _, cfg, generator = run
    rgb = samples[0][1][:123, :77]
    jpeg = encode(rgb, "JPEG", quality=90)
    (out,) = serve(loaded, [jpeg])
    ref = keras_reference(tf.io.decode_jpeg(jpeg).numpy(), generator, cfg)  # the same decoder
    assert out.shape == rgb.shape and np.abs(out.astype(int) - ref.astype(int)).max() <= 1
    (out,) = serve(loaded, [encode(rgb, "BMP")])
    assert np.abs(out.astype(int) - keras_reference(rgb, generator, cfg).astype(int)).max() <= 1
    grey = rgb[..., 0]
    for data in (encode(grey, "GIF"), encode(grey, "PNG")):  # palette / 1-channel files
        (out,) = serve(loaded, [data])
        ref = keras_reference(np.repeat(grey[..., None], 3, -1), generator, cfg)
        assert out.shape == rgb.shape and np.abs(out.astype(int) - ref.astype(int)).max() <= 1
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    rgba[:10, :10, 3] = 0  # transparent corner -> composited over white
    (out,) = serve(loaded, [encode(rgba, "PNG")])
    flat = rgb.copy()
    flat[:10, :10] = 255
    assert np.abs(out.astype(int) - keras_reference(flat, generator, cfg).astype(int)).max() <= 1


def test_colour_input_is_colourised_from_its_own_lightness(loaded, samples):
    rgb = samples[1][1]
    lab = colour.rgb_to_lab(rgb)
    grey = inference.to_uint8(colour.lab_to_rgb(tf.concat([lab[..., :1], tf.zeros_like(lab[..., 1:])], -1))).numpy()
    out_colour, out_grey = serve(loaded, [encode(rgb), encode(grey)])
    # Same L (up to the grey image's 8-bit rounding) -> the same colourisation.
    diff = np.abs(out_colour.astype(int) - out_grey.astype(int))
    assert np.percentile(diff, 99) <= 2 and diff.mean() < 0.5


def test_rest_twins_match(loaded, samples):
    images = [encode(samples[0][1][:50, :60])]
    out = loaded.signatures["serving_default"](images=tf.constant(images))["images"].numpy()
    rest = loaded.signatures["serving_rest"](images=tf.constant(images))["images_bytes"].numpy()
    assert out.tolist() == rest.tolist()
    sat = loaded.signatures["serving_saturation_rest"](images=tf.constant(images), saturation=tf.constant([1.0]))
    assert sat["images_bytes"].numpy().tolist() == out.tolist()


def test_serving_saturation(loaded, run, samples):
    _, cfg, generator = run
    rgb = samples[2][1][:96, :64]
    images = [encode(rgb)] * 3
    outs = serve(loaded, images, "serving_saturation", saturation=tf.constant([0.0, 1.0, 2.0]))
    grey, same, vivid = outs
    (default,) = serve(loaded, images[:1])
    np.testing.assert_array_equal(same, default)
    assert np.ptp(grey.astype(int), axis=-1).max() <= 1  # gain 0: R = G = B
    assert np.abs(vivid.astype(int) - keras_reference(rgb, generator, cfg, saturation=2.0).astype(int)).max() <= 1
    chroma = [np.abs(colour.rgb_to_lab(o)[..., 1:]).mean() for o in outs]
    assert chroma[0] < 0.5 < chroma[1] < chroma[2]
    for bad in ([-1.0, 1.0, 1.0], [float("nan"), 1.0, 1.0], [1.0, 1.0]):
        with pytest.raises(tf.errors.InvalidArgumentError):
            serve(loaded, images, "serving_saturation", saturation=tf.constant(bad))


def test_predict_ab_matches_keras_path(loaded, run, samples):
    _, cfg, generator = run
    spec = inference.ModelSpec.from_model_config(cfg.model)
    rgb = np.stack([samples[0][1][:70, :90], samples[1][1][:70, :90]])
    lightness = colour.rgb_to_lab(rgb)[..., :1]
    ab = loaded.signatures["predict_ab"](L=lightness)["ab"].numpy()
    grey = colour.normalize_l(lightness)
    ref = colour.denormalize_ab(inference.colourise_grey(grey, inference.keras_chroma_fn(generator), spec)).numpy()
    assert ab.shape == (2, 70, 90, 2)
    np.testing.assert_allclose(ab, ref, atol=1e-3)  # Lab units (1e-5 of the range)
    assert np.abs(ab).mean() > 5.0


def test_generator_signature_is_the_raw_generator(loaded, run):
    _, _, generator = run
    x = np.random.default_rng(0).uniform(-1, 1, (3, 32, 32, 1)).astype(np.float32)
    chroma = loaded.signatures["generator"](grey=tf.constant(x))["chroma"].numpy()
    np.testing.assert_allclose(chroma, generator(x, training=False).numpy(), atol=1e-5)


def test_tf1_session_load_as_tf_serving_does(export_dir, samples):
    """TF Serving runs a SignatureDef's tensors in a Session after the standard
    loader restores variables and assets; do exactly that."""
    image = encode(samples[0][1][:40, :50])
    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
        meta = tf.compat.v1.saved_model.loader.load(sess, ["serve"], str(export_dir))
        sig = meta.signature_def["serving_default"]
        (out,) = sess.run(
            [sig.outputs["images"].name], feed_dict={sig.inputs["images"].name: np.array([image], dtype=object)}
        )
        sig = meta.signature_def["serving_saturation"]
        (sat,) = sess.run(
            [sig.outputs["images"].name],
            feed_dict={
                sig.inputs["images"].name: np.array([image], dtype=object),
                sig.inputs["saturation"].name: [1.0],
            },
        )
    assert out[0] == sat[0]
    assert tf.io.decode_png(out[0]).shape == (40, 50, 3)


# --------------------------------------------------------------------------- bad input


def _bad_inputs() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (40, 30, 3), np.uint8)
    jpeg, png = encode(rgb, "JPEG"), encode(rgb, "PNG")
    return {
        "empty": b"",
        "truncated_jpeg": jpeg[: len(jpeg) // 2],
        "jpeg_header_only": jpeg[:30],
        "truncated_png": png[:60],
        "random_bytes": rng.bytes(2000),
        "text": b"hello, world",
        "webp_like": b"RIFF\x00\x00\x00\x00WEBPVP8 " + rng.bytes(100),
    }


@pytest.mark.parametrize("case", sorted(_bad_inputs()))
def test_bad_input_raises_invalid_argument(loaded, case):
    with pytest.raises(tf.errors.InvalidArgumentError):
        loaded.signatures["serving_default"](images=tf.constant([_bad_inputs()[case]]))


def test_unsupported_formats_are_refused_before_decoding(loaded):
    # TF's DecodeImage would also read WebP / JPEG XL, with no size check first.
    for case in ("webp_like", "text", "empty"):
        with pytest.raises(tf.errors.InvalidArgumentError, match="Unsupported or empty image data"):
            loaded.signatures["serving_default"](images=tf.constant([_bad_inputs()[case]]))


def test_bad_input_in_a_batch_fails_the_request_not_the_process(loaded, samples):
    good = encode(samples[0][1][:20, :20])
    with pytest.raises(tf.errors.InvalidArgumentError):
        loaded.signatures["serving_default"](images=tf.constant([good, b"", good]))
    (out,) = serve(loaded, [good])  # still serving
    assert out.shape == (20, 20, 3)


def test_one_pixel_and_empty_batch(loaded):
    (out,) = serve(loaded, [encode(np.array([[[200, 30, 30]]], np.uint8))])
    assert out.shape == (1, 1, 3)
    empty = loaded.signatures["serving_default"](images=tf.constant([], tf.string))["images"]
    assert empty.shape == (0,)


def _jpeg_with_size(height: int, width: int) -> bytes:
    """A real JPEG whose SOF marker is rewritten to claim another size."""
    data = bytearray(encode(np.zeros((8, 8, 3), np.uint8), "JPEG"))
    i = data.index(b"\xff\xc0")
    data[i + 5 : i + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


def test_pixel_budget_is_checked_from_the_header(loaded):
    big_png = encode(np.zeros((10_000, 10_000), np.uint8), "PNG")  # 100 MP, ~100 kB
    for data in (big_png, _jpeg_with_size(10_000, 10_000)):
        with pytest.raises(tf.errors.InvalidArgumentError, match="max_pixels"):
            loaded.signatures["serving_default"](images=tf.constant([data]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="max_pixels"):
        loaded.signatures["predict_ab"](L=tf.zeros([1, 7000, 7000, 1]))


def test_header_sizes():
    rgb = np.zeros((37, 53, 3), np.uint8)
    for fmt in ("JPEG", "PNG", "BMP", "GIF"):
        h, w = sm.image_header_shape(tf.constant(encode(rgb if fmt != "GIF" else rgb[..., 0], fmt)))
        assert (int(h), int(w)) == (37, 53), fmt
    h, w = sm.image_header_shape(tf.constant(_jpeg_with_size(10_000, 9_000)))
    assert (int(h), int(w)) == (10_000, 9_000)


def test_export_time_pixel_budget_and_jpeg_output(run):
    """Module-level (no save): ``max_pixels`` and ``output_format`` are honoured."""
    _, cfg, generator = run
    module = sm.ColouriseServingModule(generator, cfg, output_format="jpeg", max_pixels=100)
    ok = module.serving_default(tf.constant([encode(np.full((10, 10, 3), 90, np.uint8))]))["images"]
    assert ok.numpy()[0][:3] == b"\xff\xd8\xff"  # JPEG out
    with pytest.raises(tf.errors.InvalidArgumentError, match="at most 100 pixels"):
        module.serving_default(tf.constant([encode(np.full((10, 11, 3), 90, np.uint8))]))
    with pytest.raises(ValueError):
        sm.ColouriseServingModule(generator, cfg, output_format="gif")


def test_bad_inputs_in_a_subprocess_leave_it_running(export_dir):
    """The serving process itself survives every bad request (no abort/segfault)."""
    script = textwrap.dedent(
        f"""
        import io, sys
        import numpy as np, tensorflow as tf
        from PIL import Image
        sys.path[:0] = [{str(REPO)!r}, {str(REPO / "tests")!r}]
        from tests.test_export_savedmodel import _bad_inputs, _jpeg_with_size, encode
        model = tf.saved_model.load({str(export_dir)!r})
        fn = model.signatures["serving_default"]
        cases = dict(_bad_inputs())
        cases["huge_png"] = encode(np.zeros((10_000, 10_000), np.uint8), "PNG")
        cases["huge_jpeg"] = _jpeg_with_size(10_000, 10_000)
        failed = []
        for name, data in cases.items():
            try:
                fn(images=tf.constant([data]))
                failed.append(name)
            except tf.errors.InvalidArgumentError:
                pass
        out = fn(images=tf.constant([encode(np.full((1, 1, 3), 128, np.uint8))]))["images"].numpy()
        assert tf.io.decode_png(out[0]).shape == (1, 1, 3)
        print("SURVIVED", len(cases), "FAILED_TO_RAISE", failed)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        cwd=str(REPO),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "SURVIVED 9 FAILED_TO_RAISE []" in proc.stdout


# --------------------------------------------------------------------------- CLI


def test_cli_exports_next_version_and_models_config(run, base_dir, export_dir, capsys):
    from colourise_tf.cli.export import main

    assert main(["savedmodel", str(run[0]), "--base-dir", str(base_dir), "--output-format", "jpeg"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["version"] == 2 and Path(printed["savedmodel"]) == base_dir / "2"
    assert sm.read_export_metadata(base_dir / "2")["output_format"] == "jpeg"
    assert 'name: "colourise"' in (base_dir / "models.config").read_text()
    assert main(["savedmodel", str(run[0]), "--base-dir", str(base_dir), "--version", "2"]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["savedmodel", str(run[0].parent / "nope"), "--base-dir", str(base_dir)]) == 2


@pytest.mark.parametrize("target", ["hints", "partial"])
def test_mask_models_are_served_with_the_mask_their_target_implies(tmp_path, samples, target):
    """Hints-target mask models are served with an empty mask; models that colour inside
    the mask only (loss.mask_target=partial) with a full one (the metadata says which)."""
    cfg, generator = make_run_dir(tmp_path / "run", overrides=["model.mask_channel=true", f"loss.mask_target={target}"])
    module = sm.ColouriseServingModule(generator, cfg)
    spec = inference.ModelSpec.from_model_config(cfg.model)
    rgb = tf.convert_to_tensor(samples[0][1])[tf.newaxis]
    mask = tf.fill(tf.concat([tf.shape(rgb)[:-1], [1]], 0), 1.0 if target == "partial" else 0.0)
    expected = inference.to_uint8(
        inference.colourise_rgb(rgb, inference.keras_chroma_fn(generator), spec, mask_full=mask)
    )[0].numpy()
    other = inference.to_uint8(
        inference.colourise_rgb(rgb, inference.keras_chroma_fn(generator), spec, mask_full=1.0 - mask)
    )[0].numpy()
    assert not np.array_equal(expected, other)  # the mask channel matters to this generator
    served = tf.io.decode_png(module.colourise_bytes(tf.constant(encode(samples[0][1])))).numpy()
    np.testing.assert_array_equal(served, expected)
    L = colour.rgb_to_lab(tf.image.convert_image_dtype(rgb, tf.float32))[..., :1]
    ab = module._predict_ab(L)["ab"]
    grey = colour.normalize_l(L)
    want = colour.denormalize_ab(
        inference.colourise_grey(grey, inference.keras_chroma_fn(generator), spec, mask_full=mask)
    )
    np.testing.assert_allclose(ab.numpy(), want.numpy(), atol=1e-4)
    assert ("full mask" in sm.export_metadata(cfg)["serving_hints"]) == (target == "partial")
