"""Validation: detect a document's kind and version, check it against its XSD and the
business rules, and return the issues as data.

The XSD check streams (lxml/libxml2 validating while iterparse reads, items freed as they
go), together with the business rules, in one pass. libxml2 reports XSD errors of a streamed
document without their line, so when there are any a second pass ties each to its line and
XPath (:func:`cns_exchange.xmlread.locate_schema_errors`).
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import IO

from lxml import etree

from cns_exchange import forked
from cns_exchange.forked import Worker
from cns_exchange.fsutil import sha256_of
from cns_exchange.identifiers import birth_date, check_matricule, check_prescriber, check_provider
from cns_exchange.issues import Issue
from cns_exchange.model import Header
from cns_exchange.naming import parse_name
from cns_exchange.nomenclature import Codes, Nomenclature, NoTariffError
from cns_exchange.schemaset import SchemaRegistry, SchemaSet
from cns_exchange.treatment import RequestRules, SessionRules, check_prescription_age
from cns_exchange.xmlread import (
    ITEM_TAGS, FeeNoteColumns, HostileDocument, Item, cents_of, clean_message, date_of, locate_paths, locate_schema_errors,
    read_document,
)
from cns_exchange.xmlplain import KINDS as PLAIN_KINDS
from cns_exchange.xmlplain import NotPlain, read_plain
from cns_exchange.xmlsafe import PARSER_OPTIONS, DocumentTooLarge, DocumentUnreadable, has_doctype, open_document, spool
from cns_exchange.xsdstream import verdict


@dataclass
class Report:
    """The outcome of validating one document."""

    name: str
    kind: str = ""
    version: str = ""
    items: int = 0
    issues: list[Issue] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)  # a request's PDFs found intact beside it

    @property
    def ok(self) -> bool:
        return not any(i.is_error for i in self.issues)

    def as_dict(self) -> dict:
        return {"file": self.name, "kind": self.kind, "version": self.version, "items": self.items,
                "valid": self.ok, "issues": [i.as_dict() for i in self.issues]}


@dataclass
class Attachment:
    """A prescription PDF a request file names, found beside it with the SHA-256 it names."""

    path: Path
    sha256: str
    size: int


def check_attachment(folder: Path, name: str, sha256: str) -> tuple[Attachment | None, tuple[str, str] | None]:
    """Look for the prescription PDF ``name`` a request names in ``folder`` (the request's).

    Returns (the attachment, None) when it is there with the SHA-256 the request names, else
    (None, (code, message)): PDF08 when it is not there, PDF09 when its content differs.
    Used by ``cnsx validate`` and by upload, which sends the PDFs before the request.
    """
    if not name or Path(name).name != name or name in (".", ".."):
        return None, ("PDF08", f"'{name}' is not a plain file name: the prescription cannot be looked for beside the request file")
    pdf = folder / name
    if not pdf.is_file():
        return None, ("PDF08", f"prescription {name} is not beside the request file")
    sha, size = sha256_of(pdf)
    if sha != sha256.strip().lower():
        return None, ("PDF09", f"{name} differs from the SHA-256 the request names")
    return Attachment(pdf, sha, size), None


class _Rules:
    """Business rules of one document kind; subclasses see the header, then each item."""

    def __init__(self, report: Report, codes: Codes, nomenclature: Nomenclature) -> None:
        self.report = report
        self.codes = codes
        self.nomenclature = nomenclature
        self.header: Header | None = None
        self.header_xpath = ""
        self.header_line = 0
        self.count = 0

    def add(self, code: str, message: str, line: int | None, xpath: str) -> None:
        self.report.issues.append(Issue(code, message, file=self.report.name, line=line, xpath=xpath))

    def problems(self, problems, line: int, xpath: str) -> None:
        for code, message in problems:
            self.add(code, message, line, xpath)

    def on_header(self, header: Header, line: int, xpath: str) -> None:
        self.header, self.header_line, self.header_xpath = header, line, xpath
        self.problems(check_provider(header.provider), line, xpath + "/CodePrestataire")

    def on_item(self, item: Item) -> None:
        self.count += 1

    def finish(self) -> None:
        pass

    def _expect(self, field_name: str, actual: str, code: str, what: str) -> None:
        """Compare a header count or total with what the file holds, as numbers ('03' = '3')."""
        if self.header is None:
            return
        declared = self.header.extra.get(field_name)
        if declared is not None and _number(declared) != _number(actual):
            self.add(code, f"header {field_name} is {declared}, the file holds {actual} {what}",
                     self.header_line, f"{self.header_xpath}/{field_name}")

    def _matricule(self, matricule: str, line: int, xpath: str) -> bool:
        problems = check_matricule(matricule)
        self.problems(problems, line, xpath)
        return all(code == "MAT04" for code, _ in problems)


class _RequestRules(_Rules):
    #: The folder of a request file on disk, where its prescription PDFs must be (None: stdin).
    attachments_folder: Path | None = None

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.rules = RequestRules(self.codes)

    def on_item(self, item: Item) -> None:
        super().on_item(item)
        r, line, xp = item.record, item.line, item.xpath
        if self.attachments_folder is not None:
            found, problem = check_attachment(self.attachments_folder, r.pdf_name, r.pdf_sha256)
            if problem is not None:
                self.add(problem[0], problem[1], line, xp + ("/Ordonnance/NomFichier" if problem[0] == "PDF08" else "/Ordonnance/Sha256"))
            else:
                self.report.attachments.append(found)
        self._matricule(r.matricule, line, xp + "/Patient/Matricule")
        self.problems(check_prescriber(r.prescriber_code), line, xp + "/CodeMedecinPrescripteur")
        for code in r.pathology_codes:
            if code not in self.codes.pathologies:
                self.add("PAT01", f"pathology code '{code}' is not one of D01-D15", line, xp + "/CodesPathologie")
        limits = dict(self.codes.treatment_sequence(r.treatment))
        for act, count in r.acts:
            if act not in limits:
                self.add("TRT03", f"act {act} is not part of an {r.treatment} treatment", line, xp + "/ActesDemandes")
            elif count > limits[act]:
                self.add("TRT02", f"{count} x {act} requested, at most {limits[act]}", line, xp + "/ActesDemandes")
        if self.header is not None:
            self.problems(check_prescription_age(r.prescription_date, self.header.created.date(),
                                                 self.codes.prescription_max_age_days), line, xp + "/DateOrdonnance")
        self.problems(self.rules.check(r.matricule, r.pathology_codes, r.treatment, r.prescription_date), line, xp)

    def finish(self) -> None:
        self._expect("NombreDemandes", str(self.count), "DOC01", "requests")


class _BillingRules(_Rules):
    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.rules = SessionRules(self.codes)
        self.sessions = self.gross = self.share = self.cns = 0
        self.created: date | None = None
        self._providers: set[str] = set()
        self._matricules: set[str] = set()   # checked clean (no issue at all)
        self._dates: dict[str, date] = {}
        self._cents: dict[str, int] = {}
        #: With ``defer``, the fast path takes a well-shaped matricule as clean and notes it in
        #: ``deferred``; :meth:`settle` then checks them (see Validator._validate).
        self.defer = False
        self.deferred: set[str] = set()
        self._sequences: dict[tuple[str, ...], tuple | None] = {}

    def on_header(self, header: Header, line: int, xpath: str) -> None:
        super().on_header(header, line, xpath)
        self.created = header.created.date()

    def on_item(self, item: Item) -> None:
        record = item.record
        if isinstance(record, FeeNoteColumns):
            if self._clean(record):
                return
            try:
                record = record.to_fee_note(self._dates)
            except (ValueError, TypeError):
                self.count += 1  # unreadable: the XSD pass says why
                return
        self._check_note(record, item)

    def _clean(self, note: FeeNoteColumns) -> bool:
        """The fast path: decide with whole-column operations that a fee note breaks no rule,
        and then record it as the per-session path would. Anything unusual (a rule broken,
        a certificate already seen, a value not yet checked) returns False, and the note goes
        through :meth:`_check_note`, which reports the details."""
        t, n, matricule, certificate = note.texts, len(note.lines), note.matricule, note.certificate_number
        if n == 0 or len(t) != 7 * n or self.rules.knows(certificate):
            return False
        if matricule not in self._matricules:
            if self.defer:
                if len(matricule) != 13 or not matricule.isascii() or not matricule.isdigit():
                    return False
                self.deferred.add(matricule)
            elif check_matricule(matricule):
                return False
            self._matricules.add(matricule)
        acts = tuple(t[2::7])
        sequence = self._sequences.get(acts, False)
        if sequence is False:
            sequence = self._sequences[acts] = self.rules.sequence_ok(acts)
        if sequence is None or not self._providers.issuperset(t[3::7]) or len(set(t[0::7])) != n:
            return False
        try:
            days, gross, share, cns = self._columns(t)
        except KeyError:
            if not self._learn(t):
                return False
            days, gross, share, cns = self._columns(t)
        first, last = min(days), max(days)
        if (self.created is not None and last > self.created) or any(map(int.__ne__, gross, map(int.__add__, share, cns))):
            return False
        patient_days = [(matricule, day) for day in days]
        if len(set(days)) != n or self.rules.seen_days(patient_days):
            return False
        try:
            prices = self.nomenclature.prices_between(acts, first, last, birth_date(matricule))
        except NoTariffError:
            return False
        if prices is None or prices[0] != gross or prices[1] != share:
            return False  # prices that change within the note are checked session by session
        kind, position, counts = sequence
        self.rules.register(certificate, matricule, kind, position, counts, patient_days)
        self.count += 1
        self.sessions += n
        self.gross += sum(gross)
        self.share += sum(share)
        self.cns += sum(cns)
        return True

    def settle(self, clean: set[str] | None) -> bool:
        """Return True if every deferred matricule is clean: found in ``clean`` (checked by
        the XSD worker) or checked here. False means the verdict must be made again without
        deferring: the per-session path would have reported these notes."""
        return not any(check_matricule(m) for m in self.deferred - (clean or set()))

    def _columns(self, t: list[str]) -> tuple[list[date], tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """Dates and amounts of a note's sessions, from the texts already seen (KeyError if not)."""
        dates, cents = self._dates.__getitem__, self._cents.__getitem__
        return (list(map(dates, t[1::7])), tuple(map(cents, t[4::7])), tuple(map(cents, t[5::7])),
                tuple(map(cents, t[6::7])))

    def _learn(self, t: list[str]) -> bool:
        """Convert a note's dates and amounts not seen before; False if one is not of its type."""
        try:
            for text in t[1::7]:
                date_of(text, self._dates)
            for text in t[4::7] + t[5::7] + t[6::7]:
                cents_of(text, self._cents)
        except ValueError:
            return False
        return True

    def _check_note(self, note, item: Item) -> None:
        # The per-session path: every rule, with its message, line and XPath.
        self.count += 1
        xp = item.xpath
        for s in note.sessions:
            self._dates.setdefault(s.session_date.isoformat(), s.session_date)
        matricule, certificate = note.matricule, note.certificate_number
        born = birth_date(matricule) if self._matricule(matricule, item.line, xp + "/Patient/Matricule") else None
        price_for, check_session = self.nomenclature.price_for, self.rules.check
        acts, providers, created = self.codes.acts, self._providers, self.created
        seen_lines: set[int] = set()
        gross_sum = share_sum = cns_sum = 0
        for index, s in enumerate(note.sessions, 1):
            gross, share, cns, day, act = s.gross, s.patient_share, s.cns_share, s.session_date, s.act_code
            gross_sum += gross
            share_sum += share
            cns_sum += cns
            problems = []
            if s.line_no in seen_lines:
                problems.append(("DOC08", f"line number {s.line_no} appears twice in fee note {note.number}", "/NumeroLigne"))
            seen_lines.add(s.line_no)
            if gross != share + cns:
                problems.append(("NOM04", f"{gross / 100:.2f} ≠ {share / 100:.2f} + {cns / 100:.2f}", "/MontantBrut"))
            if created is not None and day > created:
                problems.append(("TRT07", f"session date {day} is after the file's creation date {created}", "/DateSeance"))
            if s.executing_provider not in providers:
                bad = check_provider(s.executing_provider)
                if bad:
                    problems.append((bad[0][0], bad[0][1], "/PrestataireExecutant"))
                else:
                    providers.add(s.executing_provider)
            if born is not None and act in acts:
                try:
                    price = price_for(act, day, born)
                except NoTariffError:
                    problems.append(("NOM01", f"no tariff table is in force on {day}", "/DateSeance"))
                else:
                    if price.gross != gross:
                        problems.append(("NOM02", f"{act} on {day} costs {price.gross / 100:.2f}, billed {gross / 100:.2f}", "/MontantBrut"))
                    elif price.patient_share != share:
                        problems.append(("NOM03", f"patient share should be {price.patient_share / 100:.2f}, billed {share / 100:.2f}", "/ParticipationPersonnelle"))
                for code, message in check_session(certificate, matricule, day, act):
                    problems.append((code, message, ""))
            if problems:
                for code, message, where in problems:
                    self.add(code, message, s.line or item.line, f"{xp}/Seance[{index}]{where}")
        self.sessions += len(note.sessions)
        self.gross += gross_sum
        self.share += share_sum
        self.cns += cns_sum

    def finish(self) -> None:
        from cns_exchange.xmlwrite import amount

        self._expect("NombreMemoires", str(self.count), "DOC01", "fee notes")
        self._expect("NombreSeances", str(self.sessions), "DOC01", "sessions")
        self._expect("TotalMontantBrut", amount(self.gross), "DOC02", "as the sum of the gross amounts")
        self._expect("TotalParticipationPersonnelle", amount(self.share), "DOC02", "as the sum of the patient shares")
        self._expect("TotalPartStatutaire", amount(self.cns), "DOC02", "as the sum of the CNS shares")


class _AnswerRules(_Rules):
    def on_item(self, item: Item) -> None:
        super().on_item(item)
        a, line, xp = item.record, item.line, item.xpath
        self._matricule(a.matricule, line, xp + "/Matricule")
        c = a.certificate
        if c is not None:
            if c.valid_to < c.valid_from:
                self.add("DOC03", f"validity {c.valid_from} → {c.valid_to}", line, xp + "/Titre/DateFinValidite")
            for act, _ in c.acts:
                if act not in self.codes.acts:
                    self.add("ACT01", f"act code '{act}' is unknown", line, xp + "/Titre/ActesAutorises")

    def finish(self) -> None:
        self._expect("NombreReponses", str(self.count), "DOC01", "answers")


class _PaymentRules(_Rules):
    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.billed = self.accepted = 0
        self.keys: set[tuple[int, int]] = set()

    def on_item(self, item: Item) -> None:
        super().on_item(item)
        p, line, xp = item.record, item.line, item.xpath
        self.billed += p.billed
        self.accepted += p.accepted
        key = (p.fee_note, p.line_no)
        if key in self.keys:
            self.add("DOC08", f"fee note {p.fee_note} line {p.line_no} appears twice", line, xp)
        self.keys.add(key)
        if p.accepted > p.billed:
            self.add("DOC04", f"accepted {p.accepted / 100:.2f} > billed {p.billed / 100:.2f}", line, xp)
        if p.reason_code and p.reason_code not in self.codes.dispute_reasons:
            self.add("DOC05", f"dispute reason '{p.reason_code}' is not in the bundled list", line, xp + "/Contestation/CodeMotif")

    def finish(self) -> None:
        from cns_exchange.xmlwrite import amount

        self._expect("NombreLignes", str(self.count), "DOC01", "lines")
        self._expect("TotalFacture", amount(self.billed), "DOC02", "as the sum of the billed amounts")
        self._expect("TotalAccepte", amount(self.accepted), "DOC02", "as the sum of the accepted amounts")
        self._expect("TotalConteste", amount(self.billed - self.accepted), "DOC02", "as billed minus accepted")


RULES = {"request": _RequestRules, "billing": _BillingRules, "answers": _AnswerRules,
         "payment": _PaymentRules, "ack": _Rules}


#: Documents at least this large get their XSD check in a second process (see _xsd_check).
PARALLEL_XSD_BYTES = 4 * 1024 * 1024


def xsd_check(path: str, schema, item_tag: str, root: str, xsd: Path | None = None) -> list[tuple[str, int | None, str, str]]:
    """Validate the document at ``path`` against ``schema`` (compiled from the file ``xsd``), streaming.

    Returns ``(code, line, xpath, message)`` tuples: XML01 for a well-formedness error, XSD01
    for each schema violation (tied to its line by a second pass), nothing if valid.
    libxml2's tree-less validator gives the verdict first (:mod:`xsdstream`); only a
    document it does not pass goes through lxml, which says where and why.
    """
    if xsd is not None and verdict(path, str(xsd)):
        return []
    etree.clear_error_log()  # libxml2's log is global: a previous document must not speak here
    closed = False
    with open(path, "rb") as source:
        try:
            for _, el in etree.iterparse(source, events=("end",), tag=(item_tag, root), schema=schema, **PARSER_OPTIONS):
                if el.tag == root and el.getparent() is None:
                    closed = True
                    continue
                el.clear()  # items are only validated here: free them as they pass
                parent = el.getparent()
                if parent is not None:
                    while el.getprevious() is not None:
                        del parent[0]
        except etree.XMLSyntaxError as exc:
            schema_errors = [e for e in exc.error_log if e.domain_name == "SCHEMASV"]
            parse_errors = [e for e in exc.error_log if e.domain_name != "SCHEMASV"]
            if parse_errors or not schema_errors:
                # Not well-formed (the log may be empty: then the exception itself says where).
                if parse_errors:
                    return [("XML01", parse_errors[0].line or None, "", clean_message(parse_errors[0].message))]
                return [("XML01", exc.lineno or None, "", clean_message(exc.msg or str(exc)))]
            source.seek(0)
            located = locate_schema_errors(source, schema)
            if not located:  # pragma: no cover - defensive: report what libxml2 said
                located = [(None, "", clean_message(e.message)) for e in schema_errors]
            found = [("XSD01", line, xpath, message) for line, xpath, message in located]
            if not closed:
                found.append(_unclosed(root))
            return found
    if not closed:
        # With resolve_entities=False lxml does not raise when the data ends early (or the
        # parser stops at its depth limit): an unclosed root is how that shows.
        return [_unclosed(root)]
    return []


_MATRICULE = re.compile(rb"<Matricule>\s*([0-9]{13})\s*</Matricule>")


def clean_matricules(path: str) -> set[str]:
    """Return the matricules of the document at ``path`` that pass every check (no issue).

    Run by the XSD worker for :meth:`_BillingRules.settle`; one missed here is checked there,
    so a plain regular expression suffices.
    """
    found: set[bytes] = set()
    tail = b""
    with open(path, "rb") as source:
        while chunk := source.read(4 << 20):
            data = tail + chunk
            found.update(_MATRICULE.findall(data))
            tail = data[-64:]
    matricules = {m.decode("ascii") for m in found}
    return {m for m in matricules if not check_matricule(m)}


def _unclosed(root: str) -> tuple[str, None, str, str]:
    return ("XML01", None, f"/{root}",
            f"the document was not read to its end </{root}>: it is truncated, or nested deeper than the parser allows.")


def _xsd_worker(conn, path: str, schema, item_tag: str, root: str, xsd: Path | None, then) -> None:  # pragma: no cover - runs in the child
    try:
        found = xsd_check(path, schema, item_tag, root, xsd)
        conn.send((found, then(path) if then is not None and not found else None))
    except BaseException as exc:  # noqa: BLE001 - the parent reports it
        conn.send(exc)


class _ParallelXsd(Worker):
    """Runs :func:`xsd_check` in a forked process while the caller checks business rules.

    The XSD check is libxml2 work and the business rules Python work: on two cores they
    overlap, and a large document is validated in about the time of the XSD check alone.
    Falls back to running inline where fork is not available.

    ``then(path)``, if given, runs in the worker after a clean XSD check, and what it
    returns is :attr:`extra` (None when it did not run): work the caller hands over.
    """

    def __init__(self, path: str, schema, item_tag: str, root: str, parallel: bool, xsd: Path | None = None,
                 then=None) -> None:
        self.path, self.schema, self.item_tag, self.root, self.xsd = path, schema, item_tag, root, xsd
        self.extra = None
        if parallel and forked.available():
            self.start(_xsd_worker, path, schema, item_tag, root, xsd, then)

    def result(self) -> list[tuple[str, int | None, str, str]]:
        if self.proc is None:
            return xsd_check(self.path, self.schema, self.item_tag, self.root, self.xsd)
        try:
            outcome = self.conn.recv()
        except EOFError:
            outcome = RuntimeError("the XSD worker process died")
        finally:
            self.stop()
        if isinstance(outcome, BaseException):
            raise outcome
        found, self.extra = outcome
        return found

    def cancel(self) -> None:
        self.stop()


class Validator:
    """Validates documents; compiled schemas are kept for every file of the run."""

    def __init__(self, registry: SchemaRegistry, codes: Codes, nomenclature: Nomenclature,
                 max_bytes: int) -> None:
        self.registry = registry
        self.codes = codes
        self.nomenclature = nomenclature
        self.max_bytes = max_bytes

    def validate(self, name: str, stream: IO[bytes] | None = None, expect_kind: str | None = None,
                 check_name: bool = True, rules: bool = True, size_limit: bool = True,
                 attachments: bool = True) -> Report:
        """Validate the document ``name`` (a path, or '-' with ``stream`` as stdin); return its report.

        With ``rules=False`` only the XSD is checked (used by build, which has checked the
        business rules on the records it wrote). With ``attachments`` (and the rules), a
        request file on disk also has its prescription PDFs checked beside it (PDF08,
        PDF09); those found intact are listed in ``report.attachments``. Never raises for a
        bad document: every problem is an issue in the report.
        """
        report = Report(name="<stdin>" if name == "-" else name)
        limit = self.max_bytes if size_limit else 0
        spooled = None
        try:
            if stream is not None or name == "-":
                spooled = spool(report.name, stream or sys.stdin.buffer, limit or (1 << 62))
                path = spooled.name
            else:
                open_document(name, limit).close()
                path = name
            self._validate(path, report, expect_kind, rules,
                           Path(name).resolve().parent if attachments and spooled is None else None)
        except DocumentTooLarge as exc:
            report.issues.append(Issue("XML03", exc.message, file=report.name))
        except DocumentUnreadable as exc:
            report.issues.append(Issue("FIL01", exc.message, file=report.name))
        finally:
            if spooled is not None:
                spooled.close()
        if check_name and name != "-":
            self._check_name(Path(name).name, report)
        return report

    def _validate(self, path: str, report: Report, expect_kind: str | None, with_rules: bool = True,
                  attachments_folder: Path | None = None) -> None:
        with open(path, "rb") as source:
            detected = self._detect(source, report)
        if detected is None:
            return
        schema_set, kind, root = detected
        report.kind, report.version = kind, schema_set.version
        if expect_kind and kind != expect_kind:
            report.issues.append(Issue("DOC06", f"this is {_article(kind)} {kind} document, not {_article(expect_kind)} {expect_kind} document", file=report.name))
            return
        if not with_rules:
            report.issues.extend(Issue(code, message, file=report.name, line=line, xpath=xpath)
                                 for code, line, xpath, message in xsd_check(path, schema_set.schema(kind), ITEM_TAGS[kind] or root, root,
                                                                               schema_set.documents[kind].xsd))
            return
        large = os.path.getsize(path) >= PARALLEL_XSD_BYTES
        # On a large billing file the XSD worker, which has time left, checks the matricules'
        # check digits while this process reads and checks the rest.
        defer = large and kind == "billing"
        xsd = _ParallelXsd(path, schema_set.schema(kind), ITEM_TAGS[kind] or root, root, large, schema_set.documents[kind].xsd,
                           clean_matricules if defer else None)
        defer = defer and xsd.proc is not None
        # A large plainly written file is read by regular expressions: their records count
        # only if the XSD check passes it, and then they are lxml's (see xmlplain).
        plain = large and kind in PLAIN_KINDS
        rules = self._new_rules(report.name, kind, attachments_folder, defer)
        try:
            try:
                self._read(rules, path, kind, root, plain)
            except NotPlain:
                plain = False
                rules = self._new_rules(report.name, kind, attachments_folder, defer)
                self._read(rules, path, kind, root, plain)
        except HostileDocument:
            xsd.cancel()
            report.issues.append(Issue("XML02", "the document declares a DOCTYPE", file=report.name, line=1))
            return
        except etree.XMLSyntaxError:
            pass  # the XSD pass reports it, with the same parser, as XML01
        except BaseException:
            xsd.cancel()
            raise
        schema_issues = [Issue(code, message, file=report.name, line=line, xpath=xpath)
                         for code, line, xpath, message in xsd.result()]
        if defer and not schema_issues and not rules.settle(xsd.extra):  # type: ignore[attr-defined]
            rules = self._new_rules(report.name, kind, attachments_folder, False)
            self._read(rules, path, kind, root, plain)
        rules_report = rules.report
        if rules_report.issues and not schema_issues:
            with open(path, "rb") as source:
                lines = locate_paths(source, {i.xpath for i in rules_report.issues if i.xpath})
            for issue in rules_report.issues:
                issue.line = lines.get(issue.xpath, issue.line)
        report.items = rules.count
        if not schema_issues:
            report.attachments = rules_report.attachments
        # Business rules speak only of schema-valid documents: on a broken one they would
        # mostly repeat the schema's complaints in other words.
        report.issues.extend(schema_issues or rules_report.issues)
        report.issues.sort(key=lambda i: (i.line or 0))

    def _new_rules(self, name: str, kind: str, attachments_folder: Path | None, defer: bool = False) -> _Rules:
        rules = RULES[kind](Report(name), self.codes, self.nomenclature)
        if isinstance(rules, _RequestRules):
            rules.attachments_folder = attachments_folder
        if isinstance(rules, _BillingRules):
            rules.defer = defer
        return rules

    @staticmethod
    def _read(rules: _Rules, path: str, kind: str, root: str, plain: bool) -> None:
        """Read the document at ``path`` through ``rules``, which check its business rules."""
        with open(path, "rb") as source:
            for item in (read_plain if plain else read_document)(source, kind, root, columns=True):
                if item.record is None:
                    continue  # the XSD check says why
                if item.what == "header":
                    rules.on_header(item.record, item.line, item.xpath)
                else:
                    rules.on_item(item)
        rules.finish()

    def detect(self, path: str) -> tuple[SchemaSet | None, str, str, list[Issue]]:
        """Return (schema set, kind, root element, issues) of the document at ``path``;
        the set is None (and issues say why) when it cannot be told."""
        report = Report(path)
        try:
            open_document(path, self.max_bytes).close()
            with open(path, "rb") as source:
                detected = self._detect(source, report)
        except (DocumentTooLarge, DocumentUnreadable) as exc:
            report.issues.append(Issue("XML03" if isinstance(exc, DocumentTooLarge) else "FIL01", exc.message, file=path))
            detected = None
        if detected is None:
            return None, report.kind, "", report.issues
        return detected[0], detected[1], detected[2], report.issues

    def _detect(self, source: IO[bytes], report: Report) -> tuple[SchemaSet, str, str] | None:
        """Read the start of the document: root element and EnTete/VersionSchema."""
        root = version = None
        root_line = version_line = None
        etree.clear_error_log()
        try:
            context = etree.iterparse(source, events=("start", "end"), **PARSER_OPTIONS)
            for event, el in context:
                if root is None:
                    if has_doctype(el):
                        report.issues.append(Issue("XML02", "the document declares a DOCTYPE (DTDs and entities are refused)", file=report.name, line=1))
                        return None
                    root, root_line = el.tag, el.sourceline
                if event == "end" and el.tag == "VersionSchema":
                    version, version_line = (el.text or "").strip(), el.sourceline
                    break
                if event == "end" and el.tag == "EnTete":
                    break
        except etree.XMLSyntaxError as exc:
            line = exc.lineno if exc.lineno else None
            report.issues.append(Issue("XML01", clean_message(str(exc.msg if hasattr(exc, 'msg') else exc)), file=report.name, line=line))
            return None
        if root is None:
            report.issues.append(Issue("XML01", "the document is empty", file=report.name))
            return None
        candidates = self.registry.kind_of_root(root)
        if not candidates:
            report.issues.append(Issue("XML04", f"root element <{root}> is not a CNS document kind", file=report.name,
                                       line=root_line, xpath=f"/{root}"))
            return None
        for schema_set, kind in candidates:
            if schema_set.version == version:
                return schema_set, kind, root
        if version is None and len(candidates) == 1:
            # A drop-in schema set without EnTete/VersionSchema: its root names it alone.
            return candidates[0][0], candidates[0][1], root
        known = ", ".join(s.version for s, _ in candidates)
        report.kind = candidates[0][1]
        report.issues.append(Issue("XML05", f"schema version '{version}' is not installed for <{root}> (installed: {known})",
                                   file=report.name, line=version_line, xpath=f"/{root}/EnTete/VersionSchema"))
        return None

    def _check_name(self, name: str, report: Report) -> None:
        parsed = parse_name(name)
        if parsed is None or (report.kind and parsed.kind != report.kind):
            report.issues.append(Issue("DOC07", f"'{name}' does not follow SENDER_KIND_YYYYMMDD_SEQUENCE.xml"
                                       + (f" for {_article(report.kind)} {report.kind} document" if report.kind else ""), file=report.name))


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def _number(text: str):
    from decimal import Decimal, InvalidOperation

    try:
        return Decimal(text)
    except InvalidOperation:
        return text

