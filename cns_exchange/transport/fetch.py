"""fetch: the CNS's return files from the drop box into the inbox, exactly once.

Each new file is downloaded under a temporary name in the inbox, fsynced, checked against
the size the server listed, moved into place without replacing anything, and recorded in
the ledger; only then, if the profile says so, is it deleted or archived on the server. A
file recorded once (same name, size and time) is never fetched again; a known name with new
content is kept beside the old file and reported. A run killed at any moment is completed by
the next one.
"""

from __future__ import annotations

import errno
import hashlib
import os
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import StrEnum
from pathlib import Path
from typing import Callable

from cns_exchange.errors import LocalIOError, TransportRetryableError
from cns_exchange.i18n import _
from cns_exchange.transport import TEMP_PREFIX, TEMP_SUFFIX, RemoteEntry, RetryingConnection, Transport, unsafe_name_reason


class RemoteState(StrEnum):
    """What becomes of a fetched file on the server (the ledger's ``fetched.remote_state``),
    from the profile's ``after_fetch``: kept, or deleted or archived once the local copy is on
    disk and recorded (DELETE and ARCHIVE: recorded, not done yet; the next run does it)."""

    KEPT = "kept"
    DELETE = "delete"
    ARCHIVE = "archive"
    DELETED = "deleted"
    ARCHIVED = "archived"


#: The state a file is recorded in, by the profile's ``after_fetch``.
_RECORDED_STATE = {"keep": RemoteState.KEPT, "delete": RemoteState.DELETE, "archive": RemoteState.ARCHIVE}


@dataclass
class Fetched:
    """One file fetched (or, in a dry run, to be fetched)."""

    name: str
    path: str
    size: int
    sha256: str
    note: str = ""

    def as_dict(self) -> dict:
        d = {"name": self.name, "path": self.path, "size": self.size, "sha256": self.sha256}
        if self.note:
            d["note"] = self.note
        return d


@dataclass
class FetchReport:
    fetched: list[Fetched] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)   # (name, why)
    warnings: list[str] = field(default_factory=list)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class _HashingFile:
    """Writes to a file while hashing and counting."""

    def __init__(self, f) -> None:
        self.f, self.digest, self.size = f, hashlib.sha256(), 0

    def write(self, data: bytes) -> None:
        self.f.write(data)
        self.digest.update(data)
        self.size += len(data)


