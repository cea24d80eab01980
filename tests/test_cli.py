"""The ``colourise`` command, run in-process through ``main([...])``.

Models are hand-made tiny runs (config + checkpoint, conv kernels scaled up so the
untrained generator paints visible colours); see ``helpers.make_run``. The plain model's
gain (5) keeps its colours inside the sRGB gamut for mid-tone inputs: out-of-gamut
colours are clipped in RGB, which changes L (``colour.lab_to_rgb`` clips per channel).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from colourise_tf import colour
from colourise_tf.cli import colourise as cli
from colourise_tf.config import apply_overrides, get_preset

S = 32

from helpers import make_run  # noqa: E402


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> str:
    return str(make_run(tmp_path_factory.mktemp("models") / "plain", gain=5.0))


@pytest.fixture(scope="module")
def dropout_model(tmp_path_factory) -> str:
    return str(make_run(tmp_path_factory.mktemp("models") / "dropout", ["model.generator.dropout=0.5"], gain=10.0))


@pytest.fixture(scope="module")
def mask_model(tmp_path_factory) -> str:
    return str(make_run(tmp_path_factory.mktemp("models") / "mask", ["model.mask_channel=true"], gain=10.0))


def photo(h: int = 61, w: int = 97) -> np.ndarray:
    """Mid-tone gradients and a disc (L about 27..75): the predicted colours stay
    inside the sRGB gamut, so the output keeps the input's L to rounding."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    disc = ((x - w / 2) ** 2 + (y - h / 2) ** 2 < (min(h, w) / 3) ** 2).astype(np.float32)
    img = np.stack([0.25 + 0.5 * x / w, 0.25 + 0.5 * y / h, 0.3 + 0.4 * disc], -1)
    return np.clip(img * 255, 0, 255).astype(np.uint8)


def save(path: Path, array: np.ndarray, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kw)
    return path


def read(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img)


def lightness(rgb: np.ndarray) -> np.ndarray:
    return colour.rgb_to_lab(rgb[..., :3]).numpy()[..., 0]


def mean_chroma(rgb: np.ndarray) -> float:
    lab = colour.rgb_to_lab(rgb[..., :3]).numpy()
    return float(np.hypot(lab[..., 1], lab[..., 2]).mean())


def files_in(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir())


# --------------------------------------------------------------------- basics


def test_full_resolution_and_original_lightness(tmp_path, model):
    src = save(tmp_path / "in" / "photo.png", photo(61, 97))
    out = tmp_path / "out"
    assert cli.main([str(src), "-o", str(out), "--model", model, "-q"]) == 0
    assert files_in(out) == ["photo_colourised.png"]
    result = read(out / "photo_colourised.png")
    assert result.shape == (61, 97, 3)
    assert np.abs(lightness(result) - lightness(photo(61, 97))).max() < 1.0
    assert mean_chroma(result) > 1.0  # it did colour something


def test_default_outdir_and_jpeg_stays_jpeg(tmp_path, model, monkeypatch):
    save(tmp_path / "a.jpg", photo(40, 30), quality=95)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["a.jpg", "--model", model, "-q"]) == 0
    assert files_in(tmp_path / "colourised") == ["a_colourised.jpg"]
    assert read(tmp_path / "colourised" / "a_colourised.jpg").shape == (40, 30, 3)
    assert cli.main(["a.jpg", "--model", model, "-q", "--format", "png"]) == 0
    assert "a_colourised.png" in files_in(tmp_path / "colourised")


def test_exif_orientation_is_applied(tmp_path, model):
    raw = photo(24, 40)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    src = save(tmp_path / "rot.png", raw, exif=exif)
    out = tmp_path / "out"
    assert cli.main([str(src), "-o", str(out), "--model", model, "-q"]) == 0
    result = read(out / "rot_colourised.png")
    upright = np.rot90(raw, -1)
    assert result.shape == upright.shape == (40, 24, 3)
    assert np.abs(lightness(result) - lightness(np.ascontiguousarray(upright))).max() < 1.0


