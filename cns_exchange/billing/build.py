"""build-request and build-invoice: rows -> checked records -> XML -> validated -> published.

Nothing reaches its destination unless every row is good and the finished document passes
the same validation as ``cnsx validate``. All problems of an input file are collected and
raised together in one InputError. Sessions become fee notes in bounded memory (notes.py).
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import IO, Callable

from cns_exchange.errors import ConfigError, InputError, UsageError
from cns_exchange.domain.identifiers import check_provider
from cns_exchange.issues import Issue
from cns_exchange.i18n import _, ngettext
from cns_exchange.domain.model import CertificateRequest, Header
from cns_exchange.domain.naming import attachment_name, make_name, next_sequence
from cns_exchange.domain.nomenclature import Codes, Nomenclature
from cns_exchange.documents.schemas import kind_word
from cns_exchange.pdf.prescriptions import PrescriptionFiles
from cns_exchange.billing.notes import SPILL_SESSIONS, load_fee_notes
from cns_exchange.billing.spill import Spool
from cns_exchange.rows.reading import REQUEST_COLUMNS, REQUEST_OPTIONAL, InputReport, Reading, read_rows
from cns_exchange.rows.records import to_request
from cns_exchange.validation.rules import SHARE_ON_SESSION_DATE, RequestChecks
from cns_exchange.validation.validate import Validator

#: Schema versions this release can write (it reads any installed version's XSD). Version 2
#: is version 1 with the prescription date of each fee note (DateOrdonnance).
WRITABLE_VERSIONS = ("1", "2")


@dataclass
class Destination:
    """Where a built document goes: a folder (conventional name), a file, or a stream."""

    path: Path | None = None
    stream: IO[bytes] | None = None

    @property
    def is_folder(self) -> bool:
        return self.path is not None and self.path.is_dir()

    @property
    def folder(self) -> Path:
        """The folder the document (and its attachments) go to."""
        assert self.path is not None
        return self.path if self.is_folder else self.path.parent


@dataclass
class BuildResult:
    """What a build produced: where it went, its name and hash, counts and warnings."""

    kind: str
    name: str
    path: Path | None
    sha256: str
    items: int
    sessions: int = 0
    gross: int = 0        # billing: cents
    cns: int = 0          # billing: cents to the CNS
    warnings: list[Issue] = field(default_factory=list)
    attachments: list[Path] = field(default_factory=list)


#: The most requests of one request file (a practice sends some ten a week): they are held
#: until the file is written (about 2 KB each), so past it the build stops (IN016).
MAX_REQUESTS = 10_000


def load_requests(stream: IO[bytes], name: str, fmt: str, codes: Codes, base_dir: Path,
                  submitted: date, provider: str, reading: Reading | None = None,
                  prescriptions: PrescriptionFiles | None = None, history=None,
                  max_requests: int = MAX_REQUESTS) -> tuple[list[CertificateRequest], InputReport]:
    """Read and check request rows. Raises InputError listing every problem of the file.

    Each prescription is checked (and, if ``prescriptions`` converts images, converted) by
    ``prescriptions`` (default: PDFs up to 20 MiB, no conversion) and referenced under its
    conventional name (naming.attachment_name). The rules are the one engine's (rules.py);
    ``history`` (database.TreatmentHistory) adds the patient's earlier treatments to them.
    More than ``max_requests`` requests is an error (IN016): reading stops there.
    """
    report = InputReport(name)
    checks = RequestChecks(codes, submitted, history)
    requests: list[CertificateRequest] = []
    refs: dict[str, int] = {}
    for row in read_rows(stream, fmt, report, REQUEST_COLUMNS, REQUEST_OPTIONAL, reading):
        request = to_request(row, report, codes, base_dir, lambda ref: attachment_name(provider, ref), prescriptions,
                             checks)
        if request is None:
            continue
        if request.request_ref in refs:
            report.add("IN007", _("request_ref '{ref}' is already used on line {line}").format(
                ref=request.request_ref, line=refs[request.request_ref]), row.line, "request_ref")
            continue
        if len(requests) >= max_requests:
            report.add("IN016", _("more than {n} requests in one request file: the file was not read further").format(
                n=f"{max_requests:,}"), row.line, "request_ref", _("split the requests into several files"))
            break
        refs[request.request_ref] = row.line
        requests.append(request)
    report.fail_on_errors(_("requests"))
    return requests, report


def build_requests(stream: IO[bytes], name: str, fmt: str, codes: Codes, base_dir: Path, header: Header,
                   file_name: str, destination: Destination, validator: Validator, reading: Reading | None = None,
                   prescriptions: PrescriptionFiles | None = None, history=None) -> BuildResult:
    """Build and publish a request file from request rows (build-request): the rows read and
    checked (:func:`load_requests`), the prescriptions copied beside the request file (a
    request file is never visible without its PDFs), then the file published. Raises
    InputError as those do."""
    from cns_exchange.documents.write import write_request_file

    requests, report = load_requests(stream, name, fmt, codes, base_dir, header.created.date(), header.provider,
                                     reading, prescriptions, history)
    if destination.path is not None:
        copy_attachments(requests, destination.folder)
    path, sha = publish_document("request", lambda out: write_request_file(out, header, requests), file_name,
                                 destination, validator, header.version)
    return BuildResult("request", file_name, path, sha, len(requests), warnings=report.issues)


def build_billing(stream: IO[bytes], name: str, fmt: str, codes: Codes, nomenclature: Nomenclature,
                  header: Header, file_name: str, destination: Destination, validator: Validator,
                  reading: Reading | None = None, certificates=None) -> BuildResult:
    """Build and publish a billing file from session rows (build-invoice)."""
    from cns_exchange.documents.write import write_billing_file

    notes, report = load_fee_notes(stream, name, fmt, codes, nomenclature, header.provider, header.created.date(),
                                   reading, certificates, header.version in SHARE_ON_SESSION_DATE)
    with notes:
        count, sessions, gross, share, cns = totals = notes.totals
        path, sha = publish_document("billing", lambda out: write_billing_file(out, header, notes, totals), file_name,
                                     destination, validator, header.version)
    if certificates is not None and certificates.rebilled:
        certificates.keep_rebills(file_name)
        rebilled = len(certificates.rebilled)
        report.issues.append(Issue("CRT06", ngettext("{n} session billed again: {reason}", "{n} sessions billed again: {reason}",
                                                     rebilled).format(n=rebilled, reason=certificates.rebill),
                                   severity="warning", file=name,
                                   hint=_("the reason is kept in the database (table rebills)")))
    return BuildResult("billing", file_name, path, sha, count, sessions, gross, cns, warnings=report.issues)


def resolve_header(registry, provider: str | None, created: datetime, schema_version: str | None,
                   sequence: int | None, destination: Destination, kind: str) -> tuple[Header, str]:
    """Return the header and the document's conventional file name.

    Raises ConfigError for a missing or invalid provider code or an unwritable schema version.
    """
    if not provider:
        raise ConfigError(_("no provider code: pass --provider or set provider in the config file"), _("see docs/cli.md"))
    problems = check_provider(provider)
    if problems:
        raise ConfigError(_("provider code: {problem}").format(problem=problems[0][1]),
                          _("use the code the CNS issued to the practice"))
    day = created.date()
    if schema_version:
        schema_set = registry.get(schema_version)
        if not schema_set.in_force(day):
            if schema_set.valid_until:
                message = _("schema version {version} is not in force on {day} (valid from {start} to {end})")
            else:
                message = _("schema version {version} is not in force on {day} (valid from {start})")
            raise ConfigError(message.format(version=schema_version, day=day, start=schema_set.valid_from,
                                              end=schema_set.valid_until),
                              _("leave out --schema-version to take the version in force"))
    else:
        schema_set = registry.in_force(day)
    if schema_set.version not in WRITABLE_VERSIONS:
        raise ConfigError(
            ngettext("schema version {version} is in force on {day}, but this cnsx writes version {versions}",
                     "schema version {version} is in force on {day}, but this cnsx writes versions {versions}",
                     len(WRITABLE_VERSIONS)).format(version=schema_set.version, day=day,
                                                    versions=", ".join(WRITABLE_VERSIONS)),
            _("upgrade cnsx, or pass --schema-version to write an older version while it is accepted"),
        )
    if sequence is None:
        sequence = next_sequence(destination.path, provider, kind, created.date()) if destination.is_folder else 1
    name = make_name(provider, kind, created.date(), sequence)
    if destination.is_folder and (destination.path / name).exists():
        raise UsageError(_("{file} exists; cnsx never overwrites a document").format(file=destination.path / name),
                         _("leave out --sequence to take the next free number"))
    return Header(provider, created, sequence, schema_set.version), name


def publish_document(kind: str, write: Callable[[IO[bytes]], None], file_name: str,
                     destination: Destination, validator: Validator, version: str | None = None) -> tuple[Path | None, str]:
    """Write a document to a temp file, validate it, then publish it; return (path, sha256).

    The callers have checked every business rule on the records they pass; here the written
    file is validated against the XSD of its kind and ``version`` (header totals are computed
    by the writer from the same records), by the same validator as ``cnsx validate``. Raises
    InputError (with the issues) if the document fails validation: nothing is written.
    """
    import hashlib

    if destination.stream is not None:
        tmp_ctx = tempfile.TemporaryDirectory(prefix="cnsx-")
        work = Path(tmp_ctx.name)
    else:
        tmp_ctx = None
        target = destination.path / file_name if destination.is_folder else destination.path
        work = target.parent
    from cns_exchange.fsutil import publish, temp_file

    try:
        with temp_file(work) as (stream, path):
            hashing = _Hashing(stream, hashlib.sha256())
            write(hashing)  # type: ignore[arg-type]
            stream.close()
            size = path.stat().st_size
            if validator.max_bytes and size > validator.max_bytes:   # validate and upload would refuse it (XML03)
                too_large = Issue("XML03", _("{size} bytes, over the limit of {limit}").format(
                    size=size, limit=validator.max_bytes), file=file_name)
                raise InputError(_("the {kind} document built from the input is over the size limit; nothing was written")
                                 .format(kind=kind_word(kind)),
                                 _("split the input into several files, or raise max_xml_bytes in the config"), [too_large])
            report = validator.validate(str(path), expect_kind=kind, check_name=False, rules=False,
                                        size_limit=False, attachments=False)
            if report.ok and version is not None and report.version != version:
                report.issues.append(Issue("XML05", _("written as version {version}, read as version {read}").format(
                    version=version, read=report.version), file=file_name))
            if not report.ok:
                for issue in report.issues:
                    issue.file = file_name
                raise InputError(_("the {kind} document built from the input fails validation; nothing was written").format(
                                     kind=kind_word(kind)),
                                 _("this is a bug in cnsx or in a dropped-in schema set: please report it with the messages above"),
                                 report.issues)
            sha256 = hashing.sha256.hexdigest()
            if destination.stream is not None:
                with open(path, "rb") as written:
                    shutil.copyfileobj(written, destination.stream, 1 << 20)
                destination.stream.flush()
                path.unlink()
                return None, sha256
            try:
                publish(path, target, overwrite=False)
            except FileExistsError:
                raise UsageError(_("{file} appeared while building; cnsx never overwrites a document").format(file=target),
                                 _("run again: another run is writing to the same place")) from None
            return target, sha256
    finally:
        if tmp_ctx is not None:
            tmp_ctx.cleanup()


class _Hashing:
    """A binary stream that hashes what is written through it (publishing needs no re-read)."""

    def __init__(self, target: IO[bytes], sha256) -> None:
        self.target, self.sha256 = target, sha256

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        return self.target.write(data)

    def flush(self) -> None:
        self.target.flush()


def copy_attachments(requests: list[CertificateRequest], folder: Path) -> list[Path]:
    """Copy each prescription PDF (or the PDF converted from its scans) beside the request
    file, atomically, 0600; never over an existing file. Returns the files copied.

    Raises InputError if a different file of the same name is already there.
    """
    from cns_exchange.fsutil import publish, sha256_of, temp_file

    copied: list[Path] = []
    for r in requests:
        target = folder / r.pdf_name
        if target.exists() and sha256_of(target)[0] == r.pdf_sha256:
            continue
        with temp_file(folder) as (stream, path):
            with open(r.pdf_path, "rb") as source:
                shutil.copyfileobj(source, stream)
            stream.close()
            try:
                publish(path, target, overwrite=False)
            except FileExistsError:
                path.unlink(missing_ok=True)
                raise InputError(_("{file} exists with other content").format(file=target),
                                 _("move it away; request {ref} names another file of that name").format(
                                     ref=r.request_ref)) from None
        copied.append(target)
    return copied



class CertificateBook:
    """The practice database's view of sessions to bill: the certificates imported from the
    CNS (``certificates``: check against them, CRT02-CRT05) and the sessions billed already
    (CRT06: a session is billed once, unless ``rebill`` gives the reason to bill it again).
    The rules are here; the queries are the store's (store.database.BillingHistory)."""

    def __init__(self, conn, certificates: bool = True, rebill: str | None = None) -> None:
        from cns_exchange.store.database import BillingHistory

        self.history = BillingHistory(conn)
        self.certificates = certificates
        self.rebill = rebill
        self.rebilled = Spool(SPILL_SESSIONS)   # (identity, the file that billed it before), in bounded memory
        self._used: dict[str, dict[str, int]] = {}   # {certificate: {act: sessions counted}}
        # Per certificate, looked up once (a file bills each several times; the database does
        # not change during a build): its row and authorised acts, and its sessions billed.
        self._certificate: dict[str, tuple | None] = {}
        self._billed: dict[str, dict[str, tuple[str, bool]]] = {}

    def _billed_on(self, certificate: str) -> dict[str, tuple[str, bool]]:
        """{identity: (billing file, disputed in full)} of the sessions billed on ``certificate``."""
        found = self._billed.get(certificate)
        if found is None:
            found = self._billed[certificate] = self.history.billed_on(certificate)
        return found

    def _row(self, certificate: str):
        """(certificate row, {act: authorised}) of ``certificate``, None if not imported."""
        if certificate not in self._certificate:
            row = self.history.certificate(certificate)
            self._certificate[certificate] = None if row is None else (row, _authorised(row["acts"]))
        return self._certificate[certificate]

    def check(self, certificate: str, matricule: str, day: date, act: str) -> list[tuple[str, str]]:
        """Check one session to bill; return its problems (CRT02-CRT06)."""
        from cns_exchange.store.database import session_identity

        problems = []
        identity = session_identity(certificate, matricule, day.isoformat(), act)
        billed = self._billed_on(certificate).get(identity)
        counted = billed is not None and not billed[1]  # (billed, and not disputed in full)
        if counted:
            if self.rebill is None:
                problems.append(("CRT06", _("{act} on {day} is billed already, in {file}").format(act=act, day=day, file=billed[0])))
            else:
                self.rebilled.add((identity, billed[0]))
        if not self.certificates:
            return problems
        found = self._row(certificate)
        if found is None:
            return problems + [("CRT02", _("certificate {certificate} is not among the certificates imported from the CNS").format(
                certificate=certificate))]
        row, authorised = found
        if row["superseded"]:
            problems.append(("CRT02", _("certificate {certificate} no longer stands: a later answer of the CNS replaced it").format(
                certificate=certificate)))
        if row["matricule"] != matricule:
            problems.append(("CRT05", _("certificate {certificate} was granted for another patient").format(certificate=certificate)))
        if not row["valid_from"] <= day.isoformat() <= row["valid_to"]:
            problems.append(("CRT04", _("{day} is outside the certificate's validity {start} to {end}").format(
                day=day, start=date.fromisoformat(row["valid_from"]), end=date.fromisoformat(row["valid_to"]))))
        used = self._used.setdefault(certificate, {})
        if act not in used:
            used[act] = self.history.sessions_counted(certificate, act)
        if not counted:  # a session billed again is in that count already
            used[act] += 1
        if used[act] > authorised.get(act, 0):
            allowed = authorised.get(act, 0)
            problems.append(("CRT03", ngettext("{act} session {n} on certificate {certificate}: {authorised} authorised "
                                               "(billed ones included)",
                                               "{act} session {n} on certificate {certificate}: {authorised} authorised "
                                               "(billed ones included)", allowed)
                             .format(act=act, n=used[act], certificate=certificate, authorised=allowed)))
        return problems

    def forget(self, certificate: str) -> None:
        """Let go of what was looked up and counted of ``certificate``: no later session names it."""
        for kept in (self._used, self._certificate, self._billed):
            kept.pop(certificate, None)

    def prescription_date(self, certificate: str) -> tuple[date, str] | None:
        """(date, reference) of the request a certificate answers, as imported; None when the
        certificate, or the request its answer names, is not in the database."""
        return self.history.request_of(certificate)

    def keep_rebills(self, billing_name: str) -> None:
        """Record, with its reason, each session the file ``billing_name`` bills again."""
        if not self.rebilled:
            return
        self.history.record_rebills(self.rebill, billing_name, self.rebilled)


def _authorised(acts: str) -> dict[str, int]:
    """A certificate's authorised acts as stored ('ZD11:1;ZD12:1;ZD13:4') as {act: count}."""
    return {a: int(n) for a, _unused, n in (part.partition(":") for part in acts.split(";") if part)}
