"""The README's whole user path on the default architecture, through the Makefile.

``make train`` (gorriz-ibn-sn-md, a short schedule at make train's 128x128) ->
``make export`` (SavedModel + the four TFLite variants) -> ``colourise`` on a folder
with the run directory, the SavedModel and each ``.tflite`` -> ``make eval`` over
the same models. The ``tiny`` preset hides failures that only a deep network shows
(a TFLite model without signatures once passed every tiny test), hence this test.

Colour bounds: mean CIEDE2000 between each export's output image and the Keras
model's (the run directory's), computed with scikit-image on the written files; the
bounds are those stated in ``docs/serving.md`` ("TFLite").
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
PRESET = "gorriz-ibn-sn-md"
SCHEDULE = (
    "model.image_size=128 data.batch_size=4 train.steps=20 train.checkpoint_every=10 "
    "train.log_every=5 train.image_every=10"
)
VARIANTS = ("float32", "float16", "dynamic_int8", "int8")
# Mean CIEDE2000 of the output images against the Keras model's (docs/serving.md).
DELTA_E2000_BOUNDS = {"savedmodel": 0.05, "float32": 0.05, "float16": 0.1, "dynamic_int8": 2.0, "int8": 6.0}


def _make(target: str, **variables: str) -> subprocess.CompletedProcess:
    """Runs ``make -C REPO target`` with this interpreter's virtualenv."""
    args = ["make", "-C", str(REPO), target, f"VENV={sys.prefix}"]
    args += [f"{k}={v}" for k, v in variables.items()]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, (
        f"{shlex.join(args)} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    return proc


def _photos(folder: Path) -> dict[str, tuple[int, int]]:
    """A folder of grey and colour photos in JPEG, PNG and TIFF at odd sizes, from the
    embedded samples; returns ``{file name: (height, width)}``."""
    from colourise_tf.data import load_samples

    folder.mkdir(parents=True)
    sizes = {}
    for i, (name, rgb) in enumerate(load_samples()[:4]):
        img = Image.fromarray(rgb)
        img = img.resize((img.width * 3 // 5 + i, img.height * 3 // 5 + 2 * i))
        kind, suffix = [("RGB", ".jpg"), ("L", ".png"), ("L", ".tif"), ("RGB", ".tiff")][i]
        path = folder / f"{name}{suffix}"
        img.convert(kind).save(path, **({"quality": 92} if suffix == ".jpg" else {}))
        sizes[path.name] = (img.height, img.width)
    return sizes


def _colourise(model: Path, photos: Path, out: Path) -> None:
    cli = Path(sys.prefix) / "bin" / "colourise"
    args = [str(cli), str(photos), "-o", str(out), "--model", str(model), "--format", "png", "-q"]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{shlex.join(args)}:\n{proc.stderr[-3000:]}"


def _lab(path: Path) -> np.ndarray:
    from skimage.color import rgb2lab

    with Image.open(path) as img:
        return rgb2lab(np.asarray(img.convert("RGB")))


@pytest.mark.large
def test_readme_user_path_on_the_default_model(tmp_path):
    from ai_edge_litert.interpreter import Interpreter
    from skimage.color import deltaE_ciede2000

    run = tmp_path / "run"
    exports = tmp_path / "exports"
    _make("train", PRESET=PRESET, WORKDIR=str(run), OVERRIDES=SCHEDULE)
    for name in ("config.json", "samples.png", "summary.json"):
        assert (run / name).is_file(), name
    assert list((run / "checkpoints").glob("ckpt-*.index"))
    assert list((run / "logs").rglob("events.out.tfevents.*"))

    _make("export", PRESET=PRESET, WORKDIR=str(run), EXPORT_DIR=str(exports))
    saved_model = exports / PRESET
    assert (saved_model / "models.config").is_file()
    assert list(saved_model.glob("*/saved_model.pb"))
    tflite = {v: exports / "tflite" / f"{PRESET}_{v}.tflite" for v in VARIANTS}
    sidecar = json.loads((exports / "tflite" / f"{PRESET}.json").read_text())
    assert sidecar["image_size"] == 128 and set(sidecar["variants"]) == set(VARIANTS)
    for variant, path in tflite.items():
        interp = Interpreter(model_path=str(path))
        assert interp.get_signature_list() == {"serving_default": {"inputs": ["L"], "outputs": ["ab"]}}, variant
        runner = interp.get_signature_runner("serving_default")
        y = runner(L=np.zeros([1, 128, 128, 1], np.float32))["ab"]
        assert y.shape == (1, 128, 128, 2) and np.isfinite(y).all(), variant

    photos = tmp_path / "photos"
    sizes = _photos(photos)
    models = {"keras": run, "savedmodel": saved_model, **tflite}
    outputs = {}
    for label, model in models.items():
        out = tmp_path / f"out_{label}"
        _colourise(model, photos, out)
        outputs[label] = {}
        for name, (h, w) in sizes.items():
            path = out / f"{Path(name).stem}_colourised.png"
            assert path.is_file(), (label, name)
            lab = _lab(path)
            assert lab.shape[:2] == (h, w), (label, name)
            outputs[label][name] = lab
    for label, bound in DELTA_E2000_BOUNDS.items():
        de = np.concatenate([deltaE_ciede2000(outputs["keras"][n], outputs[label][n]).ravel() for n in sizes])
        print(f"{label}: mean CIEDE2000 {de.mean():.4f} (p99 {np.percentile(de, 99):.3f}) vs the Keras model")
        assert de.mean() <= bound, f"{label}: mean CIEDE2000 {de.mean():.3f} > {bound}"

    eval_out = tmp_path / "eval"
    eval_models = " ".join(str(m) for m in models.values())
    _make(
        "eval",
        WORKDIR=str(run),
        EVAL_MODELS=eval_models,
        DATASET="samples",
        PERCEPTUAL="none",
        EVAL_OUT=str(eval_out),
        LIMIT="4",
    )
    report = json.loads((eval_out / "evaluation.json").read_text())
    assert len(report["models"]) == len(models)
    for entry in report["models"]:
        assert all(v is None or np.isfinite(v) for v in entry["metrics"].values()), entry["name"]
        assert entry["metrics"]["psnr"] > 10.0, entry["name"]
    assert (eval_out / "evaluation.md").is_file() and (eval_out / "ab_histograms.png").is_file()
