"""The one place that knows tf.distribute and keras.distribution: data-parallel
training over the devices of one machine or of several processes.

    --distribute=none          one device (the default)
    --distribute=mirrored      every visible accelerator, or the host CPU split into
                               --num_cpu_devices logical devices: TensorFlow's
                               MirroredStrategy, JAX's keras.distribution.DataParallel
    --distribute=multi_worker  several processes (machines), each launched alike:
                               TensorFlow's MultiWorkerMirroredStrategy (the cluster
                               from TF_CONFIG), JAX's DataParallel over the devices of
                               every process (jax.distributed, through
                               keras.distribution.initialize)

The global batch is what the flags say, split evenly across the replicas. The loss
terms are global: on JAX the step computes on global (sharded) arrays, so nothing
changes; on TensorFlow each replica computes on its slice, the features are gathered
across replicas for Local Clustering (the steps' `gather_replicas`), and the loss is
divided by the number of replicas before the gradients are summed across them. What
differs from one device, on TensorFlow: batch-norm statistics are per replica unless
--sync_batchnorm, and each replica draws its own augmentation and dropout
(steps/tensorflow_steps.py's ReplicaSeedGenerator), not the one-device draws.

Who feeds what: every TensorFlow worker reads the whole global batch and
tf.distribute hands each replica its slice; every JAX process feeds only its slice
(`Distribution.process_share`) and Keras assembles the global array. Only the chief
(process 0) writes files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from typing import Any

from lcmt_tf.config import DISTRIBUTIONS, TrainConfig
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

        if jax.local_device_count("cpu") != count:
            raise UserInputError(
                f"--num_cpu_devices={count}: JAX had already started with "
                f"{jax.local_device_count('cpu')} CPU devices"
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


@dataclasses.dataclass(frozen=True)
class Distribution:
    """How a run is spread: `mode` (a --distribute value), the number of replicas in
    sync, and this process's index among `process_count` processes. `engine` is the
    TensorFlow strategy or the keras.distribution object (None for "none")."""

    mode: str = "none"
    replicas: int = 1
    process_index: int = 0
    process_count: int = 1
    engine: Any = None

    @property
    def is_chief(self) -> bool:
        """Whether this process writes the run's files (process 0)."""
        return self.process_index == 0

    @property
    def feeds_process_slices(self) -> bool:
        """Whether each process feeds only its slice of every global batch (JAX
        with several processes); else every process feeds the global batch."""
        return self.process_count > 1 and backend_name() == "jax"

    @property
    def process_share(self) -> tuple[int, int]:
        """(i, n): this process feeds the i-th of n equal slices of every global batch
        (`SemiSupervisedBatches`, `LabeledBatches`); (0, 1), all of it, unless
        `feeds_process_slices`."""
        return (self.process_index, self.process_count) if self.feeds_process_slices else (0, 1)

    @contextlib.contextmanager
    def scope(self):
        """Build and compile inside this to train data-parallel."""
        if self.engine is None:
            yield self
        elif backend_name() == "jax":
            import keras

            previous = keras.distribution.distribution()
            keras.distribution.set_distribution(self.engine)
            try:
                yield self
            finally:
                keras.distribution.set_distribution(previous)
        else:
            with self.engine.scope():
                yield self

    def all_equal(self, value: int) -> bool:
        """Whether every process holds the same integer `value` (a collective: every
        process must call it)."""
        if self.process_count == 1:
            return True
        if backend_name() == "jax":
            import numpy as np
            from jax.experimental import multihost_utils

            values = multihost_utils.process_allgather(np.int32(value))
            return bool(np.all(values == values.flat[0]))
        import tensorflow as tf

        # ReduceOp has only SUM and MEAN: equal iff n * sum(v^2) == sum(v)^2.
        strategy = self.engine
        sums = [
            int(
                strategy.reduce(
                    tf.distribute.ReduceOp.SUM,
                    strategy.run(lambda power=power: tf.constant(value**power, tf.int64)),
                    axis=None,
                )
            )
            for power in (1, 2)
        ]
        return strategy.num_replicas_in_sync * sums[1] == sums[0] ** 2


