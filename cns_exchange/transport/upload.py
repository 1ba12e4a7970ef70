"""upload: validated documents (and their prescription PDFs) to the CNS, exactly once.

Every file is validated before anything is sent; a request file's PDFs go up before the
request that names them. Each upload is recorded in the ledger: a 'pending' row before the
transfer, 'sent' after the file is published under its final name. Content already sent is
not sent again (``--force`` resends a document under a new sequence number). A run killed at
any moment leaves at most a temporary file on the server, removed by the next run, and a
'pending' row that the next run completes by checking what the server holds.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import StrEnum
from pathlib import Path
from typing import Callable

from cns_exchange.errors import InputError, TransportFatalError
from cns_exchange.fsutil import sha256_of  # (the upload command takes it from here too)
from cns_exchange.i18n import _, join, ngettext
from cns_exchange.issues import ERROR, Issue
from cns_exchange.domain.naming import disagreements, make_name, parse_name
from cns_exchange.transport import RetryingConnection, Transport
from cns_exchange.documents.read import read_header
from cns_exchange.documents.schemas import kind_word


@dataclass
class Planned:
    """A file to send: local path, final remote name, kind, hash and size."""

    path: Path
    name: str
    kind: str
    sha256: str
    size: int


class UploadStatus(StrEnum):
    """What became of one file (equal to its text, as ``upload --json`` prints it)."""

    SENT = "sent"
    ALREADY_SENT = "already-sent"   # sent before (the same content): not sent again
    RECOVERED = "recovered"         # found complete on the server, put there by a run killed before recording it


@dataclass
class Outcome:
    """What happened to one file."""

    name: str
    status: UploadStatus
    sha256: str
    size: int
    local_path: str

    def as_dict(self) -> dict:
        return {"name": self.name, "status": self.status, "sha256": self.sha256, "size": self.size,
                "path": self.local_path}


def plan(paths: list[Path], validator, names: dict[Path, str] | None = None) -> list[Planned]:
    """Validate every document and list what to send, PDFs before the request naming them.

    Raises InputError (exit 3) with every issue if any document is invalid or a PDF it
    names is missing beside it or differs from its SHA-256 (validate.check_attachment,
    through the validator): then nothing is sent.
    """
    issues: list[Issue] = []
    planned: list[Planned] = []
    for path in paths:
        report = validator.validate(str(path))
        issues.extend(i for i in report.issues if i.is_error)
        if not report.ok:
            continue
        name = (names or {}).get(path, path.name)
        refused = _not_to_send(report.kind, name) or _misnamed(path, report.kind, name)
        if refused:
            issues.append(Issue(refused[0], refused[1], file=str(path), severity=ERROR))
            continue
        planned.extend(Planned(a.path, a.path.name, "attachment", a.sha256, a.size) for a in report.attachments)
        sha, size = sha256_of(path)
        planned.append(Planned(path, name, report.kind, sha, size))
    if issues:
        raise InputError(ngettext("{n} problem in the files to upload; nothing was sent",
                                  "{n} problems in the files to upload; nothing was sent", len(issues)).format(n=len(issues)),
                         _("fix them (cnsx validate shows the same) and run again"), issues)
    return planned


#: What a practice sends the CNS; the other kinds come from the CNS.
SENDABLE = ("request", "billing")


def _not_to_send(kind: str, name: str) -> tuple[str, str] | None:
    """(code, message) when a valid document is not one to send under ``name``, else None."""
    if kind not in SENDABLE:
        message = _("this is an {kind} document, which comes from the CNS: upload sends request and billing files") \
            if kind[:1] in "aeiou" else \
            _("this is a {kind} document, which comes from the CNS: upload sends request and billing files")
        return "DOC06", message.format(kind=kind_word(kind))
    parsed = parse_name(name)
    if parsed is None or parsed.kind != kind:
        return "DOC07", _("'{name}' is not a name the CNS expects for a {kind} file (SENDER_KIND_YYYYMMDD_SEQUENCE.xml): "
                          "it would be filed under a wrong name").format(name=name, kind=kind_word(kind))
    return None


def receive(stream, outbox: Path, name: str, limit: int) -> Path:
    """Keep the document read from ``stream`` (stdin, for ``upload - --name NAME``) in the
    outbox as NAME and return its path. Read a chunk at a time, at most ``limit`` bytes
    (InputError XML03 beyond); written atomically, never over a file (UsageError if NAME is
    there): interrupted, it leaves nothing behind."""
    from cns_exchange.errors import UsageError
    from cns_exchange.fsutil import copy_atomic
    from cns_exchange.documents.safe import spool

    target = outbox / name
    if target.exists():
        raise UsageError(_("{file} exists already").format(file=target), _("upload that file, or give another --name"))
    with spool("<stdin>", stream, limit) as received:
        copy_atomic(Path(received.name), target, sha256_of(Path(received.name))[0])
    return target


def _misnamed(path: Path, kind: str, name: str) -> tuple[str, str] | None:
    """(code, message) when ``name`` (the file's, or ``upload --name``) says another provider,
    kind, creation date or sequence than the document's header, else None: the CNS files a
    document by its name, so a name of another practice, another day or another number would
    file it under that one's."""
    with open(path, "rb") as source:
        header = read_header(source)
    if header is None:  # (validated just before: cannot happen but by a file changed meanwhile)
        return "DOC09", _("the header cannot be read to check the name against it")
    found = disagreements(name, kind, header.provider, header.created.date(), header.sequence)
    if found:
        return "DOC09", _("'{name}' is not this document's name: it says {found}").format(name=name, found=join("; ", found))
    return None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Uploader:
    """Sends planned files over a transport and keeps the ledger."""

    def __init__(self, conn: sqlite3.Connection, profile: str, remote: str, folder: str,
                 connect: Callable[[], Transport], retries: int, backoff: float,
                 on_retry: Callable[[Exception, int, float], None] | None = None) -> None:
        self.conn, self.profile, self.remote, self.folder = conn, profile, remote, folder
        # A new session first removes what killed runs left in the upload folder.
        self.connection = RetryingConnection(connect, retries, backoff, on_retry,
                                             on_open=lambda t: t.remove_stale_temps(folder))

    def close(self) -> None:
        self.connection.close()

    def _with_transport(self, action: Callable[[Transport], object]):
        return self.connection.run(action)

    def sent_row(self, sha256: str, name: str | None = None):
        """The upload that sent this content (under ``name``, when the name matters), or None."""
        return self.conn.execute(
            "SELECT name, finished_at FROM uploads WHERE sha256 = ? AND remote = ? AND result = 'sent'"
            + (" AND name = ?" if name is not None else "") + " ORDER BY id LIMIT 1",
            (sha256, self.remote) + ((name,) if name is not None else ())).fetchone()

    def send(self, item: Planned, force: bool = False, progress: Callable[[int], None] | None = None) -> Outcome:
        """Send one planned file (or find it already sent); record it. Returns the outcome.

        A document is sent once whatever its name; a prescription once under each name a
        request gives it (the CNS looks for the name: two requests may carry identical scans)."""
        done = self.sent_row(item.sha256, item.name if item.kind == "attachment" else None)
        if done is not None and not force:
            return Outcome(done["name"], UploadStatus.ALREADY_SENT, item.sha256, item.size, str(item.path))
        row = self.conn.execute("SELECT id, sha256, result FROM uploads WHERE remote = ? AND name = ?",
                                (self.remote, item.name)).fetchone()
        if row is not None and row["sha256"] != item.sha256:
            raise InputError(_("{name}: another file was already sent under this name").format(name=item.name),
                             _("rebuild the document (it takes the next sequence number), or use --force to resend it renumbered"))
        if row is None:
            self.conn.execute(
                "INSERT INTO uploads (name, sha256, size, kind, profile, remote, local_path, started_at, result) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending')",
                (item.name, item.sha256, item.size, item.kind, self.profile, self.remote, str(item.path), _now()))
        status = self._with_transport(lambda t: self._put(t, item, progress))
        self.conn.execute("UPDATE uploads SET result = 'sent', finished_at = ?, message = NULL WHERE remote = ? AND name = ?",
                          (_now(), self.remote, item.name))
        return Outcome(item.name, status, item.sha256, item.size, str(item.path))

    def _put(self, transport: Transport, item: Planned, progress: Callable[[int], None] | None = None) -> UploadStatus:
        with open(item.path, "rb") as source:
            try:
                transport.put(source, item.size, self.folder, item.name, progress)
                return UploadStatus.SENT
            except FileExistsError:
                pass
        # The name is taken on the server: ours from a run killed after publishing, or not.
        digest = hashlib.sha256()

        class _Sink:
            def write(self, data: bytes) -> None:
                digest.update(data)

        transport.get(self.folder, item.name, _Sink())
        if digest.hexdigest() == item.sha256:
            return UploadStatus.RECOVERED
        raise TransportFatalError(_("{name}: the server already holds a different file of that name").format(name=item.name),
                                  _("cnsx never overwrites a file on the server: rebuild the document with a new sequence number"))


_SEQUENCE = re.compile(rb"(<NumeroSequence>)\s*\d+\s*(</NumeroSequence>)")


def renumber_sent(paths: list[Path], conn: sqlite3.Connection, remote: str, outbox: Path) -> list[Path]:
    """``upload --force``: the documents to send, each one whose content was sent to
    ``remote`` already replaced by a copy under the next free sequence number, written into
    the outbox (:func:`renumbered_copy`). Raises InputError as that does."""
    renamed = []
    for path in paths:
        sha, _size = sha256_of(path)
        sent = conn.execute("SELECT 1 FROM uploads WHERE sha256 = ? AND remote = ? AND result = 'sent'",
                            (sha, remote)).fetchone()
        renamed.append(renumbered_copy(path, conn, remote, outbox)[0] if sent else path)
    return renamed


def renumbered_copy(path: Path, conn: sqlite3.Connection, remote: str, outbox: Path) -> tuple[Path, str]:
    """Write a copy of a document under the next free sequence number (for --force).

    Returns (new path, new name). The sequence is one more than the highest sent or local
    one for the same sender, kind and day.
    """
    from cns_exchange.fsutil import publish, temp_file

    parsed = parse_name(path.name)
    if parsed is None:
        raise InputError(_("{name}: --force renumbers documents named by the convention only").format(name=path.name),
                         _("rename it SENDER_KIND_YYYYMMDD_SEQUENCE.xml"))
    prefix = path.name.rsplit("_", 1)[0] + "_"
    used = {parsed.sequence}
    for (name,) in conn.execute("SELECT name FROM uploads WHERE remote = ? AND name LIKE ?", (remote, prefix + "%")):
        other = parse_name(name)
        if other is not None:
            used.add(other.sequence)
    for other_path in outbox.glob(prefix + "*.xml"):
        other = parse_name(other_path.name)
        if other is not None:
            used.add(other.sequence)
    sequence = max(used) + 1
    name = make_name(parsed.sender, parsed.kind, parsed.day, sequence)
    data = path.read_bytes()
    head, count = _SEQUENCE.subn(rb"\g<1>%d\g<2>" % sequence, data[:4096], count=1)
    if count != 1:
        raise InputError(_("{file}: no NumeroSequence in the header").format(file=path), _("rebuild the document with cnsx"))
    target = outbox / name
    with temp_file(outbox) as (stream, temp):
        stream.write(head + data[4096:])
        stream.close()
        publish(temp, target, overwrite=False)
    return target, name


def move_sent(path: Path, folder: Path) -> Path | None:
    """Move ``path``, a file recorded sent in the ledger, into ``folder`` (created 0700), for
    ``upload --move-sent``: linked under the same name (copied to a temp file and published on
    another file system), never over an existing file, the folder fsynced, then removed from
    where it was. Returns the new path; the file already in ``folder`` when it holds the same
    bytes (the copy left behind is removed); None when a different file has that name there
    (then nothing moves)."""
    import errno
    import os
    import shutil

    from cns_exchange.fsutil import fsync_dir, private_dir, write_new

    private_dir(folder)
    target = folder / path.name
    try:
        os.link(path, target)
        fsync_dir(folder)
    except FileExistsError:
        if not target.is_file() or sha256_of(target) != sha256_of(path):
            return None
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.ENOTSUP):  # another file system, or no hard links
            raise
        try:
            with open(path, "rb") as source:
                write_new(target, lambda stream: shutil.copyfileobj(source, stream))
        except FileExistsError:
            if sha256_of(target) != sha256_of(path):
                return None
    path.unlink()
    fsync_dir(path.parent)
    return target


def move_all_sent(planned: list[Planned], folder: Path) -> tuple[int, list[Path]]:
    """``upload --move-sent``: move every planned file still where it was into ``folder``
    (:func:`move_sent`), once all of them are recorded sent (a request's PDFs stay beside it
    until it is). Returns (how many moved, the files left where they are because another
    file has their name in ``folder``)."""
    moved, kept = 0, []
    for item in planned:
        if item.path.exists():
            if move_sent(item.path, folder) is None:
                kept.append(item.path)
            else:
                moved += 1
    return moved, kept
