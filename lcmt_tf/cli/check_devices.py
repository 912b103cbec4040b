"""Which devices a training would use, before any training: the Keras backend, the
devices it sees, and what `--distribute=none` and `--distribute=mirrored` train on.
The backend is the one Keras picks (KERAS_BACKEND, or ~/.keras/keras.json).

    lcmt check-devices
    KERAS_BACKEND=jax lcmt check-devices
    KERAS_BACKEND=torch lcmt check-devices     # one device: torch trains on one
    lcmt check-devices --num_cpu_devices=4       # the host CPU split, as a run would

Exit status 0; an accelerator that the backend does not see is not an error here (the
CPU trains), but the last line says so.
"""

from __future__ import annotations

from absl import flags

from lcmt_tf import cli

FLAGS = flags.FLAGS


def define_flags() -> None:
    flags.DEFINE_integer(
        "num_cpu_devices", 0, "split the host CPU into this many logical devices, as train does"
    )


def report(num_cpu_devices: int = 0) -> list[str]:
    """The lines check-devices prints (starts the backend's runtime)."""
    from lcmt_tf.distribute import backend_name, configure_host_devices

    configure_host_devices(num_cpu_devices)
    import keras

    from lcmt_tf.provenance import accelerators, backend_version

    backend = backend_name()
    found = accelerators(backend)
    if backend == "torch":  # Keras' distribution API has no torch implementation
        devices = [f"cuda:{index}" for index in range(len(found))] + ["cpu:0"]
        mirrored = (
            "--distribute=mirrored is refused on torch: lcmt_tf trains on one device there "
            "(data-parallel: KERAS_BACKEND=tensorflow or jax)"
        )
    else:
        devices = keras.distribution.list_devices()
        mirrored = (
            f"--distribute=mirrored trains on {len(devices)} replica(s): {', '.join(devices)}"
        )
    lines = [
        f"Keras {keras.__version__}, backend {backend} {backend_version(backend)}",
        f"devices Keras sees: {', '.join(devices)}",
        f"accelerators: {', '.join(found) if found else 'none'}",
        f"--distribute=none trains on {devices[0]}",
        mirrored,
    ]
    if found:
        lines.append(
            "a GPU run: --mixed_precision=bfloat16 (on GPUs with bfloat16, Ampere or newer) "
            "and --steps_per_execution=N; on TensorFlow also --jit_compile=true (XLA)"
        )
    else:
        lines.append(
            f"no GPU or TPU is visible to {backend}: training runs on the CPU "
            "(the GPU install lines: docs/getting-started.md#on-a-gpu)"
        )
    return lines


def check_devices(argv: list[str]) -> None:
    if len(argv) > 1:
        cli.fail(f"unexpected arguments {argv[1:]}; flags look like --name=value")
    if FLAGS.num_cpu_devices < 0:
        cli.fail("--num_cpu_devices must be >= 0")
    from lcmt_tf.distribute import backend_name

    if FLAGS.num_cpu_devices and backend_name() == "torch":
        cli.fail("--num_cpu_devices: on the torch backend lcmt_tf trains on one device")
    print("\n".join(report(FLAGS.num_cpu_devices)))


def main() -> None:
    cli.run(check_devices, define_flags, __doc__)


if __name__ == "__main__":
    main()
