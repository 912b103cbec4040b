"""One owner per run directory: a training holds an OS lock (`flock`) on MODEL_DIR/.lock
for its lifetime (and an experiment command on its --root, the same way). The kernel
drops the lock when the process ends, however it ends, so a lock left by a killed
process never blocks; the file itself stays and names the last holder's process id."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator

from lcmt_tf.errors import UserInputError

LOCK_FILE = ".lock"


def _holder(path: str) -> str:
    try:
        with open(path) as file:
            pid = file.read().strip()
    except OSError:
        pid = ""
    return f"process {pid}" if pid.isdigit() else "another process"


class RunDirectoryLock:
    """The lock of one run directory; `acquire()` raises UserInputError (one line naming
    the holder) when another process holds it."""

    def __init__(self, model_dir: str, flag: str = "--model_dir", holder: str = "a training"):
        self.model_dir = model_dir
        self.flag, self.holder = flag, holder
        self.path = os.path.join(model_dir, LOCK_FILE)
        self._fd: int | None = None

    def acquire(self, purpose: str = "train in", record_pid: bool = True) -> RunDirectoryLock:
        os.makedirs(self.model_dir, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(fd)
            if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise UserInputError(
                f"{self.flag}={self.model_dir} is in use by {_holder(self.path)} ({self.holder} "
                f"holds {self.path}); wait for it to end, or stop it, before you {purpose} it"
            ) from None
        if record_pid:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunDirectoryLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def check_not_in_use(model_dir: str, purpose: str) -> None:
    """Raises UserInputError if a training holds `model_dir` (e.g. before forking from
    it); takes and drops the lock at once otherwise. A directory without a lock file
    is not in use."""
    if not os.path.exists(os.path.join(model_dir, LOCK_FILE)):
        return
    lock = RunDirectoryLock(model_dir)
    with contextlib.suppress(PermissionError):  # a read-only run cannot be training
        lock.acquire(purpose, record_pid=False)
        lock.release()


@contextlib.contextmanager
def _holding(directory: str, acquire) -> Iterator[None]:
    """Holds the lock `acquire()` takes on `directory` inside the block; a directory the
    block created and left holding only the lock is removed again."""
    created = not os.path.exists(directory)
    lock = acquire()
    try:
        yield
    finally:
        lock.release()
        if created and os.listdir(directory) == [LOCK_FILE]:
            os.remove(lock.path)
            os.rmdir(directory)


def holding_root(root: str):
    """An experiment command's hold on its --root: a second command on the same root is
    refused before it starts anything (each run directory inside has its own lock)."""
    return _holding(
        root,
        lambda: RunDirectoryLock(root, "--root", "an experiment command").acquire(
            "run experiments in"
        ),
    )


def holding(model_dir: str, enabled: bool = True):
    """Holds the lock of `model_dir` inside the block (a no-op when not `enabled`: the
    processes of a multi-worker run other than the chief do not own the directory)."""
    if not enabled:
        return contextlib.nullcontext()
    return _holding(model_dir, lambda: RunDirectoryLock(model_dir).acquire())
