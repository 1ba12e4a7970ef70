"""import: documents into the practice database, matched with what they answer.

Return files (acknowledgements, answers, payment statements) and the practice's own request
and billing files are read leniently: what can be read is imported, and every deviation from
the schema or unreadable item is a warning with its line and element, never dropped silently.
One transaction per file, idempotent by content hash; the original is kept in the archive
with its hash. A file that cannot be read at all goes to the errors folder with a sidecar
saying why. The same reading turns any document back into rows (``rows_of``).
"""

from __future__ import annotations

import os
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import StrEnum
from pathlib import Path
from typing import Callable, Iterator

from cns_exchange.issues import ERROR, WARNING, Issue, plural
from cns_exchange.store.database import COUNTED_SESSIONS, DROPPED, LATEST_ANSWER, RANK, session_identity
from cns_exchange.documents.read import Part, read_document

#: Output columns per document kind (CSV header / JSON keys). Requests and billing use the
#: input columns of build-request and build-invoice, so that the rows build the document again.
ROW_COLUMNS = {
    "request": ["request_ref", "matricule", "last_name", "first_name", "prescriber_code", "prescription_date",
                "pathology_codes", "treatment", "prescription_pdf", "requested_acts"],
    "billing": ["certificate_number", "matricule", "session_date", "act_code", "executing_provider",
                "last_name", "first_name"],
    "ack": ["file_name", "file_sha256", "received_at", "status", "anomaly_code", "anomaly_label", "anomaly_element"],
    "answers": ["request_ref", "matricule", "certificate_number", "valid_from", "valid_to", "authorised_acts",
                "refusal_code", "refusal_label", "refusal_element"],
    "payment": ["fee_note", "line_no", "certificate_number", "billed", "accepted", "reason_code", "reason_label"],
}


@dataclass
class Document:
    """A document read leniently: kind, header, records, warnings."""

    path: Path
    name: str
    sha256: str
    kind: str = ""
    root: str = ""
    header: object = None
    records: list = field(default_factory=list)
    warnings: list[Issue] = field(default_factory=list)
    fatal: list[Issue] = field(default_factory=list)
    #: What the import changed that a person should know once (a correction, a session
    #: billed again), said in one line each.
    notices: list[str] = field(default_factory=list)


class ImportStatus(StrEnum):
    """What became of one file (equal to its text, as ``import --json`` prints it)."""

    READ = "read"                          # read, not recorded: no database (--no-db)
    IMPORTED = "imported"
    ALREADY_IMPORTED = "already-imported"  # the same content (SHA-256) is in the database: nothing changed
    UNREADABLE = "unreadable"              # nothing of it imported; kept in the errors folder with why


@dataclass
class ImportResult:
    """What importing one file did."""

    name: str
    kind: str
    sha256: str
    status: ImportStatus
    document_id: int | None = None
    warnings: list[Issue] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)   # corrections and copies, said once (Document.notices)
    moved_to: str = ""
    moved: bool = False   # the original left its folder (the inbox); else moved_to holds a copy


def _sha256(path: Path) -> str:
    from cns_exchange.fsutil import sha256_of

    return sha256_of(path)[0]


def read_leniently(path: Path, validator) -> Document:
    """Read a document of any kind: records plus warnings; ``fatal`` when unreadable.

    lxml reads the records to the end of the file while libxml2's XSD verdict runs in a
    thread (verdict.XsdVerdict); a file it does not pass goes through lxml's schema pass,
    whose findings become warnings (or fatal, for a file that is not well-formed). A check
    that fails to run to its end makes the file unreadable: nothing of it is imported.
    """
    from cns_exchange.documents.read import ITEM_TAGS, schema_findings
    from cns_exchange.documents.verdict import CheckFailed, XsdVerdict

    doc = Document(path, path.name, _sha256(path))
    schema_set, kind, root, issues = validator.detect(str(path))
    if schema_set is None:
        doc.fatal = issues or [Issue("XML04", "the document kind cannot be told", file=str(path))]
        return doc
    doc.kind, doc.root = kind, root
    check = XsdVerdict(str(path), schema_set.documents[kind].xsd)
    rules = validator.rules_for(str(path), kind)
    try:
        _read_records(doc, path, kind, root, rules)
    finally:
        try:
            native = check.result()
        except CheckFailed as exc:
            doc.fatal.append(Issue("VAL01", str(exc), file=str(path)))
            native = False
    if doc.fatal:
        found = []
    else:
        found = schema_findings(str(path), schema_set.schema(kind), ITEM_TAGS[kind] or root, root, native)
        if not found:
            # What validate checks, import checks (header counts and totals, duplicate lines,
            # the rules of each item): a finding is a warning; the document is imported as
            # the CNS (or the practice) wrote it, and the warning says where it deviates.
            for issue in validator.placed(str(path), rules.report.issues):
                if issue.code == "NOM05":
                    continue  # advice to whoever prices sessions (build, validate), not a deviation of the file
                issue.severity = WARNING
                issue.hint = "imported as written; cnsx validate shows the same"
                doc.warnings.append(issue)
    _conclude(doc, found)
    return doc


