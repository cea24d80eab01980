"""Export and evaluation directories given as URIs (``gs://``-style), through ``tf.io.gfile``.

TensorFlow's in-memory ``ram://`` file system stands in for a bucket: the run
directory is copied there and the SavedModel, the TFLite models and the evaluation
report are written there and read back. ``file:///x`` URIs must mean the local
``/x``, never a folder named ``file:`` in the current directory.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from helpers import S, make_run  # noqa: E402

from colourise_tf import evaluate
from colourise_tf.cli import eval as eval_cli
from colourise_tf.predictors import KerasPredictor, SavedModelPredictor, TFLitePredictor, load_predictor
from colourise_tf.serving import savedmodel as sm
from colourise_tf.serving import tflite as tl

gfile = tf.io.gfile


def copy_tree(src: str, dst: str) -> None:
    """Copies a local folder to any file system with ``tf.io.gfile``."""
    for folder, _, files in os.walk(src):
        rel = os.path.relpath(folder, src)
        target = dst if rel == "." else f"{dst}/{rel.replace(os.sep, '/')}"
        gfile.makedirs(target)
        for name in files:
            gfile.copy(os.path.join(folder, name), f"{target}/{name}", overwrite=True)


def grey_batch(n: int = 2) -> tf.Tensor:
    rng = np.random.default_rng(0)
    return tf.constant(rng.uniform(-1.0, 1.0, (n, S, S, 1)).astype(np.float32))


def no_scheme_folders(directory: Path) -> None:
    """No local folder was made out of a URI's scheme (``file:``, ``ram:``)."""
    made = sorted(p.name for p in directory.iterdir() if p.name.endswith(":"))
    assert made == [], made


@pytest.fixture
def clean_cwd(tmp_path, monkeypatch) -> Path:
    """An empty current directory, checked after the test for ``file:``/``ram:`` folders."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    yield cwd
    no_scheme_folders(cwd)
    assert list(cwd.iterdir()) == []


@pytest.fixture(scope="module")
def ram_root():
    root = f"ram://colourise-test-{uuid.uuid4().hex[:8]}"
    yield root
    if gfile.exists(root):
        gfile.rmtree(root)


@pytest.fixture(scope="module")
def local_run(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("uri") / "run")


@pytest.fixture(scope="module")
def keras_pred(local_run) -> KerasPredictor:
    return load_predictor(local_run)


@pytest.fixture(scope="module")
def ram_run(local_run, ram_root) -> str:
    run = f"{ram_root}/runs/tiny"
    copy_tree(str(local_run), run)
    return run


@pytest.fixture(scope="module")
def ram_savedmodel(ram_run, ram_root) -> str:
    """``<ram>/serving/1``, exported from the ram:// run."""
    return sm.export_savedmodel(ram_run, f"{ram_root}/serving")


@pytest.fixture(scope="module")
def ram_tflite(ram_run, ram_root) -> dict[str, str]:
    """float32 and dynamic_int8, then int8 (child process) into the same ram:// folder."""
    out = f"{ram_root}/tflite"
    paths = tl.export_tflite(ram_run, out, variants=("float32", "dynamic_int8"))
    paths.update(tl.export_tflite(ram_run, out, variants=("int8",), calibration_steps=2))
    return paths


# ------------------------------------------------------------------ SavedModel


def test_savedmodel_from_ram_run_to_ram_base(ram_savedmodel, ram_root, keras_pred, clean_cwd):
    base = f"{ram_root}/serving"
    assert ram_savedmodel == f"{base}/1"
    assert gfile.listdir(base) == ["1"]  # the hidden temporary folder is gone
    assert {"saved_model.pb", "variables", "assets"} <= set(gfile.listdir(ram_savedmodel))
    meta = sm.read_export_metadata(ram_savedmodel)
    assert meta["preset"] == "tiny" and meta["image_size"] == S and meta["checkpoint"].startswith(ram_root)
    assert sm.existing_versions(base) == [1] and sm.next_version(base) == 2

    loaded = tf.saved_model.load(ram_savedmodel)
    assert set(loaded.signatures) == set(sm.ALL_SIGNATURES)
    g = grey_batch()
    chroma = loaded.signatures["generator"](grey=g)["chroma"]
    np.testing.assert_allclose(chroma.numpy(), keras_pred.chroma(g).numpy(), atol=1e-5)

    config = sm.write_models_config(base, "colourise")
    assert config == f"{base}/models.config"
    assert 'name: "colourise"' in gfile.GFile(config).read()
    with pytest.raises(FileExistsError, match="exists"):
        sm.export_savedmodel(f"{ram_root}/runs/tiny", base, version=1)


def test_savedmodel_predictor_reads_ram_base(ram_savedmodel, ram_root, keras_pred):
    base = f"{ram_root}/serving"
    pred = load_predictor(base)
    assert isinstance(pred, SavedModelPredictor)
    newest = str(sm.existing_versions(base)[-1])  # the highest version is used
    assert pred.model_dir.name == newest and os.fspath(pred.model_dir) == f"{base}/{newest}"
    assert pred.cfg == keras_pred.cfg  # from assets/colourise_config.json
    g = grey_batch()
    np.testing.assert_allclose(pred.chroma(g).numpy(), keras_pred.chroma(g).numpy(), atol=1e-5)


