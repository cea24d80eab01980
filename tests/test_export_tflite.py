"""TFLite export: files, sidecar, operators, and numerics with the LiteRT interpreter.

Bounds for the quantised variants were measured on the tiny preset (random,
deliberately colourful weights; see ``randomise_generator``) over the embedded
sample photos at full resolution, the chroma recombined with each photo's own L
(CIE76 ΔE in Lab = the ab distance). Measured (ΔE mean / p99 / max):
float16 0.008 / 0.024 / 0.07, dynamic_int8 0.21 / 0.68 / 1.9, int8 (16 calibration
images) 0.78 / 2.10 / 6.0. The asserted bounds (:data:`DELTA_E_BOUNDS`) are about
2.5x these, for calibration and platform differences.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from colourise_tf import colour, inference
from colourise_tf.config import apply_overrides, get_preset, save_config
from colourise_tf.data import load_samples
from colourise_tf.models import build_generator
from colourise_tf.serving import tflite as tl

REPO = Path(__file__).resolve().parents[1]

# (mean, p99) ΔE76 bounds per quantised variant on the tiny model.
from helpers import randomise_generator  # noqa: E402

DELTA_E_BOUNDS = {"float16": (0.05, 0.2), "dynamic_int8": (0.5, 2.0), "int8": (2.0, 6.0)}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    path = tmp_path_factory.mktemp("run") / "tiny-run"
    cfg = apply_overrides(get_preset("tiny"), [])
    generator = build_generator(cfg.model)
    randomise_generator(generator)
    path.mkdir(parents=True)
    save_config(cfg, path / "config.json")
    ckpt = tf.train.Checkpoint(generator=generator, step=tf.Variable(3, dtype=tf.int64))
    tf.train.CheckpointManager(ckpt, str(path / "checkpoints"), 1).save()
    return path, cfg, generator


@pytest.fixture(scope="module")
def exported(run, tmp_path_factory):
    out = tmp_path_factory.mktemp("tflite")
    return out, tl.export_tflite(run[0], out, calibration_steps=16)


@pytest.fixture(scope="module")
def samples():
    return load_samples()


def test_files_and_sidecar(exported, run):
    out, paths = exported
    assert set(paths) == set(tl.VARIANTS)
    for variant, path in paths.items():
        assert path == out / f"tiny_{variant}.tflite" and path.stat().st_size > 1000
    sidecar = json.loads((out / "tiny.json").read_text())
    for key, value in {
        "image_size": 32,
        "colour_space": "lab",
        "noise_channel": False,
        "mask_channel": False,
        "n_classes": 0,
        "preset": "tiny",
        "input_name": "L",
        "output_name": "ab",
    }.items():
        assert sidecar[key] == value, key
    assert sidecar["step"] == 3
    assert tl.read_sidecar(paths["int8"]) == sidecar
    sizes = {v: sidecar["variants"][v]["bytes"] for v in tl.VARIANTS}
    assert sizes["float16"] < sizes["float32"] and sizes["int8"] < sizes["float16"]
    assert (out / "tiny_conversion.log").is_file()


def test_signature_names_and_shapes(exported):
    _, paths = exported
    for variant, path in paths.items():
        runner = tl.load_interpreter(path).get_signature_runner()
        ((name, d_in),) = runner.get_input_details().items()
        ((out_name, d_out),) = runner.get_output_details().items()
        assert (name, out_name) == ("L", "ab"), variant
        assert list(d_in["shape"]) == [1, 32, 32, 1] and list(d_out["shape"]) == [1, 32, 32, 2], variant
        assert d_in["dtype"] == np.float32 and d_out["dtype"] == np.float32, variant


def test_operators_are_builtin_and_int8_is_fully_integer(exported):
    out, paths = exported
    sidecar = tl.read_sidecar(out / "tiny.json")
    for variant, path in paths.items():
        ops = {o["op"] for o in tl.model_ops(path)}
        assert not {"FLEX_DELEGATE", "CUSTOM", "DELEGATE"} & ops, (variant, ops)
        assert not any(op.startswith("Flex") for op in ops), (variant, ops)
        assert not {"VAR_HANDLE", "READ_VARIABLE"} & ops, (variant, ops)  # weights are constants
        assert sorted(ops) == sidecar["variants"][variant]["ops"]
    assert sidecar["variants"]["int8"]["float_ops"] == []
    int8_ops = tl.model_ops(paths["int8"])
    for op in int8_ops:
        if op["op"] not in ("QUANTIZE", "DEQUANTIZE"):
            assert set(op["dtypes"]) == {"int8"}, op


def test_float32_matches_keras(exported, run, samples):
    _, cfg, generator = run
    fn = tl.tflite_chroma_fn(exported[1]["float32"])
    for _, rgb in samples:
        grey, _ = colour.rgb_to_model(rgb[np.newaxis])
        x = tf.image.resize(grey, (32, 32), method="area", antialias=True)
        np.testing.assert_allclose(fn(x).numpy(), generator(x, training=False).numpy(), atol=1e-4)


def delta_e(variant_fn, keras_fn, spec, samples) -> np.ndarray:
    """CIE76 ΔE over all pixels of all photos, each at full resolution, with the
    chroma recombined with the photo's own L (so ΔE is the ab distance)."""
    values = []
    for _, rgb in samples:
        grey, _ = colour.rgb_to_model(rgb[np.newaxis])
        labs = [colour.model_to_lab(grey, inference.colourise_grey(grey, fn, spec)) for fn in (variant_fn, keras_fn)]
        values.append(tf.norm(labs[0] - labs[1], axis=-1).numpy().ravel())
    return np.concatenate(values)