def _conclude(doc: Document, found: list) -> None:
    """Add the XSD check's findings to ``doc``: warnings, or fatal for a file not well-formed."""
    for code, line, xpath, message in found:
        issue = Issue(code, message, file=str(doc.path), line=line, xpath=xpath)
        if code == "XML01":
            if not any(i.code == "XML01" for i in doc.fatal):
                doc.fatal.append(issue)
        else:
            issue.severity = WARNING
            issue.hint = "imported what could be read; ask the CNS about this deviation"
            doc.warnings.append(issue)
    doc.warnings.sort(key=lambda i: i.line or 0)
    if doc.header is None and not doc.fatal:
        doc.fatal.append(Issue("XSD01", "the header (EnTete) cannot be read", file=str(doc.path)))


def _read_records(doc: Document, path: Path, kind: str, root: str, rules) -> None:
    """Read the header and records of ``doc`` to the end of the file (lxml, no schema), each
    item through validate's ``rules`` for its kind."""
    from cns_exchange.documents.read import FeeNoteColumns, HostileDocument

    doc.header, doc.records, doc.warnings, doc.fatal = None, [], [], []
    dates: dict = {}
    try:
        with open(path, "rb") as f:
            for item in read_document(f, kind, root, columns=True):
                if item.record is not None and item.what is Part.ITEM:
                    rules.on_item(item)
                    if isinstance(item.record, FeeNoteColumns):
                        try:
                            item.record = item.record.to_fee_note(dates)
                        except (ValueError, TypeError) as exc:
                            item.record, item.error = None, str(exc)
                if item.record is None:
                    target = doc.fatal if item.what is Part.HEADER else doc.warnings
                    target.append(Issue("XSD01", f"not imported: {item.error}", severity=ERROR if item.what is Part.HEADER else WARNING,
                                        file=str(path), line=item.line, xpath=item.xpath,
                                        hint="the rest of the file is imported" if item.what is not Part.HEADER else ""))
                elif item.what is Part.HEADER:
                    doc.header = item.record
                    rules.on_header(item.record, item.line, item.xpath)
                else:
                    doc.records.append(item.record)
        rules.finish()
    except HostileDocument:
        doc.fatal.append(Issue("XML02", "the document declares a DOCTYPE", file=str(path), line=1))
    except Exception as exc:  # lxml's XMLSyntaxError and kin: the whole file is unreadable
        if not doc.fatal:
            doc.fatal.append(Issue("XML01", f"cannot be read: {exc}", file=str(path)))


def rows_of(doc: Document) -> Iterator[dict]:
    """Turn a document's records into rows (see ROW_COLUMNS)."""
    from cns_exchange.documents.write import amount

    for r in doc.records:
        if doc.kind == "request":
            yield {"request_ref": r.request_ref, "matricule": r.matricule, "last_name": r.last_name,
                   "first_name": r.first_name, "prescriber_code": r.prescriber_code,
                   "prescription_date": r.prescription_date.isoformat(), "pathology_codes": ";".join(r.pathology_codes),
                   "treatment": r.treatment, "prescription_pdf": r.pdf_name,
                   "requested_acts": ";".join(f"{a}:{n}" for a, n in r.acts)}
        elif doc.kind == "billing":
            for s in r.sessions:
                yield {"certificate_number": r.certificate_number, "matricule": r.matricule,
                       "session_date": s.session_date.isoformat(), "act_code": s.act_code,
                       "executing_provider": s.executing_provider, "last_name": r.last_name, "first_name": r.first_name}
        elif doc.kind == "ack":
            base = {"file_name": r.file_name, "file_sha256": r.file_sha256,
                    "received_at": r.received_at.isoformat(), "status": "accepted" if r.accepted else "rejected"}
            for a in r.anomalies or [None]:
                yield {**base, "anomaly_code": a.code if a else "", "anomaly_label": a.label if a else "",
                       "anomaly_element": a.element if a else ""}
        elif doc.kind == "answers":
            c = r.certificate
            base = {"request_ref": r.request_ref, "matricule": r.matricule,
                    "certificate_number": c.number if c else "", "valid_from": c.valid_from.isoformat() if c else "",
                    "valid_to": c.valid_to.isoformat() if c else "",
                    "authorised_acts": ";".join(f"{a}:{n}" for a, n in c.acts) if c else ""}
            for a in r.refusal or [None]:
                yield {**base, "refusal_code": a.code if a else "", "refusal_label": a.label if a else "",
                       "refusal_element": a.element if a else ""}
        else:
            yield {"fee_note": r.fee_note, "line_no": r.line_no, "certificate_number": r.certificate_number,
                   "billed": amount(r.billed), "accepted": amount(r.accepted),
                   "reason_code": r.reason_code, "reason_label": r.reason_label}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _keep(path: Path, folder: Path, sha256: str, move: bool, made: list[Path] | None = None) -> Path:
    """Put a copy of the original in ``folder`` (never over another file) with a NAME.sha256
    sidecar; return it. With ``move`` (the original is to leave its folder) a hard link where
    possible. The original is left where it is: the caller removes it once that is safe.
    Safe to do before an import commits: a copy already there with the same SHA-256 is kept.
    ``made`` gets the files this call created (the copy, the sidecar)."""
    from cns_exchange.errors import InputError
    from cns_exchange.fsutil import copy_atomic, fsync_dir, private_dir, write_atomic

    private_dir(folder)
    target = folder / path.name
    if target.exists() and _sha256(target) != sha256:
        stem, dot, ext = path.name.rpartition(".")
        target = folder / (f"{stem}~{sha256[:12]}.{ext}" if dot else f"{path.name}~{sha256[:12]}")
    linked = False
    if not target.exists():
        if move:
            try:
                os.link(path, target)
                linked = True
            except OSError:
                pass
        if not linked:
            try:
                copy_atomic(path, target, sha256)
            except ValueError:
                raise InputError(f"{path}: changed while cnsx read it: the copy kept would not be the file read",
                                 "leave files alone while cnsx imports them, then import again") from None
        if made is not None:
            made.append(target)
    # A linked copy has the inbox file's mode; and a run killed right after linking left the
    # copy without mode and sidecar: made sure of here, also for a copy already there.
    os.chmod(target, 0o600)
    sidecar = Path(f"{target}.sha256")
    if not sidecar.exists():
        write_atomic(sidecar, f"{sha256}  {target.name}\n".encode())  # (fsyncs the folder)
        if made is not None:
            made.append(sidecar)
    elif linked:
        fsync_dir(folder)
    return target


