"""Evaluation harness: library, reference rows, exports and the ``colourise-eval`` CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from colourise_tf import colour, evaluate, inference, metrics
from colourise_tf.cli import eval as eval_cli
from colourise_tf.config import apply_overrides, get_preset, save_config
from colourise_tf.data import build_dataset

SIZE = 32  # the tiny preset
FINITE_KEYS = ("l1", "l2", "psnr", "ssim", "js_a", "js_b", "kl_a", "kl_b", "colourfulness", "colourfulness_real")


@pytest.fixture(scope="module")
def run_dirs(tmp_path_factory) -> list[Path]:
    """Two tiny run directories (one training step each, different seeds)."""
    from colourise_tf.training.loop import run_training

    root = tmp_path_factory.mktemp("runs")
    dirs = []
    for seed in (0, 1):
        cfg = apply_overrides(
            get_preset("tiny"),
            ["train.steps=1", "data.batch_size=2", "train.precision=float32", f"train.seed={seed}"],
        )
        run_training(cfg, root / f"tiny_{seed}", strategy="default", progress=False)
        dirs.append(root / f"tiny_{seed}")
    return dirs


@pytest.fixture(scope="module")
def result(run_dirs) -> evaluate.EvaluationResult:
    # limit 5 with batches of 3: a full batch, then a batch cut by the limit.
    return evaluate.evaluate_models(
        [str(d) for d in run_dirs],
        dataset="samples",
        limit=5,
        batch_size=3,
        perceptual_weights=None,
        progress=False,
    )


def _tables(markdown: str) -> dict[str, list[list[str]]]:
    """``{section title: rows of cells}`` of every Markdown table (header row first)."""
    tables: dict[str, list[list[str]]] = {}
    title = None
    for line in markdown.splitlines():
        if line.startswith("## "):
            title = line[3:].strip()
            tables[title] = []
        elif line.startswith("|") and title is not None and not line.startswith("|---"):
            tables[title].append([c.strip() for c in line.strip("|").split(" | ")])
    return tables


class Oracle:
    """A predictor that returns each image's real chroma (looked up by its L)."""

    def __init__(self, size: int) -> None:
        self.spec = inference.ModelSpec(image_size=size)
        self.source = "oracle"
        self.stochastic = False
        self._grey, self._chroma = [], []
        for batch in build_dataset("samples", image_size=size, batch_size=4, training=False):
            grey, chroma = colour.rgb_to_model(batch["image"], "lab")
            self._grey.extend(grey.numpy())
            self._chroma.extend(chroma.numpy())
        self._grey = np.stack(self._grey)

    def chroma(self, g_in, *, sample=None):
        out = []
        for g in np.asarray(g_in)[..., :1]:
            nearest = int(np.argmin(np.abs(self._grey - g).reshape(len(self._grey), -1).sum(1)))
            assert np.abs(self._grey[nearest] - g).max() < 1e-5, "evaluation changed the grey input"
            out.append(self._chroma[nearest])
        return tf.constant(np.stack(out))


# ------------------------------------------------------------------------ library


def test_json_has_one_entry_per_model_with_finite_metrics(result, run_dirs, tmp_path):
    paths = result.save(tmp_path)
    data = json.loads(paths["json"].read_text())
    assert [m["name"] for m in data["models"]] == [d.name for d in run_dirs]
    assert data["dataset"] == {"source": "samples", "split": None, "n_images": 5, "skipped_files": 0, "skipped_grey": 0}
    assert data["settings"]["limit"] == 5 and data["settings"]["perceptual_weights"] is None
    for m in data["models"]:
        assert m["kind"] == "run" and m["preset"] == "tiny" and m["step"] == 1
        assert m["image_size"] == SIZE and m["n_images"] == 5
        for key in FINITE_KEYS + ("d_accuracy_real", "d_accuracy_fake"):
            assert math.isfinite(m["metrics"][key]), (m["name"], key)
        assert m["metrics"]["lperc"] is None  # skipped
        assert 0.0 <= m["metrics"]["d_accuracy_real"] <= 1.0
        assert 0.0 < m["metrics"]["ssim"] <= 1.0 and 0.0 <= m["metrics"]["js_a"] <= math.log(2)
        # the histogram counts every pixel of every image, per channel
        assert sum(m["histogram"]["a"]) == sum(m["histogram"]["b"]) == 5 * SIZE * SIZE
    assert [b["name"] for b in data["baselines"]] == [evaluate.GREY_BASELINE_NAME]
    assert len(data["histogram_bin_edges"]) == 221
    # the two runs were trained with different seeds: different numbers
    assert data["models"][0]["metrics"]["l1"] != data["models"][1]["metrics"]["l1"]


