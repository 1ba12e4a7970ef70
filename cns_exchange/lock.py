"""One cnsx run at a time per database: an fcntl lock on a file beside it."""

from __future__ import annotations

import fcntl
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from cns_exchange.errors import LockedError

#: Descriptors of the locks this process holds (see close_inherited).
_HELD: set[int] = set()


def close_inherited() -> None:
    """In a forked child: close the lock descriptors inherited from the parent.

    An flock belongs to the open file, which a fork shares: a child that kept it would hold
    the lock after its parent died (killed, say), and the next run would find it taken.
    Closing the child's copy leaves the parent's lock as it is.
    """
    for fd in list(_HELD):
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD.clear()


@contextmanager
def run_lock(database: Path, wait: float = 0) -> Iterator[None]:
    """Hold the lock of ``database`` for the block; wait up to ``wait`` seconds for it.

    Raises LockedError (exit 7) if another run holds it. The kernel releases the lock when
    the process dies, so a killed run never leaves it stuck.
    """
    path = Path(f"{database}.lock")
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    # One line, for cron mail: what and what to do.
                    raise LockedError(f"another cnsx run is using {database}: let it finish, or pass --wait SECONDS") from None
                time.sleep(0.1)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        _HELD.add(fd)
        yield
    finally:
        _HELD.discard(fd)
        os.close(fd)  # releases the lock