class Fetcher:
    """Fetches new files of the download folder into the inbox and keeps the ledger."""

    def __init__(self, conn: sqlite3.Connection, profile: str, remote: str, folder: str, inbox: Path,
                 after_fetch: str, archive_folder: str | None, connect: Callable[[], Transport],
                 retries: int, backoff: float, on_retry=None) -> None:
        self.conn, self.profile, self.remote, self.folder, self.inbox = conn, profile, remote, folder, inbox
        self.after_fetch, self.archive_folder = after_fetch, archive_folder
        self.connection = RetryingConnection(connect, retries, backoff, on_retry)

    def close(self) -> None:
        self.connection.close()

    def _with_transport(self, action):
        return self.connection.run(action)

    #: Files downloaded at once (one ledger transaction each) and SFTP sessions used for them.
    BATCH = 64
    SESSIONS = 4

    def run(self, dry_run: bool = False, emit: Callable[[Fetched], None] | None = None,
            report: FetchReport | None = None) -> FetchReport:
        """Fetch every new file; call ``emit`` for each as soon as it is recorded.

        Fills and returns ``report`` (a new one if None): given by the caller, it keeps what
        was done before an error stopped the run. Raises the transport's errors, and
        LocalIOError when the inbox cannot take a file (a full disk, permissions): then nothing
        is recorded or deleted, and it is not retried within the run (the disk will not have
        emptied a second later).
        """
        report = report if report is not None else FetchReport()
        self._remove_stale_temps()
        self._finish_remote_actions(report)
        entries: list[RemoteEntry] = self._with_transport(lambda t: t.list(self.folder))
        todo: list[RemoteEntry] = []
        for entry in entries:
            if entry.name.startswith(TEMP_PREFIX) and entry.name.endswith(TEMP_SUFFIX):
                continue
            why = unsafe_name_reason(entry.name)
            if why:
                report.skipped.append((entry.name.encode("unicode_escape").decode(), _("unsafe name: {why}").format(why=why)))
                continue
            if not entry.is_file:
                report.skipped.append((entry.name, _("not a regular file (a link or a folder): not followed")))
                continue
            known = self.conn.execute("SELECT 1 FROM fetched WHERE remote = ? AND remote_name = ? AND size = ? AND mtime = ?",
                                      (self.remote, entry.name, entry.size, entry.mtime)).fetchone()
            if known is None:
                todo.append(entry)
        for start in range(0, len(todo), self.BATCH):
            batch = todo[start:start + self.BATCH]
            if dry_run:
                items = [Fetched(e.name, "", e.size, "", _("would be fetched")) for e in batch]
            else:
                items = self._fetch_batch(batch, report)
            for item in items:
                report.fetched.append(item)
                if emit:
                    emit(item)
        if not dry_run:
            self._finish_remote_actions(report)
        return report

    def _remove_stale_temps(self) -> None:
        """Delete the partial downloads a killed run left in the inbox (we hold the lock)."""
        for stale in self.inbox.glob(f"{TEMP_PREFIX}*{TEMP_SUFFIX}"):
            stale.unlink(missing_ok=True)

    def _temp(self, entry: RemoteEntry) -> Path:
        return self.inbox / f"{TEMP_PREFIX}{entry.name}.{os.getpid()}{TEMP_SUFFIX}"

    def _download_lane(self, transport: Transport, entries: list[RemoteEntry]) -> list[str]:
        """Download ``entries`` one after the other over one session; return their SHA-256s.

        Where the transport reads small files many at once (SFTP's get_small), those come
        from one such read; the rest, and any it could not take whole, through get().
        """
        whole: list[bytes | None] = [None] * len(entries)
        if len(entries) > 1 and hasattr(transport, "get_small"):
            whole = transport.get_small(self.folder, entries)
        return [self._download(transport, e, data) for e, data in zip(entries, whole)]

    def _download(self, transport: Transport, entry: RemoteEntry, data: bytes | None = None) -> str:
        """Download one file (or write ``data``, already read) to its temp name, fsynced and
        size-checked; return its SHA-256."""
        temp = self._temp(entry)
        try:
            fd = os.open(temp, os.O_CREAT | os.O_TRUNC | os.O_WRONLY | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as f:
                sink = _HashingFile(f)
                if data is None:
                    transport.get(self.folder, entry.name, sink, size=entry.size)
                else:
                    sink.write(data)
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            temp.unlink(missing_ok=True)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EROFS, errno.EIO):
                raise LocalIOError(_("inbox {folder}: {reason} while fetching {name}").format(
                    folder=self.inbox, reason=exc.strerror, name=entry.name),
                    _("free space in (or fix) the inbox; nothing was recorded or deleted on the server")) from None
            raise
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        if sink.size != entry.size:
            temp.unlink(missing_ok=True)
            raise TransportRetryableError(_("{name}: received {received} bytes, the server listed {size}").format(
                name=entry.name, received=sink.size, size=entry.size),
                _("the file may still be being written: the next run fetches it"))
        return sink.digest.hexdigest()

    def _fetch_batch(self, batch: list[RemoteEntry], report: FetchReport) -> list[Fetched]:
        """Download a batch over several SFTP sessions at once (small files are bound by round
        trips, not bandwidth), then place and record it in one transaction."""
        from concurrent.futures import ThreadPoolExecutor

        def download_all(transport: Transport) -> list[str]:
            sessions = [transport] + [transport.clone() for _n in range(min(self.SESSIONS, len(batch)) - 1)]
            try:
                lanes = [batch[i::len(sessions)] for i in range(len(sessions))]
                with ThreadPoolExecutor(len(sessions)) as pool:
                    results = list(pool.map(lambda lane_session: self._download_lane(lane_session[1], lane_session[0]),
                                            zip(lanes, sessions)))
            finally:
                for extra in sessions[1:]:
                    extra.close_clone()
            shas: dict[str, str] = {}
            for lane, lane_results in zip(lanes, results):
                for entry, sha in zip(lane, lane_results):
                    shas[entry.name] = sha
            return [shas[e.name] for e in batch]

        try:
            shas = self._with_transport(download_all)
            placed = [self._place(self._temp(e), e.name, sha) for e, sha in zip(batch, shas)]
        finally:
            for entry in batch:
                self._temp(entry).unlink(missing_ok=True)
        from cns_exchange.fsutil import fsync_dir

        fsync_dir(self.inbox)
        items: list[Fetched] = []
        state = _RECORDED_STATE[self.after_fetch]
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            for entry, sha, (path, note) in zip(batch, shas, placed):
                earlier = self.conn.execute("SELECT id, sha256 FROM fetched WHERE remote = ? AND remote_name = ? ORDER BY id",
                                            (self.remote, entry.name)).fetchall()
                duplicate_of = next((r["id"] for r in earlier if r["sha256"] == sha), None)
                if earlier and duplicate_of is None:
                    note = note or _("new content under a known name")
                    report.warnings.append(_("{name}: the server offers new content under a name fetched before; "
                                             "kept beside the old file as {kept}").format(name=entry.name, kept=path.name))
                self.conn.execute(
                    "INSERT INTO fetched (remote_name, size, mtime, sha256, local_path, profile, remote, fetched_at, "
                    "remote_state, duplicate_of) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (entry.name, entry.size, entry.mtime, sha, str(path), self.profile, self.remote, _now(), state, duplicate_of))
                items.append(Fetched(entry.name, str(path), entry.size, sha, note))
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        return items

    def _place(self, temp: Path, name: str, sha: str) -> tuple[Path, str]:
        """Move the downloaded temp file to its name in the inbox, never over another file."""
        from cns_exchange.transport.upload import sha256_of

        target = self.inbox / name
        if target.exists():
            if sha256_of(target)[0] == sha:
                return target, ""  # the same file (a run killed before recording it)
            stem, dot, ext = name.rpartition(".")
            target = self.inbox / (f"{stem}~{sha[:12]}.{ext}" if dot else f"{name}~{sha[:12]}")
            if target.exists():
                return target, _("same content as an earlier copy")
        try:
            os.link(temp, target)
        except FileExistsError:
            pass
        except OSError as exc:
            raise LocalIOError(_("inbox {folder}: {reason}").format(folder=self.inbox, reason=exc.strerror),
                               _("check the inbox folder")) from None
        return target, "" if target.name == name else _("kept beside an older file of that name")

    def _finish_remote_actions(self, report: FetchReport) -> None:
        """Delete or archive on the server what is recorded locally and still waits for it."""
        rows = self.conn.execute("SELECT id, remote_name, remote_state, size, mtime FROM fetched WHERE remote = ? "
                                 "AND remote_state IN (?, ?)", (self.remote, RemoteState.DELETE, RemoteState.ARCHIVE)).fetchall()
        for row in rows:
            def act(transport: Transport, row=row):
                current = transport.stat(self.folder, row["remote_name"])
                if current is None or (current.size, current.mtime) != (row["size"], row["mtime"]):
                    return  # gone, or replaced by a newer file of that name: not ours to remove
                if row["remote_state"] == RemoteState.DELETE:
                    transport.remove(self.folder, row["remote_name"])
                else:
                    transport.move(self.folder, row["remote_name"], self.archive_folder or f"{self.folder}/archive")

            self._with_transport(act)
            done = RemoteState.DELETED if row["remote_state"] == RemoteState.DELETE else RemoteState.ARCHIVED
            self.conn.execute("UPDATE fetched SET remote_state = ? WHERE id = ?", (done, row["id"]))
