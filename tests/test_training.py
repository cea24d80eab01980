"""The GAN step, resume, distribution, NaN guard, TensorBoard and the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import train_command

from colourise_tf import config as config_lib

REPO = Path(__file__).resolve().parents[1]

FAST = [
    "train.log_every=1",
    "train.image_every=2",
    "train.checkpoint_every=2",
    "data.batch_size=2",
    "data.shuffle_buffer=16",
    "train.precision=float32",
]


def tiny(*overrides: str) -> config_lib.ExperimentConfig:
    return config_lib.apply_overrides(config_lib.get_preset("tiny"), FAST + list(overrides))


def _generator_weights(workdir: Path) -> dict[str, np.ndarray]:
    """Reads the generator variables of the latest checkpoint by name."""
    ckpt = tf.train.latest_checkpoint(str(workdir / "checkpoints"))
    reader = tf.train.load_checkpoint(ckpt)
    return {
        k: reader.get_tensor(k)
        for k in reader.get_variable_to_shape_map()
        if k.startswith("generator/") and "OPTIMIZER_SLOT" not in k
    }


def _run_cli(workdir: Path, *args: str, env_extra=None, timeout=600) -> subprocess.CompletedProcess:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_DETERMINISTIC_OPS="1", **(env_extra or {}))
    cmd = train_command(workdir, *FAST, *args)
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def test_tiny_run_trains_and_writes_run_directory(tmp_path):
    from colourise_tf.training.loop import run_training

    cfg = tiny("train.steps=3")
    result = run_training(cfg, tmp_path, strategy="default", progress=False)
    assert result.final_step == 3
    m = result.last_metrics
    for key in ("loss/g_total", "loss/g_reconstruction", "loss/g_adversarial", "loss/d_total"):
        assert key in m and np.isfinite(m[key]), key
    # g_total is the sum of its weighted terms.
    terms = sum(v for k, v in m.items() if k.startswith("loss/g_") and k != "loss/g_total")
    assert m["loss/g_total"] == pytest.approx(terms, rel=1e-5)
    assert 0.0 <= m["d_accuracy_real/scale0"] <= 1.0
    # Resolved config written and identical when reloaded.
    assert config_lib.load_config(tmp_path / "config.json") == cfg
    # Samples grid: rows of grey | generated | real at model size.
    from PIL import Image

    grid = Image.open(tmp_path / "samples.png")
    s = cfg.model.image_size
    assert grid.size[0] == 3 * s and grid.size[1] % s == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["final_step"] == 3


def test_tensorboard_event_files_hold_every_term(tmp_path):
    from colourise_tf.training.loop import run_training

    run_training(tiny("train.steps=2"), tmp_path, strategy="default", progress=False)
    tags = set()
    for event_file in (tmp_path / "logs").glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(event_file)):
            for v in event.summary.value:
                tags.add(v.tag)
    expected = {
        "loss/g_total",
        "loss/g_adversarial",
        "loss/g_reconstruction",
        "loss/d_total",
        "d_accuracy_real/scale0",
        "d_accuracy_fake/scale0",
        "lr/generator",
        "lr/discriminator",
        "throughput/images_per_second",
        "samples/grey|generated|real",
        "chroma/a_generated",
        "chroma/b_real",
    }
    assert expected <= tags, expected - tags
    # One record per tag and step: the end-of-run grid is not written twice.
    seen = []
    for event_file in (tmp_path / "logs").glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(event_file)):
            seen += [(v.tag, event.step) for v in event.summary.value]
    assert len(seen) == len(set(seen)), sorted(x for x in seen if seen.count(x) > 1)


def test_weights_change_and_step_counts(tmp_path):
    from colourise_tf.training.loop import run_training

    run_training(tiny("train.steps=2"), tmp_path / "a", strategy="default", progress=False)
    w2 = _generator_weights(tmp_path / "a")
    run_training(tiny("train.steps=4"), tmp_path / "a", strategy="default", progress=False)
    w4 = _generator_weights(tmp_path / "a")
    assert set(w2) == set(w4) and w2
    changed = [k for k in w2 if not np.allclose(w2[k], w4[k])]
    assert changed, "no generator variable changed in two more steps"
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(tmp_path / "a" / "checkpoints")))
    step_keys = [k for k in reader.get_variable_to_shape_map() if k.startswith("step/")]
    assert int(reader.get_tensor(step_keys[0])) == 4


def test_resume_in_new_process_matches_straight_run(tmp_path):
    """4 steps straight == 2 steps, a new process, 2 more steps (deterministic ops)."""
    straight = _run_cli(tmp_path / "straight", "train.steps=4")
    assert straight.returncode == 0, straight.stderr[-3000:]
    first = _run_cli(tmp_path / "resumed", "train.steps=2")
    assert first.returncode == 0, first.stderr[-3000:]
    second = _run_cli(tmp_path / "resumed", "train.steps=4")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resuming" in second.stderr
    assert "input resumes from the iterator saved in the checkpoint" in second.stderr
    assert "TensorFlow CPU threads:" in second.stderr
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(tmp_path / "resumed" / "checkpoints")))
    assert any(k.startswith("iterator/") for k in reader.get_variable_to_shape_map())
    a = _generator_weights(tmp_path / "straight")
    b = _generator_weights(tmp_path / "resumed")
    assert set(a) == set(b)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6, err_msg=k)
    sa = json.loads((tmp_path / "straight" / "summary.json").read_text())
    sb = json.loads((tmp_path / "resumed" / "summary.json").read_text())
    assert sa["final_step"] == sb["final_step"] == 4
    assert sb["start_step"] == 2


def test_nan_loss_stops_with_clear_message_and_keeps_checkpoint(tmp_path, monkeypatch):
    from colourise_tf import losses
    from colourise_tf.training.loop import NonFiniteLossError, run_training

    run_training(tiny("train.steps=2"), tmp_path, strategy="default", progress=False)
    before = _generator_weights(tmp_path)
    latest = tf.train.latest_checkpoint(str(tmp_path / "checkpoints"))

    def nan_l1(y_true, y_pred, *args, **kwargs):
        return tf.reduce_mean(tf.abs(y_true - y_pred)) * np.float32("nan")

    monkeypatch.setattr(losses, "l1_loss", nan_l1)
    with pytest.raises(NonFiniteLossError, match=r"loss/g_reconstruction.*step 3"):
        run_training(tiny("train.steps=4"), tmp_path, strategy="default", progress=False)
    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")) == latest
    after = _generator_weights(tmp_path)
    for k in before:
        np.testing.assert_array_equal(before[k], after[k])


def test_non_finite_weights_are_never_checkpointed(tmp_path, monkeypatch):
    """A finite loss whose gradient is NaN poisons the weights: the step's checkpoint is
    refused, so the last checkpoint on disk stays the last good one."""
    from colourise_tf import losses
    from colourise_tf.training.loop import NonFiniteLossError, run_training

    run_training(tiny("train.steps=2"), tmp_path, strategy="default", progress=False)
    before = _generator_weights(tmp_path)
    latest = tf.train.latest_checkpoint(str(tmp_path / "checkpoints"))

    def nan_gradient_l1(y_true, y_pred, *args, **kwargs):
        # sqrt(0 * x) is 0, but its gradient is inf * 0 = NaN.
        return tf.reduce_mean(tf.sqrt(tf.abs(y_true - y_pred) * 0.0))

    monkeypatch.setattr(losses, "l1_loss", nan_gradient_l1)
    with pytest.raises(NonFiniteLossError, match=r"non-finite weights after step 3.*left untouched"):
        run_training(tiny("train.steps=4", "train.checkpoint_every=1"), tmp_path, strategy="default", progress=False)
    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")) == latest
    after = _generator_weights(tmp_path)
    for k in before:
        assert np.isfinite(after[k]).all(), k
        np.testing.assert_array_equal(before[k], after[k])


def test_resume_refuses_other_model_or_data_settings_and_applies_new_learning_rates(tmp_path):
    from colourise_tf.training.loop import ResumeMismatchError, run_training

    run_training(tiny("train.steps=2"), tmp_path, strategy="default", progress=False)
    saved_config = (tmp_path / "config.json").read_text()
    latest = tf.train.latest_checkpoint(str(tmp_path / "checkpoints"))
    for change, names in [
        (["model.generator.filters=4,8,8,8"], "model.generator.filters"),
        (["data.batch_size=4", "model.num_scales=2"], "model.num_scales.*data.batch_size"),
    ]:
        with pytest.raises(ResumeMismatchError, match=names):
            run_training(tiny("train.steps=4", *change), tmp_path, strategy="default", progress=False)
        assert (tmp_path / "config.json").read_text() == saved_config  # left as it was
        assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")) == latest
    # The data's location, loss weights and learning rates may change on resume.
    result = run_training(
        tiny("train.steps=3", "optim.gen_lr=1e-5", "data.data_dir=/elsewhere", "loss.reconstruction_weight=50"),
        tmp_path,
        strategy="default",
        progress=False,
    )
    assert result.start_step == 2 and result.final_step == 3
    lrs = {}
    for event_file in (tmp_path / "logs").glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(event_file)):
            for v in event.summary.value:
                if v.tag == "lr/generator":
                    lrs[event.step] = float(tf.make_ndarray(v.tensor))
    assert lrs[2] == pytest.approx(2e-4) and lrs[3] == pytest.approx(1e-5)
    assert config_lib.load_config(tmp_path / "config.json").optim.gen_lr == 1e-5


def test_cli_accepts_overrides_between_options():
    from colourise_tf.cli.train import build_parser, resolve_config

    args = build_parser().parse_intermixed_args(
        ["--preset", "tiny", "train.steps=7", "--workdir", "w", "data.batch_size=3", "--no-progress"]
    )
    cfg = resolve_config(args)
    assert cfg.train.steps == 7 and cfg.data.batch_size == 3 and args.workdir == "w"


def test_cli_flag_and_override_of_one_field_must_agree(tmp_path, capsys):
    """--steps 5 train.steps=6 is refused (neither silently wins); equal values are fine."""
    from colourise_tf.cli.train import build_parser, main, resolve_config

    def resolved(*argv):
        return resolve_config(build_parser().parse_intermixed_args(["--preset", "tiny", *argv]))

    assert resolved("--steps", "5", "train.steps=5").train.steps == 5
    assert resolved("--precision", "float32", "train.precision=float32").train.precision == "float32"
    with pytest.raises(ValueError, match="--steps 5 and train.steps=6 disagree"):
        resolved("--steps", "5", "train.steps=6")
    with pytest.raises(ValueError, match="--data-dir /a and data.data_dir=/b disagree"):
        resolved("--data-dir", "/a", "data.data_dir=/b")
    assert main(["--preset", "tiny", "--workdir", str(tmp_path / "w"), "--steps", "5", "train.steps=6"]) == 2
    assert "disagree" in capsys.readouterr().err and not (tmp_path / "w").exists()


def test_imagenet_presets_follow_the_seed_split_unless_the_dataset_changes():
    from colourise_tf.cli.train import build_parser, resolve_config

    def resolved(*argv):
        return resolve_config(build_parser().parse_intermixed_args(["--preset", "gorriz-ibn-sn-md", *argv])).data

    d = resolved()
    assert (d.dataset, d.split, d.eval_split) == ("imagenet2012", "gorriz-train", "gorriz-test")
    d = resolved("--dataset", "imagenet2012", "--manual-dir", "/m")
    assert (d.split, d.eval_split, d.manual_dir) == ("gorriz-train", "gorriz-test", "/m")
    d = resolved("--dataset", "cifar10")  # ImageNet's protocol does not carry over
    assert (d.dataset, d.split, d.eval_split) == ("cifar10", "train", None)
    d = resolved("data.dataset=cifar10")  # the same through an override
    assert (d.dataset, d.split, d.eval_split) == ("cifar10", "train", None)
    assert resolved("data.dataset=cifar10", "data.eval_split=test").eval_split == "test"
    assert resolved("--dataset", "cifar10", "--split", "test").split == "test"
    assert resolved("--dataset", "cifar10", "data.split=train[:50%]").split == "train[:50%]"
    assert resolved("--dataset", "cifar10", "data.split = test").split == "test"  # spaced like the parser allows
    assert resolved("--dataset", "cifar10", " data.eval_split = test").eval_split == "test"


def _two_cpus():
    return len(tf.config.list_logical_devices("CPU")) >= 2


@pytest.mark.skipif(not _two_cpus(), reason="needs two logical CPUs (conftest)")
def test_mirrored_two_replicas_equals_single_replica_update():
    """Losses averaged over the global batch: 2 replicas x 2 images == 1 x 4 images.

    Instance norm and no dropout make the forward pass independent of how the batch
    is split, so one step must give the same weights either way.
    """
    import keras

    from colourise_tf.training.runtime import make_strategy
    from colourise_tf.training.trainer import GANTrainer

    cfg = tiny(
        "data.batch_size=4",
        "model.generator.norm=instance",
        "model.discriminator.norm=instance",
        "model.generator.dropout=0.0",
        "model.generator.spectral_norm=false",
        "model.discriminator.spectral_norm=false",
    )
    rng = np.random.default_rng(0)
    s = cfg.model.image_size
    batch = {"image": tf.constant(rng.integers(0, 256, (4, s, s, 3), dtype=np.uint8))}

    def one_step(strategy):
        keras.utils.set_random_seed(7)
        trainer = GANTrainer(cfg, strategy)
        ds = tf.data.Dataset.from_tensors(batch).unbatch().batch(4)
        dist = strategy.experimental_distribute_dataset(ds)
        metrics = trainer.train_step(next(iter(dist)))
        return [v.numpy() for v in trainer.generator.trainable_variables], {k: float(v) for k, v in metrics.items()}

    mirrored = make_strategy("mirrored", cpu_replicas=2)
    assert mirrored.num_replicas_in_sync == 2
    w_single, m_single = one_step(tf.distribute.get_strategy())
    w_multi, m_multi = one_step(mirrored)
    assert m_multi["loss/g_total"] == pytest.approx(m_single["loss/g_total"], rel=1e-4)
    for a, b in zip(w_single, w_multi):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.skipif(not _two_cpus(), reason="needs two logical CPUs (conftest)")
@pytest.mark.parametrize("batch", [4, 5, 3])
def test_host_fed_split_equals_distribute_dataset_split(batch):
    """The host-fed input splits a global batch as experimental_distribute_dataset does."""
    from colourise_tf.training.loop import _split_over_replicas
    from colourise_tf.training.runtime import make_strategy

    strategy = make_strategy("mirrored", cpu_replicas=2)
    x = {"image": tf.reshape(tf.range(batch * 3), [batch, 3]), "mask": tf.ones([batch, 1])}
    ref = next(iter(strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensors(x))))
    got = _split_over_replicas(strategy, x)
    for key in x:
        a = strategy.experimental_local_results(ref[key])
        b = strategy.experimental_local_results(got[key])
        assert len(a) == len(b) == 2
        for p, q, device in zip(a, b, strategy.extended.worker_devices):
            np.testing.assert_array_equal(p.numpy(), q.numpy())
            assert q.device == p.device == tf.DeviceSpec.from_string(device).to_string()


@pytest.mark.skipif(not _two_cpus(), reason="needs two logical CPUs (conftest)")
@pytest.mark.parametrize("input_distribution", ["host", "per_replica"])
def test_mirrored_resume_continues_the_input_exactly(tmp_path, caplog, input_distribution):
    """Two replicas: 4 steps straight == 2 steps then 2 more. Host-split input resumes
    from the iterator saved in the checkpoint; per-replica input (whose distributed
    iterator cannot be saved) by skipping the batches its pipeline had read."""
    from colourise_tf.training.loop import run_training
    from colourise_tf.training.runtime import make_strategy

    strategy = make_strategy("mirrored", cpu_replicas=2)
    assert strategy.num_replicas_in_sync == 2
    cfg = lambda steps: tiny(  # noqa: E731
        f"train.steps={steps}",
        "data.batch_size=4",
        "train.deterministic_ops=true",
        f"train.input_distribution={input_distribution}",
    )
    run_training(cfg(4), tmp_path / "straight", strategy=strategy, progress=False)
    run_training(cfg(2), tmp_path / "resumed", strategy=strategy, progress=False)
    with caplog.at_level("INFO", logger="colourise_tf.training"):
        result = run_training(cfg(4), tmp_path / "resumed", strategy=strategy, progress=False)
    assert result.start_step == 2 and result.final_step == 4
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(tmp_path / "resumed" / "checkpoints")))
    saved = any(k.startswith("iterator/") for k in reader.get_variable_to_shape_map())
    if input_distribution == "host":
        assert "input resumes from the iterator saved in the checkpoint" in caplog.text and saved
    else:
        assert "input resumes by skipping the first 2 steps' batches" in caplog.text and not saved
        assert "input: per replica" in caplog.text
    a, b = _generator_weights(tmp_path / "straight"), _generator_weights(tmp_path / "resumed")
    assert set(a) == set(b) and a
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6, err_msg=k)


def test_sigterm_writes_checkpoint_and_resume_continues(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    cmd = train_command(tmp_path, *FAST, "train.steps=100000", "train.checkpoint_every=100000")
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    logs = tmp_path / "logs"
    deadline = time.time() + 240
    # Wait until training is under way (an event file with data).
    while time.time() < deadline and proc.poll() is None:
        files = list(logs.glob("events.out.tfevents.*")) if logs.exists() else []
        if files and files[0].stat().st_size > 2000:
            break
        time.sleep(0.5)
    assert proc.poll() is None, proc.communicate()[1][-3000:]
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 130, err[-3000:]
    reached = json.loads((tmp_path / "summary.json").read_text())["final_step"]
    assert reached >= 1
    ckpt = tf.train.latest_checkpoint(str(tmp_path / "checkpoints"))
    assert ckpt is not None and ckpt.endswith(f"-{reached}")


def test_cli_lists_presets_and_rejects_bad_override(tmp_path):
    from colourise_tf.cli.train import main

    assert main(["--list-presets"]) == 0
    assert main(["--preset", "tiny", "--workdir", str(tmp_path), "model.no_such_field=1"]) == 2
    assert main(["--preset", "no-such-preset", "--workdir", str(tmp_path)]) == 2


def test_cli_errors_found_while_starting_are_one_line_exit_2(tmp_path, capsys, monkeypatch):
    from colourise_tf.cli.train import main

    monkeypatch.delenv("TF_CONFIG", raising=False)
    args = ["--preset", "tiny", "--no-progress", *FAST]
    assert main([*args, "--workdir", str(tmp_path / "a"), "--strategy", "multiworker"]) == 2
    err = capsys.readouterr().err
    assert "colourise-train: strategy 'multiworker' needs the TF_CONFIG" in err and "Traceback" not in err
    assert main([*args, "--workdir", str(tmp_path / "b"), "train.steps=1"]) == 0
    capsys.readouterr()
    assert main([*args, "--workdir", str(tmp_path / "b"), "train.steps=2", "model.generator.filters=4,4,4,4"]) == 2
    err = capsys.readouterr().err
    assert "cannot resume" in err and "model.generator.filters" in err and "Traceback" not in err


def test_segmentation_presets_without_labels_are_a_clear_error(tmp_path, capsys):
    from colourise_tf.cli.train import main

    code = main(
        [
            "--preset",
            "tarres-seg-shared",
            "--workdir",
            str(tmp_path / "seg"),
            "--no-progress",
            "model.generator.filters=4,4,4,4,4,4,4",
            "model.image_size=128",
            "train.steps=1",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "data.segmentation_key" in err and "Traceback" not in err
    assert not (tmp_path / "seg").exists()  # nothing created for a run that cannot start


def test_cli_rejects_an_image_size_the_networks_cannot_run_at(tmp_path, capsys):
    from colourise_tf.cli.train import main

    run = tmp_path / "run"
    assert main(["--preset", "gorriz-ibn-sn-md", "--workdir", str(run), "model.image_size=64"]) == 2
    err = capsys.readouterr().err
    assert "model.image_size=64" in err and "multiple of 128" in err and "Traceback" not in err
    assert not run.exists()  # rejected before anything is written


def test_cli_training_on_unusable_images_exits_with_a_message(tmp_path, capsys):
    from colourise_tf.cli.train import main

    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "empty.jpg").write_bytes(b"")
    code = main(["--preset", "tiny", "--dataset", str(photos), "--workdir", str(tmp_path / "run"), "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert "no usable colour image" in err and "empty.jpg" in err and "Traceback" not in err


def _expected_loss_terms(cfg) -> set[str]:
    """The ``loss/g_*`` terms a config's step must report, from the config alone."""
    lc, m = cfg.loss, cfg.model
    terms = {"total"}
    if lc.reconstruction_weight > 0:
        terms.add("reconstruction")
    if lc.adversarial != "none":
        terms.add("adversarial")
    if lc.feature_weight > 0:
        terms.add("feature")
    if lc.mask_weight > 0 and m.mask_channel:
        terms.add("mask")
    if m.n_classes:
        terms.add("segmentation")
    return terms


