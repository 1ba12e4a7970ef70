"""doctor: the checks of ``cnsx doctor``, in order, each passing with a detail or failing with
a CnsxError (its message, its hint as the fix, its exit code).

The configuration loads; the files holding health data or settings are private; the tariff
tables, codes and schema sets load; the remote is configured; the connection is made (host key
trusted, login accepted); the upload and download folders can be listed. A check that cannot
be made without an earlier one (no settings, no remote, no connection) is not made.
"""

from __future__ import annotations

from typing import Callable

from cns_exchange.errors import CnsxError, ConfigError
from cns_exchange.i18n import _, ngettext

#: The local folders of a profile that hold health data.
PRIVATE_FOLDERS = ("outbox", "inbox", "archive", "errors")


def loose_permissions(settings) -> list[str]:
    """The commands that make private what others can read: the config file and the database
    (``chmod 600``), the local folders (``chmod 700``); empty when all is private."""
    loose = []
    if settings.path and settings.path.stat().st_mode & 0o077:
        loose.append(f"chmod 600 {settings.path}")
    db = settings.database_path()
    if db.exists() and db.stat().st_mode & 0o077:
        loose.append(f"chmod 600 {db}")
    for name in PRIVATE_FOLDERS:
        folder = settings.local_dir(name)
        if folder.stat().st_mode & 0o077:
            loose.append(f"chmod 700 {folder}")
    return loose


def check_permissions(settings) -> str:
    """The permissions check: its detail, or ConfigError with the commands that fix it."""
    loose = loose_permissions(settings)
    if loose:
        raise ConfigError(_("files holding health data or settings can be read by others"), "; ".join(loose))
    return _("config, database and local folders private")


def diagnose(settings: Callable[[], object], tables: Callable[[], object], prompt: Callable[[str], str],
             report: Callable[[str, str | None, CnsxError | None], None]) -> list[CnsxError]:
    """Run the checks; after each one call ``report(label, detail, None)`` when it passed or
    ``report(label, None, error)`` when it failed. ``settings`` and ``tables`` load the
    profile's settings and tables (raising CnsxError); ``prompt`` asks for a secret. Returns
    the failures, in order (none: all is well)."""
    failures: list[CnsxError] = []

    def check(label: str, action: Callable[[], str]):
        try:
            detail = action()
        except CnsxError as exc:
            failures.append(exc)
            report(label, None, exc)
            return None
        report(label, detail, None)
        return detail or True

    if check(_("config"), lambda: str(settings().path) if settings().path else _("no config file (defaults)")) is None:
        return failures
    s = settings()
    check(_("permissions"), lambda: check_permissions(s))
    check(_("tables and schemas"), lambda: (tables(), _("tariffs, codes and schema sets load"))[1])
    if check(_("remote"), lambda: str(s.remote_url())) is None:
        return failures
    opened = []

    def connect() -> str:
        from cns_exchange.transport import open_transport

        opened.append(open_transport(s, prompt))
        return _("drop-box folder reachable") if s.remote_url().scheme == "file" else _("connected, host key trusted, logged in")

    if check(_("connection, host key and login"), connect):
        transport = opened[0]
        try:
            for label, folder in ((_("upload folder"), s.upload_dir), (_("download folder"), s.download_dir)):
                check(label, lambda folder=folder: _entries(folder, len(transport.list(str(folder)))))
        finally:
            transport.close()
    return failures


def _entries(folder, count: int) -> str:
    """The detail of a remote folder's check: '<folder>: 3 entries'."""
    return ngettext("{folder}: {n} entry", "{folder}: {n} entries", count).format(folder=folder, n=count)