def test_cli_savedmodel_to_ram_base(ram_run, ram_root, ram_savedmodel, capsys, clean_cwd):
    from colourise_tf.cli.export import main

    base = f"{ram_root}/serving"
    assert main(["savedmodel", ram_run, "--base-dir", base]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed == {"savedmodel": f"{base}/2", "version": 2, "models_config": f"{base}/models.config"}
    assert sm.existing_versions(base) == [1, 2]
    assert main(["savedmodel", ram_run, "--base-dir", base, "--version", "2"]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["savedmodel", f"{ram_root}/nope", "--base-dir", base]) == 2


def test_savedmodel_file_uris_are_local_paths(local_run, tmp_path, keras_pred, clean_cwd):
    base = tmp_path / "serving"
    version = sm.export_savedmodel(f"file://{local_run}", f"file://{base}")
    assert version == base / "1" and (version / "saved_model.pb").is_file()
    assert sm.write_models_config(f"file://{base}", "c") == base / "models.config"
    assert sm.read_export_metadata(f"file://{version}")["preset"] == "tiny"
    loaded = tf.saved_model.load(f"file://{version}")
    g = grey_batch()
    np.testing.assert_allclose(
        loaded.signatures["generator"](grey=g)["chroma"].numpy(), keras_pred.chroma(g).numpy(), atol=1e-5
    )
    pred = load_predictor(f"file://{base}")
    assert isinstance(pred, SavedModelPredictor) and pred.model_dir == version


# ---------------------------------------------------------------------- TFLite


def test_tflite_from_ram_run_to_ram_dir(ram_tflite, ram_root, keras_pred, clean_cwd):
    out = f"{ram_root}/tflite"
    assert ram_tflite == {v: f"{out}/tiny_{v}.tflite" for v in ("float32", "dynamic_int8", "int8")}
    assert sorted(gfile.listdir(out)) == sorted(
        ["tiny.json", "tiny_conversion.log"] + [f"tiny_{v}.tflite" for v in ram_tflite]
    )  # and no temporary files
    sidecar = tl.read_sidecar(ram_tflite["int8"])
    assert sidecar == json.loads(gfile.GFile(f"{out}/tiny.json").read())
    assert set(sidecar["variants"]) == set(ram_tflite)  # the second export kept the first's
    assert sidecar["checkpoint"].startswith(ram_root) and sidecar["image_size"] == S
    assert sidecar["variants"]["int8"]["calibration"] == {"source": "samples", "steps": 2}
    assert sidecar["variants"]["int8"]["float_ops"] == []
    log = gfile.GFile(f"{out}/tiny_conversion.log").read()
    assert "int8 (child process)" in log  # isolated, on a local copy of the ram:// run
    assert {o["op"] for o in tl.model_ops(ram_tflite["float32"])} == set(sidecar["variants"]["float32"]["ops"])
    g = grey_batch(1)
    np.testing.assert_allclose(
        tl.tflite_chroma_fn(ram_tflite["float32"])(g).numpy(), keras_pred.chroma(g).numpy(), atol=1e-4
    )


@pytest.mark.parametrize("variant", ["float32", "dynamic_int8", "int8"])
def test_tflite_predictor_reads_ram_model_and_sidecar(ram_tflite, ram_root, keras_pred, variant):
    pred = load_predictor(ram_tflite[variant])
    assert isinstance(pred, TFLitePredictor)
    assert os.fspath(pred.sidecar_path) == f"{ram_root}/tflite/tiny.json" and pred.sidecar_path.name == "tiny.json"
    assert pred.spec == keras_pred.spec and not pred.quantized  # float32 I/O, int8 too
    g = grey_batch(2)
    err = np.abs(pred.chroma(g).numpy() - keras_pred.chroma(g).numpy())
    assert err.mean() < (1e-4 if variant == "float32" else 0.1), (variant, err.mean())
    img = np.random.default_rng(1).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    assert pred.colourise(img).shape == img.shape


def test_tflite_file_uris_are_local_paths(local_run, tmp_path, keras_pred, clean_cwd):
    out = tmp_path / "tflite"
    paths = tl.export_tflite(f"file://{local_run}", f"file://{out}", variants=("float32", "dynamic_int8"))
    assert paths == {v: out / f"tiny_{v}.tflite" for v in ("float32", "dynamic_int8")}
    assert all(p.is_file() for p in paths.values()) and (out / "tiny.json").is_file()
    assert tl.read_sidecar(f"file://{paths['dynamic_int8']}") == json.loads((out / "tiny.json").read_text())
    pred = load_predictor(f"file://{paths['float32']}")
    assert isinstance(pred, TFLitePredictor) and pred.sidecar_path == out / "tiny.json"
    g = grey_batch(1)
    np.testing.assert_allclose(pred.chroma(g).numpy(), keras_pred.chroma(g).numpy(), atol=1e-4)


# ---------------------------------------------------------------- predictors


def test_run_directory_and_checkpoint_prefix_on_ram_and_as_file_uri(ram_run, local_run, keras_pred):
    # ram:// reports <run>/checkpoints/ckpt-1 as a directory (a prefix of ckpt-1.index).
    g = grey_batch()
    ram_prefix = f"{ram_run}/checkpoints/ckpt-1"
    file_prefix = f"file://{local_run}/checkpoints/ckpt-1"
    paths = (ram_run, f"{ram_run}/config.json", ram_prefix, f"{ram_prefix}.index", file_prefix, f"{file_prefix}.index")
    for path in paths:
        pred = load_predictor(path)
        assert isinstance(pred, KerasPredictor), path
        np.testing.assert_allclose(pred.chroma(g).numpy(), keras_pred.chroma(g).numpy(), atol=1e-6)
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_predictor(f"{ram_run}-missing")
    with pytest.raises(ValueError, match="holds no model"):
        load_predictor(f"{ram_run}/checkpoints")


# ------------------------------------------------------------------ evaluation


def test_eval_cli_ram_models_and_ram_out(ram_run, ram_savedmodel, ram_tflite, ram_root, capsys, clean_cwd):
    out = f"{ram_root}/eval"
    prefix = f"{ram_run}/checkpoints/ckpt-1"
    rc = eval_cli.main(
        [
            "--model",
            ram_savedmodel,
            "--model",
            ram_tflite["float32"],
            "--model",
            ram_run,
            "--model",
            prefix,
            "--perceptual-weights",
            "none",
            "--limit",
            "2",
            "--dataset",
            "samples",
            "--out",
            out,
            "--no-progress",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    assert sorted(gfile.listdir(out)) == ["ab_histograms.png", "evaluation.json", "evaluation.md"]
    data = json.loads(gfile.GFile(f"{out}/evaluation.json").read())
    assert [m["kind"] for m in data["models"]] == ["savedmodel", "tflite", "run", "run"]
    assert [m["name"] for m in data["models"]] == ["serving/1", "tiny_float32", "tiny", "tiny@ckpt-1"]
    assert [m["path"] for m in data["models"]] == [ram_savedmodel, ram_tflite["float32"], ram_run, prefix]
    assert data["models"][2]["checkpoint"] == data["models"][3]["checkpoint"] == prefix
    assert data["dataset"]["n_images"] == 2
    sm_row, lite_row, run_row, _ = data["models"]
    for row in (sm_row, lite_row):
        for key in ("l1", "psnr", "ssim"):
            assert row["metrics"][key] == pytest.approx(run_row["metrics"][key], rel=1e-3, abs=1e-3), key
    assert "| tiny_float32 |" in gfile.GFile(f"{out}/evaluation.md").read()
    png = gfile.GFile(f"{out}/ab_histograms.png", "rb").read()
    assert png.startswith(b"\x89PNG")
    assert f"wrote json: {out}/evaluation.json" in capsys.readouterr().err


def test_eval_library_save_to_ram_and_file_uri(ram_savedmodel, ram_root, tmp_path, clean_cwd):
    result = evaluate.evaluate_models(
        [ram_savedmodel], dataset="samples", limit=2, perceptual_weights=None, progress=False, grey_baseline=False
    )
    paths = result.save(f"{ram_root}/lib-eval")
    assert paths == {
        "json": f"{ram_root}/lib-eval/evaluation.json",
        "markdown": f"{ram_root}/lib-eval/evaluation.md",
        "histograms": f"{ram_root}/lib-eval/ab_histograms.png",
    }
    assert all(gfile.exists(p) for p in paths.values())
    local = result.save(f"file://{tmp_path / 'eval'}")
    assert local["json"] == tmp_path / "eval" / "evaluation.json" and local["json"].is_file()


def test_eval_cli_refuses_a_ram_out_that_is_a_file(ram_root, capsys, monkeypatch, clean_cwd):
    calls = []
    monkeypatch.setattr(evaluate, "evaluate_models", lambda *a, **k: calls.append(1))
    blocker = f"{ram_root}/results.txt"
    with gfile.GFile(blocker, "w") as f:
        f.write("keep me")
    for out in (blocker, f"{blocker}/sub"):
        rc = eval_cli.main(["--model", f"{ram_root}/missing", "--perceptual-weights", "none", "--out", out])
        assert rc == 2
        err = capsys.readouterr().err
        assert f"--out {out}" in err and "not a directory" in err and "Traceback" not in err
    assert calls == [] and gfile.GFile(blocker).read() == "keep me"


def test_eval_cli_missing_ram_model_exits_2(ram_root, capsys, clean_cwd):
    rc = eval_cli.main(["--model", f"{ram_root}/missing", "--perceptual-weights", "none", "--out", f"{ram_root}/o"])
    assert rc == 2 and "does not exist" in capsys.readouterr().err
    assert not gfile.exists(f"{ram_root}/o")