@pytest.mark.large
@pytest.mark.parametrize("name", config_lib.list_presets())
def test_every_preset_runs_one_step(tmp_path, name):
    """Each preset's loss wiring at its native resolution and depth (8 filters per layer:
    the wiring does not depend on the widths, and 19 full-width models in one process
    outgrow a 24 GiB machine). One step on a batch (with per-pixel labels and a mask
    where the preset needs them): every loss term its config asks for is reported and
    finite, D's loss comes with a discriminator, and G's (and D's) weights moved. Then,
    for the presets the bundled photos can train, one step through the training loop
    (data pipeline, masks, checkpoint, summary) reports the same terms."""
    import gc

    from test_models import reduced

    from colourise_tf import losses
    from colourise_tf.training.loop import run_training
    from colourise_tf.training.trainer import GANTrainer

    keras.backend.clear_session()
    gc.collect()
    cfg = config_lib.apply_overrides(
        reduced(name),
        ["train.steps=1", "data.batch_size=2", "train.precision=float32", "data.dataset=samples"],
    )
    kwargs = {}
    if cfg.loss.feature_weight > 0:
        kwargs["feature_model"] = losses.make_feature_reconstruction_loss(
            backbone=cfg.loss.feature_backbone, layer=cfg.loss.feature_layer, weights=None
        )
    expected = _expected_loss_terms(cfg)

    def check(metrics: dict) -> None:
        reported = {k.removeprefix("loss/g_") for k in metrics if k.startswith("loss/g_")}
        assert reported == expected, (name, sorted(metrics))
        assert ("loss/d_total" in metrics) == (cfg.loss.adversarial != "none")
        assert all(np.isfinite(float(v)) for v in metrics.values()), metrics

    keras.utils.set_random_seed(0)
    trainer = GANTrainer(cfg, **kwargs)
    nets = [trainer.generator] + ([trainer.discriminator] if trainer.discriminator is not None else [])
    before = [[v.numpy() for v in net.trainable_variables] for net in nets]
    s, rng = cfg.model.image_size, np.random.default_rng(0)
    batch = {"image": tf.constant(rng.integers(0, 256, (2, s, s, 3), dtype=np.uint8))}
    if cfg.model.n_classes:
        batch["segmentation"] = tf.constant(rng.integers(0, cfg.model.n_classes, (2, s, s), dtype=np.int32))
    if cfg.model.mask_channel:
        batch["mask"] = tf.constant((rng.random((2, s, s, 1)) < 0.3).astype(np.float32))
    check(trainer.train_step(batch))
    for net, old in zip(nets, before):
        moved = [np.abs(v.numpy() - o).max() > 0 for v, o in zip(net.trainable_variables, old)]
        assert any(moved), f"{net.name} did not move"

    if not cfg.model.n_classes:  # the bundled photos have no per-pixel labels
        result = run_training(cfg, tmp_path / name, strategy="default", progress=False, **kwargs)
        assert result.final_step == 1
        check(result.last_metrics)
        assert (tmp_path / name / "checkpoints").is_dir() and (tmp_path / name / "summary.json").is_file()


