"""Input pipeline: decoding of every mode, bad files, greyscale, geometry, masks, TFDS."""

from __future__ import annotations

import io
import logging
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, features

from colourise_tf import data

S = 32  # output side used throughout
RED, BLUE = (220, 30, 20), (20, 40, 210)


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _colour_noise(h: int, w: int, seed: int = 0) -> np.ndarray:
    return _rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def _save(img: Image.Image, path, **kwargs) -> str:
    img.save(path, **kwargs)
    return str(path)


def _left_right(h: int, w: int, left=RED, right=BLUE) -> np.ndarray:
    arr = np.empty((h, w, 3), np.uint8)
    arr[:, : w // 2] = left
    arr[:, w // 2 :] = right
    return arr


def _truncated_jpeg(path) -> str:
    buf = io.BytesIO()
    Image.fromarray(_colour_noise(64, 64, seed=5)).save(buf, format="JPEG", quality=95)
    raw = buf.getvalue()
    path.write_bytes(raw[: int(len(raw) * 0.6)])
    return str(path)


def _all_images(ds: tf.data.Dataset, key: str = "image") -> np.ndarray:
    return np.concatenate([b[key].numpy() for b in ds], axis=0)


# --------------------------------------------------------------------------- decoding


def test_decode_every_mode(tmp_path):
    h, w = 16, 24
    # Grey modes keep their level on all three channels; 16-bit is scaled by 1/257.
    grey = data.decode_image_file(_save(Image.new("L", (w, h), 100), tmp_path / "l.png"))
    assert grey.shape == (h, w, 3) and grey.dtype == np.uint8
    assert np.all(grey == 100)
    sixteen = np.full((h, w), 257 * 100, np.uint16)
    sixteen[:, 0] = 65535
    i16 = data.decode_image_file(_save(Image.fromarray(sixteen), tmp_path / "i16.png"))
    assert i16.dtype == np.uint8 and np.all(i16[:, 1:] == 100) and np.all(i16[:, 0] == 255)

    # Alpha is composited over white: opaque left half keeps its value, clear right half is white.
    la = Image.merge(
        "LA",
        [
            Image.new("L", (w, h), 60),
            Image.fromarray(np.where(np.arange(w)[None, :] < w // 2, 255, 0).astype(np.uint8).repeat(h, 0)),
        ],
    )
    la_out = data.decode_image_file(_save(la, tmp_path / "la.png"))
    assert np.all(la_out[:, : w // 2] == 60) and np.all(la_out[:, w // 2 :] == 255)
    rgba = data.decode_image_file(_save(Image.new("RGBA", (w, h), (200, 50, 10, 128)), tmp_path / "rgba.png"))
    expected = [(c * 128 + 255 * 127 + 127) // 255 for c in (200, 50, 10)]
    assert np.all(rgba == np.array(expected, np.uint8))

    pal = Image.fromarray(_left_right(h, w)).convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    np.testing.assert_array_equal(data.decode_image_file(_save(pal, tmp_path / "p.png")), _left_right(h, w))

    cmyk = data.decode_image_file(_save(Image.new("CMYK", (w, h), (0, 255, 255, 0)), tmp_path / "cmyk.jpg", quality=95))
    assert cmyk.shape == (h, w, 3)
    assert cmyk[..., 0].min() > 200 and cmyk[..., 1].max() < 60 and cmyk[..., 2].max() < 60  # red

    frames = [Image.new("RGB", (w, h), RED), Image.new("RGB", (w, h), BLUE)]
    gif_path = _save(frames[0], tmp_path / "two.gif", save_all=True, append_images=frames[1:])
    assert Image.open(gif_path).n_frames == 2
    gif = data.decode_image_file(gif_path)
    assert np.abs(gif.astype(int) - RED).max() <= 8  # first frame (palette-quantised)

    arr = _colour_noise(h, w)
    np.testing.assert_array_equal(data.decode_image_file(_save(Image.fromarray(arr), tmp_path / "a.bmp")), arr)
    np.testing.assert_array_equal(data.decode_image_file(_save(Image.fromarray(arr), tmp_path / "a.png")), arr)
    if features.check("webp"):
        webp = _save(Image.fromarray(arr), tmp_path / "a.webp", lossless=True)
        np.testing.assert_array_equal(data.decode_image_file(webp), arr)


def test_decode_honours_exif_orientation(tmp_path):
    stored = Image.fromarray(_left_right(16, 32))  # 32 wide, red left, blue right
    exif = Image.Exif()
    exif[0x0112] = 6  # display = stored rotated 90 degrees clockwise
    out = data.decode_image_file(_save(stored, tmp_path / "rot.jpg", exif=exif, quality=95))
    assert out.shape == (32, 16, 3)  # portrait after rotation
    top, bottom = out[:12].reshape(-1, 3).mean(0), out[-12:].reshape(-1, 3).mean(0)
    assert np.abs(top - RED).max() < 15 and np.abs(bottom - BLUE).max() < 15  # left edge went to the top


def test_decode_jpeg_draft_keeps_min_side(tmp_path):
    path = _save(Image.fromarray(_colour_noise(200, 300)), tmp_path / "big.jpg")
    out = data.decode_image_file(path, min_side=40)
    assert out.shape == (
        50,
        75,
        3,
    )  # DCT-scaled by 1/4: the largest factor keeping both sides >= 40
    assert data.decode_image_file(path).shape == (200, 300, 3)


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda p: _truncated_jpeg(p), "truncated image"),
        (lambda p: p.write_bytes(_rng(3).bytes(2000)) and str(p), "not a recognised image format"),
        (lambda p: p.write_bytes(b"") or str(p), "empty file"),
    ],
    ids=["truncated", "random-bytes", "zero-bytes"],
)
def test_decode_errors_name_file_and_problem(tmp_path, make, reason):
    path = tmp_path / "bad.jpg"
    make(path)
    with pytest.raises(ValueError) as info:
        data.decode_image_file(path)
    assert str(path) in str(info.value) and reason in str(info.value)
    assert isinstance(info.value, data.ImageDecodeError) and info.value.path == str(path)


def test_is_greyscale_tolerance():
    base = np.repeat(_rng().integers(0, 250, size=(20, 20, 1), dtype=np.uint8), 3, axis=-1)
    noisy = base.copy()
    noisy[..., 1] += 2  # JPEG-like chroma noise within tol
    assert data.is_greyscale(base) and data.is_greyscale(noisy)
    noisy[7, 11, 2] += 3  # one pixel 3 levels off: colour
    assert not data.is_greyscale(noisy)
    assert not data.is_greyscale(_colour_noise(20, 20))
    assert data.is_greyscale(noisy, tol=3)


# --------------------------------------------------------------------------- folder pipeline


@pytest.fixture
def mixed_folder(tmp_path):
    """A folder of colour, grey and broken files in every mode; returns (root, good, grey, bad)."""
    root = tmp_path / "photos"
    (root / "sub" / "deeper").mkdir(parents=True)
    good, grey, bad = [], [], []
    h, w = 24, 40
    good.append(_save(Image.fromarray(_colour_noise(h, w, 1)), root / "rgb.png"))
    good.append(_save(Image.fromarray(_colour_noise(h, w, 2)), root / "sub" / "upper.PNG"))
    good.append(_save(Image.new("RGBA", (w, h), (200, 50, 10, 200)), root / "rgba.png"))
    good.append(_save(Image.fromarray(_left_right(h, w)).convert("P"), root / "sub" / "pal.gif"))
    good.append(_save(Image.new("CMYK", (w, h), (0, 200, 255, 0)), root / "cmyk.jpg"))
    good.append(_save(Image.fromarray(_colour_noise(h, w, 3)), root / "sub" / "deeper" / "c.bmp"))
    good.append(_save(Image.fromarray(_left_right(h, w)), root / "x.jpeg", quality=95))
    if features.check("webp"):
        good.append(_save(Image.fromarray(_colour_noise(h, w, 4)), root / "w.webp"))
    grey.append(_save(Image.new("L", (w, h), 90), root / "grey_l.png"))
    grey.append(_save(Image.fromarray(np.full((h, w), 30000, np.uint16)), root / "sub" / "grey16.png"))
    grey.append(_save(Image.new("LA", (w, h), (90, 255)), root / "grey_la.png"))
    grey_rgb = np.repeat(_rng(6).integers(0, 255, (h, w, 1), dtype=np.uint8), 3, axis=-1)
    grey.append(_save(Image.fromarray(grey_rgb), root / "grey_rgb.jpg", quality=90))
    bad.append(_truncated_jpeg(root / "truncated.jpg"))
    (root / "sub" / "random.jpg").write_bytes(_rng(7).bytes(3000))
    bad.append(str(root / "sub" / "random.jpg"))
    (root / "zero.png").write_bytes(b"")
    bad.append(str(root / "zero.png"))
    (root / "notes.txt").write_text("not an image")  # ignored: wrong extension
    return root, good, grey, bad


def test_folder_eval_skips_bad_and_grey(mixed_folder):
    root, good, grey, bad = mixed_folder
    report = data.PipelineReport()
    ds = data.build_dataset(str(root), image_size=S, batch_size=2, training=False, report=report)
    images = _all_images(ds)
    assert images.shape == (len(good), S, S, 3) and images.dtype == np.uint8
    assert sorted(p for p, _ in report.skipped) == sorted(bad)
    reasons = dict(report.skipped)
    assert "empty file" in reasons[str(root / "zero.png")]
    assert reasons[str(root / "truncated.jpg")].startswith("truncated image")
    assert reasons[str(root / "sub" / "random.jpg")] == "not a recognised image format"
    assert sorted(report.grey) == sorted(grey)
    assert not any(data.is_greyscale(img) for img in images)
    summary = report.summary()
    assert f"{len(bad)} file(s) skipped" in summary and f"{len(grey)} greyscale" in summary
    assert str(root / "truncated.jpg") in summary


def test_folder_training_repeats_and_logs_each_bad_file_once(mixed_folder, caplog):
    root, good, grey, bad = mixed_folder
    report = data.PipelineReport()
    with caplog.at_level(logging.WARNING, logger="colourise_tf.data"):
        ds = data.build_dataset(str(root), image_size=S, batch_size=2, training=True, report=report)
        batches = list(ds.take(3 * len(good) // 2 + 1))  # > 3 epochs
    assert all(b["image"].shape == (2, S, S, 3) and b["image"].dtype == tf.uint8 for b in batches)
    assert len(report.skipped) == len(bad) and len(report.grey) == len(grey)
    logged = [r.getMessage() for r in caplog.records if r.name == "colourise_tf.data"]
    for path in bad:
        assert sum(path in msg for msg in logged) == 1


def _resumed_matches_straight(build, n_first: int, n_rest: int, tmp_path) -> None:
    """Batches of a pipeline read straight == read, iterator checkpointed, restored anew."""
    straight = [b["image"].numpy() for b in build().take(n_first + n_rest)]
    it = iter(build())
    first = [next(it)["image"].numpy() for _ in range(n_first)]
    path = tf.train.Checkpoint(iterator=it).write(str(tmp_path / "ckpt" / "it"))
    fresh = iter(build())
    tf.train.Checkpoint(iterator=fresh).read(path).assert_consumed()
    rest = [next(fresh)["image"].numpy() for _ in range(n_rest)]
    assert len(straight) == len(first + rest)
    for i, (a, b) in enumerate(zip(straight, first + rest)):
        np.testing.assert_array_equal(a, b, err_msg=f"batch {i}")
    # Not a vacuous comparison: the batches after the checkpoint are new ones.
    assert not np.array_equal(straight[n_first - 1], straight[n_first])


def test_folder_iterator_checkpoint_resumes_exactly(mixed_folder, tmp_path):
    """The training iterator (Pillow decoding, bad and grey files in the folder) can be
    saved mid-epoch and restored in a new pipeline at the same position, so a resumed
    run need not re-read the batches it already trained on."""
    root, good, grey, bad = mixed_folder
    n = len(good)

    def build():
        return data.build_dataset(str(root), image_size=S, batch_size=2, training=True)

    _resumed_matches_straight(build, n_first=n // 2 + 1, n_rest=n, tmp_path=tmp_path)


def test_training_on_a_folder_with_no_usable_image_is_a_clear_error(tmp_path):
    """Training repeats the records forever; with nothing usable that would never yield."""
    root = tmp_path / "unusable"
    root.mkdir()
    (root / "zero.png").write_bytes(b"")
    _save(Image.new("L", (40, 24), 90), root / "grey.png")
    with pytest.raises(ValueError, match=r"(?s)no usable colour image in .*unusable.*zero\.png"):
        data.build_dataset(str(root), image_size=S, batch_size=2, training=True)


def test_missing_sources_raise_file_not_found(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images")
    with pytest.raises(FileNotFoundError, match="empty"):
        data.build_dataset(str(empty))
    pattern = str(tmp_path / "*.jpg")
    with pytest.raises(FileNotFoundError) as info:
        data.build_dataset(pattern)
    assert pattern in str(info.value)


def test_glob_source_is_case_insensitive_on_extensions(tmp_path):
    _save(Image.fromarray(_colour_noise(20, 20, 1)), tmp_path / "a.JPG")
    _save(Image.fromarray(_colour_noise(20, 20, 2)), tmp_path / "b.png")
    assert [os.path.basename(p) for p in data.list_image_files(str(tmp_path / "*"))] == [
        "a.JPG",
        "b.png",
    ]


@pytest.fixture
def colour_folder(tmp_path):
    root = tmp_path / "colour"
    root.mkdir()
    for i in range(6):
        _save(Image.fromarray(_colour_noise(40 + 2 * i, 48, seed=10 + i)), root / f"{i}.png")
    return str(root)


def test_training_is_deterministic_per_seed(colour_folder):
    def first(seed):
        ds = data.build_dataset(colour_folder, image_size=S, batch_size=2, seed=seed, masks=True)
        return {k: v.numpy() for k, v in next(iter(ds)).items()}

    a, b, c = first(0), first(0), first(1)
    assert a["image"].shape == (2, S, S, 3) and a["mask"].shape == (2, S, S, 1)
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["mask"], b["mask"])
    assert not np.array_equal(a["image"], c["image"])


def test_eval_is_ordered_single_pass_without_drop(colour_folder):
    ds = data.build_dataset(colour_folder, image_size=S, batch_size=4, training=False)
    sizes = [int(b["image"].shape[0]) for b in ds]
    assert sizes == [4, 2]  # 6 images, one pass, last partial batch kept
    again = _all_images(data.build_dataset(colour_folder, image_size=S, batch_size=4, training=False))
    np.testing.assert_array_equal(_all_images(ds), again)


def test_cache_and_nondeterministic_options(colour_folder):
    cached = data.build_dataset(colour_folder, image_size=S, batch_size=3, training=False, cache=True, repeat=True)
    epochs = _all_images(cached.take(4))  # two passes over 6 images, the second from the cache
    np.testing.assert_array_equal(epochs[:6], epochs[6:])
    fast = data.build_dataset(colour_folder, image_size=S, batch_size=2, cache=True, deterministic=False)
    assert fast.options().deterministic is False
    assert next(iter(fast))["image"].shape == (2, S, S, 3)


def test_eval_centre_crop_matches_numpy(tmp_path):
    wide = _colour_noise(32, 48, seed=21)
    tall = _colour_noise(50, 32, seed=22)
    # 2x2-constant blocks: bilinear halving (half-pixel centres) reproduces the block values.
    blocks = np.repeat(np.repeat(_colour_noise(32, 48, seed=23), 2, axis=0), 2, axis=1)  # 64 x 96
    for name, arr in (("a_wide", wide), ("b_tall", tall), ("c_blocks", blocks)):
        _save(Image.fromarray(arr), tmp_path / f"{name}.png")
    out = _all_images(data.build_dataset(str(tmp_path), image_size=S, batch_size=3, training=False))
    np.testing.assert_array_equal(out[0], wide[:, 8:40])
    np.testing.assert_array_equal(out[1], tall[9:41, :])  # offset (50 - 32) // 2
    np.testing.assert_array_equal(out[2], blocks[:, 16:80][::2, ::2])


def test_training_flips_some_examples(tmp_path):
    _save(Image.fromarray(_left_right(S, S)), tmp_path / "lr.png")
    ds = data.build_dataset(str(tmp_path), image_size=S, batch_size=2, seed=3)
    images = np.concatenate([b["image"].numpy() for b in ds.take(10)])
    left_is_red = images[:, :, 0, 0].mean(axis=1) > 128
    assert left_is_red.any() and (~left_is_red).any()
    for img, red in zip(images, left_is_red):  # flipped, not recoloured
        edge = img[:, -1].mean(0)
        assert np.abs(edge - (BLUE if red else RED)).max() < 5


def test_geometry_keeps_segmentation_aligned():
    size = 16
    ids = np.zeros((40, 56), np.int32)
    ids[:20, 28:], ids[20:, :28], ids[20:, 28:] = 1, 2, 3
    palette = np.array([RED, BLUE, (20, 200, 30), (240, 240, 30)], np.uint8)
    geometry = data._make_geometry_fn(size, training=True, masks=False, seed=0)
    flipped = 0
    for index in range(12):
        out = geometry(
            tf.constant(index, tf.int64),
            {"image": tf.constant(palette[ids]), "segmentation": tf.constant(ids)},
        )
        image, seg = out["image"].numpy().astype(int), out["segmentation"].numpy()
        assert seg.dtype == np.int32 and seg.shape == (size, size)
        nearest = np.argmin(((image[:, :, None, :] - palette[None, None].astype(int)) ** 2).sum(-1), axis=-1)
        assert (nearest == seg).mean() > 0.85  # all but the bilinear seams
        flipped += int(seg[0, 0] == 1)  # top-left shows the top-right class only when flipped
    assert 0 < flipped < 12


# --------------------------------------------------------------------------- masks


def test_pipeline_masks_cover_several_kinds(colour_folder):
    ds = data.build_dataset(colour_folder, image_size=S, batch_size=4, masks=True, training=False, repeat=True)
    masks = np.concatenate([b["mask"].numpy() for b in ds.take(6)])
    assert masks.dtype == np.float32 and set(np.unique(masks)) == {0.0, 1.0}
    halves = [m for m in masks[..., 0] if m.sum() == S * S / 2 and (np.all(m == m[:1]) or np.all(m == m[:, :1]))]
    assert 0 < len(halves) < len(masks)  # a mix of kinds, some halves


# --------------------------------------------------------------------------- samples + TFDS


def test_samples_source_loads_the_nine_photos():
    samples = data.load_samples()
    assert [name for name, _ in samples] == list(data.SAMPLE_NAMES) and len(samples) == 9
    for name, img in samples:
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[-1] == 3 and min(img.shape[:2]) >= 250, name
        assert not data.is_greyscale(img), name
    report = data.PipelineReport()
    images = _all_images(data.build_dataset("samples", image_size=S, batch_size=4, training=False, report=report))
    assert images.shape == (9, S, S, 3) and not report.grey and not report.skipped


tfds = pytest.importorskip("tensorflow_datasets")


def _first_per_class(num_examples: int, per_class: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Reference: the first `per_class` images of each label in raw mock `train` order.

    Mock examples depend on which features are decoded, so read the same subset
    (image + label) as the pipeline does.
    """
    raw = tfds.builder("cifar10").as_dataset(
        split="train",
        shuffle_files=False,
        decoders=tfds.decode.PartialDecoding({"image": True, "label": True}),
    )
    counts, chosen = np.zeros(10, int), []
    all_counts = np.zeros(10, int)
    for ex in raw.as_numpy_iterator():
        all_counts[ex["label"]] += 1
        if counts[ex["label"]] < per_class:
            counts[ex["label"]] += 1
            chosen.append(ex["image"])
    return chosen, all_counts


def test_tfds_training_batches_from_mock_data():
    with tfds.testing.mock_data(num_examples=12):
        ds = data.build_dataset("cifar10", image_size=S, batch_size=2, masks=True)
        batch = next(iter(ds))
    assert batch["image"].shape == (2, S, S, 3) and batch["image"].dtype == tf.uint8
    assert batch["mask"].shape == (2, S, S, 1) and batch["mask"].dtype == tf.float32


class ColouriseTinyPhotos(tfds.core.GeneratorBasedBuilder):
    """A real TFDS builder (TFRecord files on disk, no mock): 21 small images, one grey."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict({"image": tfds.features.Image(shape=(None, None, 3))}),
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        for i in range(20):
            yield i, {"image": _colour_noise(24 + i, 40, seed=100 + i)}
        yield 20, {"image": np.full((30, 30, 3), 128, np.uint8)}


def test_tfds_iterator_checkpoint_resumes_exactly(tmp_path):
    """A prepared TFDS dataset read from its TFRecords: the training iterator saves and
    restores exactly across several epochs (TFDS's mock data uses a Python generator,
    which tf.data cannot checkpoint, hence a real builder here)."""
    data_dir = str(tmp_path / "tfds")

    def build():
        return data.build_dataset(
            "colourise_tiny_photos", data_dir=data_dir, image_size=S, batch_size=2, shuffle_buffer=8
        )

    _resumed_matches_straight(build, n_first=7, n_rest=20, tmp_path=tmp_path)


@pytest.mark.parametrize("num_examples", [80, 200])
def test_gorriz_test_split_is_first_ten_per_class(num_examples):
    with tfds.testing.mock_data(num_examples=num_examples):
        reference, label_counts = _first_per_class(num_examples, data.GORRIZ_PER_CLASS)
        runs = [
            _all_images(data.build_dataset("cifar10", split="gorriz-test", image_size=S, batch_size=8, training=False))
            for _ in range(2)
        ]
    np.testing.assert_array_equal(runs[0], runs[1])  # same images, same order
    expected = int(np.minimum(label_counts, data.GORRIZ_PER_CLASS).sum())
    assert runs[0].shape[0] == expected
    if num_examples == 200:
        assert label_counts.min() >= data.GORRIZ_PER_CLASS  # precondition of the mock data
        assert expected == 10 * 10  # 10 per class x num_classes
    else:
        # precondition: some classes are capped at 10, others never reach 10
        assert label_counts.max() > data.GORRIZ_PER_CLASS > label_counts.min()
        assert expected < num_examples
    np.testing.assert_array_equal(runs[0], np.stack(reference))  # 32x32 eval crop is the identity


def test_tfds_segmentation_feature_is_resized_with_the_image():
    with tfds.testing.mock_data(num_examples=4):
        ds = data.build_dataset(
            "oxford_iiit_pet",
            image_size=S,
            batch_size=2,
            segmentation_key="segmentation_mask",
            training=False,
        )
        batch = next(iter(ds))
        with pytest.raises(ValueError, match="segmentation_key"):
            data.build_dataset("oxford_iiit_pet", segmentation_key="no_such_feature")
    assert batch["segmentation"].shape == (2, S, S) and batch["segmentation"].dtype == tf.int32
    assert batch["image"].shape == (2, S, S, 3)


def test_tfds_api_calls_and_gorriz_train_split():
    calls = []
    # The patches are undone before mock_data exits: undone after it (pytest's own
    # monkeypatch fixture), they would put mock_data's as_dataset back for later tests.
    with tfds.testing.mock_data(num_examples=5), pytest.MonkeyPatch.context() as monkeypatch:
        original = tfds.core.DatasetBuilder.as_dataset

        def spy(self, *args, **kwargs):
            calls.append(kwargs)
            return original(self, *args, **kwargs)

        prepared = []
        monkeypatch.setattr(tfds.core.DatasetBuilder, "as_dataset", spy)
        monkeypatch.setattr(tfds.core.DatasetBuilder, "is_prepared", lambda self: True)
        monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", lambda self, **k: prepared.append(k))
        images = _all_images(
            data.build_dataset(
                "imagenet2012",
                split="gorriz-train",
                image_size=S,
                batch_size=2,
                training=False,
                seed=7,
            )
        )
        data.build_dataset("imagenet2012", split="train[:10%]", image_size=S, training=True, seed=7)
    assert images.shape == (5, S, S, 3)
    assert not prepared  # already prepared: no download_and_prepare
    assert calls[0]["split"] == "validation" and calls[0]["shuffle_files"] is False
    assert calls[1]["split"] == "train[:10%]" and calls[1]["shuffle_files"] is True
    assert calls[1]["read_config"].shuffle_seed == 7


def test_tfds_grey_images_are_left_out_and_named():
    colour = _colour_noise(S, S, seed=31)
    grey = np.repeat(_colour_noise(S, S, seed=32)[..., :1], 3, axis=-1)
    images = [colour, grey, colour[::-1], grey[::-1]]

    def fake_as_dataset(self, split, decoders=None, read_config=None, **kwargs):
        encoded = [tf.io.encode_png(img) for img in images]
        ids = [f"cifar10-{split}.tfrecord-00000-of-00001__{i}" for i in range(len(images))]
        return tf.data.Dataset.from_tensor_slices({"image": tf.stack(encoded), "tfds_id": ids})

    report = data.PipelineReport()
    with tfds.testing.mock_data(as_dataset_fn=fake_as_dataset):
        out = _all_images(data.build_dataset("cifar10", image_size=S, batch_size=4, training=False, report=report))
    np.testing.assert_array_equal(out, np.stack([colour, colour[::-1]]))
    assert sorted(report.grey) == [f"cifar10-train.tfrecord-00000-of-00001__{i}" for i in (1, 3)]


def test_rgb_from_any_tf_channel_counts():
    grey = np.full((2, 3, 1), 77, np.uint8)
    np.testing.assert_array_equal(data._rgb_from_any_tf(tf.constant(grey)).numpy(), np.full((2, 3, 3), 77))
    rgba = np.zeros((2, 3, 4), np.uint8)
    rgba[..., :3], rgba[0, :, 3] = (10, 20, 30), 255  # row 0 opaque, row 1 transparent
    out = data._rgb_from_any_tf(tf.constant(rgba)).numpy()
    np.testing.assert_array_equal(out[0], np.tile([10, 20, 30], (3, 1)))
    np.testing.assert_array_equal(out[1], np.full((3, 3), 255))
    wide = tf.constant(np.full((2, 2, 3), 65535, np.uint16))
    np.testing.assert_array_equal(data._rgb_from_any_tf(wide).numpy(), np.full((2, 2, 3), 255))


def test_unknown_source_is_file_not_found():
    with pytest.raises(FileNotFoundError, match="no_such_dataset_xyz"):
        data.build_dataset("no_such_dataset_xyz")


def test_training_without_augmentation_uses_the_evaluation_geometry():
    """augment=False: each training example is exactly the evaluation crop of a photo (no
    random scale, crop or flip), still shuffled; with augmentation they are not."""
    n = len(data.SAMPLE_NAMES)
    evaluation = _all_images(data.build_dataset("samples", image_size=S, batch_size=n, training=False))
    crops = {x.tobytes() for x in evaluation}

    def batch(augment):
        ds = data.build_dataset("samples", image_size=S, batch_size=2 * n, training=True, augment=augment, seed=5)
        return next(iter(ds))["image"].numpy()

    plain = batch(False)
    assert all(x.tobytes() in crops for x in plain)
    assert len({x.tobytes() for x in plain}) > 1 and not np.array_equal(plain[:n], evaluation)  # shuffled
    assert sum(x.tobytes() in crops for x in batch(True)) < n