def test_alpha_is_kept(tmp_path, model):
    rgba = np.concatenate([photo(33, 47), np.zeros((33, 47, 1), np.uint8)], -1)
    rgba[..., 3] = np.linspace(0, 255, 47, dtype=np.uint8)[None, :]
    src = save(tmp_path / "logo.png", rgba)
    out = tmp_path / "out"
    # --format jpg cannot hold alpha: the output is PNG anyway.
    assert cli.main([str(src), "-o", str(out), "--model", model, "-q", "--format", "jpg"]) == 0
    result = read(out / "logo_colourised.png")
    assert result.shape == (33, 47, 4)
    np.testing.assert_array_equal(result[..., 3], rgba[..., 3])
    visible = rgba[..., 3] > 0
    diff = np.abs(lightness(result) - lightness(rgba[..., :3]))
    assert diff[visible].max() < 1.0


def test_sixteen_bit_and_palette_inputs(tmp_path, model):
    wide = np.linspace(16000, 50000, 29 * 35).reshape(29, 35).astype(np.uint16)  # mid-tones
    sixteen = tmp_path / "in" / "deep.png"
    sixteen.parent.mkdir()
    Image.fromarray(wide).save(sixteen)  # mode I;16
    with Image.open(sixteen) as im:
        assert im.mode.startswith("I")
    pal = tmp_path / "in" / "pal.png"
    Image.fromarray(photo(31, 45)).convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(pal)
    gif = tmp_path / "in" / "anim.gif"
    Image.fromarray(photo(21, 19)).convert("P").save(gif)
    out = tmp_path / "out"
    assert cli.main([str(tmp_path / "in"), "-o", str(out), "--model", model, "-q"]) == 0
    assert files_in(out) == ["anim_colourised.png", "deep_colourised.png", "pal_colourised.png"]
    deep = read(out / "deep_colourised.png")
    assert deep.shape == (29, 35, 3)
    expected_l = lightness(np.repeat(np.rint(wide / 257.0).astype(np.uint8)[..., None], 3, -1))
    assert np.abs(lightness(deep) - expected_l).max() < 1.0
    assert read(out / "pal_colourised.png").shape == (31, 45, 3)


def test_folder_picks_up_tiff_scans(tmp_path, model):
    """Old-photo scans are usually TIFF: a folder's .tif/.TIFF files (8- and 16-bit
    grey, RGB) are colourised like the same files named on the command line."""
    src = tmp_path / "scans"
    save(src / "rgb.tif", photo(33, 41))
    wide = np.linspace(16000, 50000, 27 * 23).reshape(27, 23).astype(np.uint16)
    save(src / "grey16.TIFF", wide)
    save(src / "sub" / "grey8.tiff", lightness_grey := photo(25, 30)[..., 1])
    out = tmp_path / "out"
    assert cli.main([str(src), "-o", str(out), "--model", model, "-q"]) == 0
    assert files_in(out) == ["grey16_colourised.png", "grey8_colourised.png", "rgb_colourised.png"]
    assert read(out / "rgb_colourised.png").shape == (33, 41, 3)
    assert read(out / "grey16_colourised.png").shape == (27, 23, 3)
    grey8 = read(out / "grey8_colourised.png")
    assert grey8.shape == (25, 30, 3)
    expected = lightness(np.repeat(lightness_grey[..., None], 3, -1))
    assert np.abs(lightness(grey8) - expected).max() < 1.0
    # The same file named explicitly gives the same result.
    one = tmp_path / "one"
    assert cli.main([str(src / "rgb.tif"), "-o", str(one), "--model", model, "-q"]) == 0
    np.testing.assert_array_equal(read(one / "rgb_colourised.png"), read(out / "rgb_colourised.png"))


# ------------------------------------------------------------------ failures


def test_corrupt_file_does_not_stop_the_batch(tmp_path, model, capsys):
    bad = tmp_path / "in" / "bad.jpg"
    bad.parent.mkdir()
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    good = save(tmp_path / "in" / "good.png", photo(20, 20))
    out = tmp_path / "out"
    capsys.readouterr()
    assert cli.main([str(bad), str(good), "-o", str(out), "--model", model]) == 1
    err_lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err_lines) == 1, err_lines
    assert err_lines[0].startswith(f"{bad}: ")
    assert files_in(out) == ["good_colourised.png"]