def quarantine(path: Path, errors_dir: Path, issues: list[Issue], move: bool) -> Path:
    """Put an unreadable file in the errors folder with NAME.why.txt saying why."""
    from cns_exchange.fsutil import write_atomic

    target = _keep(path, errors_dir, _sha256(path), move=False)  # (moved below, once the reason is written)
    why = "".join(f"{i.location()}: {i.severity} {i.code}: {i.message}\n    hint: {i.hint}\n" for i in issues)
    write_atomic(Path(f"{target}.why.txt"), why.encode("utf-8"))
    if move and path.resolve() != target.resolve():
        path.unlink()  # only once the reason is written beside the kept copy
    return target


def import_document(conn: sqlite3.Connection, doc: Document) -> tuple[ImportStatus, int | None, list[str]]:
    """Insert a read document in one transaction; return (status, document id, unmatched notes).

    Idempotent: a document whose SHA-256 is already there is not imported again.
    """
    row = conn.execute("SELECT id FROM documents WHERE sha256 = ?", (doc.sha256,)).fetchone()
    if row is not None:
        return ImportStatus.ALREADY_IMPORTED, row["id"], []
    h = doc.header
    conn.execute("BEGIN IMMEDIATE")
    try:
        cur = conn.execute(
            "INSERT INTO documents (kind, name, sha256, provider, created_at, sequence, version, imported_at, warnings) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (doc.kind, doc.name, doc.sha256, h.provider, h.created.isoformat(), h.sequence, h.version, _now(),
             len(doc.warnings)))
        doc_id = cur.lastrowid
        conn.execute(f"UPDATE documents SET rank = {RANK} WHERE id = ?", (doc_id,))
        warned = len(doc.warnings)
        _INSERT[doc.kind](conn, doc_id, doc)
        if len(doc.warnings) > warned:  # rows left out while inserting, each said why
            doc.warnings.sort(key=lambda i: i.line or 0)
            conn.execute("UPDATE documents SET warnings = ? WHERE id = ?", (len(doc.warnings), doc_id))
        unmatched = rematch(conn, doc_id)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:  # (Ctrl-C just after COMMIT: there is nothing to roll back)
            conn.execute("ROLLBACK")
        raise
    return ImportStatus.IMPORTED, doc_id, unmatched


def _left_out(doc: Document, code: str, message: str, line: int, xpath: str, hint: str) -> None:
    """Warn of an item the database keeps once, and that is therefore not imported (in the
    warning the rules gave it already, if they did)."""
    xpath = f"/{doc.root}/{xpath}"
    for issue in doc.warnings:
        if issue.code == code and issue.xpath == xpath:
            issue.message, issue.hint = message, hint
            return
    doc.warnings.append(Issue(code, message, severity=WARNING, file=str(doc.path), line=line or None,
                              xpath=xpath, hint=hint))