def test_markdown_tables_have_the_paper_headers_and_one_row_per_model(result, run_dirs):
    tables = _tables(result.markdown())
    names = [d.name for d in run_dirs] + [evaluate.GREY_BASELINE_NAME]
    table_1 = tables["Table I (Górriz et al. 2019)"]
    assert tuple(table_1[0]) == ("Method", "L1", "PSNR [dB]", "Lperc")
    assert [r[0] for r in table_1[1:]] == names
    assert all(r[3] == "–" for r in table_1[1:])  # Lperc skipped
    table_2 = tables["Table 2 (Tarrés 2021)"]
    assert tuple(table_2[0]) == ("Models", "JS a", "JS b", "KL a", "KL b", "PSNR", "SSIM")
    assert [r[0] for r in table_2[1:]] == names
    psnr = result.models[0].metrics["psnr"]
    assert table_2[1][5] == table_1[1][2] == f"{psnr:.2f}"
    colour_table = tables["Colourfulness and discriminator"]
    assert [r[0] for r in colour_table[1:]] == names + [evaluate.GROUND_TRUTH_NAME]


def test_histogram_png_is_1200_by_500(result, tmp_path):
    path = result.plot_histograms(tmp_path / "h.png")
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size == (1200, 500)


def test_grey_baseline_has_no_colour_and_diverges(result):
    (grey,) = result.baselines
    m = grey.metrics
    assert abs(m["colourfulness"]) < 1e-2 and m["colourfulness_real"] > 10.0
    assert m["js_a"] > 0.05 and m["js_b"] > 0.05 and m["kl_a"] > 0 and m["kl_b"] > 0
    assert m["d_accuracy_real"] is None and m["l1"] > 1.0
    # all its chroma is in the bin at 0
    assert grey.histogram[0].max() == grey.histogram[0].sum() == 5 * SIZE * SIZE


def test_oracle_matches_ground_truth(tmp_path):
    perceptual = metrics.PerceptualDistance(weights=None)  # random VGG19: no download
    res = evaluate.evaluate_models(
        [evaluate.EvalModel("oracle", Oracle(SIZE))],
        dataset="samples",
        limit=4,
        batch_size=3,
        perceptual_weights=perceptual,
        progress=False,
    )
    m = res.models[0].metrics
    assert m["psnr"] > 60.0 and m["ssim"] > 0.999
    assert m["l1"] < 1e-3 and m["l2"] < 1e-3
    assert max(m["js_a"], m["js_b"], m["kl_a"], m["kl_b"]) < 1e-6
    assert m["colourfulness"] == pytest.approx(m["colourfulness_real"], abs=0.05)
    assert abs(m["lperc"]) < 1e-2 * res.baselines[0].metrics["lperc"]
    assert res.baselines[0].metrics["lperc"] > 0
    assert res.settings["perceptual_weights"].startswith("random")
    assert "Lperc skipped" not in res.markdown()


def test_image_size_override_resizes_inside_the_model(run_dirs):
    res = evaluate.evaluate_models(
        [str(run_dirs[0])],
        image_size=40,
        limit=2,
        perceptual_weights=None,
        progress=False,
        grey_baseline=False,
    )
    (m,) = res.models
    assert m.image_size == 40 and m.info["model_size"] == SIZE
    assert math.isfinite(m.metrics["psnr"]) and m.histogram.sum() == 2 * 2 * 40 * 40
    assert m.metrics["d_accuracy_real"] is None and "d_accuracy_note" in m.info


