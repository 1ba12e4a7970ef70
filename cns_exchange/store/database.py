"""The practice database (SQLite): versioned schema, migrations, the transfer ledger.

The schema is applied by numbered migrations tracked in ``PRAGMA user_version``; users may
query the tables themselves (docs/database.md). The file is created 0600: it holds health
data. Every change is a transaction; concurrent runs are kept apart by :mod:`lock`.
"""

from __future__ import annotations

import os
import sqlite3
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Iterable

from cns_exchange.errors import ConfigError
from cns_exchange.fsutil import private_dir
from cns_exchange.i18n import _

MIGRATIONS: list[str] = [
    # 1: the transfer ledger: every upload and every fetched file.
    """
    CREATE TABLE uploads (
        id          INTEGER PRIMARY KEY,
        name        TEXT NOT NULL,              -- final name on the server
        sha256      TEXT NOT NULL,
        size        INTEGER NOT NULL,
        kind        TEXT NOT NULL,              -- request | billing | attachment
        profile     TEXT NOT NULL,
        remote      TEXT NOT NULL,              -- e.g. sftp://user@host:22
        local_path  TEXT NOT NULL,
        started_at  TEXT NOT NULL,
        finished_at TEXT,
        result      TEXT NOT NULL CHECK (result IN ('pending', 'sent', 'failed')),
        message     TEXT
    );
    CREATE UNIQUE INDEX uploads_name ON uploads (remote, name);
    CREATE INDEX uploads_sha256 ON uploads (sha256);
    CREATE TABLE fetched (
        id            INTEGER PRIMARY KEY,
        remote_name   TEXT NOT NULL,
        size          INTEGER NOT NULL,
        mtime         INTEGER NOT NULL,
        sha256        TEXT NOT NULL,
        local_path    TEXT NOT NULL,
        profile       TEXT NOT NULL,
        remote        TEXT NOT NULL,
        fetched_at    TEXT NOT NULL,
        remote_state  TEXT NOT NULL CHECK (remote_state IN ('kept', 'delete', 'archive', 'deleted', 'archived')),
        duplicate_of  INTEGER REFERENCES fetched (id)
    );
    CREATE UNIQUE INDEX fetched_key ON fetched (remote, remote_name, size, mtime);
    CREATE INDEX fetched_sha256 ON fetched (sha256);
    """,
    # 2: the documents exchanged and what they say, for matching and status.
    """
    CREATE TABLE documents (
        id           INTEGER PRIMARY KEY,
        kind         TEXT NOT NULL CHECK (kind IN ('request', 'billing', 'ack', 'answers', 'payment')),
        name         TEXT NOT NULL,
        sha256       TEXT NOT NULL UNIQUE,      -- a document is imported once
        provider     TEXT NOT NULL,
        created_at   TEXT NOT NULL,             -- EnTete/DateHeureCreation
        sequence     INTEGER NOT NULL,
        version      TEXT NOT NULL,
        imported_at  TEXT NOT NULL,
        archive_path TEXT,                      -- the original kept as evidence
        warnings     INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX documents_name ON documents (name);
    CREATE TABLE requests (
        id                INTEGER PRIMARY KEY,
        document_id       INTEGER NOT NULL REFERENCES documents (id),
        provider          TEXT NOT NULL,
        request_ref       TEXT NOT NULL,
        matricule         TEXT NOT NULL,
        last_name         TEXT NOT NULL,
        first_name        TEXT NOT NULL,
        prescriber        TEXT NOT NULL,
        prescription_date TEXT NOT NULL,
        pathologies       TEXT NOT NULL,        -- ';'-separated codes
        treatment         TEXT NOT NULL,
        acts              TEXT NOT NULL,        -- ZD11:1;ZD12:1;ZD13:4
        pdf_name          TEXT NOT NULL,
        pdf_sha256        TEXT NOT NULL,
        UNIQUE (provider, request_ref)
    );
    CREATE TABLE answers (
        id                 INTEGER PRIMARY KEY,
        document_id        INTEGER NOT NULL REFERENCES documents (id),
        request_ref        TEXT NOT NULL,
        matricule          TEXT NOT NULL,
        request_id         INTEGER REFERENCES requests (id),     -- NULL: matches no request
        certificate_number TEXT,                                  -- NULL: refused
        refused            INTEGER NOT NULL
    );
    CREATE INDEX answers_request ON answers (request_ref);
    CREATE TABLE certificates (
        number      TEXT PRIMARY KEY,
        answer_id   INTEGER NOT NULL REFERENCES answers (id),
        matricule   TEXT NOT NULL,
        valid_from  TEXT NOT NULL,
        valid_to    TEXT NOT NULL,
        acts        TEXT NOT NULL,              -- ZD11:1;ZD12:1;ZD13:4
        sessions_authorised INTEGER NOT NULL,
        sessions_billed     INTEGER NOT NULL DEFAULT 0   -- kept up to date by import
    );
    CREATE INDEX certificates_matricule ON certificates (matricule);
    CREATE INDEX certificates_valid_to ON certificates (valid_to);
    CREATE TABLE anomalies (
        id          INTEGER PRIMARY KEY,
        document_id INTEGER NOT NULL REFERENCES documents (id),
        answer_id   INTEGER REFERENCES answers (id),
        code        TEXT NOT NULL,
        label       TEXT NOT NULL,
        element     TEXT NOT NULL
    );
    CREATE TABLE fee_notes (
        id                 INTEGER PRIMARY KEY,
        document_id        INTEGER NOT NULL REFERENCES documents (id),
        number             INTEGER NOT NULL,
        certificate_number TEXT NOT NULL,
        matricule          TEXT NOT NULL,
        last_name          TEXT NOT NULL,
        first_name         TEXT NOT NULL
    );
    CREATE INDEX fee_notes_certificate ON fee_notes (certificate_number);
    CREATE INDEX fee_notes_document ON fee_notes (document_id, number);
    CREATE INDEX fee_notes_matricule ON fee_notes (matricule);
    CREATE TABLE sessions (
        id           INTEGER PRIMARY KEY,
        fee_note_id  INTEGER NOT NULL REFERENCES fee_notes (id),
        document_id  INTEGER NOT NULL REFERENCES documents (id),
        line_no      INTEGER NOT NULL,
        session_date TEXT NOT NULL,
        act          TEXT NOT NULL,
        executing    TEXT NOT NULL,
        gross        INTEGER NOT NULL,          -- cents
        patient_share INTEGER NOT NULL,
        cns_share    INTEGER NOT NULL,
        paid         INTEGER,                   -- accepted by the CNS (cents); NULL: no payment line yet
        disputed     INTEGER,                   -- billed - accepted when the line is disputed
        UNIQUE (fee_note_id, line_no)
    );
    CREATE INDEX sessions_document ON sessions (document_id);
    CREATE INDEX sessions_awaiting ON sessions (session_date) WHERE paid IS NULL;
    CREATE INDEX sessions_month ON sessions (substr(session_date, 1, 7), cns_share, paid, disputed);
    CREATE TABLE acknowledgements (
        id          INTEGER PRIMARY KEY,
        document_id INTEGER NOT NULL REFERENCES documents (id),
        file_name   TEXT NOT NULL,
        file_sha256 TEXT NOT NULL,
        received_at TEXT NOT NULL,
        accepted    INTEGER NOT NULL,
        upload_id   INTEGER REFERENCES uploads (id),           -- NULL: matches no upload
        acked_document_id INTEGER REFERENCES documents (id)
    );
    CREATE TABLE payments (
        id               INTEGER PRIMARY KEY,
        document_id      INTEGER NOT NULL REFERENCES documents (id),
        billing_name     TEXT NOT NULL,
        billing_sha256   TEXT NOT NULL,
        billing_document_id INTEGER REFERENCES documents (id), -- NULL: matches no billing file
        paid_on          TEXT NOT NULL,
        reference        TEXT NOT NULL
    );
    CREATE TABLE payment_lines (
        id                 INTEGER PRIMARY KEY,
        payment_id         INTEGER NOT NULL REFERENCES payments (id),
        fee_note_number    INTEGER NOT NULL,
        line_no            INTEGER NOT NULL,
        certificate_number TEXT NOT NULL,
        billed             INTEGER NOT NULL,    -- cents
        accepted           INTEGER NOT NULL,
        reason_code        TEXT,                -- NULL: accepted in full
        reason_label       TEXT,
        session_id         INTEGER REFERENCES sessions (id)    -- NULL: matches no billed session
    );
    CREATE INDEX payment_lines_session ON payment_lines (session_id);
    CREATE INDEX payment_lines_disputed ON payment_lines (session_id) WHERE reason_code IS NOT NULL;
    """,
    # 3: payments applied by batch, the latest line imported deciding; totals per month kept
    #    (a status no longer sums every session, an import no longer rewrites a covering index);
    #    a billing file the CNS rejected counts for nothing.
    """
    ALTER TABLE sessions ADD COLUMN payment_line_id INTEGER REFERENCES payment_lines (id);
    UPDATE sessions SET (paid, disputed, payment_line_id) = (
        SELECT p.accepted, CASE WHEN p.reason_code IS NOT NULL THEN p.billed - p.accepted END, p.id
        FROM payment_lines p WHERE p.session_id = sessions.id ORDER BY p.id DESC LIMIT 1)
    WHERE id IN (SELECT session_id FROM payment_lines WHERE session_id IS NOT NULL);
    ALTER TABLE documents ADD COLUMN rejected INTEGER NOT NULL DEFAULT 0;
    UPDATE documents SET rejected = 1 WHERE kind = 'billing' AND id IN (
        SELECT acked_document_id FROM acknowledgements WHERE accepted = 0 AND acked_document_id IS NOT NULL);
    UPDATE certificates SET sessions_billed = (
        SELECT count(*) FROM fee_notes f JOIN sessions s ON s.fee_note_id = f.id
        JOIN documents d ON d.id = f.document_id AND d.rejected = 0
        WHERE f.certificate_number = certificates.number);
    CREATE TABLE month_totals (
        month    TEXT PRIMARY KEY,              -- YYYY-MM of the session date
        sessions INTEGER NOT NULL DEFAULT 0,
        billed   INTEGER NOT NULL DEFAULT 0,    -- sum of cns_share (cents)
        paid     INTEGER NOT NULL DEFAULT 0,    -- sum of sessions.paid
        disputed INTEGER NOT NULL DEFAULT 0     -- sum of sessions.disputed
    );
    INSERT INTO month_totals (month, sessions, billed, paid, disputed)
        SELECT substr(session_date, 1, 7), count(*), sum(cns_share), coalesce(sum(paid), 0), coalesce(sum(disputed), 0)
        FROM sessions WHERE document_id NOT IN (SELECT id FROM documents WHERE rejected = 1) GROUP BY 1;
    DROP INDEX sessions_month;
    DROP INDEX payment_lines_session;
    CREATE INDEX payment_lines_unmatched ON payment_lines (payment_id) WHERE session_id IS NULL;
    """,
    # 4: one identity per billed session, counted once however often it is billed; the CNS's
    #    corrections ranked by its own date and sequence, not by import order; rebills kept.
    """
    ALTER TABLE documents ADD COLUMN rank TEXT NOT NULL DEFAULT '';
    UPDATE documents SET rank = strftime('%Y%m%dT%H%M%S', created_at) || printf('%010d', sequence);
    ALTER TABLE sessions ADD COLUMN identity TEXT NOT NULL DEFAULT '';
    ALTER TABLE sessions ADD COLUMN counted INTEGER NOT NULL DEFAULT 0;
    UPDATE sessions SET identity = (SELECT f.certificate_number || '|' || f.matricule FROM fee_notes f
                                    WHERE f.id = sessions.fee_note_id) || '|' || session_date || '|' || act;
    CREATE INDEX sessions_identity ON sessions (identity);
    ALTER TABLE payment_lines ADD COLUMN rank TEXT NOT NULL DEFAULT '';
    UPDATE payment_lines SET rank = (SELECT d.rank FROM payments p JOIN documents d ON d.id = p.document_id
                                     WHERE p.id = payment_lines.payment_id);
    ALTER TABLE sessions ADD COLUMN payment_key TEXT;
    UPDATE sessions SET (paid, disputed, payment_line_id, payment_key) = (
        SELECT p.accepted, CASE WHEN p.reason_code IS NOT NULL THEN p.billed - p.accepted END, p.id,
               p.rank || printf('#%012d', p.id)
        FROM payment_lines p WHERE p.session_id = sessions.id ORDER BY p.rank DESC, p.id DESC LIMIT 1)
    WHERE id IN (SELECT session_id FROM payment_lines WHERE session_id IS NOT NULL);
    UPDATE sessions SET counted = 1 WHERE id IN (
        SELECT min(s.id) FROM sessions s JOIN documents d ON d.id = s.document_id AND d.rejected = 0 GROUP BY s.identity);
    CREATE UNIQUE INDEX sessions_counted ON sessions (identity) WHERE counted = 1;
    DELETE FROM month_totals;
    INSERT INTO month_totals (month, sessions, billed, paid, disputed)
        SELECT substr(session_date, 1, 7), count(*), sum(cns_share), coalesce(sum(paid), 0), coalesce(sum(disputed), 0)
        FROM sessions WHERE counted = 1 GROUP BY 1;
    UPDATE certificates SET sessions_billed = (
        SELECT count(*) FROM fee_notes f JOIN sessions s ON s.fee_note_id = f.id AND s.counted = 1
        WHERE f.certificate_number = certificates.number);
    ALTER TABLE certificates ADD COLUMN rank TEXT NOT NULL DEFAULT '';
    ALTER TABLE certificates ADD COLUMN superseded INTEGER NOT NULL DEFAULT 0;
    UPDATE certificates SET rank = (SELECT d.rank || printf('#%012d', a.id) FROM answers a
                                    JOIN documents d ON d.id = a.document_id WHERE a.id = certificates.answer_id);
    CREATE TABLE rebills (
        id           INTEGER PRIMARY KEY,
        identity     TEXT NOT NULL,             -- certificate|matricule|date|act
        reason       TEXT NOT NULL,
        billing_name TEXT NOT NULL,             -- the file that bills it again
        earlier_name TEXT NOT NULL,             -- the file that billed it before
        created_at   TEXT NOT NULL
    );
    CREATE INDEX rebills_identity ON rebills (identity);
    """,
    # 5: the final dietetic report of a treatment, marked sent to the prescriber (cnsx report-sent),
    #    so that status lists only the finished or interrupted treatments still owing one.
    """
    CREATE TABLE final_reports (
        certificate_number TEXT PRIMARY KEY REFERENCES certificates (number),
        sent_on     TEXT NOT NULL,              -- the day the report went to the prescriber
        recorded_at TEXT NOT NULL               -- when cnsx recorded it (UTC)
    );
    """,
    # 6: the month table shows the whole bill, not only the CNS's share: gross and patient
    #    share summed per month beside billed (cns_share), kept by import as the others are.
    """
    ALTER TABLE month_totals ADD COLUMN gross INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE month_totals ADD COLUMN patient_share INTEGER NOT NULL DEFAULT 0;
    UPDATE month_totals SET (gross, patient_share) = (
        SELECT coalesce(sum(gross), 0), coalesce(sum(patient_share), 0) FROM sessions
        WHERE counted = 1 AND substr(session_date, 1, 7) = month_totals.month);
    """,
    # 7: status on a million sessions within a second: each certificate's last session billed
    #    (counted) kept beside sessions_billed, by triggers, whenever import recounts it or the
    #    certificate arrives after its sessions; the standing certificates indexed by expiry.
    """
    ALTER TABLE certificates ADD COLUMN last_session TEXT;
    UPDATE certificates SET last_session = (
        SELECT max(s.session_date) FROM fee_notes f JOIN sessions s ON s.fee_note_id = f.id AND s.counted = 1
        WHERE f.certificate_number = certificates.number);
    CREATE TRIGGER certificates_last_session_new AFTER INSERT ON certificates BEGIN
        UPDATE certificates SET last_session = (
            SELECT max(s.session_date) FROM fee_notes f JOIN sessions s ON s.fee_note_id = f.id AND s.counted = 1
            WHERE f.certificate_number = NEW.number) WHERE number = NEW.number;
    END;
    CREATE TRIGGER certificates_last_session AFTER UPDATE OF sessions_billed ON certificates BEGIN
        UPDATE certificates SET last_session = (
            SELECT max(s.session_date) FROM fee_notes f JOIN sessions s ON s.fee_note_id = f.id AND s.counted = 1
            WHERE f.certificate_number = NEW.number) WHERE number = NEW.number;
    END;
    CREATE INDEX certificates_standing ON certificates (valid_to, number) WHERE superseded = 0;
    """,
    # 8: the requests still unanswered found by index: status and status --due looked for each
    #    request's answers by a scan of them all (seconds at 10,000 requests, an hour at 250,000);
    #    a patient's latest request by matricule (the names of fee notes that carry none).
    """
    CREATE INDEX answers_request_id ON answers (request_id);
    CREATE INDEX requests_matricule ON requests (matricule, id);
    """,
]

