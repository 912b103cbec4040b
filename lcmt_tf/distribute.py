"""The one place that knows tf.distribute and keras.distribution: data-parallel
training on the devices of one machine.

    --distribute=none        one device (the default)
    --distribute=mirrored    every visible accelerator, or the host CPU split into
                             --num_cpu_devices logical devices: TensorFlow's
                             MirroredStrategy, JAX's keras.distribution.DataParallel

The global batch is what the flags say, split evenly across the replicas. The loss
terms are global: on JAX the step computes on global (sharded) arrays, so nothing
changes; on TensorFlow each replica computes on its slice, the features are gathered
across replicas for Local Clustering (the steps' `gather_replicas`), and the loss is divided by the
number of replicas before the gradients are summed across them. What differs from
one device: on TensorFlow, batch-norm statistics are per replica.
"""

from __future__ import annotations

import contextlib
import os

from lcmt_tf.config import DISTRIBUTIONS
from lcmt_tf.errors import UserInputError


def backend_name() -> str:
    import keras

    return keras.backend.backend()


def configure_host_devices(count: int) -> None:
    """Splits the host CPU into `count` logical devices (0: leave it as it is). Must
    run before the backend's runtime starts (before any data set is loaded)."""
    if count <= 0:
        return
    if backend_name() == "jax":
        flag = f"--xla_force_host_platform_device_count={count}"
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flag}".strip()
        import jax

        if len(jax.devices("cpu")) != count:
            raise UserInputError(
                f"--num_cpu_devices={count}: JAX had already started with "
                f"{len(jax.devices('cpu'))} CPU devices"
            )
        return
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * count
        )
    except RuntimeError:
        if len(tf.config.list_logical_devices("CPU")) != count:
            raise UserInputError(
                f"--num_cpu_devices={count}: TensorFlow had already started with "
                f"{len(tf.config.list_logical_devices('CPU'))} CPU devices"
            ) from None


@contextlib.contextmanager
def distribution_scope(distribute: str):
    """Builds and compiles inside this to train data-parallel; yields the number of
    replicas. For "none", it does nothing and yields 1."""
    if distribute not in DISTRIBUTIONS:
        raise UserInputError(f"--distribute must be none or mirrored, not {distribute!r}")
    if distribute == "none":
        yield 1
        return
    if backend_name() == "jax":
        import keras

        previous = keras.distribution.distribution()
        # DataParallel takes the accelerators, or else the (logical) CPU devices.
        distribution = keras.distribution.DataParallel()
        keras.distribution.set_distribution(distribution)
        try:
            yield int(distribution.device_mesh.devices.size)
        finally:
            keras.distribution.set_distribution(previous)
        return
    import tensorflow as tf

    # The accelerators, or else the (logical) CPU devices.
    devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    strategy = tf.distribute.MirroredStrategy([device.name for device in devices])
    with strategy.scope():
        yield strategy.num_replicas_in_sync


def check_batch_split(replicas: int, labeled_batch_size: int, unlabeled_batch_size: int) -> None:
    """The global batch must split evenly across the replicas."""
    for name, size in (
        ("labeled_batch_size", labeled_batch_size),
        ("unlabeled_batch_size", unlabeled_batch_size),
    ):
        if size % replicas:
            raise UserInputError(
                f"--{name}={size} does not split evenly across {replicas} replicas; "
                f"use a multiple of {replicas}"
            )
