"""Test set-up shared by every test process.

The first physical CPU is split into two logical devices before TensorFlow initialises, so tests can run a
2-replica `tf.distribute.MirroredStrategy` on a machine without GPUs.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

_cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    _cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)
