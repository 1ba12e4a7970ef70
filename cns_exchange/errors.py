"""The one error family of cnsx and its exit codes.

Every failure a user can cause is a :class:`CnsxError` subclass carrying its exit code, a
message saying what failed and where, and a hint saying what to try next. Only
``cli.main`` turns them into a process exit; nothing else calls ``sys.exit``. Messages and
hints are English data (``i18n._`` marks them; ``str(exc)`` is English); the console shows
them in the user's language.
"""

from __future__ import annotations

import errno
from enum import IntEnum
from typing import TYPE_CHECKING, Sequence

from cns_exchange.i18n import _

if TYPE_CHECKING:  # pragma: no cover
    from cns_exchange.issues import Issue


class ExitCode(IntEnum):
    """The documented exit codes (docs/cli.md). Never an error count."""

    OK = 0
    INTERNAL = 1
    USAGE = 2
    INVALID = 3
    CONFIG = 4
    TRANSPORT_RETRYABLE = 5
    TRANSPORT_FATAL = 6
    LOCKED = 7
    LOCAL_IO = 8       # a local file, folder or stream cannot be read or written (a full disk, permissions)
    INTERRUPTED = 130  # Ctrl-C, as shells report a SIGINT death
    OUTPUT_CUT = 141   # the reader of stdout went away (`| head`), as shells report a SIGPIPE death


class CnsxError(Exception):
    """Base of every error cnsx reports to a user."""

    exit_code: ExitCode = ExitCode.INTERNAL

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(CnsxError):
    """The command line itself is wrong (exit 2)."""

    exit_code = ExitCode.USAGE


class InputError(CnsxError):
    """Input data or a document is invalid (exit 3).

    ``issues`` holds every problem found, so that a user fixes a file in one go.
    """

    exit_code = ExitCode.INVALID

    def __init__(self, message: str, hint: str = "", issues: Sequence["Issue"] = ()) -> None:
        super().__init__(message, hint)
        self.issues = list(issues)


class ConfigError(CnsxError):
    """The configuration, a data table or a schema set is unusable (exit 4)."""

    exit_code = ExitCode.CONFIG


class TransportRetryableError(CnsxError):
    """The transport failed in a way a later run may not (exit 5)."""

    exit_code = ExitCode.TRANSPORT_RETRYABLE


class TransportFatalError(CnsxError):
    """The transport failed in a way retrying cannot fix (exit 6)."""

    exit_code = ExitCode.TRANSPORT_FATAL


class LockedError(CnsxError):
    """Another cnsx run holds the lock (exit 7)."""

    exit_code = ExitCode.LOCKED


class LocalIOError(CnsxError):
    """A local file, folder or stream cannot be read or written (exit 8): a full disk, a
    permission problem, a read-only file system, a file where a folder belongs, a stdout that
    takes nothing. The machine's state, not the configuration's nor a bug of cnsx."""

    exit_code = ExitCode.LOCAL_IO


#: SQLite's failures that are the machine's, not cnsx's: its database file or folder cannot be
#: written (permissions, a read-only or full disk), with what to say of each.
_SQLITE_LOCAL = {
    "SQLITE_READONLY": _("the practice database cannot be written (read-only: its permissions, or a read-only disk) ({error})"),
    "SQLITE_FULL": _("the practice database cannot be written: the disk is full ({error})"),
    "SQLITE_CANTOPEN": _("the practice database cannot be opened (its folder's permissions?) ({error})"),
    "SQLITE_PERM": _("the practice database cannot be used: access denied ({error})"),
    "SQLITE_IOERR": _("the practice database cannot be read or written (an input/output error of the disk) ({error})"),
}

#: What to try for an OSError of a local file, by its errno (else the last resort below).
_OS_HINTS = {
    errno.ENOSPC: _("free space on its disk, then run again"),
    errno.EDQUOT: _("free space within the disk quota, then run again"),
    errno.EACCES: _("check the owner and permissions of the file and its folders (cnsx doctor names them)"),
    errno.EPERM: _("check the owner and permissions of the file and its folders (cnsx doctor names them)"),
    errno.EROFS: _("it is on a read-only file system: give a writable place, or remount it read-write"),
    errno.ENOTDIR: _("a file stands where the path needs a folder: fix the path or the setting"),
    errno.EISDIR: _("a folder stands where the path needs a file: fix the path or the setting"),
    errno.EIO: _("the disk reports an input/output error: check it (dmesg) before running again"),
}


def _full_stdout(exc: OSError) -> str | None:
    """"stdout" when ``exc``, an OSError that names no file, is a full disk and stdout is one
    (``> /dev/full``, or a file on a disk with no space left): what a write to stdout meets in
    the middle of a command, where the stream's errors name nothing. Else None."""
    import os
    import stat

    if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return None
    try:
        st = os.fstat(1)
        if stat.S_ISCHR(st.st_mode):
            return "stdout" if (os.major(st.st_rdev), os.minor(st.st_rdev)) == (1, 7) else None  # /dev/full
        return "stdout" if stat.S_ISREG(st.st_mode) and os.fstatvfs(1).f_bavail == 0 else None
    except OSError:
        return None


def local_failure(exc: BaseException, name: str | None = None) -> CnsxError | None:
    """The error to report for a failure that is the machine's, not a bug of cnsx: a local
    file, folder or stream cannot be read or written (a full disk, permissions, a read-only
    file system, a file where a folder belongs), or the practice database cannot be written.
    A LocalIOError (exit 8) whose one-line message names the file (``exc.filename``, else
    ``name``, e.g. ``"stdout"``); None for anything else, a reader gone (BrokenPipeError,
    exit 141 in cli.main) included.

    A network failure (connection refused or reset, a timeout, a name that does not resolve)
    is None too: it is not the machine's. Each transport translates its own network errors
    into TransportRetryableError or TransportFatalError (transport/sftp.py decides which), so
    one that reaches here untranslated is a bug of cnsx (exit 1), not a local file's failure."""
    if isinstance(exc, OSError):
        import socket

        if isinstance(exc, BrokenPipeError):
            return None
        if isinstance(exc, (ConnectionError, TimeoutError, socket.gaierror)):
            return None  # the network's: the transport's to translate
        where = exc.filename if exc.filename is not None else name or _full_stdout(exc)
        what = exc.strerror or str(exc)
        return LocalIOError(_("{file}: {error}").format(file=where, error=what) if where is not None else what,
                            _OS_HINTS.get(exc.errno or 0, _("check the path, its permissions and the free space")))
    sqlite_name = getattr(exc, "sqlite_errorname", None)   # sqlite3.Error, Python 3.11+
    if not isinstance(sqlite_name, str):
        return None
    for prefix, what in _SQLITE_LOCAL.items():
        if sqlite_name == prefix or sqlite_name.startswith(prefix + "_"):
            return LocalIOError(what.format(error=exc),
                                _("check the database file and its folder: owner, permissions, free space (cnsx doctor names them)"))
    return None
