"""FusedAdam against keras.optimizers.Adam; the `auto` rules for precision and CPU threads."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from colourise_tf.training import runtime
from colourise_tf.training.optim import FusedAdam

REPO = Path(__file__).resolve().parents[1]


def _train(opt_cls, strategy, steps=6, **kw):
    with strategy.scope():
        w = keras.Variable(np.linspace(-1.0, 1.0, 24).reshape(4, 6).astype(np.float32), name="w")
        b = keras.Variable(np.zeros(6, np.float32), name="b")
        opt = opt_cls(learning_rate=0.05, beta_1=0.5, beta_2=0.99, **kw)
        opt.build([w, b])

    @tf.function
    def step(i):
        def replica_fn():
            with tf.GradientTape() as tape:
                x = tf.cos(tf.reshape(tf.range(8, dtype=tf.float32), (2, 4)) + tf.cast(i, tf.float32))
                loss = tf.reduce_sum(tf.sin(tf.matmul(x, w) + b) ** 2) / strategy.num_replicas_in_sync
            grads = tape.gradient(loss, [w, b])
            opt.apply_gradients(zip(grads, [w, b]))

        strategy.run(replica_fn)

    for i in range(steps):
        step(i)
    return w.numpy(), b.numpy(), opt


@pytest.mark.parametrize("mirrored", [False, True])
def test_fused_adam_matches_keras_adam(mirrored):
    if mirrored:
        cpus = tf.config.list_logical_devices("CPU")
        if len(cpus) < 2:
            pytest.skip("needs two logical CPUs (tests/conftest.py)")
        # ReductionToOneDevice: a second collective-op MirroredStrategy in one process
        # can collide with the training tests' collective instance keys (a TF quirk).
        strategy = tf.distribute.MirroredStrategy(
            [d.name for d in cpus[:2]], cross_device_ops=tf.distribute.ReductionToOneDevice()
        )
    else:
        strategy = tf.distribute.get_strategy()
    w_ref, b_ref, ref = _train(keras.optimizers.Adam, strategy)
    w, b, fused = _train(FusedAdam, strategy)
    assert np.abs(w - w_ref).max() < 1e-6 and np.abs(b - b_ref).max() < 1e-6
    assert np.abs(w_ref - np.linspace(-1.0, 1.0, 24).reshape(4, 6)).max() > 0.05  # it did move
    # Same slots, same values: checkpoints interchange with keras Adam.
    assert [v.shape for v in fused.variables] == [v.shape for v in ref.variables]
    for a, c in zip(fused.variables, ref.variables):
        np.testing.assert_allclose(np.asarray(a), np.asarray(c), rtol=1e-5, atol=1e-7)


def test_fused_adam_amsgrad_and_config_fall_back_to_keras():
    w_ref, _, _ = _train(keras.optimizers.Adam, tf.distribute.get_strategy(), amsgrad=True)
    w, _, opt = _train(FusedAdam, tf.distribute.get_strategy(), amsgrad=True)
    np.testing.assert_allclose(w, w_ref, atol=1e-6)
    clone = FusedAdam.from_config(opt.get_config())
    assert isinstance(clone, FusedAdam) and clone.beta_1 == 0.5


def test_auto_precision_picks_bf16_only_with_native_bf16(monkeypatch):
    monkeypatch.setattr(runtime, "_onednn_enabled", lambda: True)
    monkeypatch.setattr(runtime, "_cpu_flags", lambda: {"avx512f", "avx512_bf16"})
    assert runtime.resolve_precision("auto") == "mixed_bfloat16"
    monkeypatch.setattr(runtime, "_cpu_flags", lambda: {"avx512f", "amx_bf16", "amx_tile"})
    assert runtime.resolve_precision("auto") == "mixed_bfloat16"
    monkeypatch.setattr(runtime, "_cpu_flags", lambda: {"avx2", "avx512f"})
    assert runtime.resolve_precision("auto") == "float32"
    monkeypatch.setattr(runtime, "_cpu_flags", lambda: {"avx512_bf16"})
    monkeypatch.setattr(runtime, "_onednn_enabled", lambda: False)
    assert runtime.resolve_precision("auto") == "float32"
    assert runtime.resolve_precision("float32") == "float32"
    with pytest.raises(ValueError):
        runtime.resolve_precision("float64")


def test_cpu_flags_are_read_from_proc_cpuinfo():
    flags = runtime._cpu_flags()
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        assert flags == set()
        return
    assert ("avx512_bf16" in flags) == (" avx512_bf16" in text)


def test_auto_threads_rule(monkeypatch):
    """CPU-only hosts run two ops at a time on half the cores each; devices keep TF's pools."""
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [])
    for cores, want in [(1, (0, 0)), (2, (1, 2)), (3, (1, 2)), (16, (8, 2))]:
        monkeypatch.setattr(runtime, "_cpu_count", lambda n=cores: n)
        assert runtime.auto_threads() == want, cores
    assert runtime.auto_threads("tpu") == (0, 0)
    assert runtime.auto_threads(xla=True) == (0, 0)
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: ["GPU:0"] if kind == "GPU" else [])
    assert runtime.auto_threads() == (0, 0)


def test_configure_threads_sets_the_pools_and_keeps_them_once_tf_runs():
    """In a fresh process the pools take the requested sizes; after the first op they are
    fixed, and an explicit request that cannot be honoured is reported, not raised."""
    code = (
        "import tensorflow as tf\n"
        "from colourise_tf.training import runtime\n"
        "auto = runtime.auto_threads()\n"
        "got = runtime.configure_threads(None, None)\n"
        "print('AUTO', auto == got, got == (tf.config.threading.get_intra_op_parallelism_threads(),"
        " tf.config.threading.get_inter_op_parallelism_threads()))\n"
        "tf.constant(1.0) + 1.0\n"
        "print('LATE', runtime.configure_threads(3, 5) == got)\n"
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "AUTO True True" in proc.stdout
    assert "LATE True" in proc.stdout
    assert "keeping" in proc.stderr and "asked for 3 / 5" in proc.stderr


def test_thread_settings_are_validated():
    from colourise_tf import config as config_lib

    cfg = config_lib.apply_overrides(
        config_lib.get_preset("tiny"), ["train.intra_op_threads=1", "train.inter_op_threads=0"]
    )
    assert (cfg.train.intra_op_threads, cfg.train.inter_op_threads) == (1, 0)
    with pytest.raises(ValueError, match="intra_op_threads"):
        config_lib.apply_overrides(cfg, ["train.intra_op_threads=-2"])