def _free_ports(n):
    import socket

    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def _start_workers(tmp_path, ports, *args):
    """Two ``colourise-train --strategy multiworker`` processes of the tiny preset."""
    workers = [f"127.0.0.1:{p}" for p in ports]
    procs = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_CONFIG=json.dumps(tf_config))
        cmd = train_command(tmp_path, "--strategy", "multiworker", *FAST, *args)
        procs.append(
            subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        )
    return procs


@pytest.mark.large
def test_multiworker_two_local_processes(tmp_path):
    """MultiWorkerMirroredStrategy from TF_CONFIG: two workers on 127.0.0.1. With precision
    auto: resolving it must not start TensorFlow before the collectives are configured."""
    procs = _start_workers(tmp_path, _free_ports(2), "train.steps=2", "train.precision=auto")
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["final_step"] == 2 and summary["replicas"] == 2
    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")).endswith("-2")
    assert not list(tmp_path.glob(".scratch_*")), "non-chief scratch directory left behind"


@pytest.mark.large
def test_multiworker_preemption_saves_on_every_worker_and_resumes(tmp_path):
    """SIGTERM to one of two workers (a pre-empted VM): through
    ``PreemptionCheckpointHandler`` both agree on a step, save, and exit with 130;
    restarted, the run resumes from that checkpoint and finishes."""
    procs = _start_workers(
        tmp_path, _free_ports(2), "train.steps=100000", "train.checkpoint_every=100000", "train.image_every=100000"
    )
    logs = tmp_path / "logs"
    deadline = time.time() + 300
    while time.time() < deadline and not (logs.is_dir() and any(logs.iterdir())):
        assert all(p.poll() is None for p in procs), [p.communicate()[1][-2000:] for p in procs]
        time.sleep(1)
    time.sleep(5)  # a few steps in
    procs[1].send_signal(signal.SIGTERM)
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [130, 130], [err[-2000:] for _, err in outs]
    latest = tf.train.latest_checkpoint(str(tmp_path / "checkpoints"))
    saved = int(latest.rsplit("-", 1)[1])
    assert 0 < saved < 100000
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["interrupted"] and summary["final_step"] == saved

    procs = _start_workers(tmp_path, _free_ports(2), f"train.steps={saved + 2}", "optim.gen_lr=0.0005")
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outs]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert (summary["start_step"], summary["final_step"]) == (saved, saved + 2)
    # The new learning rate applies (the handler's own restore must not bring the old one back).
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(tmp_path / "checkpoints")))
    lr_keys = [k for k in reader.get_variable_to_shape_map() if k.startswith("g_opt/") and "learning_rate" in k]
    assert lr_keys and reader.get_tensor(lr_keys[0]) == pytest.approx(0.0005)
    assert not list(tmp_path.glob("workertemp_*")) and not list(tmp_path.glob(".scratch_*"))