#: The order in which the CNS wrote documents: their creation time in UTC, then their sequence
#: number (SQL over a ``documents`` row); later means a correction of what came before.
RANK = "strftime('%Y%m%dT%H%M%S', created_at) || printf('%010d', sequence)"


#: The sessions billed, with their fee notes (``f``), as SQL to follow FROM: each session
#: once however often it was billed (``sessions.counted``: never in a billing file the CNS
#: rejected, so no join to ``documents`` is needed to leave those out).
COUNTED_SESSIONS = "fee_notes f JOIN sessions s ON s.fee_note_id = f.id AND s.counted = 1"
#: :data:`COUNTED_SESSIONS` with their billing files (``d``).
BILLED_SESSIONS = COUNTED_SESSIONS + " JOIN documents d ON d.id = f.document_id"
#: A billed session the CNS disputed in full (SQL over a ``sessions`` row): billing it again
#: is no copy, and the new billing counts.
DROPPED = "({s}.paid = 0 AND {s}.disputed IS NOT NULL)"  # .format(s=the sessions row's alias)
#: The latest answer to the request of answer ``a`` (SQL, a subquery): by the CNS's date and
#: sequence of the answers' files, then by order within a file.
LATEST_ANSWER = """SELECT a2.id FROM answers a2 JOIN documents d2 ON d2.id = a2.document_id
                   WHERE a2.request_ref = a.request_ref ORDER BY d2.rank DESC, a2.id DESC LIMIT 1"""
