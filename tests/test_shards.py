"""Prepared shards (``colourise-prepare``): what is written, resuming, remote folders,
and how ``build_dataset`` reads them (disjoint input pipelines, skipping batches,
no Python in the graph)."""

from __future__ import annotations

import os
import uuid

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from test_data import _colour_noise
from test_folder_decoding import PY_OPS, TFDS_BUILDER, _graph_op_types

from colourise_tf import data, prepare, shards
from colourise_tf.cli import prepare as prepare_cli

S = 16  # output side
TOL = 6  # JPEG levels (a flat colour goes through up to two JPEG encodings)

# Eight well-separated saturated colours: each image is one of them, flat, so it is
# identifiable from its pixels after any crop, resize or flip.
COLOURS = np.array(
    [
        (220, 30, 20),
        (20, 40, 210),
        (30, 190, 40),
        (230, 200, 20),
        (150, 30, 200),
        (20, 200, 210),
        (240, 120, 20),
        (110, 60, 30),
    ],
    np.uint8,
)
GREY = (128, 128, 128)


def _flat(h: int, w: int, colour) -> np.ndarray:
    return np.broadcast_to(np.asarray(colour, np.uint8), (h, w, 3)).copy()


def _write_colours(folder, *, grey_at: int | None = None, corrupt: bool = False) -> None:
    """``img_XX`` files of the eight colours (sizes 24..48 px, both orientations, PNG and
    JPEG), optionally a grey image at position ``grey_at`` and a corrupt ``.jpg``."""
    os.makedirs(folder, exist_ok=True)
    names = [f"c{i}" for i in range(len(COLOURS))]
    if grey_at is not None:
        names.insert(grey_at, "grey")
    for pos, what in enumerate(names):
        if what == "grey":
            Image.fromarray(_flat(30, 26, GREY)).save(os.path.join(folder, f"img_{pos:02d}.png"))
            continue
        i = int(what[1:])
        h, w = (24 + 3 * i, 40 - 2 * i) if i % 2 else (40 - 2 * i, 24 + 3 * i)
        ext = "jpg" if i % 3 == 0 else "png"
        Image.fromarray(_flat(h, w, COLOURS[i])).save(os.path.join(folder, f"img_{pos:02d}.{ext}"), quality=95)
    if corrupt:
        with open(os.path.join(folder, "broken.jpg"), "wb") as f:
            f.write(np.random.default_rng(1).integers(0, 256, 700, dtype=np.uint8).tobytes())


def _identify(images: np.ndarray) -> list[int]:
    """Index in :data:`COLOURS` of each ``[S, S, 3]`` image; every pixel must be within
    :data:`TOL` of that colour."""
    found = []
    for img in images:
        mean = img.reshape(-1, 3).mean(axis=0)
        k = int(np.argmin(np.abs(COLOURS.astype(float) - mean).sum(axis=1)))
        err = np.abs(img.astype(int) - COLOURS[k].astype(int)).max()
        assert err <= TOL, (k, err, mean)
        found.append(k)
    return found


def _all(ds: tf.data.Dataset, key: str = "image") -> np.ndarray:
    return np.concatenate([b[key].numpy() for b in ds], axis=0)


def _records(folder: str) -> list[list[tuple]]:
    """Per shard file, its records as ``(name, height, width, jpeg bytes)``."""
    info = shards.read_info(folder)
    out = []
    for path in shards.shard_paths(folder, info):
        recs = [shards.parse_example(r) for r in tf.data.TFRecordDataset(path)]
        out.append([(r["name"].numpy(), int(r["height"]), int(r["width"]), r["image"].numpy()) for r in recs])
    return out


@pytest.fixture(scope="module")
def colours_dir(tmp_path_factory) -> str:
    """A plain folder of the eight colour images."""
    folder = str(tmp_path_factory.mktemp("colours"))
    _write_colours(folder)
    return folder


@pytest.fixture(scope="module")
def mixed_dir(tmp_path_factory) -> str:
    """The eight colours, a grey image (5th of 9 records) and a corrupt file."""
    folder = str(tmp_path_factory.mktemp("mixed"))
    _write_colours(folder, grey_at=4, corrupt=True)
    return folder


@pytest.fixture(scope="module")
def prepared3(mixed_dir, tmp_path_factory) -> tuple[str, dict]:
    out = str(tmp_path_factory.mktemp("prep") / "three")
    info = prepare.prepare_shards(mixed_dir, out, num_shards=3, short_side=20, progress=False)
    return out, info


@pytest.fixture(scope="module")
def prepared4(colours_dir, tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp("prep") / "four")
    prepare.prepare_shards(colours_dir, out, num_shards=4, short_side=20, progress=False)
    return out