@pytest.mark.parametrize("variant", ["float16", "dynamic_int8", "int8"])
def test_quantised_variants_within_measured_delta_e(exported, run, samples, variant):
    _, cfg, generator = run
    spec = inference.ModelSpec.from_model_config(cfg.model)
    de = delta_e(tl.tflite_chroma_fn(exported[1][variant]), inference.keras_chroma_fn(generator), spec, samples)
    mean_bound, p99_bound = DELTA_E_BOUNDS[variant]
    mean, p99 = float(de.mean()), float(np.percentile(de, 99))
    print(f"{variant}: ΔE76 mean {mean:.4f} p99 {p99:.4f} max {de.max():.4f}")
    assert mean <= mean_bound and p99 <= p99_bound, (variant, mean, p99)


def test_integer_io_variant(run, tmp_path, samples):
    """int8 I/O: the chroma function quantises/dequantises with the model's params."""
    _, cfg, generator = run
    paths = tl.export_tflite(
        run[0], tmp_path, ["int8"], name="io", calibration_steps=8, integer_io=True, isolate_int8=False
    )
    sidecar = tl.read_sidecar(tmp_path / "io.json")
    entry = sidecar["variants"]["int8"]
    assert entry["input"]["dtype"] == "int8" and entry["input"]["quantization"] is not None
    grey, _ = colour.rgb_to_model(samples[0][1][np.newaxis])
    x = tf.image.resize(grey, (32, 32), method="area", antialias=True)
    got = tl.tflite_chroma_fn(paths["int8"])(x).numpy()
    assert np.abs(got - generator(x, training=False).numpy()).mean() < 0.05


def test_bad_arguments(run, tmp_path):
    with pytest.raises(ValueError):
        tl.export_tflite(run[0], tmp_path, ["int4"])
    with pytest.raises(ValueError):
        tl.export_tflite(run[0], tmp_path, ["float32"], name="a/b")
    with pytest.raises(FileNotFoundError):
        tl.export_tflite(tmp_path / "missing", tmp_path, ["float32"])


def test_cli_tflite(run, tmp_path, capsys):
    from colourise_tf.cli.export import main

    argv = ["tflite", str(run[0]), "--out-dir", str(tmp_path), "--variants", "float32,float16", "--name", "x"]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(printed) == {"float32", "float16"}
    assert (tmp_path / "x_float16.tflite").is_file() and (tmp_path / "x.json").is_file()
    with pytest.raises(SystemExit):
        main(["tflite", str(run[0]), "--out-dir", str(tmp_path), "--variants", "int3"])


def test_reexport_keeps_variants_of_the_same_model_only(run, tmp_path):
    """A second export under the same name keeps earlier variants only if they are the
    same model; those of another image size are removed with their sidecar entries."""
    out = tmp_path / "tfl"
    tl.export_tflite(run[0], out, ["float32"])
    tl.export_tflite(run[0], out, ["float16"])  # same checkpoint: float32 stays
    sidecar = tl.read_sidecar(out / "tiny.json")
    assert set(sidecar["variants"]) == {"float32", "float16"} and (out / "tiny_float32.tflite").is_file()

    other = tmp_path / "run64"
    cfg = apply_overrides(get_preset("tiny"), ["model.image_size=64"])
    other.mkdir()
    save_config(cfg, other / "config.json")
    ckpt = tf.train.Checkpoint(generator=build_generator(cfg.model), step=tf.Variable(1, dtype=tf.int64))
    tf.train.CheckpointManager(ckpt, str(other / "checkpoints"), 1).save()
    tl.export_tflite(other, out, ["float32"])
    sidecar = tl.read_sidecar(out / "tiny.json")
    assert sidecar["image_size"] == 64 and set(sidecar["variants"]) == {"float32"}
    assert not (out / "tiny_float16.tflite").exists()  # 32x32 model: gone, not left to fail
    interp = tl.load_interpreter((out / "tiny_float32.tflite").read_bytes())
    assert list(interp.get_input_details()[0]["shape"][1:3]) == [64, 64]
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []  # no temp files