def _export(run_dir: Path, out: Path) -> tuple[Path, Path]:
    """A minimal SavedModel (``generator`` signature + config asset) and its .tflite."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    from colourise_tf.runs import load_run

    run = load_run(run_dir)
    gen = run.generator

    class Module(tf.Module):
        def __init__(self):
            super().__init__()
            self.gen = gen

        @tf.function(input_signature=[tf.TensorSpec([None, SIZE, SIZE, 1], tf.float32, name="grey")])
        def generator(self, grey):
            return {"chroma": self.gen(grey, training=False)}

    module = Module()
    saved = out / "savedmodel"
    tf.saved_model.save(module, str(saved), signatures={"generator": module.generator})
    (saved / "assets").mkdir(exist_ok=True)
    save_config(run.cfg, saved / "assets" / "colourise_config.json")
    # Weights frozen first: a converted Keras 3 model otherwise keeps uninitialised
    # resource variables and the interpreter returns NaN.
    frozen = convert_variables_to_constants_v2(module.generator.get_concrete_function())
    converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen])
    tflite = out / "tiny.tflite"
    tflite.write_bytes(converter.convert())
    (out / "tiny.json").write_text(json.dumps({"image_size": SIZE, "colour_space": "lab"}))
    return saved, tflite


def test_savedmodel_and_tflite_give_the_run_numbers(run_dirs, tmp_path):
    pytest.importorskip("ai_edge_litert")
    saved, tflite = _export(run_dirs[0], tmp_path)
    res = evaluate.evaluate_models(
        [str(run_dirs[0]), str(saved), str(tflite)],
        limit=3,
        perceptual_weights=None,
        progress=False,
        grey_baseline=False,
    )
    run, sm, lite = res.models
    assert [sm.info["kind"], lite.info["kind"]] == ["savedmodel", "tflite"]
    assert [sm.name, lite.name] == ["savedmodel", "tiny"]
    for other in (sm, lite):
        assert other.metrics["d_accuracy_real"] is None  # exports carry no discriminator
        for key in ("l1", "psnr", "ssim", "colourfulness"):
            assert other.metrics[key] == pytest.approx(run.metrics[key], rel=1e-3, abs=1e-3), key


# ---------------------------------------------------------------------------- CLI


def test_cli_end_to_end(run_dirs, tmp_path, capsys):
    out = tmp_path / "eval"
    rc = eval_cli.main(
        [
            "--model",
            str(run_dirs[0]),
            "--name",
            "first",
            "--model",
            str(run_dirs[1] / "checkpoints" / "ckpt-1"),
            "--dataset",
            "samples",
            "--limit",
            "3",
            "--batch-size",
            "2",
            "--perceptual-weights",
            "none",
            "--no-with-grey-baseline",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == ["ab_histograms.png", "evaluation.json", "evaluation.md"]
    data = json.loads((out / "evaluation.json").read_text())
    assert [m["name"] for m in data["models"]] == ["first", f"{run_dirs[1].name}@ckpt-1"]
    assert data["baselines"] == [] and data["dataset"]["n_images"] == 3
    assert data["settings"]["argv"][:4] == ["--model", str(run_dirs[0]), "--name", "first"]
    assert "| first |" in (out / "evaluation.md").read_text()
    assert "Table I" in capsys.readouterr().out


def test_cli_bad_model_path_exits_2(tmp_path, capsys):
    rc = eval_cli.main(
        ["--model", str(tmp_path / "missing"), "--perceptual-weights", "none", "--out", str(tmp_path / "o")]
    )
    assert rc == 2
    err = capsys.readouterr().err
    assert "missing" in err and "does not exist" in err
    (tmp_path / "empty").mkdir()
    rc = eval_cli.main(
        ["--model", str(tmp_path / "empty"), "--perceptual-weights", "none", "--out", str(tmp_path / "o")]
    )
    assert rc == 2 and "cannot load model" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_cli_unavailable_vgg_weights_exit_2_and_suggest_none(run_dirs, tmp_path, capsys, monkeypatch):
    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: Name or service not known")

    monkeypatch.setattr(metrics, "PerceptualDistance", offline)
    rc = eval_cli.main(["--model", str(run_dirs[0]), "--out", str(tmp_path / "o")])  # default: imagenet
    assert rc == 2
    err = capsys.readouterr().err
    assert "URL fetch failure" in err and "--perceptual-weights none" in err
    rc = eval_cli.main(
        ["--model", str(run_dirs[0]), "--perceptual-weights", str(tmp_path / "vgg.h5"), "--out", str(tmp_path / "o")]
    )
    assert rc == 2 and "no such file" in capsys.readouterr().err


def test_cli_name_must_follow_a_model(tmp_path):
    with pytest.raises(SystemExit) as exc:
        eval_cli.main(["--name", "x", "--out", str(tmp_path)])
    assert exc.value.code == 2


def _handmade_run(root: Path, preset: str, overrides: list[str]) -> Path:
    """A run directory in the trainer's layout, with untrained weights (no training)."""
    from colourise_tf.models import build_models

    cfg = apply_overrides(get_preset(preset), ["model.image_size=32"] + overrides)
    run = root / preset
    (run / "checkpoints").mkdir(parents=True)
    save_config(cfg, run / "config.json")
    gen, disc = build_models(cfg)
    objects = {"generator": gen, "step": tf.Variable(7, dtype=tf.int64)}
    if disc is not None:
        objects["discriminator"] = disc
    tf.train.Checkpoint(**objects).save(str(run / "checkpoints" / "ckpt"))
    return run