def start_distribution(config: TrainConfig) -> Distribution:
    """Starts what --distribute asks for; call it before anything starts the backend's
    runtime (data loading included): the host CPU split and TensorFlow's collectives
    must be configured first."""
    configure_host_devices(config.num_cpu_devices)
    mode = config.distribute
    if mode not in DISTRIBUTIONS:
        raise UserInputError(
            f"--distribute must be one of {', '.join(DISTRIBUTIONS)}, not {mode!r}"
        )
    if mode == "none":
        return Distribution()
    if backend_name() == "jax":
        return _jax_distribution(config)
    return _tensorflow_distribution(mode)


def _jax_distribution(config: TrainConfig) -> Distribution:
    import jax
    import keras

    if config.distribute == "multi_worker":
        try:
            keras.distribution.initialize(
                job_addresses=config.coordinator_address or None,
                num_processes=config.num_processes or None,
                process_id=config.process_id if config.process_id >= 0 else None,
            )
        except (ValueError, RuntimeError) as error:
            raise UserInputError(
                "--distribute=multi_worker on JAX could not start jax.distributed "
                f"({str(error).splitlines()[0]}); give --coordinator_address, "
                "--num_processes and --process_id (or KERAS_DISTRIBUTION_JOB_ADDRESSES, "
                "KERAS_DISTRIBUTION_NUM_PROCESSES, KERAS_DISTRIBUTION_PROCESS_ID)"
            ) from None
    # The accelerators of every process, or else the (logical) CPU devices. Each process
    # feeds its own slice of the batch (Distribution.process_share), so Keras must not
    # shard the data set again.
    engine = keras.distribution.DataParallel(auto_shard_dataset=False)
    return Distribution(
        mode=config.distribute,
        replicas=int(engine.device_mesh.devices.size),
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        engine=engine,
    )


def _tensorflow_distribution(mode: str) -> Distribution:
    import tensorflow as tf

    if mode == "mirrored":
        # The accelerators, or else the (logical) CPU devices.
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        strategy = tf.distribute.MirroredStrategy([device.name for device in devices])
        return Distribution(mode, strategy.num_replicas_in_sync, engine=strategy)
    cluster = _tf_config_cluster()
    try:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    except (ValueError, RuntimeError) as error:
        raise UserInputError(
            f"--distribute=multi_worker: TensorFlow refused TF_CONFIG "
            f"({str(error).splitlines()[0]})"
        ) from None
    resolver = strategy.cluster_resolver
    task_type, task_id = resolver.task_type, int(resolver.task_id)
    # Process 0 is the chief: the "chief" task if the cluster has one, else worker 0.
    has_chief = "chief" in cluster
    index = task_id if task_type == "chief" or not has_chief else task_id + 1
    count = sum(len(addresses) for addresses in cluster.values())
    return Distribution(mode, strategy.num_replicas_in_sync, index, count, strategy)


def _tf_config_cluster() -> dict[str, list[str]]:
    """The cluster of TF_CONFIG (the chief and workers), checked enough for one clear line."""
    text = os.environ.get("TF_CONFIG", "")
    if not text:
        raise UserInputError(
            "--distribute=multi_worker on TensorFlow reads the cluster from TF_CONFIG, which "
            'is not set; see the README\'s "Several machines"'
        )
    try:
        tf_config = json.loads(text)
        cluster = {
            role: list(tf_config["cluster"][role])
            for role in ("chief", "worker")
            if role in tf_config["cluster"]
        }
        task = tf_config["task"]
        if task["type"] not in cluster or not 0 <= int(task["index"]) < len(cluster[task["type"]]):
            raise ValueError(f"task {task} is not in the cluster")
    except (ValueError, KeyError, TypeError) as error:
        raise UserInputError(f"TF_CONFIG is not a usable cluster description ({error})") from None
    return cluster


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


def set_batch_norm_synchronized(model, synchronized: bool) -> int:
    """Sets `synchronized` on every keras BatchNormalization layer inside `model` (the
    TensorFlow backend's cross-replica statistics, --sync_batchnorm); returns how many
    layers there are. Set it before the teacher is cloned from the student."""
    import keras

    def walk(layer):
        for inner in getattr(layer, "layers", []):
            yield inner
            yield from walk(inner)

    layers = [layer for layer in walk(model) if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in layers:
        layer.synchronized = synchronized
    return len(layers)
