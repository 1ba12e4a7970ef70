"""One cnsx run at a time per database: an fcntl lock on a file beside it."""

from __future__ import annotations

import fcntl
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from cns_exchange.errors import LockedError
from cns_exchange.fsutil import private_dir
from cns_exchange.i18n import _

@contextmanager
def run_lock(database: Path, wait: float = 0) -> Iterator[None]:
    """Hold the lock of ``database`` for the block; wait up to ``wait`` seconds for it.

    Raises LockedError (exit 7) if another run holds it. The kernel releases the lock when
    the process dies, so a killed run never leaves it stuck.
    """
    path = Path(f"{database}.lock")
    private_dir(path.parent)
    # O_CLOEXEC: a program this run starts (ssh) must not inherit, and so keep, the lock.
    fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    # One line, for cron mail: what and what to do.
                    raise LockedError(_("another cnsx run is using {database}: let it finish, or pass --wait SECONDS")
                                      .format(database=database)) from None
                time.sleep(0.1)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)  # releases the lock