def test_every_model_family_evaluates(tmp_path):
    small = ["model.generator.filters=8,16", "model.discriminator.filters=8,16"]
    runs = [
        # YUV + noise channel + fixed-size DCGAN discriminator (the DCGAN report)
        _handmade_run(
            tmp_path, "dcgan-sky", ["model.generator.filters=8,8,8,8", "model.discriminator.filters=8,8,8,8"]
        ),
        _handmade_run(tmp_path, "gorriz-ibn-sn-md", small),  # 3-scale discriminator
        _handmade_run(tmp_path, "partial-mask", small),  # mask + hint channels (the IMPA project)
        _handmade_run(tmp_path, "tarres-seg-shared", ["model.generator.filters=8,16"]),  # per-class chroma, no D
    ]
    kwargs = dict(limit=3, batch_size=2, perceptual_weights=None, progress=False, grey_baseline=False)
    res = evaluate.evaluate_models([str(r) for r in runs], **kwargs)
    by_name = {m.name: m for m in res.models}
    for m in res.models:
        assert all(math.isfinite(m.metrics[k]) for k in FINITE_KEYS), m.name
        assert m.info["step"] == 7
    assert by_name["dcgan-sky"].info["colour_space"] == "yuv"
    assert len(by_name["gorriz-ibn-sn-md"].info["d_accuracy_per_scale"]) == 3
    assert by_name["partial-mask"].metrics["d_accuracy_fake"] is not None
    assert by_name["tarres-seg-shared"].metrics["d_accuracy_real"] is None
    # the noise channel is seeded: the same numbers again
    again = evaluate.evaluate_models([str(runs[0])], **kwargs)
    assert again.models[0].metrics == by_name["dcgan-sky"].metrics


@pytest.mark.parametrize("target", ["hints", "partial"])
def test_mask_models_are_evaluated_with_the_mask_their_target_implies(tmp_path, monkeypatch, target):
    """Hints-target mask models get an empty mask (automatic colourisation); models that
    colour only inside the mask (loss.mask_target=partial) get a full one."""
    run = _handmade_run(
        tmp_path,
        "partial-mask",
        ["model.generator.filters=8,16", "model.discriminator.filters=8,16", f"loss.mask_target={target}"],
    )
    seen = []
    real = evaluate.inference.generator_input

    def spy(grey_small, spec, **kwargs):
        g_in = real(grey_small, spec, **kwargs)
        seen.append(g_in[..., -3:].numpy())  # mask, hint a, hint b
        return g_in

    monkeypatch.setattr(evaluate.inference, "generator_input", spy)
    evaluate.evaluate_models(
        [str(run)], limit=2, batch_size=2, perceptual_weights=None, progress=False, grey_baseline=False
    )
    assert seen
    for channels in seen:
        np.testing.assert_array_equal(channels[..., 0], 1.0 if target == "partial" else 0.0)
        np.testing.assert_array_equal(channels[..., 1:], 0.0)  # never hints


def test_cli_unusable_out_is_refused_before_evaluating(tmp_path, capsys, monkeypatch):
    """--out naming a file (or a folder under one) fails at once, not after the evaluation."""
    calls = []
    monkeypatch.setattr(evaluate, "evaluate_models", lambda *a, **k: calls.append(1))
    blocker = tmp_path / "results.txt"
    blocker.write_text("keep me")
    for out in (blocker, blocker / "sub"):
        rc = eval_cli.main(["--model", str(tmp_path / "missing"), "--perceptual-weights", "none", "--out", str(out)])
        assert rc == 2
        err = capsys.readouterr().err
        assert f"--out {out}" in err and "not a directory" in err and "Traceback" not in err
    assert calls == [] and blocker.read_text() == "keep me"