# --------------------------------------------------------------------------- writing


def test_round_trip_keeps_each_colour_image_once(prepared3, mixed_dir):
    out, returned = prepared3
    info = shards.read_info(out)
    assert info == returned  # prepare_shards returns what it wrote to prepared.json
    n = len(COLOURS)
    assert info["num_examples"] == n
    assert len(info["files"]) == 3 and len(info["examples"]) == 3
    assert sum(info["examples"]) == n
    # 9 records (8 colours + grey) split 3/3/3; the grey one is in the middle shard.
    assert info["examples"] == [3, 2, 3]
    assert info["files"] == [shards.shard_name("train", k, 3) for k in range(3)]
    assert info["short_side"] == 20
    assert [os.path.basename(p) for p in info["grey_left_out"]] == ["img_04.png"]
    assert len(info["skipped"]) == 1
    path, reason = info["skipped"][0]
    assert os.path.basename(path) == "broken.jpg" and reason.strip()
    # Only the shards and prepared.json are left (no sidecars, no temporary files).
    assert sorted(os.listdir(out)) == sorted(info["files"] + [shards.INFO_NAME])

    images = _all(data.build_dataset(out, training=False, image_size=S))
    assert images.shape == (n, S, S, 3)
    assert sorted(_identify(images)) == list(range(n))


