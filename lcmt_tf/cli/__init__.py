"""The commands: the only layer that parses flags and turns a user's mistake (a flag, a
path, the data) into one line `PROGRAM: error: ...` on stderr and exit status 2, never
a stack trace. Each command is a module with `main()`:

    train       lcmt train        python -m lcmt_tf.cli.train       (scripts/train.py)
    check_data  lcmt check-data   python -m lcmt_tf.cli.check_data  (train --check_data)
    experiment  lcmt experiment   python -m lcmt_tf.cli.experiment  (scripts/experiment.py)
    evaluate    lcmt evaluate     python -m lcmt_tf.cli.evaluate    (scripts/evaluate.py)
    predict     lcmt predict      python -m lcmt_tf.cli.predict     (scripts/predict.py)
    export      lcmt export       python -m lcmt_tf.cli.export      (scripts/export.py)
    rank        lcmt rank         python -m lcmt_tf.cli.rank        (scripts/rank.py)
    pseudo_labels lcmt pseudo-labels  python -m lcmt_tf.cli.pseudo_labels
    audit       lcmt audit        python -m lcmt_tf.cli.audit       (scripts/audit.py)
    benchmark   lcmt benchmark    python -m lcmt_tf.cli.benchmark   (scripts/benchmark.py)
    check_devices lcmt check-devices  python -m lcmt_tf.cli.check_devices

`lcmt` (and `python -m lcmt_tf`) dispatches to them (lcmt_tf.cli.main). A command
defines its absl flags when it runs, not when it is imported.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable

from absl import app, flags

from lcmt_tf.errors import UserInputError
from lcmt_tf.flagfiles import parse_flag_args


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived; `exit_status` is 128 + the signal's number."""

    def __init__(self, signal_number: int):
        super().__init__(signal.Signals(signal_number).name)
        self.signal_name = signal.Signals(signal_number).name
        self.signal_number = signal_number
        self.exit_status = 128 + signal_number


class StopRequest:
    """The signal that asked a command to stop, kept until the command has stopped.

    The signal handler raises `Interrupted` at once, but third-party code can swallow
    it (TensorFlow's import runs code with bare `except:` clauses), so the request is
    also kept here: `check()` raises it again at the next safe point (the train command
    checks after every step), and leaving `signals_as_interrupts` raises it if nothing
    did.
    """

    def __init__(self):
        self.signal_number: int | None = None

    def check(self) -> None:
        """Raises `Interrupted` if a signal has asked to stop."""
        if self.signal_number is not None:
            raise Interrupted(self.signal_number)


# How long a stop request may wait for the main thread before a watchdog ends the
# command (see signals_as_interrupts): short of the 10 s a container runtime gives
# between SIGTERM and SIGKILL.
STOP_GRACE_S = 8.0
_stopping = threading.Lock()


@contextlib.contextmanager
def signals_as_interrupts(
    stopped_message: Callable[[str], str] | None = None, grace_s: float = STOP_GRACE_S
):
    """Inside the block, SIGINT and SIGTERM raise Interrupted in the main thread (as
    Ctrl-C raises KeyboardInterrupt), so a command stops the same way for both; a
    second signal while stopping is ignored. Yields the `StopRequest`, for the block
    to check at its safe points.

    With `stopped_message` (the signal's name -> the line `stopped` prints), the stop
    cannot be lost: if the command is still running `grace_s` after the signal, a
    watchdog thread ends it with `stopped`, as the main thread would have. That covers
    a main thread that cannot act in time: inside a long XLA compilation, or after the
    exception was raised inside a garbage-collection callback (JAX's `_xla_gc_callback`),
    where Python prints "Exception ignored" and drops it, and no safe point comes before
    the sender's SIGKILL. Only for commands whose state on disk is complete between any
    two instructions (the train command: each file is written atomically, and the lock
    is the kernel's)."""
    request = StopRequest()

    def interrupt(number, frame):
        for name in (signal.SIGINT, signal.SIGTERM):
            signal.signal(name, signal.SIG_IGN)
        request.signal_number = number
        if stopped_message is not None:
            stop = Interrupted(number)
            watchdog = threading.Timer(grace_s, stopped, (stop, stopped_message(stop.signal_name)))
            watchdog.daemon = True
            watchdog.start()
        raise Interrupted(number)

    previous = {name: signal.signal(name, interrupt) for name in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield request
        request.check()
    except KeyboardInterrupt as error:
        if isinstance(error, Interrupted):
            raise
        raise Interrupted(request.signal_number or signal.SIGINT) from None
    finally:
        for name, handler in previous.items():
            signal.signal(name, handler)


def stopped(stop: Interrupted, message: str) -> None:
    """Ends a command that a signal stopped: `message` on stderr on a line of its own,
    then exit with the signal's status (130, 143) at once, with no interpreter teardown.

    Why not sys.exit: a JAX process stopped mid-run can have a compilation running on
    one of XLA's threads, and the interpreter's teardown destroys the devices under it
    (a segmentation fault, exit -11, after the clean stop line: seen with the
    compilation of an evaluation step). Everything a run keeps is already on disk when
    this runs (its last completed epoch, written atomically; the lock is released by
    the kernel), and the streams and log handlers are flushed first."""
    import logging

    _stopping.acquire()  # the main thread or the watchdog, whichever comes first
    sys.stdout.flush()
    if sys.stdout.isatty():  # after a progress bar's unfinished line
        sys.stdout.write("\n")
        sys.stdout.flush()
    print(f"{program()}: {message}", file=sys.stderr, flush=True)
    logging.shutdown()
    sys.stderr.flush()
    os._exit(stop.exit_status)


def program() -> str:
    return os.path.basename(sys.argv[0]) or "lcmt"


def fail(message: str) -> None:
    print(f"{program()}: error: {message}", file=sys.stderr)
    sys.exit(2)


HELP_FLAGS = frozenset({"-h", "-?", "--help", "--helpshort", "--helpfull"})


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing, flag files found by name (lcmt_tf.flagfiles), its errors as
    one line."""
    try:
        return parse_flag_args(flags.FLAGS, argv[0], argv[1:])
    except UserInputError as error:
        fail(str(error))


def check_run_arguments(argv: list[str], model_dir: str | None, purpose: str) -> None:
    """The checks every command on a run directory starts with, before a backend
    starts: no stray arguments, and --model_dir names a trained run."""
    if len(argv) > 1:
        fail(f"unexpected arguments {argv[1:]}; flags look like --name=value")
    if not model_dir:
        fail(f"--model_dir is required: the run directory to {purpose}")
    from lcmt_tf.run_dir.layout import run_weights

    run_weights(model_dir)


def run(
    main: Callable[[list[str]], None], define_flags: Callable[[], None], doc: str | None
) -> None:
    """Defines the command's flags, then absl.app.run(main); a UserInputError that main
    raises becomes one line, exit 2. `--help` shows `doc` and the command's flags (absl
    shows the docstring of __main__ and the key flags of sys.argv[0])."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.modules["__main__"].__doc__ = doc
    before = set(flags.FLAGS)
    define_flags()
    for name in sorted(set(flags.FLAGS) - before):
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flags.FLAGS[name])

    def guarded(argv: list[str]) -> None:
        try:
            main(argv)
        except UserInputError as error:
            fail(str(error))

    try:
        app.run(guarded, flags_parser=parse_flags)
    except SystemExit as exit:
        # absl prints the help that --help (-h, --helpshort, --helpfull) asks for, then
        # exits 1; help that was asked for and printed is a success.
        if exit.code == 1 and HELP_FLAGS.intersection(sys.argv[1:]):
            sys.exit(0)
        raise