def _insert_requests(conn, doc_id, doc) -> None:
    """Insert the requests of a request file; one already recorded is left out, with a warning."""
    seen: set[str] = set()
    new = []
    for index, r in enumerate(doc.records, 1):
        known = r.request_ref not in seen and conn.execute(
            "SELECT 1 FROM requests WHERE provider = ? AND request_ref = ?", (doc.header.provider, r.request_ref)).fetchone()
        if r.request_ref in seen or known:
            where = "earlier in this file" if r.request_ref in seen else "from an earlier file"
            _left_out(doc, "IN007", f"request {r.request_ref} is already recorded ({where}): this one was not imported", r.line,
                      f"Demande[{index}]/ReferenceDemande",
                      "the same request sent again is harmless; a new request needs its own reference")
        else:
            new.append(r)
        seen.add(r.request_ref)
    conn.executemany(
        "INSERT INTO requests (document_id, provider, request_ref, matricule, last_name, first_name, prescriber, "
        "prescription_date, pathologies, treatment, acts, pdf_name, pdf_sha256) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
        ((doc_id, doc.header.provider, r.request_ref, r.matricule, r.last_name, r.first_name, r.prescriber_code,
          r.prescription_date.isoformat(), ";".join(r.pathology_codes), r.treatment,
          ";".join(f"{a}:{n}" for a, n in r.acts), r.pdf_name, r.pdf_sha256) for r in new))


def _insert_billing(conn, doc_id, doc) -> None:
    """Insert a billing file's fee notes and sessions. Each session has an identity (its
    certificate, patient, date and act) and is counted once however many files bill it: the
    first billing counts, unless the CNS rejected its file or disputed it in full (dropped),
    in which case the new one does. Copies are recorded, reported, and count for nothing."""
    for index, note in enumerate(doc.records, 1):
        lines: dict[int, int] = {}
        kept = []
        for position, s in enumerate(note.sessions, 1):
            if s.line_no in lines:
                _left_out(doc, "DOC08", f"line number {s.line_no} appears twice in fee note {note.number} (lines "
                                        f"{lines[s.line_no]} and {s.line}): the second was not imported", s.line,
                          f"MemoireHonoraires[{index}]/Seance[{position}]/NumeroLigne",
                          "the CNS pays a line once: ask whoever built the file")
                continue
            lines[s.line_no] = s.line
            kept.append(s)
        note_id = conn.execute(
            "INSERT INTO fee_notes (document_id, number, certificate_number, matricule, last_name, first_name) "
            "VALUES (?,?,?,?,?,?)", (doc_id, note.number, note.certificate_number, note.matricule, note.last_name,
                                     note.first_name)).lastrowid
        conn.executemany(
            "INSERT INTO sessions (fee_note_id, document_id, line_no, session_date, act, executing, gross, "
            "patient_share, cns_share, identity) VALUES (?,?,?,?,?,?,?,?,?,?)",
            ((note_id, doc_id, s.line_no, day, s.act_code, s.executing_provider, s.gross, s.patient_share, s.cns_share,
              session_identity(note.certificate_number, note.matricule, day, s.act_code))
             for s in kept for day in (s.session_date.isoformat(),)))
    # A session billed before and disputed in full (accepted 0) is billed again by this file:
    # the new billing is the one that counts.
    dropped = f"""SELECT o.id FROM sessions o JOIN sessions n ON n.identity = o.identity AND n.document_id = :doc
                  WHERE o.counted = 1 AND {DROPPED.format(s="o")}"""
    again = conn.execute(f"SELECT count(*) FROM ({dropped})", {"doc": doc_id}).fetchone()[0]
    if again:
        _set_counted(conn, dropped, {"doc": doc_id}, False)
        doc.notices.append(f"{plural(again, 'session')} disputed in full before {'is' if again == 1 else 'are'} billed "
                           "again by this file: the new billing counts")
    _count_new(conn, "SELECT id FROM sessions WHERE document_id = :doc", {"doc": doc_id})
    copies = conn.execute(
        """SELECT n.session_date, n.act, f.certificate_number, d.name FROM sessions n
           JOIN fee_notes f ON f.id = n.fee_note_id
           JOIN sessions o ON o.identity = n.identity AND o.counted = 1 JOIN documents d ON d.id = o.document_id
           WHERE n.document_id = ? AND n.counted = 0 ORDER BY n.id""", (doc_id,)).fetchall()
    if copies:
        first = copies[0]
        doc.notices.append(f"{plural(len(copies), 'session')} of this file {'was' if len(copies) == 1 else 'were'} billed "
                           f"before and {'is' if len(copies) == 1 else 'are'} counted once (first: {first[0]} {first[1]} "
                           f"on certificate {first[2]}, billed in {first[3]})")


def _set_counted(conn, ids_sql: str, params, counted: bool) -> None:
    """Count (or stop counting) the sessions ``ids_sql`` selects, with the month totals and
    the certificates' counts kept in step."""
    sign, before = (1, 0) if counted else (-1, 1)
    conn.execute("DROP TABLE IF EXISTS temp.recount")
    conn.execute(f"CREATE TEMP TABLE recount AS SELECT id FROM sessions WHERE id IN ({ids_sql}) AND counted = {before}",
                 params)
    conn.execute(f"""INSERT INTO month_totals (month, sessions, billed, paid, disputed, gross, patient_share)
                         SELECT substr(session_date, 1, 7), {sign} * count(*), {sign} * sum(cns_share),
                                {sign} * coalesce(sum(paid), 0), {sign} * coalesce(sum(disputed), 0),
                                {sign} * sum(gross), {sign} * sum(patient_share)
                         FROM sessions WHERE id IN (SELECT id FROM temp.recount) GROUP BY 1
                     ON CONFLICT (month) DO UPDATE SET sessions = sessions + excluded.sessions, billed = billed + excluded.billed,
                         paid = paid + excluded.paid, disputed = disputed + excluded.disputed,
                         gross = gross + excluded.gross, patient_share = patient_share + excluded.patient_share""")
    conn.execute(f"UPDATE sessions SET counted = {int(counted)} WHERE id IN (SELECT id FROM temp.recount)")
    _count_billed(conn, """number IN (SELECT f.certificate_number FROM fee_notes f JOIN sessions s ON s.fee_note_id = f.id
                                      WHERE s.id IN (SELECT id FROM temp.recount))""", {})
    conn.execute("DROP TABLE temp.recount")


