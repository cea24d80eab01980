"""Test-session set-up.

Eight logical CPU devices are configured before TensorFlow initialises, so the
multi-replica code paths (MirroredStrategy over 2 or 8 replicas, as
``train.cpu_replicas`` does for users) are exercised on a CPU-only machine.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
try:
    tf.config.set_logical_device_configuration(_cpus[0], [tf.config.LogicalDeviceConfiguration()] * 8)
except RuntimeError:  # already initialised by a plugin; the mirrored tests then skip
    pass