def test_missing_explicit_file_is_reported(tmp_path, model, capsys):
    good = save(tmp_path / "good.png", photo(20, 20))
    assert cli.main([str(good), str(tmp_path / "gone.png"), "-o", str(tmp_path / "o"), "--model", model, "-q"]) == 1
    assert "gone.png: no image files found" in capsys.readouterr().err
    assert files_in(tmp_path / "o") == ["good_colourised.png"]


def test_usage_errors_exit_2(tmp_path, model, capsys, monkeypatch):
    good = save(tmp_path / "good.png", photo(20, 20))
    assert cli.main([str(tmp_path / "nothing*.png"), "--model", model]) == 2
    assert "no image files matched" in capsys.readouterr().err
    assert cli.main([str(good), "--model", str(tmp_path / "no_model")]) == 2
    assert "no_model" in capsys.readouterr().err
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("COLOURISE_MODEL", raising=False)
    assert cli.main([str(good)]) == 2
    err = capsys.readouterr().err
    assert "runs/gorriz-ibn-sn-md" in err and "make train" in err and "--model" in err
    assert cli.main([]) == 2  # argparse: INPUT is required
    assert cli.main([str(good), "--model", model, "--samples", "0"]) == 2
    assert not (tmp_path / "colourised").exists() or files_in(tmp_path / "colourised") == []


# ---------------------------------------------------------------- safety


def test_outdir_equal_to_input_folder(tmp_path, model):
    src = save(tmp_path / "pics" / "cat.png", photo(20, 24))
    before = src.read_bytes()
    assert cli.main([str(src), "-o", str(tmp_path / "pics"), "--model", model, "--format", "png", "-q"]) == 0
    assert files_in(tmp_path / "pics") == ["cat.png", "cat_colourised.png"]
    assert src.read_bytes() == before
    # The folder itself as input, twice: our earlier output is not an input.
    for _ in range(2):
        assert cli.main([str(tmp_path / "pics"), "-o", str(tmp_path / "pics"), "--model", model, "-q"]) == 0
        assert files_in(tmp_path / "pics") == ["cat.png", "cat_colourised.png"]
    assert src.read_bytes() == before


def test_refuses_to_overwrite_an_input(tmp_path, model, capsys):
    d = tmp_path / "pics"
    a = save(d / "cat.png", photo(20, 24))
    victim = save(d / "cat_colourised.png", photo(10, 10))
    victim_bytes = victim.read_bytes()
    code = cli.main([str(a), str(victim), "-o", str(d), "--model", model, "-q"])
    assert code == 1
    err = capsys.readouterr().err
    assert f"{a}: refusing to write" in err and "one of the inputs" in err
    assert victim.read_bytes() == victim_bytes
    # The other input was still processed.
    assert (d / "cat_colourised_colourised.png").is_file()


def test_same_stem_in_two_folders(tmp_path, model):
    a = save(tmp_path / "x" / "img.png", photo(20, 20))
    b = save(tmp_path / "y" / "img.png", photo(22, 26))
    out = tmp_path / "out"
    assert cli.main([str(a), str(b), "-o", str(out), "--model", model, "-q"]) == 0
    assert files_in(out) == ["img_2_colourised.png", "img_colourised.png"]
    assert read(out / "img_2_colourised.png").shape == (22, 26, 3)


def test_rerun_replaces_own_outputs_and_skips_them_as_inputs(tmp_path, model):
    save(tmp_path / "a.png", photo(20, 20))
    out = tmp_path / "colourised"
    assert cli.main([str(tmp_path), "-o", str(out), "--model", model, "-q"]) == 0
    first = (out / "a_colourised.png").stat().st_mtime_ns
    # The folder contains the outputs now; they must not be colourised again.
    assert cli.main([str(tmp_path), "-o", str(out), "--model", model, "-q"]) == 0
    assert files_in(out) == ["a_colourised.png"]
    assert (out / "a_colourised.png").stat().st_mtime_ns >= first


def test_skip_existing(tmp_path, model):
    from colourise_tf.predictors import load_predictor

    src = save(tmp_path / "a.png", photo(20, 20))
    out = tmp_path / "out"
    pred = load_predictor(model)
    (r1,) = cli.colourise_files([str(src)], pred, out)
    assert r1.ok and not r1.skipped and r1.outputs == [str(out / "a_colourised.png")]
    (r2,) = cli.colourise_files([str(src)], pred, out, skip_existing=True)
    assert r2.ok and r2.skipped and r2.outputs == []


