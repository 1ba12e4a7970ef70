"""Validation: detect a document's kind and version, check it against its XSD and the
business rules, and return the issues as data.

A document is valid only when every check ran to its end and said so (fail closed):

- lxml reads the document to its end, without the schema, and hands each item to the
  business rules of :mod:`cns_exchange.validation.rules` (the one rule engine build uses too). A parse
  error anywhere is XML01: it is never left for another check to report.
- Meanwhile libxml2's tree-less validator gives its verdict on the file in a thread
  (:class:`cns_exchange.documents.verdict.XsdVerdict`: public API, checked at first use). When
  it does not pass the file, or cannot be used, lxml's slower schema pass says where and why
  (:func:`cns_exchange.documents.read.schema_findings`); when that pass finds nothing the
  verdict still stands and the document is invalid.
- An exception in any check, in this thread or the verdict's, makes the document invalid
  (VAL01) with what happened; it never passes a document.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import IO

from lxml import etree

from cns_exchange.fsutil import sha256_of
from cns_exchange.i18n import _, reason
from cns_exchange.domain.identifiers import check_provider
from cns_exchange.issues import Issue
from cns_exchange.domain.model import Header, money
from cns_exchange.domain.naming import parse_name
from cns_exchange.domain.nomenclature import Codes, Nomenclature
from cns_exchange.validation.rules import SESSION_WIDE, SHARE_ON_SESSION_DATE, BillingChecks, RequestChecks, check_acts_known
from cns_exchange.documents.schemas import SchemaRegistry, SchemaSet
from cns_exchange.documents.read import (
    ITEM_TAGS, FeeNoteColumns, Finding, HostileDocument, Item, Part, amount_of, clean_message, date_of, locate_paths,
    read_document, schema_findings,
)
from cns_exchange.documents.safe import PARSER_OPTIONS, DocumentTooLarge, DocumentUnreadable, has_doctype, open_document, spool
from cns_exchange.documents.verdict import CheckFailed, XsdVerdict

log = logging.getLogger("cnsx.validate")


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
        return None, ("PDF08", _("'{name}' is not a plain file name: the prescription cannot be looked for beside the "
                                 "request file").format(name=name))
    pdf = folder / name
    if not pdf.is_file():
        return None, ("PDF08", _("prescription {name} is not beside the request file").format(name=name))
    sha, size = sha256_of(pdf)
    if sha != sha256.strip().lower():
        return None, ("PDF09", _("{name} differs from the SHA-256 the request names").format(name=name))
    return Attachment(pdf, sha, size), None



#: Where a rule's field is, below the item's XPath (billing: below the session's, "" = the session).
_REQUEST_FIELDS = {"matricule": "/Patient/Matricule", "prescriber_code": "/CodeMedecinPrescripteur",
                   "pathology_codes": "/CodesPathologie", "requested_acts": "/ActesDemandes",
                   "prescription_date": "/DateOrdonnance", "treatment": ""}
_SESSION_FIELDS = {"session_date": "/DateSeance", "act_code": "/CodeActe", "executing_provider": "/PrestataireExecutant",
                   "gross": "/MontantBrut", "patient_share": "/ParticipationPersonnelle", "cns_share": "/PartStatutaire",
                   "line_no": "/NumeroLigne", "certificate_number": "", "matricule": "", "session": "",
                   "prescription_date": ""}


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

    def unreadable(self, item: Item) -> None:
        """An item (or the header) the reader could not turn into a record: the schema check
        must refuse it too; if it does not, this issue keeps the document invalid."""
        self.count += item.what is Part.ITEM
        self.add("XSD01", _("cannot be read: {error}").format(error=item.error), item.line, item.xpath)

    def finish(self) -> None:
        pass

    def _expect(self, field_name: str, actual: str, code: str, what: str) -> None:
        """Compare a header count or total with what the file holds, as numbers ('03' = '3');
        ``what``: what the file holds, a message ('sessions', 'as the sum of the ...')."""
        if self.header is None:
            return
        declared = self.header.extra.get(field_name)
        if declared is not None and _number(declared) != _number(actual):
            self.add(code, _("header {field} is {declared}, the file holds {actual} {what}").format(
                field=field_name, declared=declared, actual=actual, what=what),
                     self.header_line, f"{self.header_xpath}/{field_name}")


class _RequestRules(_Rules):
    #: The folder of a request file on disk, where its prescription PDFs must be (None: stdin).
    attachments_folder: Path | None = None

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.checks = RequestChecks(self.codes, None)

    def on_header(self, header: Header, line: int, xpath: str) -> None:
        super().on_header(header, line, xpath)
        self.checks.submitted = header.created.date()

    def on_item(self, item: Item) -> None:
        super().on_item(item)
        r, line, xp = item.record, item.line, item.xpath
        if self.attachments_folder is not None:
            found, problem = check_attachment(self.attachments_folder, r.pdf_name, r.pdf_sha256)
            if problem is not None:
                self.add(problem[0], problem[1], line, xp + ("/Ordonnance/NomFichier" if problem[0] == "PDF08" else "/Ordonnance/Sha256"))
            else:
                self.report.attachments.append(found)
        for _unused, code, message, where in self.checks.request(r.matricule, r.prescriber_code, r.prescription_date,
                                                           r.pathology_codes, r.treatment, r.acts, r.request_ref):
            self.add(code, message, line, xp + _REQUEST_FIELDS[where])

    def finish(self) -> None:
        self._expect("NombreDemandes", str(self.count), "DOC01", _("requests"))


class _BillingRules(_Rules):
    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.checks = BillingChecks(self.codes, self.nomenclature, None)
        self.sessions = self.gross = self.share = self.cns = 0
        self._dates: dict[str, date] = {}
        self._amounts: dict[str, int] = {}   # T_Montant text -> cents

    def on_header(self, header: Header, line: int, xpath: str) -> None:
        super().on_header(header, line, xpath)
        self.checks.created = header.created.date()
        # A version that cannot carry the prescription date is judged on the session date.
        self.checks.share_on_session_date = header.version in SHARE_ON_SESSION_DATE

    def on_item(self, item: Item) -> None:
        super().on_item(item)
        note: FeeNoteColumns = item.record
        t, xp = note.texts, item.xpath
        try:
            line_nos = list(map(int, t[0::7]))
            days = self._converted(t[1::7], self._dates, date_of)
            gross, share, cns = (self._converted(t[k::7], self._amounts, amount_of) for k in (4, 5, 6))
            prescribed = date_of(note.prescription_date, self._dates) if note.prescription_date else None
        except ValueError as exc:
            self.add("XSD01", _("cannot be read: {error}").format(error=reason(exc)), item.line, xp)
            return
        providers = list(map(str.strip, t[3::7]))
        _prices, problems = self.checks.fee_note(note.certificate_number, note.matricule, days, t[2::7], providers,
                                           (line_nos, gross, share, cns), prescribed)
        lines = note.lines
        for index, code, message, where in problems:
            if index < 0:
                self.add(code, message, item.line, xp + "/Patient/Matricule")
            else:
                # A treatment rule is about the session as a whole (TRT07 about its date).
                below = "" if code in SESSION_WIDE else _SESSION_FIELDS[where]
                self.add(code, message, lines[index] or item.line, f"{xp}/Seance[{index + 1}]{below}")
        self.sessions += len(days)
        self.gross += sum(gross)
        self.share += sum(share)
        self.cns += sum(cns)

    @staticmethod
    def _converted(texts: list[str], cache: dict, convert) -> list:
        """``texts`` converted, each distinct text once (a file repeats a few hundred dates
        and a few amounts)."""
        values = list(map(cache.get, texts))
        if None in values:
            values = [convert(text, cache) for text in texts]
        return values

    def finish(self) -> None:
        from cns_exchange.documents.write import amount

        self._expect("NombreMemoires", str(self.count), "DOC01", _("fee notes"))
        self._expect("NombreSeances", str(self.sessions), "DOC01", _("sessions"))
        self._expect("TotalMontantBrut", amount(self.gross), "DOC02", _("as the sum of the gross amounts"))
        self._expect("TotalParticipationPersonnelle", amount(self.share), "DOC02", _("as the sum of the patient shares"))
        self._expect("TotalPartStatutaire", amount(self.cns), "DOC02", _("as the sum of the CNS shares"))


class _AnswerRules(_Rules):
    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.checks = BillingChecks(self.codes, self.nomenclature, None)

    def on_item(self, item: Item) -> None:
        super().on_item(item)
        a, line, xp = item.record, item.line, item.xpath
        self.problems(self.checks.matricule(a.matricule)[0], line, xp + "/Matricule")
        c = a.certificate
        if c is not None:
            if c.valid_to < c.valid_from:
                self.add("DOC03", _("validity {start} → {end}").format(start=c.valid_from, end=c.valid_to), line,
                         xp + "/Titre/DateFinValidite")
            for act, _count in c.acts:
                self.problems(check_acts_known(self.codes, act), line, xp + "/Titre/ActesAutorises")

    def finish(self) -> None:
        self._expect("NombreReponses", str(self.count), "DOC01", _("answers"))


class _PaymentRules(_Rules):
    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.billed = self.accepted = 0
        self.keys: dict[int, int] = {}  # (fee note, line) as one int -> the line where it stands

    def on_item(self, item: Item) -> None:
        super().on_item(item)
        p, line, xp = item.record, item.line, item.xpath
        self.billed += p.billed
        self.accepted += p.accepted
        key = p.fee_note << 32 | p.line_no
        if key in self.keys:
            self.add("DOC08", _("fee note {note} line {line_no} appears twice (lines {first} and {line})").format(
                note=p.fee_note, line_no=p.line_no, first=self.keys[key], line=line), line, xp)
        else:
            self.keys[key] = line
        if p.accepted > p.billed:
            self.add("DOC04", _("accepted {accepted} > billed {billed}").format(
                accepted=money(p.accepted), billed=money(p.billed)), line, xp)
        if p.reason_code and p.reason_code not in self.codes.dispute_reasons:
            self.add("DOC05", _("dispute reason '{code}' is not in the bundled list").format(code=p.reason_code), line,
                     xp + "/Contestation/CodeMotif")

    def finish(self) -> None:
        from cns_exchange.documents.write import amount

        self._expect("NombreLignes", str(self.count), "DOC01", _("lines"))
        self._expect("TotalFacture", amount(self.billed), "DOC02", _("as the sum of the billed amounts"))
        self._expect("TotalAccepte", amount(self.accepted), "DOC02", _("as the sum of the accepted amounts"))
        self._expect("TotalConteste", amount(self.billed - self.accepted), "DOC02", _("as billed minus accepted"))


RULES = {"request": _RequestRules, "billing": _BillingRules, "answers": _AnswerRules,
         "payment": _PaymentRules, "ack": _Rules}

def read_to_the_end(path: str, kind: str, root: str, rules: _Rules | None) -> list[Finding]:
    """Read the document at ``path`` to its end with lxml (no schema), each item through
    ``rules`` if given; return what stopped the reading (XML01, XML02), or nothing."""
    try:
        with open(path, "rb") as source:
            for item in read_document(source, kind, root, columns=True):
                if rules is None:
                    continue
                if item.record is None:
                    rules.unreadable(item)
                elif item.what is Part.HEADER:
                    rules.on_header(item.record, item.line, item.xpath)
                else:
                    rules.on_item(item)
    except HostileDocument:
        return [("XML02", 1, "", _("the document declares a DOCTYPE"))]
    except etree.XMLSyntaxError as exc:
        return [("XML01", exc.lineno or None, "", clean_message(exc.msg or str(exc)))]
    if rules is not None:
        rules.finish()
    return []


class Validator:
    """Validates documents; compiled schemas are kept for every file of the run."""

    def __init__(self, registry: SchemaRegistry, codes: Codes, nomenclature: Nomenclature,
                 max_bytes: int) -> None:
        self.registry = registry
        self.codes = codes
        self.nomenclature = nomenclature
        self.max_bytes = max_bytes
        #: The patient's earlier treatments (database.TreatmentHistory), for the request rules
        #: across files; None: a document is judged on its own.
        self.history = None

    def validate(self, name: str, stream: IO[bytes] | None = None, expect_kind: str | None = None,
                 check_name: bool = True, rules: bool = True, size_limit: bool = True,
                 attachments: bool = True) -> Report:
        """Validate the document ``name`` (a path, or '-' with ``stream`` as stdin); return its report.

        With ``rules=False`` only the XSD is checked (used by build, which has checked the
        business rules on the records it wrote). With ``attachments`` (and the rules), a
        request file on disk also has its prescription PDFs checked beside it (PDF08,
        PDF09); those found intact are listed in ``report.attachments``. Never raises for a
        bad document: every problem is an issue in the report, and a check that fails to
        run to its end is one too (VAL01), so that such a document is never valid.
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
        except (CheckFailed, MemoryError, RecursionError, OSError, ValueError, TypeError, KeyError, AttributeError,
                IndexError, LookupError, RuntimeError, etree.LxmlError) as exc:
            log.debug("a check of %s did not run to its end", report.name, exc_info=True)
            report.issues.append(Issue("VAL01", reason(exc) if isinstance(exc, CheckFailed) else
                                       _("a check stopped before the end: {error}").format(error=f"{type(exc).__name__}: {exc}"),
                                       file=report.name))
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
            report.issues.append(Issue("DOC06", _("this is {kind}, not {expected}").format(
                kind=_kind_name(kind), expected=_kind_name(expect_kind)), file=report.name))
            return
        spec = schema_set.documents[kind]
        schema, item_tag = schema_set.schema(kind), ITEM_TAGS[kind] or root
        check = XsdVerdict(path, spec.xsd)
        rules = self._new_rules(report.name, kind, attachments_folder) if with_rules else None
        try:
            # Build checks its own output: libxml2's verdict, when it passes the file, is
            # complete there (well-formed to the end, and valid); anything else is read again.
            stopped = read_to_the_end(path, kind, root, rules) if with_rules else []
        except KeyboardInterrupt:
            raise  # Ctrl-C does not wait for libxml2 (seconds on a large file): see libxml2_running
        except BaseException:
            check.result()
            raise
        native = check.result()
        if not with_rules and native is not True:
            stopped = read_to_the_end(path, kind, root, None)
        findings = stopped + [f for f in schema_findings(path, schema, item_tag, root, native, bool(stopped))
                              if not (stopped and f[0] == "XML01")]
        schema_issues = [Issue(code, message, file=report.name, line=line, xpath=xpath)
                         for code, line, xpath, message in findings]
        if rules is None:
            report.issues.extend(schema_issues)
            return
        rules_report = rules.report
        if not schema_issues:
            self.placed(path, rules_report.issues)
        report.items = rules.count
        if not schema_issues:
            report.attachments = rules_report.attachments
        # Business rules speak only of schema-valid documents: on a broken one they would
        # mostly repeat the schema's complaints in other words.
        report.issues.extend(schema_issues or rules_report.issues)
        report.issues.sort(key=lambda i: (i.line or 0))

    def rules_for(self, name: str, kind: str) -> _Rules:
        """The business rules of a ``kind`` document named ``name``, for a caller that reads
        the document itself (import); their findings are in ``.report.issues``."""
        return self._new_rules(name, kind, None)

    @staticmethod
    def placed(path: str, issues: list[Issue]) -> list[Issue]:
        """``issues`` of the rules with the line of the element each names (the rules see
        records, not elements: one pass over the file ties their XPaths to lines)."""
        if issues:
            with open(path, "rb") as source:
                lines = locate_paths(source, {i.xpath for i in issues if i.xpath})
            for issue in issues:
                issue.line = lines.get(issue.xpath, issue.line)
        return issues

    def _new_rules(self, name: str, kind: str, attachments_folder: Path | None) -> _Rules:
        rules = RULES[kind](Report(name), self.codes, self.nomenclature)
        if isinstance(rules, _RequestRules):
            rules.attachments_folder = attachments_folder
            rules.checks.history = self.history
        return rules

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
                        report.issues.append(Issue("XML02", _("the document declares a DOCTYPE (DTDs and entities are refused)"),
                                                   file=report.name, line=1))
                        return None
                    root, root_line = el.tag, el.sourceline
                if event == "end" and el.tag == "VersionSchema":
                    version, version_line = (el.text or "").strip(), el.sourceline
                    break
                if event == "end" and el.tag == "EnTete":
                    break
        except etree.XMLSyntaxError as exc:
            if root is None and _declares_doctype(source):
                # The parser may stop inside the DTD (an entity bomb trips its amplification
                # limit) before it shows a DOCTYPE: that is still a document with a DTD.
                report.issues.append(Issue("XML02", _("the document declares a DOCTYPE (DTDs and entities are refused)"),
                                           file=report.name, line=1))
                return None
            line = exc.lineno if exc.lineno else None
            report.issues.append(Issue("XML01", clean_message(str(exc.msg if hasattr(exc, 'msg') else exc)), file=report.name, line=line))
            return None
        if root is None:
            report.issues.append(Issue("XML01", _("the document is empty"), file=report.name))
            return None
        candidates = self.registry.kind_of_root(root)
        if not candidates:
            report.issues.append(Issue("XML04", _("root element <{root}> is not a CNS document kind").format(root=root),
                                       file=report.name,
                                       line=root_line, xpath=f"/{root}"))
            return None
        for schema_set, kind in candidates:
            if schema_set.version == version:
                return schema_set, kind, root
        if version is None and len(candidates) == 1:
            # A drop-in schema set without EnTete/VersionSchema: its root names it alone.
            return candidates[0][0], candidates[0][1], root
        known = ", ".join(s.version for s, _kind in candidates)
        report.kind = candidates[0][1]
        report.issues.append(Issue("XML05", _("schema version '{version}' is not installed for <{root}> (installed: {installed})").format(
                                       version=version, root=root, installed=known),
                                   file=report.name, line=version_line, xpath=f"/{root}/EnTete/VersionSchema"))
        return None

    def _check_name(self, name: str, report: Report) -> None:
        parsed = parse_name(name)
        if parsed is None or (report.kind and parsed.kind != report.kind):
            message = (_("'{name}' does not follow SENDER_KIND_YYYYMMDD_SEQUENCE.xml for {kind}").format(
                           name=name, kind=_kind_name(report.kind)) if report.kind
                       else _("'{name}' does not follow SENDER_KIND_YYYYMMDD_SEQUENCE.xml").format(name=name))
            report.issues.append(Issue("DOC07", message, file=report.name))


def _declares_doctype(source: IO[bytes]) -> bool:
    """True if the prolog of ``source`` (its first 64 KiB, in UTF-8 or UTF-16) holds a DOCTYPE."""
    source.seek(0)
    head = source.read(1 << 16)
    return any(marker in head for marker in (b"<!DOCTYPE", "<!DOCTYPE".encode("utf-16-le"), "<!DOCTYPE".encode("utf-16-be")))


#: Each document kind as a message names it ('this is a request document, not ...').
_KIND_NAMES = {"request": _("a request document"), "billing": _("a billing document"),
               "answers": _("an answers document"), "payment": _("a payment document"), "ack": _("an ack document")}


def _kind_name(kind: str) -> str:
    """'a request document', in the user's language at display; a kind of a drop-in schema
    set that cnsx does not know stays English."""
    return _KIND_NAMES.get(kind) or f"{'an' if kind[:1] in 'aeiou' else 'a'} {kind} document"


def _number(text: str):
    from decimal import Decimal, InvalidOperation

    try:
        return Decimal(text)
    except InvalidOperation:
        return text