def test_stored_size_is_the_shorter_side_never_enlarged(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray(_colour_noise(60, 90, seed=1)).save(src / "wide.png")
    Image.fromarray(_colour_noise(90, 60, seed=2)).save(src / "tall.png")
    Image.fromarray(_colour_noise(60, 90, seed=3)).save(src / "wide.jpg", quality=95)  # DCT-downscaled path
    Image.fromarray(_colour_noise(12, 17, seed=4)).save(src / "small.png")
    out = str(tmp_path / "out")
    info = prepare.prepare_shards(str(src), out, num_shards=1, short_side=20, progress=False)
    assert info["num_examples"] == 4
    stored = {}
    for name, h, w, jpeg in _records(out)[0]:
        decoded = tf.io.decode_jpeg(jpeg).numpy()
        assert decoded.shape == (h, w, 3)
        stored[os.path.basename(name.decode())] = (h, w)
    assert stored == {"wide.png": (20, 30), "tall.png": (30, 20), "wide.jpg": (20, 30), "small.png": (12, 17)}


def test_interrupted_preparation_resumes_with_the_missing_shards(prepared3, mixed_dir, tmp_path, monkeypatch, capsys):
    straight, straight_info = prepared3
    out = str(tmp_path / "resumed")

    def interrupted(*args, **kwargs):
        raise RuntimeError("interrupted before prepared.json")

    with monkeypatch.context() as m:
        m.setattr(prepare.shards_lib, "write_info", interrupted)
        with pytest.raises(RuntimeError, match="interrupted"):
            prepare.prepare_shards(mixed_dir, out, num_shards=3, short_side=20, progress=False)
    files = [shards.shard_name("train", k, 3) for k in range(3)]
    assert not os.path.exists(os.path.join(out, shards.INFO_NAME))
    assert not shards.is_prepared(out)
    for f in files:  # every shard finished, with its sidecar
        assert os.path.exists(os.path.join(out, f)) and os.path.exists(os.path.join(out, f + ".info.json"))
    # The last shard goes (written again from record 6 on); the kept middle one holds the
    # grey image, which the rerun learns from its sidecar.
    os.remove(os.path.join(out, files[2]))
    kept = {f: os.stat(os.path.join(out, f)) for f in files[:2]}

    # Other arguments than the unfinished run's: refused, nothing written.
    with pytest.raises(ValueError, match="other arguments"):
        prepare.prepare_shards(mixed_dir, out, num_shards=3, short_side=20, quality=80, progress=False)
    assert not os.path.exists(os.path.join(out, files[2]))

    info = prepare.prepare_shards(mixed_dir, out, num_shards=3, short_side=20, progress=False)
    assert info == straight_info
    assert shards.read_info(out) == shards.read_info(straight)
    assert _records(out) == _records(straight)
    for f, before in kept.items():  # not rewritten
        after = os.stat(os.path.join(out, f))
        assert (after.st_ino, after.st_mtime_ns, after.st_size) == (before.st_ino, before.st_mtime_ns, before.st_size)
    assert sorted(os.listdir(out)) == sorted(files + [shards.INFO_NAME])

    # A finished folder is not prepared again.
    with pytest.raises(FileExistsError, match="already holds prepared shards"):
        prepare.prepare_shards(mixed_dir, out, num_shards=3, short_side=20, progress=False)
    capsys.readouterr()
    assert prepare_cli.main([mixed_dir, out, "--short-side", "20", "--shards", "3", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "colourise-prepare: error:" in err and out in err


def test_prepare_cli_writes_a_folder_build_dataset_reads(colours_dir, tmp_path, capsys):
    out = str(tmp_path / "cli")
    assert prepare_cli.main([colours_dir, out, "--image-size", "16", "--shards", "2", "--no-progress"]) == 0
    assert "wrote 8 images in 2 shard(s)" in capsys.readouterr().out
    info = shards.read_info(out)
    assert info["short_side"] == prepare.default_short_side(16) == 18
    assert max(min(h, w) for recs in _records(out) for _, h, w, _ in recs) == 18


def test_prepare_into_and_train_from_ram_filesystem(colours_dir):
    out = f"ram://colourise-shards-{uuid.uuid4().hex}/prep"
    try:
        info = prepare.prepare_shards(colours_dir, out, num_shards=2, short_side=20, progress=False)
        assert info["num_examples"] == len(COLOURS)
        assert shards.is_prepared(out)
        listed = sorted(n.rstrip("/") for n in tf.io.gfile.listdir(out))
        assert listed == sorted(info["files"] + [shards.INFO_NAME])
        ds = data.build_dataset(out, training=True, image_size=S, batch_size=4)
        batches = [b["image"].numpy() for b in ds.take(4)]
        assert all(b.shape == (4, S, S, 3) for b in batches)
        seen = set(_identify(np.concatenate(batches)))  # every image one of the colours
        # The endless stream is shuffled across epochs: no exact count per epoch, but
        # both shard files (colours 0-3 and 4-7) are read.
        assert seen & {0, 1, 2, 3} and seen & {4, 5, 6, 7}, seen
    finally:
        if tf.io.gfile.exists(out):
            tf.io.gfile.rmtree(out)


def test_prepare_a_tfds_split(tmp_path):
    """A real on-disk TFDS builder (64 noise images of 40x48): records keep TFDS's order
    and ids, shrunk to 20x24 with the pixels of a resize of the original."""
    import tensorflow_datasets as tfds

    namespace: dict = {}
    with tfds.core.registered.skip_registration():  # test_folder_decoding registers the name
        exec(TFDS_BUILDER, namespace)  # noqa: S102
    builder = namespace["ColouriseExitPhotos"](data_dir=str(tmp_path / "tfds"))
    builder.download_and_prepare()
    out = str(tmp_path / "out")
    info = prepare.prepare_shards(
        "colourise_exit_photos",
        out,
        split="train",
        data_dir=str(tmp_path / "tfds"),
        num_shards=2,
        short_side=20,
        progress=False,
    )
    assert info["examples"] == [32, 32] and info["grey_left_out"] == [] and info["skipped"] == []
    stored = [r for recs in _records(out) for r in recs]
    originals = list(builder.as_dataset(split="train", read_config=tfds.ReadConfig(add_tfds_id=True)))
    assert [r[0] for r in stored] == [o["tfds_id"].numpy() for o in originals]
    for (_, h, w, jpeg), original in zip(stored, originals):
        assert (h, w) == (20, 24)
        resized = prepare._resize_shorter(original["image"], 20)
        # The same JPEG encoding of the resized original gives the same bytes.
        assert jpeg == tf.io.encode_jpeg(resized, quality=95, chroma_downsampling=False).numpy()
        # (JPEG of noise: ~3 levels off on average; another image would be ~40.)
        got = tf.io.decode_jpeg(jpeg).numpy().astype(int)
        assert np.abs(got - resized.numpy().astype(int)).mean() < 6


# --------------------------------------------------------------------------- reading


def _ctx(n: int, i: int) -> tf.distribute.InputContext:
    return tf.distribute.InputContext(num_input_pipelines=n, input_pipeline_id=i, num_replicas_in_sync=n)


@pytest.mark.parametrize("kind", ["prepared", "folder"])
def test_input_pipelines_read_disjoint_files(kind, prepared4, colours_dir):
    source = prepared4 if kind == "prepared" else colours_dir
    if kind == "prepared":
        assert len(shards.read_info(source)["files"]) == 4
    parts = []
    for i in range(2):
        ds = data.build_dataset(
            source, training=False, repeat=False, image_size=S, batch_size=3, input_context=_ctx(2, i)
        )
        parts.append(_identify(_all(ds)))
    assert all(parts)
    assert not set(parts[0]) & set(parts[1])
    assert sorted(parts[0] + parts[1]) == list(range(len(COLOURS)))


def test_fewer_files_than_input_pipelines_is_an_error(colours_dir, tmp_path):
    one_shard = str(tmp_path / "one")
    prepare.prepare_shards(colours_dir, one_shard, num_shards=1, short_side=20, progress=False)
    single = tmp_path / "single"
    single.mkdir()
    Image.fromarray(_flat(24, 30, COLOURS[0])).save(single / "a.png")
    for source in (one_shard, str(single)):
        for training in (False, True):
            with pytest.raises(ValueError, match=r"has 1 file\(s\), fewer than the 2 input pipelines"):
                data.build_dataset(source, training=training, image_size=S, batch_size=1, input_context=_ctx(2, 1))


@pytest.fixture(scope="module")
def textured(tmp_path_factory) -> tuple[str, str]:
    """Eight noise images (crop position and flip change the pixels): a folder and its
    prepared shards (4 files)."""
    folder = tmp_path_factory.mktemp("textured")
    for i in range(8):
        Image.fromarray(_colour_noise(26 + i, 34 - i, seed=10 + i)).save(folder / f"n{i}.png")
    out = str(tmp_path_factory.mktemp("prep") / "textured")
    prepare.prepare_shards(str(folder), out, num_shards=4, short_side=20, progress=False)
    return str(folder), out


@pytest.mark.parametrize("kind", ["prepared", "folder"])
def test_skip_batches_continues_where_the_straight_run_is(kind, textured):
    source = textured[1] if kind == "prepared" else textured[0]

    def batches(skip: int, count: int):
        ds = data.build_dataset(
            source, training=True, image_size=S, batch_size=2, masks=True, seed=5, skip_batches=skip
        )
        return [{k: v.numpy() for k, v in b.items()} for b in ds.take(count)]

    straight = batches(0, 5)  # 4 batches an epoch: batches 3 and 4 cross into epoch 2
    resumed = batches(3, 2)
    for want, got in zip(straight[3:], resumed):
        np.testing.assert_array_equal(got["image"], want["image"])
        np.testing.assert_array_equal(got["mask"], want["mask"])
    # The comparison can fail: other batches differ.
    assert not np.array_equal(straight[0]["image"], straight[3]["image"])


def test_skip_batches_must_not_be_negative(prepared4):
    with pytest.raises(ValueError, match="skip_batches"):
        data.build_dataset(prepared4, image_size=S, skip_batches=-1)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("masks", [False, True])
def test_prepared_shards_graph_has_no_python_and_decodes_windows(prepared4, training, masks):
    ds = data.build_dataset(prepared4, training=training, masks=masks, image_size=S, batch_size=2)
    types = _graph_op_types(ds)
    assert not types & PY_OPS, types
    assert "DecodeAndCropJpeg" in types  # window first
    assert "TFRecordDataset" in types or "TFRecordDatasetV2" in types


def test_an_input_pipeline_without_a_colour_image_fails_instead_of_waiting(tmp_path):
    """Grey files sorted first: a shard range of grey images only is left out when
    preparing, and a folder pipeline whose share is grey raises instead of hanging."""
    from PIL import Image

    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(5)
    for i in range(2):
        Image.new("RGB", (24, 24), (90 + i, 90 + i, 90 + i)).save(src / f"a_grey{i}.png")
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(src / f"b_colour{i}.png")
    out = str(tmp_path / "out")
    info = prepare.prepare_shards(str(src), out, num_shards=2, short_side=20, progress=False)
    assert info["examples"] == [2] and len(info["files"]) == 1 and len(os.listdir(out)) == 2
    assert sorted(os.path.basename(p) for p in info["grey_left_out"]) == ["a_grey0.png", "a_grey1.png"]
    # Folder: every other file per pipeline; pipeline 0 of 2 gets a_grey0 and b_colour0,
    # pipeline 0 of 2 over a grey/colour/grey/colour order gets the grey ones only.
    order = tmp_path / "order"
    order.mkdir()
    for i, name in enumerate(["a_grey0.png", "b_colour0.png", "a_grey1.png", "b_colour1.png"]):
        (order / f"{i}_{name}").write_bytes((src / name).read_bytes())
    ctx = tf.distribute.InputContext(2, 0, 2)
    with pytest.raises(data.NoUsableImagesError, match="no usable colour image"):
        data.build_dataset(str(order), image_size=16, batch_size=1, training=True, input_context=ctx)
    batch = next(
        iter(
            data.build_dataset(
                str(order),
                image_size=16,
                batch_size=1,
                training=True,
                input_context=tf.distribute.InputContext(2, 1, 2),
            )
        )
    )
    assert batch["image"].shape == (1, 16, 16, 3)


def test_raw_encoding_stores_the_resized_pixels_and_trains_like_jpeg(tmp_path):
    """``encoding=raw`` stores exactly the pixels the JPEG shards encode (decoded JPEG
    within compression error), and the two give the same training batches up to it."""
    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(11)
    for i in range(4):
        smooth = np.kron(rng.integers(0, 256, (2, 3, 3)), np.ones((24, 24, 1))).astype(np.uint8)
        Image.fromarray(smooth).save(src / f"{i}.png")  # 48x72, 2x3 flat blocks
    raw, jpeg = str(tmp_path / "raw"), str(tmp_path / "jpeg")
    info = prepare.prepare_shards(str(src), raw, short_side=24, encoding="raw", progress=False)
    prepare.prepare_shards(str(src), jpeg, short_side=24, quality=98, progress=False)
    assert info["encoding"] == "raw" and shards.read_info(jpeg)["encoding"] == "jpeg"
    for (name_r, h, w, pixels), (name_j, hj, wj, encoded) in zip(_records(raw)[0], _records(jpeg)[0]):
        assert (name_r, h, w) == (name_j, hj, wj) == (name_r, 24, 36)
        assert len(pixels) == h * w * 3
        stored = np.frombuffer(pixels, np.uint8).reshape(h, w, 3).astype(int)
        assert np.abs(stored - tf.io.decode_jpeg(encoded).numpy().astype(int)).mean() < 3
    a = next(iter(data.build_dataset(raw, image_size=16, batch_size=4)))["image"].numpy().astype(int)
    b = next(iter(data.build_dataset(jpeg, image_size=16, batch_size=4)))["image"].numpy().astype(int)
    assert np.abs(a - b).mean() < 3
    with pytest.raises(ValueError, match="encoding"):
        prepare.prepare_shards(str(src), str(tmp_path / "bad"), encoding="png", progress=False)


@pytest.mark.parametrize("training", [True, False])
def test_resize_on_device_gives_the_host_batches(tmp_path, training):
    """Prepared shards with ``resize_on_device``: padded windows + their sides, which
    ``resize_crops`` (matmuls, any device) turns into the host pipeline's batches."""
    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(12)
    for i, (h, w) in enumerate([(40, 60), (60, 40), (30, 30), (12, 20), (44, 44), (40, 52)]):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(src / f"{i}.png")
    out = str(tmp_path / "raw")
    prepare.prepare_shards(str(src), out, short_side=18, encoding="raw", progress=False)
    kwargs = dict(image_size=16, batch_size=6, training=training, repeat=True, masks=True)
    host = iter(data.build_dataset(out, **kwargs))
    device = iter(data.build_dataset(out, resize_on_device=True, **kwargs))
    sides = set()
    for _ in range(4):
        want, got = next(host), next(device)
        assert got["image"].shape == (6, 18, 18, 3) and got["crop_size"].dtype == tf.int32
        sides |= set(got["crop_size"].numpy().tolist())
        resized = data.resize_crops(got["image"], got["crop_size"], 16).numpy().astype(int)
        diff = np.abs(resized - want["image"].numpy().astype(int))
        assert diff.max() <= 1 and (diff > 0).mean() < 0.01
        np.testing.assert_array_equal(got["mask"].numpy(), want["mask"].numpy())
    assert min(sides) < 16 and max(sides) > 16 if training else sides <= {12, 16, 18}
    # Folders are resized on the host whatever the flag says.
    folder = next(iter(data.build_dataset(str(src), resize_on_device=True, **kwargs)))
    assert folder["image"].shape == (6, 16, 16, 3) and "crop_size" not in folder


def test_training_reads_prepared_shards_and_resizes_on_the_device(prepared4, tmp_path):
    """Two replicas, per-replica input from prepared shards, windows resized in the
    training step, two steps per call."""
    import json

    from colourise_tf import config as config_lib
    from colourise_tf.training.loop import run_training
    from colourise_tf.training.runtime import make_strategy

    cfg = config_lib.apply_overrides(
        config_lib.get_preset("tiny"),
        [
            f"data.dataset={prepared4}",
            "data.batch_size=4",
            "data.resize_on_device=on",
            "train.steps=4",
            "train.steps_per_loop=2",
            "train.log_every=2",
            "train.image_every=4",
            "train.checkpoint_every=4",
        ],
    )
    result = run_training(cfg, tmp_path / "run", strategy=make_strategy("mirrored", cpu_replicas=2), progress=False)
    assert result.final_step == 4 and all(np.isfinite(v) for v in result.last_metrics.values())
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["replicas"] == 2 and summary["final_step"] == 4