def test_atomic_writes_leave_no_temp_files(tmp_path, model, monkeypatch):
    src = save(tmp_path / "a.png", photo(20, 20))
    out = tmp_path / "out"
    assert cli.main([str(src), "-o", str(out), "--model", model, "-q", "--compare", "--samples", "2"]) == 0
    assert all(not n.startswith(".") and not n.endswith(".tmp") for n in files_in(out))
    # A failure in the middle of writing leaves the previous output and no temp file.
    previous = (out / "a_colourised_compare.png").read_bytes()
    listing = files_in(out)
    assert "a_colourised_compare.png" in listing

    def broken_save(self, fp, *args, **kwargs):
        fp.write(b"half an image")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError):
        cli.atomic_save(photo(5, 5), out / "a_colourised_compare.png", fmt="png")
    assert (out / "a_colourised_compare.png").read_bytes() == previous
    assert files_in(out) == listing


# ------------------------------------------------------------------ controls


def test_saturation(tmp_path, model):
    src = save(tmp_path / "a.png", photo(30, 40))
    outs = {}
    for gain in ("0", "1", "2"):
        d = tmp_path / f"sat{gain}"
        assert cli.main([str(src), "-o", str(d), "--model", model, "-q", "--saturation", gain]) == 0
        outs[gain] = read(d / "a_colourised.png").astype(int)
    grey = outs["0"]
    assert np.abs(grey[..., 0] - grey[..., 1]).max() <= 1 and np.abs(grey[..., 1] - grey[..., 2]).max() <= 1
    assert mean_chroma(outs["2"].astype(np.uint8)) > 1.2 * mean_chroma(outs["1"].astype(np.uint8))


def test_compare_is_side_by_side(tmp_path, model):
    src = save(tmp_path / "a.png", photo(30, 41))
    out = tmp_path / "out"
    assert cli.main([str(src), "-o", str(out), "--model", model, "-q", "--compare"]) == 0
    both = read(out / "a_colourised_compare.png").astype(int)
    assert both.shape == (30, 82, 3)
    left = both[:, :41]
    assert np.abs(left[..., 0] - left[..., 2]).max() <= 1  # the grey half
    assert np.abs(lightness(both[:, 41:].astype(np.uint8)) - lightness(photo(30, 41))).max() < 1.0


def test_samples_on_a_dropout_model(tmp_path, dropout_model):
    src = save(tmp_path / "a.png", photo(30, 40))
    out = tmp_path / "out"
    assert cli.main([str(src), "-o", str(out), "--model", dropout_model, "-q", "--samples", "3"]) == 0
    names = ["a_colourised_s1.png", "a_colourised_s2.png", "a_colourised_s3.png"]
    assert files_in(out) == names
    imgs = [read(out / n).astype(int) for n in names]
    for i in range(3):
        for j in range(i + 1, 3):
            assert np.abs(imgs[i] - imgs[j]).mean() > 0.5, (i, j)


def test_samples_on_a_deterministic_model(tmp_path, model, capsys):
    src = save(tmp_path / "a.png", photo(30, 40))
    src2 = save(tmp_path / "b.png", photo(30, 40))
    out = tmp_path / "out"
    assert cli.main([str(src), str(src2), "-o", str(out), "--model", model, "--samples", "3"]) == 0
    assert files_in(out) == ["a_colourised.png", "b_colourised.png"]
    err = capsys.readouterr().err
    assert err.count("deterministic") == 1


def test_mask_and_hints(tmp_path, mask_model):
    src = save(tmp_path / "a.png", photo(30, 40))
    m = np.zeros((10, 10), np.uint8)
    m[:, :5] = 255
    mask = save(tmp_path / "mask.png", m)
    hints = save(tmp_path / "hints.png", np.full((8, 8, 3), (220, 40, 40), np.uint8))
    out = tmp_path / "out"
    assert cli.main([str(src), "-o", str(out), "--model", mask_model, "-q", "--mask", str(mask)]) == 0
    masked = read(out / "a_colourised.png").astype(int)
    args = [str(src), "-o", str(out), "--model", mask_model, "-q", "--mask", str(mask), "--hints", str(hints)]
    assert cli.main(args) == 0
    hinted = read(out / "a_colourised.png").astype(int)
    assert hinted.shape == (30, 40, 3)
    assert np.abs(hinted - masked).mean() > 0.5