def test_bfloat16_run_trains_and_leaves_the_global_policy_alone(tmp_path):
    """A mixed_bfloat16 run: finite losses, float32 master weights in the checkpoint,
    the concrete policy in summary.json, and the caller's dtype policy restored."""
    import keras

    from colourise_tf.training.loop import run_training

    keras.mixed_precision.set_global_policy("float32")
    cfg = tiny(
        "train.steps=2", "train.precision=mixed_bfloat16", "model.generator.norm=ibn", "model.discriminator.norm=ibn"
    )
    result = run_training(cfg, tmp_path, strategy="default", progress=False)
    assert keras.mixed_precision.global_policy().name == "float32"
    assert all(np.isfinite(v) for v in result.last_metrics.values())
    assert json.loads((tmp_path / "summary.json").read_text())["precision"] == "mixed_bfloat16"
    weights = _generator_weights(tmp_path)
    assert weights and all(w.dtype == np.float32 for w in weights.values())


@pytest.mark.parametrize("target", ["hints", "partial"])
def test_mask_target_sets_generator_hints_and_every_chroma_target(target):
    """hints: G sees the true ab inside the mask and learns the full colour image;
    partial (the IMPA project's stated target): G sees only the mask and learns mask * ab."""
    from colourise_tf import colour
    from colourise_tf.training.trainer import GANTrainer

    cfg = tiny("model.mask_channel=true", "loss.mask_weight=1", f"loss.mask_target={target}")
    trainer = GANTrainer(cfg, tf.distribute.get_strategy())
    s = cfg.model.image_size
    rng = np.random.default_rng(3)
    image = tf.constant(rng.integers(0, 256, (2, s, s, 3), dtype=np.uint8))
    mask = np.zeros((2, s, s, 1), np.float32)
    mask[:, :, : s // 2] = 1.0  # left half
    batch = {"image": image, "mask": tf.constant(mask)}
    grey, chroma = colour.rgb_to_model(image, "lab")

    g_in, extras = trainer.generator_inputs(grey, chroma, batch, tf.constant(0, tf.int64))
    hints_seen = g_in.numpy()[..., 2:4]
    expected_hints = np.zeros_like(hints_seen) if target == "partial" else (chroma * mask).numpy()
    np.testing.assert_allclose(hints_seen, expected_hints, atol=1e-6)
    np.testing.assert_array_equal(g_in.numpy()[..., 1:2], mask)

    seen = {}
    real_reconstruction = trainer.reconstruction

    def spy(y_true, y_pred, *args, **kwargs):
        seen["target"] = y_true.numpy()
        return real_reconstruction(y_true, y_pred, *args, **kwargs)

    trainer.reconstruction = spy
    metrics = trainer.strategy.run(trainer._replica_step, args=(batch, tf.constant(0, tf.int64)))
    expected_target = (chroma * mask).numpy() if target == "partial" else chroma.numpy()
    np.testing.assert_allclose(seen["target"], expected_target, atol=1e-6)
    assert np.isfinite(float(metrics["loss/g_mask"]))

    # The image grids colourise as inference does: an empty mask, or a full one for partial.
    from colourise_tf import inference

    spec = inference.ModelSpec.from_model_config(cfg.model)
    full = inference.generator_input(grey, spec, mask_small=tf.ones_like(grey))
    empty = inference.generator_input(grey, spec)
    _, fake_rgb, _ = trainer.colourise_batch(image)
    want = trainer.generator(full if target == "partial" else empty, training=False)
    np.testing.assert_allclose(
        fake_rgb.numpy(), colour.model_to_rgb(grey, tf.cast(want, tf.float32), "lab").numpy(), atol=1e-5
    )


@pytest.mark.parametrize("delta", [1.0, 1 / 110])
def test_smooth_l1_reconstruction_uses_the_configured_delta(delta):
    """loss.smooth_l1_delta reaches the reconstruction term (smooth L1 with beta = delta)."""
    cfg = config_lib.apply_overrides(
        config_lib.get_preset("tiny"), ["loss.reconstruction=smooth_l1", f"loss.smooth_l1_delta={delta}"]
    )
    from colourise_tf.training.trainer import GANTrainer

    trainer = GANTrainer(cfg, tf.distribute.get_strategy())
    rng = np.random.default_rng(0)
    y_true, y_pred = rng.uniform(-1, 1, (2, 8, 8, 2)), rng.uniform(-1, 1, (2, 8, 8, 2))
    e = np.abs(y_true - y_pred)
    huber = np.where(e < delta, 0.5 * e**2 / delta, e - 0.5 * delta).mean()  # PyTorch SmoothL1Loss(beta)
    got = float(trainer.reconstruction(tf.constant(y_true, tf.float32), tf.constant(y_pred, tf.float32)))
    np.testing.assert_allclose(got, huber, rtol=1e-5)
    with pytest.raises(ValueError, match="loss.smooth_l1_delta must be > 0"):
        config_lib.apply_overrides(config_lib.get_preset("tiny"), ["loss.smooth_l1_delta=0"])


def test_separate_decoders_train_in_the_seed_two_stages():
    """unet-seg-separate with train.seg_pretrain_steps=1: step 1 trains the encoder and
    the segmentation decoder only; step 2 the encoder and the colour decoder, with the
    segmentation decoder frozen (Tarrés 2021 S4.3.2)."""
    from colourise_tf.training.trainer import GANTrainer

    cfg = config_lib.apply_overrides(
        config_lib.get_preset("tarres-seg-separate"),
        [
            "model.generator.filters=4,4",
            "model.image_size=16",
            "model.n_classes=3",
            "train.seg_pretrain_steps=1",
            "train.precision=float32",
            "model.generator.dropout=0",
        ],
    )
    trainer = GANTrainer(cfg, tf.distribute.get_strategy())
    rng = np.random.default_rng(0)
    batch = {
        "image": tf.constant(rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)),
        "segmentation": tf.constant(rng.integers(0, 3, (2, 16, 16)), tf.int32),
    }

    def branch_weights():
        groups = {"encoder": "enc", "colour": ("dec", "chroma_conv"), "segmentation": ("seg_dec", "segmentation_conv")}
        out = {}
        for group, prefixes in groups.items():
            out[group] = [
                v.numpy().copy()
                for layer in trainer.generator.layers
                if layer.name.startswith(prefixes)
                for v in layer.trainable_variables
            ]
            assert out[group], group
        return out

    def changed(a, b):
        return {g: any(not np.array_equal(x, y) for x, y in zip(a[g], b[g])) for g in a}

    w0 = branch_weights()
    assert trainer.stage() == 1
    m1 = trainer.train_step(batch)
    w1 = branch_weights()
    assert changed(w0, w1) == {"encoder": True, "colour": False, "segmentation": True}
    assert float(m1["loss/g_total"]) == pytest.approx(float(m1["loss/g_segmentation"]))
    assert trainer.stage() == 2
    m2 = trainer.train_step(batch)
    assert changed(w1, branch_weights()) == {"encoder": True, "colour": True, "segmentation": False}
    assert float(m2["loss/g_total"]) == pytest.approx(float(m2["loss/g_segmentation"] + m2["loss/g_reconstruction"]))