#: The patient's name of certificate ``c`` (SQL): as the request gave it, else as a fee note
#: billed on it gave it (a certificate whose request is not in the database), else ''.
CERTIFICATE_PATIENT = """coalesce(
    (SELECT r.last_name || ' ' || r.first_name FROM answers a JOIN requests r ON r.id = a.request_id WHERE a.id = c.answer_id),
    (SELECT nullif(trim(coalesce(f.last_name, '') || ' ' || coalesce(f.first_name, '')), '')
     FROM fee_notes f WHERE f.certificate_number = c.number LIMIT 1), '')"""
def fee_note_name(part: str) -> str:
    """SQL: the ``part`` ('last_name' or 'first_name') of fee note ``f``'s patient: the billing
    file's, else their latest request's (a sessions CSV's name columns are optional; looked up
    by index, and only for a note without it), else ''."""
    return (f"coalesce(nullif(f.{part}, ''), (SELECT r.{part} FROM requests r WHERE r.matricule = f.matricule "
            f"ORDER BY r.id DESC LIMIT 1), '')")


def request_names(conn: sqlite3.Connection) -> dict[str, tuple[str, str]]:
    """Each patient's (last name, first name) as their latest request gives them, by matricule:
    for fee notes whose billing file names no one."""
    return {m: (last, first) for m, last, first, _latest in conn.execute(
        "SELECT matricule, last_name, first_name, max(id) FROM requests GROUP BY matricule")}