def test_cli_unusable_output_folder_is_a_clear_error(run, tmp_path, capsys):
    from colourise_tf.cli.export import main

    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["tflite", str(run[0]), "--out-dir", str(blocker / "sub"), "--variants", "float32"]) == 2
    err = capsys.readouterr().err
    assert str(blocker / "sub") in err and "Not a directory" in err and "Traceback" not in err
    assert blocker.read_text() == "x"


def test_int8_converter_crash_becomes_an_error(run, tmp_path, monkeypatch):
    """The int8 quantiser runs in a child process: a crash there (as seen, see the
    large test below) is reported, the caller survives and nothing is written."""
    crash = "import os, signal, sys\nsys.stderr.write('error: boom\\n')\nos.kill(os.getpid(), signal.SIGSEGV)\n"
    monkeypatch.setattr(tl, "_CHILD", crash)
    with pytest.raises(tl.TFLiteConversionError, match=r"killed by signal 11.*error: boom"):
        tl.export_tflite(run[0], tmp_path, ["int8"], calibration_steps=2)
    assert not list(tmp_path.glob("*.tflite"))
    assert "error: boom" in (tmp_path / "tiny_conversion.log").read_text()


def test_int8_model_that_does_not_run_is_refused():
    with pytest.raises(tl.TFLiteConversionError, match="does not run.*error: scale"):
        tl._check_int8(b"not a flatbuffer", {"float_ops": []}, ["error: scale out of expressed type range"])


