"""Validation: detect a document's kind and version, check it against its XSD and the
business rules, and return the issues as data.

The XSD check streams (lxml/libxml2 validating while iterparse reads, items freed as they
go), together with the business rules, in one pass. libxml2 reports XSD errors of a streamed
document without their line, so when there are any a second pass ties each to its line and
XPath (:func:`cns_exchange.xmlread.locate_schema_errors`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import IO

from lxml import etree

from cns_exchange.errors import InputError
from cns_exchange.identifiers import age_on, check_matricule, check_prescriber, check_provider
from cns_exchange.issues import Issue
from cns_exchange.model import Header
from cns_exchange.naming import parse_name
from cns_exchange.nomenclature import Codes, Nomenclature, NoTariffError
from cns_exchange.schemaset import SchemaRegistry, SchemaSet
from cns_exchange.treatment import RequestRules, SessionRules, check_prescription_age
from cns_exchange.xmlread import HostileDocument, Item, locate_schema_errors, read_document
from cns_exchange.xmlsafe import PARSER_OPTIONS, has_doctype, open_document, spool


@dataclass
class Report:
    """The outcome of validating one document."""

    name: str
    kind: str = ""
    version: str = ""
    items: int = 0
    issues: list[Issue] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(i.is_error for i in self.issues)

    def as_dict(self) -> dict:
        return {"file": self.name, "kind": self.kind, "version": self.version, "items": self.items,
                "valid": self.ok, "issues": [i.as_dict() for i in self.issues]}


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
        if self.header is None:
            return
        declared = self.header.extra.get(field_name)
        if declared is not None and declared != actual:
            self.add(code, f"header {field_name} is {declared}, the file holds {actual} {what}",
                     self.header_line, f"{self.header_xpath}/{field_name}")

    def _matricule(self, matricule: str, line: int, xpath: str) -> bool:
        problems = check_matricule(matricule)
        self.problems(problems, line, xpath)
        return all(code == "MAT04" for code, _ in problems)


class _RequestRules(_Rules):
    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.rules = RequestRules(self.codes)

    def on_item(self, item: Item) -> None:
        super().on_item(item)
        r, line, xp = item.record, item.line, item.xpath
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

    def on_header(self, header: Header, line: int, xpath: str) -> None:
        super().on_header(header, line, xpath)
        self.created = header.created.date()

    def on_item(self, item: Item) -> None:
        super().on_item(item)
        note, xp = item.record, item.xpath
        matricule_ok = self._matricule(note.matricule, item.line, xp + "/Patient/Matricule")
        nomenclature = self.nomenclature
        seen_lines: set[int] = set()
        for index, s in enumerate(note.sessions, 1):
            sx = f"{xp}/Seance[{index}]"
            line = s.line or item.line
            self.sessions += 1
            self.gross += s.gross
            self.share += s.patient_share
            self.cns += s.cns_share
            if s.line_no in seen_lines:
                self.add("DOC08", f"line number {s.line_no} appears twice in fee note {note.number}", line, sx + "/NumeroLigne")
            seen_lines.add(s.line_no)
            if s.gross != s.patient_share + s.cns_share:
                self.add("NOM04", f"{s.gross / 100:.2f} ≠ {s.patient_share / 100:.2f} + {s.cns_share / 100:.2f}", line, sx + "/MontantBrut")
            if self.created is not None and s.session_date > self.created:
                self.add("TRT07", f"session date {s.session_date} is after the file's creation date {self.created}", line, sx + "/DateSeance")
            if s.act_code not in self.codes.acts:
                continue
            if matricule_ok:
                try:
                    minor = age_on(note.matricule, s.session_date) < nomenclature.table_on(s.session_date).minor_below_age
                    price = nomenclature.price(s.act_code, s.session_date, minor)
                except NoTariffError:
                    self.add("NOM01", f"no tariff table is in force on {s.session_date}", line, sx + "/DateSeance")
                else:
                    if price.gross != s.gross:
                        self.add("NOM02", f"{s.act_code} on {s.session_date} costs {price.gross / 100:.2f}, billed {s.gross / 100:.2f}", line, sx + "/MontantBrut")
                    elif price.patient_share != s.patient_share:
                        self.add("NOM03", f"patient share should be {price.patient_share / 100:.2f} ({'minor' if minor else 'adult'}), billed {s.patient_share / 100:.2f}", line, sx + "/ParticipationPersonnelle")
                self.problems(self.rules.check(note.certificate_number, note.matricule, s.session_date, s.act_code), line, sx)
            self.problems(check_provider(s.executing_provider), line, sx + "/PrestataireExecutant")

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


class Validator:
    """Validates documents; compiled schemas are kept for every file of the run."""

    def __init__(self, registry: SchemaRegistry, codes: Codes, nomenclature: Nomenclature,
                 max_bytes: int) -> None:
        self.registry = registry
        self.codes = codes
        self.nomenclature = nomenclature
        self.max_bytes = max_bytes

    def validate(self, name: str, stream: IO[bytes] | None = None, expect_kind: str | None = None,
                 check_name: bool = True) -> Report:
        """Validate the document ``name`` (a path or '-'); return its report.

        ``stream``, when given, is read instead of opening ``name``. Never raises for a bad
        document: every problem is an issue in the report.
        """
        report = Report(name="<stdin>" if name == "-" else name)
        try:
            source = stream if stream is not None else open_document(name, self.max_bytes)
        except InputError as exc:
            code = "XML03" if "limit" in exc.message or "bytes" in exc.message else "XML01"
            report.issues.append(Issue(code, exc.message, file=report.name))
            return report
        owned = stream is None
        try:
            if not source.seekable():
                source = spool(report.name, source, self.max_bytes)
                owned = True
            self._validate(source, report, expect_kind)
        except InputError as exc:
            report.issues.append(Issue("XML03", exc.message, file=report.name))
        finally:
            if owned:
                source.close()
        if check_name and name != "-":
            self._check_name(Path(name).name, report)
        return report

    def _validate(self, source: IO[bytes], report: Report, expect_kind: str | None) -> None:
        detected = self._detect(source, report)
        if detected is None:
            return
        schema_set, kind, root = detected
        report.kind, report.version = kind, schema_set.version
        if expect_kind and kind != expect_kind:
            report.issues.append(Issue("DOC06", f"this is a {kind} document, not a {expect_kind} document", file=report.name))
            return
        rules = RULES[kind](report, self.codes, self.nomenclature)
        source.seek(0)
        schema = schema_set.schema(kind)
        try:
            for item in read_document(source, kind, root, schema):
                if item.record is None:
                    # The XSD pass reports why; this keeps the business rules off broken items.
                    continue
                if item.what == "header":
                    rules.on_header(item.record, item.line, item.xpath)
                else:
                    rules.on_item(item)
            rules.finish()
        except HostileDocument:
            report.issues.append(Issue("XML02", "the document declares a DOCTYPE", file=report.name, line=1))
            return
        except etree.XMLSyntaxError as exc:
            parse_errors = [e for e in exc.error_log if e.domain_name != "SCHEMASV"]
            if parse_errors:
                first = parse_errors[0]
                report.issues.append(Issue("XML01", _clean(first.message), file=report.name, line=first.line or None))
                return
            source.seek(0)
            located = locate_schema_errors(source, schema)
            if not located:  # pragma: no cover - defensive: report what libxml2 said
                located = [(None, "", _clean(e.message)) for e in exc.error_log]
            for line, xpath, message in located:
                report.issues.append(Issue("XSD01", message, file=report.name, line=line, xpath=xpath))
        report.items = rules.count
        report.issues.sort(key=lambda i: (i.line or 0))

    def _detect(self, source: IO[bytes], report: Report) -> tuple[SchemaSet, str, str] | None:
        """Read the start of the document: root element and EnTete/VersionSchema."""
        root = version = None
        try:
            context = etree.iterparse(source, events=("start", "end"), **PARSER_OPTIONS)
            for event, el in context:
                if root is None:
                    if has_doctype(el):
                        report.issues.append(Issue("XML02", "the document declares a DOCTYPE (DTDs and entities are refused)", file=report.name, line=1))
                        return None
                    root = el.tag
                if event == "end" and el.tag == "VersionSchema":
                    version = (el.text or "").strip()
                    break
                if event == "end" and el.tag == "EnTete":
                    break
        except etree.XMLSyntaxError as exc:
            line = exc.lineno if exc.lineno else None
            report.issues.append(Issue("XML01", _clean(str(exc.msg if hasattr(exc, 'msg') else exc)), file=report.name, line=line))
            return None
        if root is None:
            report.issues.append(Issue("XML01", "the document is empty", file=report.name))
            return None
        candidates = self.registry.kind_of_root(root)
        if not candidates:
            report.issues.append(Issue("XML04", f"root element <{root}> is not a CNS document kind", file=report.name, line=1, xpath=f"/{root}"))
            return None
        for schema_set, kind in candidates:
            if schema_set.version == version:
                return schema_set, kind, root
        known = ", ".join(s.version for s, _ in candidates)
        report.kind = candidates[0][1]
        report.issues.append(Issue("XML05", f"schema version '{version}' is not installed for <{root}> (installed: {known})",
                                   file=report.name, xpath=f"/{root}/EnTete/VersionSchema"))
        return None

    def _check_name(self, name: str, report: Report) -> None:
        parsed = parse_name(name)
        if parsed is None or (report.kind and parsed.kind != report.kind):
            report.issues.append(Issue("DOC07", f"'{name}' does not follow SENDER_KIND_YYYYMMDD_SEQUENCE.xml"
                                       + (f" for a {report.kind} document" if report.kind else ""), file=report.name))


def _clean(message: str) -> str:
    return message.strip().rstrip(".") + "."