#: SQL: fee note ``f``'s patient, 'LAST FIRST' (see :func:`fee_note_name`).
FEE_NOTE_PATIENT = f"trim({fee_note_name('last_name')} || ' ' || {fee_note_name('first_name')})"


def session_identity(certificate: str, matricule: str, day: str, act: str) -> str:
    """What makes two billed sessions the same session (``sessions.identity``; ``day`` ISO)."""
    return f"{certificate}|{matricule}|{day}|{act}"


def connect(path: Path) -> sqlite3.Connection:
    """Open (creating 0600 if needed) and migrate the practice database."""
    path = Path(path)
    if not path.exists():
        private_dir(path.parent)
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
        os.close(fd)
    try:
        conn = sqlite3.connect(path, isolation_level=None, timeout=30)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        # An import writes hundreds of thousands of rows in one transaction: with SQLite's
        # default 2 MiB page cache it spills pages mid-transaction (a quarter of its time).
        conn.execute("PRAGMA cache_size = -32768")
        migrate(conn)
    except sqlite3.DatabaseError as exc:
        raise ConfigError(_("{file}: not a usable cnsx database ({error})").format(file=path, error=exc),
                          _("check the database setting")) from None
    return conn


def migrate(conn: sqlite3.Connection) -> int:
    """Apply the migrations the database has not seen; return its schema version."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > len(MIGRATIONS):
        raise ConfigError(_("the database has schema version {version}, newer than this cnsx knows ({known})")
                          .format(version=version, known=len(MIGRATIONS)), _("upgrade cnsx"))
    for number in range(version, len(MIGRATIONS)):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(MIGRATIONS[number]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number + 1}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:  # (Ctrl-C just after COMMIT: there is nothing to roll back)
                conn.execute("ROLLBACK")
            raise
    return len(MIGRATIONS)


def _statements(script: str) -> list[str]:
    """Split a migration into statements, comments removed (our SQL has no '--' or ';' in
    literals); a trigger's body, whose statements end in ';' too, stays in its CREATE TRIGGER."""
    text = "\n".join(line.split("--", 1)[0] for line in script.splitlines())
    statements, pending = [], ""
    for piece in text.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                statements.append(pending)
            pending = ""
    if pending.strip(" \n;"):
        statements.append(pending)
    return statements


