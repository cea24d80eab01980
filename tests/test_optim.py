"""FusedAdam against keras.optimizers.Adam; the precision rule of `auto`."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from training import runtime
from training.optim import FusedAdam


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