def test_mask_on_a_model_without_mask_channel(tmp_path, model, capsys):
    src = save(tmp_path / "a.png", photo(30, 40))
    mask = save(tmp_path / "mask.png", np.full((10, 10), 255, np.uint8))
    assert cli.main([str(src), "--model", model, "--mask", str(mask), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "--mask" in err and "mask channel" in err
    assert cli.main([str(src), "--model", model, "--hints", str(mask)]) == 2


# ------------------------------------------------------------- other models


def test_tflite_model(tmp_path, model):
    from colourise_tf.runs import load_run

    run = load_run(model)
    inp = keras.Input((S, S, 1), batch_size=1, name="grey")
    conv = tf.lite.TFLiteConverter.from_keras_model(keras.Model(inp, run.generator(inp, training=False)))
    tfl = tmp_path / "m" / "tiny_float32.tflite"
    tfl.parent.mkdir()
    tfl.write_bytes(conv.convert())
    (tmp_path / "m" / "tiny.json").write_text(json.dumps({"image_size": S, "colour_space": "lab"}))
    src = save(tmp_path / "a.png", photo(37, 23))
    assert cli.main([str(src), "-o", str(tmp_path / "t"), "--model", str(tfl), "-q"]) == 0
    assert cli.main([str(src), "-o", str(tmp_path / "k"), "--model", model, "-q"]) == 0
    a = read(tmp_path / "t" / "a_colourised.png").astype(int)
    b = read(tmp_path / "k" / "a_colourised.png").astype(int)
    assert a.shape == (37, 23, 3) and np.abs(a - b).max() <= 1


def test_env_model_and_glob(tmp_path, model, monkeypatch):
    save(tmp_path / "p" / "one.png", photo(20, 20))
    save(tmp_path / "p" / "two.jpg", photo(20, 20))
    (tmp_path / "p" / "notes.txt").write_text("not an image")
    monkeypatch.setenv("COLOURISE_MODEL", model)
    out = tmp_path / "o"
    assert cli.main([str(tmp_path / "p" / "*"), "-o", str(out), "-q"]) == 0
    assert files_in(out) == ["one_colourised.png", "two_colourised.jpg"]
    assert os.path.isfile(out / "one_colourised.png")


def test_atomic_writer_replaces_whole_files_and_cleans_up(tmp_path):
    """colourise_tf.fileio: the old content until the new one is complete; no temp files."""
    from colourise_tf.fileio import atomic_write_bytes, atomic_writer

    dest = tmp_path / "out.bin"
    dest.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_writer(dest) as f:
            f.write(b"half")
            assert dest.read_bytes() == b"old"
            raise RuntimeError("crash mid-write")
    assert dest.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]
    atomic_write_bytes(dest, b"new")
    assert dest.read_bytes() == b"new" and sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]
    (tmp_path / "taken").mkdir()  # the destination is a folder: the error names it, not the temp file
    with pytest.raises(OSError) as info:
        atomic_write_bytes(tmp_path / "taken", b"x")
    assert info.value.filename == str(tmp_path / "taken")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin", "taken"]


def test_hints_are_refused_for_a_partial_target_model(tmp_path):
    """A model trained with loss.mask_target=partial never saw hints: --hints is an error."""
    import types

    from colourise_tf import inference
    from colourise_tf.cli import colourise as cli

    cfg = apply_overrides(get_preset("partial-mask"), ["loss.mask_target=partial"])
    predictor = types.SimpleNamespace(
        spec=inference.ModelSpec.from_model_config(cfg.model), cfg=cfg, source="runs/partial"
    )
    mask = np.ones((8, 8), np.uint8)
    with pytest.raises(ValueError, match="runs/partial: trained with loss.mask_target=partial"):
        cli.colourise_files([], predictor, tmp_path / "out", mask=mask, hints=np.zeros((8, 8, 3), np.uint8))
    assert not (tmp_path / "out").exists()