def _count_new(conn, ids_sql: str, params) -> None:
    """Count each session ``ids_sql`` selects whose identity no counted session has yet (the
    first of them per identity), in a billing file the CNS did not reject."""
    _set_counted(conn, f"""SELECT min(n.id) FROM sessions n JOIN documents d ON d.id = n.document_id AND d.rejected = 0
                            WHERE n.id IN ({ids_sql}) AND n.counted = 0
                            AND NOT EXISTS (SELECT 1 FROM sessions o WHERE o.identity = n.identity AND o.counted = 1)
                            GROUP BY n.identity""", params, True)


def _insert_acks(conn, doc_id, doc) -> None:
    for a in doc.records:
        conn.execute(
            "INSERT INTO acknowledgements (document_id, file_name, file_sha256, received_at, accepted) VALUES (?,?,?,?,?)",
            (doc_id, a.file_name, a.file_sha256, a.received_at.isoformat(), int(a.accepted)))
        conn.executemany("INSERT INTO anomalies (document_id, code, label, element) VALUES (?,?,?,?)",
                         ((doc_id, x.code, x.label, x.element) for x in a.anomalies))


def _insert_answers(conn, doc_id, doc) -> None:
    """Insert the CNS's answers. A certificate granted again (a correction: new dates or
    counts) takes the values of the answer the CNS wrote last, by its date and sequence; the
    latest answer to a request decides whether its earlier certificates still stand."""
    rank = conn.execute("SELECT rank FROM documents WHERE id = ?", (doc_id,)).fetchone()[0]
    for a in doc.records:
        c = a.certificate
        answer_id = conn.execute(
            "INSERT INTO answers (document_id, request_ref, matricule, certificate_number, refused) VALUES (?,?,?,?,?)",
            (doc_id, a.request_ref, a.matricule, c.number if c else None, int(c is None))).lastrowid
        if c is not None:
            values = (a.matricule, c.valid_from.isoformat(), c.valid_to.isoformat(), ";".join(f"{x}:{n}" for x, n in c.acts),
                      sum(n for _, n in c.acts))
            key = f"{rank}#{answer_id:012d}"
            before = conn.execute("SELECT matricule, valid_from, valid_to, acts, sessions_authorised, rank FROM certificates "
                                  "WHERE number = ?", (c.number,)).fetchone()
            conn.execute(
                "INSERT INTO certificates (number, answer_id, matricule, valid_from, valid_to, acts, sessions_authorised, rank) "
                "VALUES (?,?,?,?,?,?,?,?) ON CONFLICT (number) DO UPDATE SET answer_id = excluded.answer_id, "
                "matricule = excluded.matricule, valid_from = excluded.valid_from, valid_to = excluded.valid_to, "
                "acts = excluded.acts, sessions_authorised = excluded.sessions_authorised, rank = excluded.rank "
                "WHERE excluded.rank > certificates.rank", (c.number, answer_id, *values, key))
            if before is not None and tuple(before)[:5] != values:
                if key > before["rank"]:
                    doc.notices.append(f"certificate {c.number} corrected: valid {values[1]} to {values[2]}, "
                                       f"{plural(values[4], 'session')} ({values[3]})")
                else:
                    doc.notices.append(f"certificate {c.number}: this answer is older than the one already imported, "
                                       f"which stands (valid {before['valid_from']} to {before['valid_to']})")
        conn.executemany("INSERT INTO anomalies (document_id, answer_id, code, label, element) VALUES (?,?,?,?,?)",
                         ((doc_id, answer_id, x.code, x.label, x.element) for x in a.refusal))
    # The latest answer to each request this file answers decides (by the CNS's date and sequence).
    replaced = conn.execute(f"""SELECT c.number, a.request_ref FROM certificates c JOIN answers a ON a.id = c.answer_id
                                WHERE c.superseded = 0 AND a.request_ref IN (SELECT request_ref FROM answers WHERE document_id = :doc)
                                AND c.answer_id != ({LATEST_ANSWER})""", {"doc": doc_id}).fetchall()
    conn.execute(f"""UPDATE certificates SET superseded = (certificates.answer_id != ({LATEST_ANSWER}))
                     FROM answers a WHERE a.id = certificates.answer_id
                     AND a.request_ref IN (SELECT request_ref FROM answers WHERE document_id = :doc)""", {"doc": doc_id})
    for number, ref in replaced:
        doc.notices.append(f"certificate {number} no longer stands: a later answer to request {ref} replaces it")


