"""The one error family of cnsx and its exit codes.

Every failure a user can cause is a :class:`CnsxError` subclass carrying its exit code, a
message saying what failed and where, and a hint saying what to try next. Only
``cli.main`` turns them into a process exit; nothing else calls ``sys.exit``. Messages and
hints are English data (``i18n._`` marks them; ``str(exc)`` is English); the console shows
them in the user's language.
"""

from __future__ import annotations

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


#: SQLite's failures that are the machine's, not cnsx's: its database file or folder cannot be
#: written (permissions, a read-only or full disk), with what to say of each.
_SQLITE_LOCAL = {
    "SQLITE_READONLY": _("the practice database cannot be written (read-only: its permissions, or a read-only disk) ({error})"),
    "SQLITE_FULL": _("the practice database cannot be written: the disk is full ({error})"),
    "SQLITE_CANTOPEN": _("the practice database cannot be opened (its folder's permissions?) ({error})"),
    "SQLITE_PERM": _("the practice database cannot be used: access denied ({error})"),
    "SQLITE_IOERR": _("the practice database cannot be read or written (an input/output error of the disk) ({error})"),
}


def local_failure(exc: BaseException) -> CnsxError | None:
    """The error to report for a library's failure that is the machine's, not a bug of cnsx:
    the practice database cannot be written (read-only file or disk, full disk, permissions).
    None for anything else. (An OSError names its file itself; cli.main reports those.)"""
    name = getattr(exc, "sqlite_errorname", None)   # sqlite3.Error, Python 3.11+
    if not isinstance(name, str):
        return None
    for prefix, what in _SQLITE_LOCAL.items():
        if name == prefix or name.startswith(prefix + "_"):
            return ConfigError(what.format(error=exc),
                               _("check the database file and its folder: owner, permissions, free space (cnsx doctor names them)"))
    return None