@pytest.mark.large
def test_bad_quantisation_is_an_error_not_a_crash(tmp_path):
    """Spectral-norm state out of step with the kernels (sigma ~ 0) gives kernels of
    ~1e12: the int8 quantiser then crashes (SIGSEGV in mlir_quantize after "error:
    scale out of expressed type range", seen with 4 U-Net levels at 64 px) or writes
    a model that XNNPACK cannot prepare (3 levels at 32 px, in most runs: the
    converter is not deterministic on such input). Either way export_tflite raises
    instead of dying or writing that model."""
    cfg = apply_overrides(get_preset("gorriz-bn-sn"), ["model.generator.filters=8,16,16", "model.image_size=32"])
    generator = build_generator(cfg.model)
    rng = np.random.default_rng(0)
    for v in generator.weights:
        if v.path.endswith(("vector_u", "vector_v")):
            v.assign((0.1 * rng.normal(size=v.shape)).astype(np.float32))
    save_config(cfg, tmp_path / "config.json")
    ckpt = tf.train.Checkpoint(generator=generator, step=tf.Variable(0, dtype=tf.int64))
    tf.train.CheckpointManager(ckpt, str(tmp_path / "checkpoints"), 1).save()
    written = tmp_path / "out" / f"{cfg.name}_int8.tflite"
    try:
        tl.export_tflite(tmp_path, tmp_path / "out", ["int8"], calibration_steps=4)
    except tl.TFLiteConversionError as err:
        assert "int8" in str(err)
        assert "killed by signal" in str(err) or "does not run" in str(err) or "exited with" in str(err)
        assert not written.exists()
    else:
        # Now and then the converter writes a model that does run; then it must really
        # run (checked in a child process: a broken one may abort its process).
        code = (
            "import sys; from colourise_tf.serving.tflite import _invoke_once; "
            "_invoke_once(open(sys.argv[1], 'rb').read())"
        )
        proc = subprocess.run([sys.executable, "-c", code, str(written)], cwd=REPO, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.parametrize("target", ["hints", "partial"])
def test_mask_target_reaches_the_tflite_predictor(tmp_path, samples, target):
    """The sidecar records loss.mask_target, so a TFLite partial-target model without a
    mask colours the whole photo (full mask), as its run directory does."""
    from colourise_tf.predictors import load_predictor

    run = tmp_path / "run"
    cfg = apply_overrides(get_preset("tiny"), ["model.mask_channel=true", f"loss.mask_target={target}"])
    generator = build_generator(cfg.model)
    randomise_generator(generator)
    run.mkdir()
    save_config(cfg, run / "config.json")
    ckpt = tf.train.Checkpoint(generator=generator, step=tf.Variable(1, dtype=tf.int64))
    tf.train.CheckpointManager(ckpt, str(run / "checkpoints"), 1).save()
    paths = tl.export_tflite(run, tmp_path / "out", ["float32"])
    assert tl.read_sidecar(tmp_path / "out" / "tiny.json")["mask_target"] == target
    lite, keras_pred = load_predictor(paths["float32"]), load_predictor(run)
    assert lite.colours_inside_mask_only == keras_pred.colours_inside_mask_only == (target == "partial")
    img = samples[0][1]
    full = np.full(img.shape[:2], 255, np.uint8)
    plain = lite.colourise(img)
    with_full = lite.colourise(img, mask=full)
    with_empty = lite.colourise(img, mask=np.zeros_like(full))
    np.testing.assert_array_equal(plain, with_full if target == "partial" else with_empty)
    assert np.abs(plain.astype(int) - keras_pred.colourise(img).astype(int)).max() <= 2
    if target == "partial":  # hints are refused by the TFLite predictor and the CLI alike
        from colourise_tf.cli import colourise as cli

        with pytest.raises(ValueError, match="trained with loss.mask_target=partial"):
            lite.colourise(img, mask=full, hints=img)
        with pytest.raises(ValueError, match="trained with loss.mask_target=partial"):
            cli.colourise_files([], lite, tmp_path / "cli", mask=full, hints=img)
        assert not (tmp_path / "cli").exists()


def test_sidecar_without_mask_target_warns_and_assumes_hints(tmp_path, caplog):
    """A mask model's sidecar from before mask_target existed: hints-target, with a warning."""
    from colourise_tf.predictors import load_predictor

    run = tmp_path / "run"
    cfg = apply_overrides(get_preset("tiny"), ["model.mask_channel=true", "loss.mask_target=partial"])
    run.mkdir()
    save_config(cfg, run / "config.json")
    ckpt = tf.train.Checkpoint(generator=build_generator(cfg.model), step=tf.Variable(1, dtype=tf.int64))
    tf.train.CheckpointManager(ckpt, str(run / "checkpoints"), 1).save()
    paths = tl.export_tflite(run, tmp_path / "out", ["float32"])
    sidecar_path = tmp_path / "out" / "tiny.json"
    old = json.loads(sidecar_path.read_text())
    del old["mask_target"]
    old["format_version"] = 1
    sidecar_path.write_text(json.dumps(old))
    with caplog.at_level("WARNING", logger="colourise_tf.predictors"):
        lite = load_predictor(paths["float32"])
    assert not lite.colours_inside_mask_only
    assert "predates mask_target" in caplog.text and "tiny.json" in caplog.text


def test_exported_generator_graph_has_no_training_kernels_for_any_preset():
    """The conversion saves the generator's frozen inference function as a SavedModel;
    a ``tf.custom_gradient`` in it (a CPU training kernel) made that save fail, and the
    converter then silently wrote a model without signatures (the deep U-Net of the
    default preset at 128x128 did). Every preset at its native size traces without them,
    while the same generator in training (gate on) does use them: the check can see them."""
    from helpers import cpu_kernel_ops

    from colourise_tf.config import list_presets
    from colourise_tf.ops import gate as cpu

    for name in list_presets():
        cfg = get_preset(name)
        generator = build_generator(cfg.model)
        fn = tl._generator_function(generator, cfg).get_concrete_function()
        assert cpu_kernel_ops(fn.graph) == [], name
    cfg = get_preset("gorriz-ibn-sn-md")
    generator = build_generator(cfg.model)
    s = cfg.model.image_size
    with cpu.cpu_kernels("on"):
        train_fn = tf.function(lambda x: generator(x, training=True)).get_concrete_function(
            tf.TensorSpec([1, s, s, 1], tf.float32)
        )
    assert cpu_kernel_ops(train_fn.graph)


def test_converter_refuses_a_model_without_its_signature(run, monkeypatch):
    """Whatever the cause, a flatbuffer without ``serving_default: L -> ab`` is an error,
    not a file the export's own loader cannot run."""
    _, cfg, generator = run
    empty = tl._run_converter(
        tf.lite.TFLiteConverter.from_concrete_functions(
            [tl._generator_function(generator, cfg).get_concrete_function()]
        ),
        cfg,
        "float32",
        1,
        "samples",
        False,
        None,
    )
    with pytest.raises(tl.TFLiteConversionError, match="signatures are {}"):
        tl._check_signature(empty, cfg)