def _insert_payment(conn, doc_id, doc) -> None:
    extra = doc.header.extra
    sha256 = extra.get("FichierFacture/Sha256", "")
    row = conn.execute("SELECT id FROM documents WHERE sha256 = ? AND kind = 'billing'", (sha256,)).fetchone()
    billing_id = row[0] if row else None
    rank = conn.execute("SELECT rank FROM documents WHERE id = ?", (doc_id,)).fetchone()[0]
    payment_id = conn.execute(
        "INSERT INTO payments (document_id, billing_name, billing_sha256, billing_document_id, paid_on, reference) "
        "VALUES (?,?,?,?,?,?)",
        (doc_id, extra.get("FichierFacture/NomFichier", ""), sha256, billing_id,
         extra.get("DatePaiement", ""), extra.get("ReferencePaiement", ""))).lastrowid
    # Each line is matched with its billed session as it goes in (two index look-ups: its fee
    # note, the first of that number in the billing file, then the session); a line whose
    # billing file is not imported yet is matched by rematch once it is. The values go to
    # SQLite as they come, with nothing done per line in Python.
    values = ((p.fee_note, p.line_no, p.certificate_number, p.billed, p.accepted, p.reason_code, p.reason_label)
              for p in doc.records)  # (made as SQLite takes them: 200,000 tuples need not be held at once)
    once = _names_once(doc.records)  # (a line given twice is validate's DOC08, a warning here)
    insert = (
        "INSERT INTO payment_lines (payment_id, fee_note_number, line_no, certificate_number, billed, accepted, "
        "reason_code, reason_label, rank, session_id) VALUES "
        f"({int(payment_id)}, ?1, ?2, ?3, ?4, ?5, nullif(?6, ''), nullif(?7, ''), '{rank}', (SELECT s.id FROM sessions s "
        f"WHERE s.line_no = ?2 AND s.fee_note_id = (SELECT min(f.id) FROM fee_notes f "
        f"WHERE f.document_id = {int(billing_id) if billing_id is not None else 'NULL'} AND f.number = ?1)))")
    first = conn.execute("SELECT coalesce(max(id), 0) + 1 FROM payment_lines").fetchone()[0]
    conn.executemany(insert, values)
    _apply_payment_lines(conn, "id >= ?", (first,), once)
    _say_tariff_change(conn, doc, payment_id, first)
    copies = conn.execute("""SELECT count(*) FROM payment_lines p JOIN sessions s ON s.id = p.session_id
                             WHERE p.payment_id = ? AND s.counted = 0 AND p.accepted > 0""", (payment_id,)).fetchone()[0]
    if copies:
        doc.notices.append(f"{plural(copies, 'line')} of this statement {'pays' if copies == 1 else 'pay'} a session "
                           "billed twice (counted once): check with the CNS whether it was paid twice")


def _say_tariff_change(conn, doc: Document, payment_id: int, first: int) -> None:
    """Say once, as a notice, when lines paid without a dispute reason were paid at another
    amount than billed: a likely tariff change when each amount billed was paid at one other
    amount (the CNS prices with other tariffs than cnsx's table), else that the amounts differ.
    Not a dispute per line: the CNS gave no reason, and the lines stay paid at what it paid."""
    from cns_exchange.documents.write import amount

    rows = conn.execute(
        """SELECT p.billed, p.accepted, count(*), min(s.session_date), group_concat(DISTINCT s.act)
           FROM payment_lines p LEFT JOIN sessions s ON s.id = p.session_id
           WHERE p.id >= ? AND p.payment_id = ? AND p.reason_code IS NULL AND p.accepted > 0 AND p.accepted != p.billed
           GROUP BY p.billed, p.accepted ORDER BY p.billed, p.accepted""", (first, payment_id)).fetchall()
    if not rows:
        return
    lines = sum(row[2] for row in rows)
    paid_as: dict[int, list] = {}
    for row in rows:
        paid_as.setdefault(row[0], []).append(row)
    days = [row[3] for row in rows if row[3]]
    what = (f"{plural(lines, 'line')} paid without a dispute reason at another amount than billed "
            f"(the CNS's share{f', sessions from {min(days)}' if days else ''})")
    if any(len(paid) > 1 for paid in paid_as.values()):
        mixed = next(paid for paid in paid_as.values() if len(paid) > 1)
        doc.notices.append(f"{what}, not one amount for each amount billed ({amount(mixed[0][0])} paid as "
                           f"{' and '.join(amount(row[1]) for row in mixed)}): not a tariff change; ask the CNS why")
        return
    moves = ", ".join(f"{amount(billed)} → {amount(row[1])}"
                      f" ({', '.join(sorted(row[4].split(','))) + ': ' if row[4] else ''}{plural(row[2], 'line')})"
                      for billed, [row] in paid_as.items())
    doc.notices.append(f"likely a tariff change: {what}, one amount for each amount billed: {moves}. "
                       f"See the table cnsx priced them with (cnsx tariffs --date {min(days) if days else 'DATE'}) "
                       "and add the CNS's tariffs (cnsx tariffs add)")


