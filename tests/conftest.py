"""Test-session set-up.

Two logical CPU devices are configured before TensorFlow initialises, so the
multi-replica code path (MirroredStrategy) is exercised on a CPU-only machine.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
try:
    tf.config.set_logical_device_configuration(
        _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
    )
except RuntimeError:  # already initialised by a plugin; the mirrored tests then skip
    pass