@pytest.mark.parametrize("scheme", ["ram", "file"])
def test_remote_run_directory_trains_resumes_and_loads(tmp_path, monkeypatch, scheme):
    """A run directory on another file system (TensorFlow's in-memory ``ram://``, as
    ``gs://`` would be) or a ``file://`` URI: train, resume from the saved iterator, and
    load the run back; nothing lands in a local folder named after the scheme."""
    from colourise_tf import fileio
    from colourise_tf.runs import load_run
    from colourise_tf.training.loop import run_training

    monkeypatch.chdir(tmp_path)
    workdir = f"ram://{tmp_path.name}/run" if scheme == "ram" else f"file://{tmp_path}/run"
    first = run_training(tiny("train.steps=2"), workdir, strategy="default", progress=False)
    assert first.final_step == 2
    second = run_training(tiny("train.steps=4"), workdir, strategy="default", progress=False)
    assert (second.start_step, second.final_step) == (2, 4)
    for name in ("config.json", "summary.json", "samples.png", "checkpoints/checkpoint", "logs"):
        assert fileio.exists(fileio.join(workdir, name)), name
    summary = json.loads(fileio.read_text(fileio.join(workdir, "summary.json")))
    assert summary["final_step"] == 4
    assert tf.io.gfile.glob(fileio.join(workdir, "logs", "events.out.tfevents.*"))
    run = load_run(workdir)
    assert run.step == 4 and run.cfg.name == "tiny"
    assert sorted(os.listdir(tmp_path)) == (["run"] if scheme == "file" else [])
    if scheme == "file":
        assert (tmp_path / "run" / "config.json").is_file()
    else:
        tf.io.gfile.rmtree(workdir)