def _names_once(lines: list) -> bool:
    """True if no two payment lines name the same (fee note, line): then no "latest per
    session" step is needed (the rule: a statement pays a line once)."""
    return len({p.fee_note << 32 | p.line_no for p in lines}) == len(lines)  # (ints: less memory)


#: A payment line's place in the order the CNS wrote them: its statement's rank, then its id.
_LINE_KEY = "rank || printf('#%012d', id)"


def _apply_payment_lines(conn, where: str, params: tuple, once: bool = False) -> None:
    """Set sessions' paid and disputed amounts from the matched payment lines ``where`` says,
    and the month totals with them. For each session the line the CNS wrote last decides
    (by its statement's date and sequence: a corrected statement replaces an earlier one,
    whatever the order of import); an older line changes nothing. Sessions not counted (a
    copy of a session billed before) take their lines but stay out of the totals.
    ``once``: no two of these lines name the same session."""
    disputed = "CASE WHEN reason_code IS NOT NULL THEN billed - accepted END"
    if once:
        source = (f"(SELECT session_id, id AS line_id, {_LINE_KEY} AS key, accepted, {disputed} AS disputed "
                  f"FROM payment_lines WHERE {where})")
    else:
        conn.execute("DROP TABLE IF EXISTS temp.applied")
        # SQLite takes the other columns from the row of max(key): the latest line per session.
        conn.execute(f"""CREATE TEMP TABLE applied AS
                            SELECT session_id, max({_LINE_KEY}) AS key, id AS line_id, accepted, {disputed} AS disputed
                            FROM payment_lines WHERE {where} AND session_id IS NOT NULL GROUP BY session_id""", params)
        source, params = "temp.applied", ()
    conn.execute(f"""INSERT INTO month_totals (month, paid, disputed)
                         SELECT substr(s.session_date, 1, 7), sum(a.accepted - coalesce(s.paid, 0)),
                                sum(coalesce(a.disputed, 0) - coalesce(s.disputed, 0))
                         FROM {source} a JOIN sessions s ON s.id = a.session_id AND s.counted = 1
                         WHERE s.payment_key IS NULL OR s.payment_key < a.key GROUP BY 1
                     ON CONFLICT (month) DO UPDATE SET paid = paid + excluded.paid, disputed = disputed + excluded.disputed""",
                 params)
    conn.execute(f"""UPDATE sessions SET paid = a.accepted, disputed = a.disputed, payment_line_id = a.line_id,
                                         payment_key = a.key
                     FROM {source} a
                     WHERE sessions.id = a.session_id AND (sessions.payment_key IS NULL OR sessions.payment_key < a.key)""",
                 params)
    if not once:
        conn.execute("DROP TABLE temp.applied")


_INSERT = {"request": _insert_requests, "billing": _insert_billing, "ack": _insert_acks,
           "answers": _insert_answers, "payment": _insert_payment}


def rematch(conn: sqlite3.Connection, document_id: int | None = None) -> list[str]:
    """Link every return not yet linked to what it answers; keep the counters status reads
    (sessions paid/disputed, month totals, certificates' sessions billed) up to date; return
    what still matches nothing."""
    conn.execute("""UPDATE answers SET request_id = (
                        SELECT r.id FROM requests r JOIN documents d ON d.id = answers.document_id
                        WHERE r.request_ref = answers.request_ref AND r.provider = d.provider)
                    WHERE request_id IS NULL""")
    conn.execute("""UPDATE acknowledgements SET
                        upload_id = (SELECT u.id FROM uploads u WHERE u.name = acknowledgements.file_name
                                     AND u.sha256 = acknowledgements.file_sha256),
                        acked_document_id = (SELECT d.id FROM documents d WHERE d.sha256 = acknowledgements.file_sha256)
                    WHERE upload_id IS NULL OR acked_document_id IS NULL""")
    _reject_billing_files(conn)
    conn.execute("""UPDATE payments SET billing_document_id = (
                        SELECT d.id FROM documents d WHERE d.sha256 = payments.billing_sha256 AND d.kind = 'billing')
                    WHERE billing_document_id IS NULL""")
    # Lines not matched yet (the partial index lists them: usually none) whose billing file is
    # now known: matched, then applied.
    conn.execute("DROP TABLE IF EXISTS temp.unmatched")
    conn.execute("""CREATE TEMP TABLE unmatched AS SELECT id FROM payment_lines WHERE session_id IS NULL
                    AND payment_id IN (SELECT id FROM payments WHERE billing_document_id IS NOT NULL)""")
    conn.execute("""UPDATE payment_lines SET session_id = (
                        SELECT s.id FROM payments p
                        JOIN fee_notes f ON f.document_id = p.billing_document_id AND f.number = payment_lines.fee_note_number
                        JOIN sessions s ON s.fee_note_id = f.id AND s.line_no = payment_lines.line_no
                        WHERE p.id = payment_lines.payment_id)
                    WHERE id IN (SELECT id FROM temp.unmatched)""")
    _apply_payment_lines(conn, "id IN (SELECT id FROM temp.unmatched)", ())
    conn.execute("DROP TABLE temp.unmatched")
    if document_id is not None:
        # (A billing file's certificates were recounted as its sessions were counted: _set_counted.)
        _count_billed(conn, "answer_id IN (SELECT id FROM answers WHERE document_id = :doc)", {"doc": document_id})
    unmatched = []
    for label, query in (
        ("answers match no request", "SELECT count(*) FROM answers WHERE request_id IS NULL"),
        ("acknowledgements match no uploaded or imported file",
         "SELECT count(*) FROM acknowledgements WHERE upload_id IS NULL AND acked_document_id IS NULL"),
        ("payment statements match no billing file", "SELECT count(*) FROM payments WHERE billing_document_id IS NULL"),
        ("payment lines match no billed session", "SELECT count(*) FROM payment_lines WHERE session_id IS NULL"),
    ):
        n = conn.execute(query).fetchone()[0]
        if n:
            unmatched.append(f"{n} {label}")
    return unmatched