class TreatmentHistory:
    """The treatments granted to a patient, as the practice database knows them: the history
    the request rules need across files (rules.RequestChecks)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def treatments(self, matricule: str, pathology: str, besides: str) -> list[tuple[str, str, date]]:
        """(treatment, certificate, start) of each certificate standing (not replaced by a later
        answer) for ``matricule`` and ``pathology``, whose request is not ``besides`` (the one
        being checked, when it was recorded already); start: the date of its first session
        billed, else the first day of its validity."""
        rows = self.conn.execute(
            """SELECT r.treatment, c.number, coalesce(
                   (SELECT min(s.session_date) FROM fee_notes f JOIN sessions s ON s.fee_note_id = f.id AND s.counted = 1
                    WHERE f.certificate_number = c.number), c.valid_from)
               FROM certificates c JOIN answers a ON a.id = c.answer_id JOIN requests r ON r.id = a.request_id
               WHERE c.superseded = 0 AND c.matricule = ? AND r.request_ref != ?
               AND instr(';' || r.pathologies || ';', ';' || ? || ';') > 0""", (matricule, besides, pathology))
        return [(treatment, number, date.fromisoformat(start)) for treatment, number, start in rows]


class BillingHistory:
    """The certificates imported from the CNS and the sessions billed on them, as the practice
    database knows them: what build-invoice checks the sessions to bill against
    (billing.build.CertificateBook), and where it records the sessions billed again."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def billed_on(self, certificate: str) -> dict[str, tuple[str, bool]]:
        """{identity: (billing file, disputed in full)} of the sessions billed on ``certificate``."""
        return {identity: (name, bool(dropped)) for identity, name, dropped in self.conn.execute(
            f"SELECT s.identity, d.name, {DROPPED.format(s='s')} FROM {BILLED_SESSIONS} "
            "WHERE f.certificate_number = ?", (certificate,))}

    def certificate(self, number: str) -> sqlite3.Row | None:
        """The row of certificate ``number`` (matricule, valid_from, valid_to, acts as stored,
        superseded); None if it was not imported."""
        return self.conn.execute("SELECT matricule, valid_from, valid_to, acts, superseded FROM certificates "
                                 "WHERE number = ?", (number,)).fetchone()

    def sessions_counted(self, certificate: str, act: str) -> int:
        """How many sessions of ``act`` are billed on ``certificate`` (each once)."""
        return self.conn.execute(f"SELECT count(*) FROM {COUNTED_SESSIONS} WHERE f.certificate_number = ? "
                                 "AND s.act = ?", (certificate, act)).fetchone()[0]

    def request_of(self, certificate: str) -> tuple[date, str] | None:
        """(prescription date, reference) of the request a certificate answers, as imported;
        None when the certificate, or the request its answer names, is not in the database."""
        row = self.conn.execute(
            "SELECT r.prescription_date, r.request_ref FROM certificates c JOIN answers a ON a.id = c.answer_id "
            "JOIN requests r ON r.id = a.request_id WHERE c.number = ?", (certificate,)).fetchone()
        return None if row is None else (date.fromisoformat(row[0]), row[1])

    def record_rebills(self, reason: str, billing_name: str, rebilled: Iterable[tuple[str, str]]) -> None:
        """Record, in one transaction, each session (identity, the billing file that billed it
        before) that the file ``billing_name`` bills again, with ``reason``."""
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            self.conn.executemany(
                "INSERT INTO rebills (identity, reason, billing_name, earlier_name, created_at) VALUES (?,?,?,?,?)",
                ((identity, reason, billing_name, earlier, now) for identity, earlier in rebilled))
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise


def has_certificates(conn: sqlite3.Connection) -> bool:
    """Whether any certificate was imported yet (until then build-invoice has none to check
    sessions against, unless the database was named on purpose)."""
    return conn.execute("SELECT 1 FROM certificates LIMIT 1").fetchone() is not None
