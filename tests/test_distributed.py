"""Training at any replica count, on logical CPU devices standing in for GPUs.

``conftest.py`` splits the CPU into eight logical devices before TensorFlow starts;
``make_strategy("mirrored", cpu_replicas=N)`` trains on the first N of them, as
``colourise-train --cpu-replicas N`` does for users.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import train_command

from colourise_tf import config as config_lib

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(
    len(tf.config.list_logical_devices("CPU")) < 8, reason="needs eight logical CPUs (conftest)"
)

# Instance norm and no dropout: the forward pass of an image does not depend on the
# other images of its replica, so any split of one global batch must give one update.
PER_IMAGE = [
    "model.generator.norm=instance",
    "model.discriminator.norm=instance",
    "model.generator.dropout=0.0",
    "model.generator.spectral_norm=true",
    "model.discriminator.spectral_norm=true",
    "train.precision=float32",
]


def _cfg(*overrides: str) -> config_lib.ExperimentConfig:
    return config_lib.apply_overrides(config_lib.get_preset("tiny"), PER_IMAGE + list(overrides))


def _strategy(replicas: int) -> tf.distribute.Strategy:
    from colourise_tf.training.runtime import make_strategy

    if replicas == 1:
        return tf.distribute.get_strategy()
    strategy = make_strategy("mirrored", cpu_replicas=replicas)
    assert strategy.num_replicas_in_sync == replicas
    return strategy


def _seeded_trainer(cfg, replicas: int):
    """(strategy, trainer, trainable variables, their initial values), seeded alike."""
    from colourise_tf.training.trainer import GANTrainer

    keras.utils.set_random_seed(3)
    strategy = _strategy(replicas)
    trainer = GANTrainer(cfg, strategy)
    # Adam's update is nearly scale-free (m / sqrt(v)); a large epsilon makes it
    # proportional to the gradient, so a wrongly scaled sum over replicas shows.
    for opt in (trainer.g_opt, trainer.d_opt):
        opt.epsilon = 10.0
    variables = trainer.generator.trainable_variables + trainer.discriminator.trainable_variables
    return strategy, trainer, variables, [v.numpy() for v in variables]


def _two_steps(cfg, replicas: int, batches):
    """Two GAN steps on the given global batches; returns (weight changes, metrics per step)."""
    from colourise_tf.training.loop import _split_over_replicas

    strategy, trainer, variables, start = _seeded_trainer(cfg, replicas)
    metrics = []
    for batch in batches:
        dist = batch if replicas == 1 else _split_over_replicas(strategy, batch)
        metrics.append({k: float(v) for k, v in trainer.train_step(dist).items()})
    return [v.numpy() - w for v, w in zip(variables, start)], metrics


@pytest.mark.parametrize("global_batch", [8, 12])
def test_one_two_and_eight_replicas_give_the_same_update(global_batch):
    """Losses are exact means over the global batch: 1, 2 and 8 replicas (and the
    uneven split of 12 images over 8 replicas: 2,2,2,2,1,1,1,1) give the same
    metrics and the same weight changes after two steps."""
    cfg = _cfg(f"data.batch_size={global_batch}")
    rng = np.random.default_rng(0)
    s = cfg.model.image_size
    batches = [{"image": tf.constant(rng.integers(0, 256, (global_batch, s, s, 3), dtype=np.uint8))} for _ in range(2)]
    w1, m1 = _two_steps(cfg, 1, batches)
    for replicas in (2, 8):
        w, m = _two_steps(cfg, replicas, batches)
        for step in range(2):
            for key, value in m1[step].items():
                assert m[step][key] == pytest.approx(value, rel=2e-5, abs=1e-6), (replicas, step, key)
        for a, b in zip(w1, w):
            scale = float(np.abs(a).max())
            assert scale > 0  # every variable moved
            np.testing.assert_allclose(b, a, rtol=1e-3, atol=1e-3 * scale, err_msg=f"{replicas} replicas")


def _two_steps_in_one_call(cfg, replicas: int, batches, mode: str):
    """The same two steps in ONE ``train_loop`` call, fed as the training loop feeds
    them: global batches sliced on the host (``host``), or per-replica batches from
    ``distribute_datasets_from_function`` (``per_replica``)."""
    strategy, trainer, variables, start = _seeded_trainer(cfg, replicas)
    images = tf.concat([b["image"] for b in batches], axis=0)
    if mode == "host":
        iterator = iter(tf.data.Dataset.from_tensor_slices({"image": images}).batch(cfg.data.batch_size))
    else:

        def dataset_fn(ctx):
            per_replica = ctx.get_per_replica_batch_size(cfg.data.batch_size)
            return tf.data.Dataset.from_tensor_slices({"image": images}).batch(per_replica)

        iterator = iter(strategy.distribute_datasets_from_function(dataset_fn))
    metrics, nonfinite = trainer.train_loop(iterator, 2, host_split=mode == "host")
    assert int(nonfinite["step"]) == -1 and int(trainer.step.numpy()) == 2
    return [v.numpy() - w for v, w in zip(variables, start)], {k: float(v) for k, v in metrics.items()}


@pytest.mark.parametrize(
    "global_batch,replicas,mode",
    [
        (12, 8, "host"),  # uneven: 2,2,2,2,1,1,1,1 sliced on the host, in the graph
        (8, 2, "per_replica"),
        pytest.param(8, 8, "per_replica", marks=pytest.mark.large),
        pytest.param(8, 8, "host", marks=pytest.mark.large),
        pytest.param(12, 2, "host", marks=pytest.mark.large),
    ],
)
def test_input_paths_of_the_training_loop_give_the_same_update(global_batch, replicas, mode):
    """Two steps in one ``train_loop`` call, with host-sliced global batches (any split)
    and with per-replica input (even splits), equal two single steps on one replica."""
    cfg = _cfg(f"data.batch_size={global_batch}")
    rng = np.random.default_rng(1)
    s = cfg.model.image_size
    batches = [{"image": tf.constant(rng.integers(0, 256, (global_batch, s, s, 3), dtype=np.uint8))} for _ in range(2)]
    w1, m1 = _two_steps(cfg, 1, batches)
    w, m = _two_steps_in_one_call(cfg, replicas, batches, mode)
    for key, value in m1[1].items():
        assert m[key] == pytest.approx(value, rel=2e-5, abs=1e-6), (replicas, mode, key)
    for a, b in zip(w1, w):
        scale = float(np.abs(a).max())
        np.testing.assert_allclose(b, a, rtol=1e-3, atol=1e-3 * scale, err_msg=f"{replicas} replicas, {mode}")


def _flat_colour_folder(root: Path, n: int) -> list[tuple[int, int, int]]:
    """``n`` PNGs of distinct flat colours (identifiable after any crop or resize)."""
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    colours = [(20 + 25 * i, 200 - 20 * i, 60 + (37 * i) % 150) for i in range(n)]
    for i, c in enumerate(colours):
        Image.new("RGB", (24 + i, 20), c).save(root / f"{i:02d}.png")
    return colours


def test_eight_replicas_each_get_their_own_share_of_the_global_batch(tmp_path):
    """Per-replica input (the training loop's dataset function) under 8 logical
    replicas: each replica gets global/8 images on its own device, and together they
    are exactly the global batch one replica would read."""
    from colourise_tf import data as data_lib
    from colourise_tf.training.loop import _build_train_dataset, input_mode

    _flat_colour_folder(tmp_path / "photos", 16)
    cfg = _cfg("data.batch_size=16", f"data.dataset={tmp_path / 'photos'}")
    strategy = _strategy(8)
    assert input_mode(strategy, cfg) == "per_replica"
    report = data_lib.PipelineReport()
    dist = strategy.distribute_datasets_from_function(
        lambda ctx: _build_train_dataset(cfg, report, ctx),
        tf.distribute.InputOptions(experimental_fetch_to_device=True),
    )
    plain = iter(_build_train_dataset(cfg, report))
    it = iter(dist)
    for _ in range(2):
        values = strategy.experimental_local_results(next(it)["image"])
        assert len(values) == 8
        for value, device in zip(values, strategy.extended.worker_devices):
            assert value.shape[0] == 2
            assert value.device == tf.DeviceSpec.from_string(device).to_string()
        np.testing.assert_array_equal(np.concatenate([v.numpy() for v in values]), next(plain)["image"].numpy())


def test_uneven_global_batch_needs_host_input_and_per_replica_refuses_it():
    from colourise_tf.training.loop import input_mode

    strategy = _strategy(8)
    assert input_mode(strategy, _cfg("data.batch_size=12")) == "host"
    assert input_mode(strategy, _cfg("data.batch_size=16", "train.input_distribution=host")) == "host"
    with pytest.raises(ValueError, match="multiple of the 8 replicas"):
        input_mode(strategy, _cfg("data.batch_size=12", "train.input_distribution=per_replica"))
    assert input_mode(tf.distribute.get_strategy(), _cfg("data.batch_size=3")) == "plain"


@pytest.mark.parametrize("replicas", [1, 2])
def test_steps_per_loop_does_not_change_the_result(tmp_path, monkeypatch, replicas):
    """8 steps, one per call and four per call, end with the same weights; metrics
    leave the device only at the log steps."""
    from colourise_tf.training.loop import run_training
    from colourise_tf.training.trainer import GANTrainer

    calls = []
    original = GANTrainer.train_loop

    def counting(self, iterator, num_steps, **kwargs):
        calls.append(num_steps)
        return original(self, iterator, num_steps, **kwargs)

    monkeypatch.setattr(GANTrainer, "train_loop", counting)
    weights = {}
    for spl in (1, 4):
        calls.clear()
        cfg = _cfg(
            "train.steps=8",
            "data.batch_size=4",
            f"train.steps_per_loop={spl}",
            "train.log_every=8",
            "train.image_every=8",
            "train.checkpoint_every=8",
            "train.deterministic_ops=true",
        )
        result = run_training(cfg, tmp_path / f"spl{spl}", strategy=_strategy(replicas), progress=False)
        assert result.final_step == 8 and calls == [spl] * (8 // spl)
        reader = tf.train.load_checkpoint(str(tmp_path / f"spl{spl}" / "checkpoints" / "ckpt-8"))
        weights[spl] = {
            k: reader.get_tensor(k)
            for k in reader.get_variable_to_shape_map()
            if k.startswith("generator/") and "OPTIMIZER_SLOT" not in k
        }
    assert weights[1] and set(weights[1]) == set(weights[4])
    for k in weights[1]:
        np.testing.assert_allclose(weights[4][k], weights[1][k], rtol=1e-5, atol=1e-6, err_msg=k)


def test_fewer_images_than_replicas_stops_before_writing(tmp_path):
    from colourise_tf.training.loop import run_training

    cfg = _cfg("data.batch_size=4", "train.steps=1", "train.cpu_replicas=8", "train.strategy=mirrored")
    with pytest.raises(ValueError, match=r"data.batch_size=4 is the global batch, split over 8 replicas"):
        run_training(cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_mirrored_or_onedevice_without_gpu_is_an_error():
    from colourise_tf.training.runtime import make_strategy

    assert not tf.config.list_logical_devices("GPU")
    for name in ("mirrored", "onedevice"):
        with pytest.raises(ValueError, match="found no GPU"):
            make_strategy(name)
    with pytest.raises(ValueError, match="needs --strategy mirrored"):
        make_strategy("onedevice", cpu_replicas=2)
    assert make_strategy("default", cpu_replicas=4).num_replicas_in_sync == 4


def _traced_step_ops(cfg) -> list[str]:
    from colourise_tf.training.trainer import GANTrainer

    trainer = GANTrainer(cfg)
    s = cfg.model.image_size
    spec = {"image": tf.TensorSpec([cfg.data.batch_size, s, s, 3], tf.uint8)}
    trainer.train_step({"image": tf.zeros(spec["image"].shape, tf.uint8)})
    fn = next(iter(trainer._train_fns.values()))
    graph = fn.get_concrete_function(spec).graph
    from helpers import cpu_kernel_ops, graph_ops

    return sorted(op.type for op in graph_ops(graph)), cpu_kernel_ops(graph)


def test_cpu_kernels_never_engage_when_a_gpu_is_visible(monkeypatch):
    """train.cpu_kernels=auto: with the device query reporting a GPU, the traced step
    holds none of the CPU-only kernels and is op for op the step with them off; on this
    CPU-only machine (and with ``on``) it does hold them."""
    from colourise_tf.ops import gate as cpu

    cfg = config_lib.apply_overrides(
        config_lib.get_preset("gorriz-ibn-sn-md"),
        [
            "model.image_size=32",
            "data.batch_size=2",
            "train.precision=float32",
            "model.generator.filters=8,16,32,512,512",
            "model.discriminator.filters=8,16,256,512",
            "model.num_scales=1",
        ],
    )
    types_auto_cpu, found_auto_cpu = _traced_step_ops(cfg)
    assert found_auto_cpu, "the CPU kernels should engage on a CPU-only host"
    types_off, found_off = _traced_step_ops(config_lib.apply_overrides(cfg, ["train.cpu_kernels=off"]))
    assert found_off == []
    real = tf.config.list_logical_devices

    def with_gpu(kind=None):
        return [tf.config.LogicalDevice("/device:GPU:0", "GPU")] if kind == "GPU" else real(kind)

    monkeypatch.setattr(tf.config, "list_logical_devices", with_gpu)
    cpu.cpu_only.cache_clear()
    try:
        types_gpu, found_gpu = _traced_step_ops(cfg)
        assert found_gpu == []
        assert types_gpu == types_off
        _, found_on = _traced_step_ops(config_lib.apply_overrides(cfg, ["train.cpu_kernels=on"]))
        assert found_on  # forced on: whatever the devices
    finally:
        monkeypatch.undo()
        cpu.cpu_only.cache_clear()


def test_float16_overflow_on_one_replica_skips_the_update_everywhere():
    """mixed_float16 over two replicas, where only replica 1's gradients overflow: no
    weight becomes NaN or Inf, the loss scale halves, the weights stay, and the next
    (finite) step trains."""
    from colourise_tf import losses
    from colourise_tf.training.trainer import GANTrainer

    cfg = _cfg("data.batch_size=4", "loss.adversarial=none", "model.discriminator.kind=none")
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        strategy = _strategy(2)
        trainer = GANTrainer(cfg, strategy, precision="mixed_float16")
        blow_up = tf.Variable(1.0, trainable=False)

        def reconstruction(target, pred):
            replica = tf.distribute.get_replica_context().replica_id_in_sync_group
            # 1e30 on replica 1 only (first step): its float16 gradients overflow.
            factor = tf.where(tf.equal(replica, 1), 1.0 + (1e30 - 1.0) * blow_up, 1.0)
            return losses.l1_loss(target, pred) * factor

        trainer.reconstruction = reconstruction
        from colourise_tf.training.loop import _split_over_replicas

        rng = np.random.default_rng(1)
        s = cfg.model.image_size
        batch = {"image": tf.constant(rng.integers(0, 256, (4, s, s, 3), dtype=np.uint8))}
        before = [v.numpy() for v in trainer.generator.trainable_variables]
        scale0 = float(trainer.g_opt.dynamic_scale.numpy())
        trainer.train_step(_split_over_replicas(strategy, batch))
        after = [v.numpy() for v in trainer.generator.trainable_variables]
        assert all(np.isfinite(w).all() for w in after)
        for a, b in zip(before, after):
            np.testing.assert_array_equal(a, b)
        assert float(trainer.g_opt.dynamic_scale.numpy()) == scale0 / 2
        blow_up.assign(0.0)
        trainer.train_step(_split_over_replicas(strategy, batch))
        moved = [v.numpy() for v in trainer.generator.trainable_variables]
        assert all(np.isfinite(w).all() for w in moved)
        assert max(float(np.abs(a - b).max()) for a, b in zip(after, moved)) > 0
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_cli_cpu_replicas_in_a_fresh_process(tmp_path):
    """``colourise-train --cpu-replicas 3`` splits the CPU itself; an uneven global batch
    (4 over 3) trains; the run logs its devices and replica count, and prints no
    error-level line (Grappler's remapper included)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="0")
    cmd = train_command(
        tmp_path / "run",
        "--cpu-replicas",
        "3",
        "--steps",
        "2",
        "data.batch_size=4",
        "train.precision=float32",
        "train.checkpoint_every=1",
    )
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "MirroredStrategy: 3 replica(s) on" in proc.stderr
    assert "global batch 4" in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("E0000") or " ERROR " in ln]
    assert errors == [], errors
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["replicas"] == 3 and summary["final_step"] == 2


# One preset per generator and discriminator family (U-Net + IBN + 3-scale PatchGAN,
# segmentation U-Nets, DCGAN G and D, ResNet G, 1x1 PixelGAN, mask inputs).
XLA_PRESETS = [
    "gorriz-ibn-sn-md",
    "tarres-seg-shared",
    "tarres-seg-separate",
    "dcgan-sky-advanced",
    "resnet-patchgan",
    "unet-pixelgan-sn",
    "partial-mask",
]


@pytest.mark.large
@pytest.mark.parametrize("preset", XLA_PRESETS)
def test_whole_training_step_compiles_with_xla(preset):
    """The TPU proxy: the full GAN step of every family compiles with
    ``jit_compile=True`` and trains (finite losses, weights move), as on a TPU, where
    ``train.cpu_kernels=auto`` leaves the CPU-only kernels out."""
    from test_models import reduced, test_size

    from colourise_tf.training.trainer import GANTrainer

    cfg = reduced(preset)
    s = test_size(cfg.model)
    cfg = config_lib.apply_overrides(
        cfg, [f"model.image_size={s}", "data.batch_size=2", "train.precision=float32", "train.cpu_kernels=off"]
    )
    keras.utils.set_random_seed(0)
    trainer = GANTrainer(cfg, jit_compile=True)
    rng = np.random.default_rng(0)
    batch = {"image": tf.constant(rng.integers(0, 256, (2, s, s, 3), dtype=np.uint8))}
    if cfg.model.n_classes:
        batch["segmentation"] = tf.constant(rng.integers(0, cfg.model.n_classes, (2, s, s), dtype=np.int32))
    if cfg.model.mask_channel:
        batch["mask"] = tf.constant((rng.random((2, s, s, 1)) < 0.3).astype(np.float32))
    before = [v.numpy() for v in trainer.generator.trainable_variables]
    metrics = trainer.train_step(batch)
    assert all(np.isfinite(float(v)) for v in metrics.values()), metrics
    after = [v.numpy() for v in trainer.generator.trainable_variables]
    assert any(np.abs(a - b).max() > 0 for a, b in zip(before, after))
    # The replica step (everything but reading the input) is one XLA cluster: the
    # traced step calls it through an op marked _XlaMustCompile.
    (fn,) = trainer._train_fns.values()
    graph = fn.get_concrete_function(batch).graph
    xla_calls = [
        op
        for op in graph.get_operations()
        if "_XlaMustCompile" in op.node_def.attr and op.node_def.attr["_XlaMustCompile"].b
    ]
    assert len(xla_calls) == 1, [op.type for op in graph.get_operations()]


WORKER_READS = """
import json, sys
import numpy as np
import tensorflow as tf
from colourise_tf import data

source, out = sys.argv[1], sys.argv[2]
strategy = tf.distribute.MultiWorkerMirroredStrategy()
contexts = []

def dataset_fn(ctx):
    contexts.append(ctx)
    return data.build_dataset(source, image_size=8, batch_size=ctx.get_per_replica_batch_size(4),
                              training=False, repeat=False, input_context=ctx)

it = iter(strategy.distribute_datasets_from_function(dataset_fn))
colours = []
for _ in range(2):  # 8 images, 2 workers, global batch 4: two steps
    for value in strategy.experimental_local_results(next(it)["image"]):
        colours += [tuple(int(c) for c in np.round(img.reshape(-1, 3).mean(0))) for img in value.numpy()]
ctx = contexts[0]
json.dump({"pipeline": ctx.input_pipeline_id, "pipelines": ctx.num_input_pipelines, "colours": colours}, open(out, "w"))
"""


@pytest.mark.large
def test_two_local_workers_read_disjoint_shares_that_cover_the_source(tmp_path):
    """Two worker processes (MultiWorkerMirroredStrategy on 127.0.0.1), per-replica input:
    each reads its own files, of a folder and of prepared shards; together all of them."""
    from test_training import _free_ports

    from colourise_tf import prepare

    colours = _flat_colour_folder(tmp_path / "photos", 8)
    prepared = str(tmp_path / "prepared")
    prepare.prepare_shards(str(tmp_path / "photos"), prepared, num_shards=4, short_side=16, progress=False)
    script = tmp_path / "reads.py"
    script.write_text(WORKER_READS)
    for source in (str(tmp_path / "photos"), prepared):
        workers = [f"127.0.0.1:{p}" for p in _free_ports(2)]
        procs = []
        for index in range(2):
            tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
            env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_CONFIG=json.dumps(tf_config))
            procs.append(
                subprocess.Popen(
                    [sys.executable, str(script), source, str(tmp_path / f"w{index}.json")],
                    cwd=REPO,
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
        for p in procs:
            _, err = p.communicate(timeout=300)
            assert p.returncode == 0, err[-3000:]
        reads = [json.loads((tmp_path / f"w{i}.json").read_text()) for i in range(2)]
        assert sorted(r["pipeline"] for r in reads) == [0, 1] and all(r["pipelines"] == 2 for r in reads)

        def nearest(c):
            return min(range(len(colours)), key=lambda j: sum(abs(a - b) for a, b in zip(c, colours[j])))

        shares = [[nearest(c) for c in r["colours"]] for r in reads]
        assert all(len(s) == 4 == len(set(s)) for s in shares), shares
        assert not set(shares[0]) & set(shares[1]), (source, shares)
        assert set(shares[0]) | set(shares[1]) == set(range(8)), (source, shares)