def _count_billed(conn: sqlite3.Connection, where: str, params: dict) -> None:
    """Recount the sessions billed on the certificates ``where`` selects (rejected files aside)."""
    conn.execute(f"""UPDATE certificates SET sessions_billed = (
                         SELECT count(*) FROM {COUNTED_SESSIONS} WHERE f.certificate_number = certificates.number)
                     WHERE {where}""", params)


def _reject_billing_files(conn: sqlite3.Connection) -> None:
    """A billing file the CNS rejected (an acknowledgement says so) bills nothing: its sessions
    stop counting (month totals, certificates' counts, payments awaited), and a copy of one
    billed in another file counts in its place. Their rows stay, as the record of what was sent."""
    rejected = [row[0] for row in conn.execute(
        """SELECT DISTINCT d.id FROM acknowledgements a JOIN documents d ON d.id = a.acked_document_id
           WHERE a.accepted = 0 AND d.kind = 'billing' AND d.rejected = 0""")]
    for doc_id in rejected:
        conn.execute("UPDATE documents SET rejected = 1 WHERE id = ?", (doc_id,))
        _set_counted(conn, "SELECT id FROM sessions WHERE document_id = :doc", {"doc": doc_id}, False)
        _count_new(conn, """SELECT o.id FROM sessions o JOIN sessions n ON n.identity = o.identity AND n.document_id = :doc
                            WHERE o.document_id != :doc""", {"doc": doc_id})


def inbox_documents(inbox: Path) -> list[Path]:
    """Return the documents waiting in the inbox, by name: every ``*.xml`` but the hidden
    ones (a fetch's partial downloads are ``.cnsx-*.part``)."""
    return sorted(p for p in inbox.glob("*.xml") if not p.name.startswith("."))


def import_path(conn: sqlite3.Connection | None, path: Path, validator, archive_dir: Path | None,
                errors_dir: Path | None, move: bool) -> tuple[ImportResult, Document]:
    """Read and (with a connection) import one file; archive or quarantine it. Raises
    InputError for a file whose name is not UTF-8 (left where it is, for a human to rename)."""
    from cns_exchange.errors import InputError
    from cns_exchange.fsutil import not_utf8

    shown = not_utf8(str(path))
    if shown is not None:
        raise InputError(f"{shown}: a file name that is not UTF-8",
                         "it is left where it is: rename it with a UTF-8 name (e.g. convmv -f latin1 -t utf-8 --notest FILE)")
    doc = read_leniently(path, validator)
    result = ImportResult(doc.name, doc.kind, doc.sha256, ImportStatus.READ, warnings=doc.warnings)
    if doc.fatal:
        result.status = ImportStatus.UNREADABLE
        result.warnings = doc.fatal + doc.warnings
        if errors_dir is not None:
            result.moved_to, result.moved = str(quarantine(path, errors_dir, doc.fatal, move)), move
        return result, doc
    if conn is None:
        return result, doc
    # The copy for the archive is made while the database works (file I/O and hashing let
    # the other thread run); the original is only removed once the import is committed.
    # (Leaving the block waits for the copy; an error of the import is the one raised.)
    made: list[Path] = []
    with ThreadPoolExecutor(max_workers=1) as pool:
        archiving = pool.submit(_keep, path, archive_dir, doc.sha256, move, made) if archive_dir is not None else None
        status, doc_id, unmatched = import_document(conn, doc)
    kept = archiving.result() if archiving is not None else None
    result.status, result.document_id, result.unmatched = status, doc_id, unmatched
    result.notices = doc.notices if status is ImportStatus.IMPORTED else []
    if kept is not None:
        if move and path.resolve() != kept.resolve():
            path.unlink()
        result.moved_to = str(kept)
        conn.execute("UPDATE documents SET archive_path = ? WHERE id = ? AND archive_path IS NULL", (str(kept), doc_id))
        conn.execute("UPDATE fetched SET local_path = ? WHERE sha256 = ?", (str(kept), doc.sha256))
    return result, doc
