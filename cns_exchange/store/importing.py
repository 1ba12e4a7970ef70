"""import: documents into the practice database, matched with what they answer.

Return files (acknowledgements, answers, payment statements) and the practice's own request
and billing files are read leniently: what can be read is imported, and every deviation from
the schema or unreadable item is a warning with its line and element, never dropped silently.
The records go into the database in one transaction per file, idempotent by content hash
(:mod:`cns_exchange.store.matching`); the original is kept in the archive with its hash. A
file that cannot be read at all goes to the errors folder with a sidecar saying why. The same
reading turns any document back into rows (``rows_of``).
"""

from __future__ import annotations

import os
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Iterator

from cns_exchange.i18n import _, reason
from cns_exchange.issues import ERROR, WARNING, Issue
from cns_exchange.documents.read import Part, read_document
from cns_exchange.store.matching import import_document

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
    "payment": ["fee_note", "line_no", "certificate_number", "billed", "accepted", "reason_code", "reason_label",
                "paid_on", "payment_reference", "billing_file"],
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
        doc.fatal = issues or [Issue("XML04", _("the document kind cannot be told"), file=str(path))]
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
            doc.fatal.append(Issue("VAL01", reason(exc), file=str(path)))
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
                issue.hint = _("imported as written; cnsx validate shows the same")
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
            issue.hint = _("imported what could be read; ask the CNS about this deviation")
            doc.warnings.append(issue)
    doc.warnings.sort(key=lambda i: i.line or 0)
    if doc.header is None and not doc.fatal:
        doc.fatal.append(Issue("XSD01", _("the header (EnTete) cannot be read"), file=str(doc.path)))


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
                            item.record, item.error = None, reason(exc)
                if item.record is None:
                    target = doc.fatal if item.what is Part.HEADER else doc.warnings
                    target.append(Issue("XSD01", _("not imported: {reason}").format(reason=item.error),
                                        severity=ERROR if item.what is Part.HEADER else WARNING,
                                        file=str(path), line=item.line, xpath=item.xpath,
                                        hint=_("the rest of the file is imported") if item.what is not Part.HEADER else ""))
                elif item.what is Part.HEADER:
                    doc.header = item.record
                    rules.on_header(item.record, item.line, item.xpath)
                else:
                    doc.records.append(item.record)
        rules.finish()
    except HostileDocument:
        doc.fatal.append(Issue("XML02", _("the document declares a DOCTYPE"), file=str(path), line=1))
    except Exception as exc:  # lxml's XMLSyntaxError and kin: the whole file is unreadable
        if not doc.fatal:
            doc.fatal.append(Issue("XML01", _("cannot be read: {reason}").format(reason=reason(exc)), file=str(path)))


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
        else:   # (the statement's date, bank reference and billing file on each line: for the accountant)
            extra = doc.header.extra if doc.header is not None else {}
            yield {"fee_note": r.fee_note, "line_no": r.line_no, "certificate_number": r.certificate_number,
                   "billed": amount(r.billed), "accepted": amount(r.accepted),
                   "reason_code": r.reason_code, "reason_label": r.reason_label,
                   "paid_on": extra.get("DatePaiement", ""), "payment_reference": extra.get("ReferencePaiement", ""),
                   "billing_file": extra.get("FichierFacture/NomFichier", "")}


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
                raise InputError(_("{path}: changed while cnsx read it: the copy kept would not be the file read")
                                 .format(path=path),
                                 _("leave files alone while cnsx imports them, then import again")) from None
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
    """Put an unreadable file in the errors folder with NAME.why.txt saying why: its issues
    as the terminal shows them, in the user's language."""
    import io

    from cns_exchange.console import print_issues
    from cns_exchange.fsutil import write_atomic

    target = _keep(path, errors_dir, _sha256(path), move=False)  # (moved below, once the reason is written)
    why = io.StringIO()
    print_issues(issues, why)
    write_atomic(Path(f"{target}.why.txt"), why.getvalue().encode("utf-8"))
    if move and path.resolve() != target.resolve():
        path.unlink()  # only once the reason is written beside the kept copy
    return target


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
        raise InputError(_("{path}: a file name that is not UTF-8").format(path=shown),
                         _("it is left where it is: rename it with a UTF-8 name (e.g. convmv -f latin1 -t utf-8 --notest FILE)"))
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
        new, doc_id, unmatched = import_document(conn, doc)
    kept = archiving.result() if archiving is not None else None
    result.status = ImportStatus.IMPORTED if new else ImportStatus.ALREADY_IMPORTED
    result.document_id, result.unmatched = doc_id, unmatched
    result.notices = doc.notices if new else []
    if kept is not None:
        if move and path.resolve() != kept.resolve():
            path.unlink()
        result.moved_to = str(kept)
        conn.execute("UPDATE documents SET archive_path = ? WHERE id = ? AND archive_path IS NULL", (str(kept), doc_id))
        conn.execute("UPDATE fetched SET local_path = ? WHERE sha256 = ?", (str(kept), doc.sha256))
    return result, doc
