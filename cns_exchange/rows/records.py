"""Rows to typed records: the requests and the sessions of the practice's files, each value
read (dates day first or ISO, names, codes as a spreadsheet leaves them) and its rules checked
by the one rule engine (validation.rules), every problem reported on its row and column.

The rows come from rows.reading, whose names used across cnsx are given here too.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

from cns_exchange.domain.identifiers import normalise_prescriber
from cns_exchange.domain.model import CertificateRequest, Session
from cns_exchange.domain.nomenclature import Codes
from cns_exchange.i18n import _, reason
from cns_exchange.pdf.prescriptions import PrescriptionFiles
from cns_exchange.rows.decoding import canonical_encoding, peekable  # noqa: F401 - named from here by the commands
from cns_exchange.rows.reading import (  # noqa: F401 - the reading half, named from here by the commands and tests
    FORMATS, HEADER_NAMES, MAX_ERRORS, REQUEST_COLUMNS, REQUEST_OPTIONAL, SESSION_COLUMNS, SESSION_OPTIONAL,
    InputReport, Reading, Row, detect_format, fold, read_rows,
)
from cns_exchange.validation.rules import RequestChecks

#: The treatment kinds as a practice may write them (folded), and the kind each one is.
TREATMENT_NAMES = {"initial": "initial", "initiale": "initial", "extension": "extension", "prolongation": "extension"}

REFERENCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-]{0,34}\Z")
# 1-100 characters, no control characters (XML cannot carry most of them), no blank at the ends.
NAME = re.compile(r"[^\s\x00-\x1f\x7f-\x9f]([^\x00-\x1f\x7f-\x9f]{0,98}[^\s\x00-\x1f\x7f-\x9f])?\Z")


def _required(row: Row, column: str, report: InputReport) -> str | None:
    value = row.values.get(column)
    if value is None:
        return None  # missing column, already reported
    if value == "":
        report.add("IN003", _("'{column}' is empty").format(column=column), row.line, column)
        return None
    return value


def iso_date(text: str) -> date:
    """The date written YYYY-MM-DD in ``text``; ValueError for anything else (Python's
    ``date.fromisoformat`` also takes '20261120' and week dates such as '2026-W47-5')."""
    result = date.fromisoformat(text)
    if result.isoformat() != text:
        raise ValueError(f"not YYYY-MM-DD: {text!r}")
    return result


#: A date written day first, as a French or German spreadsheet writes it: dd/mm/yyyy or
#: dd.mm.yyyy (a day or month of one digit too). Never month first.
_DAY_FIRST = re.compile(r"([0-9]{1,2})([/.])([0-9]{1,2})\2([0-9]+)\Z")


def input_date(text: str) -> date:
    """The date in a cell of the practice's file: ``YYYY-MM-DD``, or day first ``dd/mm/yyyy``
    or ``dd.mm.yyyy``. ValueError, with what is wrong, for anything else: a year not of four
    digits (``15/10/26``: which century?), a date that does not exist (``31/11/2026``, or
    ``10/20/2026`` written month first), another form."""
    match = _DAY_FIRST.match(text)
    if match is None:
        try:
            return iso_date(text)
        except ValueError:
            if re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text):
                raise ValueError(_("no such day in the calendar")) from None
            raise ValueError(_("not a date: write YYYY-MM-DD or dd/mm/yyyy (day first)")) from None
    day, _unused, month, year = match.groups()
    if len(year) != 4:
        raise ValueError(_("the year must have four digits (a two-digit year is ambiguous)"))
    try:
        return date(int(year), int(month), int(day))
    except ValueError:
        raise ValueError(_("no such day: day {day} of month {month} of {year} (dates are read day first)").format(
            day=int(day), month=int(month), year=year)) from None


def parse_date(row: Row, column: str, report: InputReport, cache: dict[str, date] | None = None) -> date | None:
    """Return the date in ``column`` (input_date) or None after reporting IN003/IN004."""
    value = _required(row, column, report)
    if value is None:
        return None
    if cache is not None:
        cached = cache.get(value)
        if cached is not None:
            return cached
    try:
        result = input_date(value)
    except ValueError as exc:
        report.add("IN004", _("'{column}' value '{value}': {error}").format(column=column, value=value, error=reason(exc)),
                   row.line, column)
        return None
    if cache is not None:
        cache[value] = result
    return result


_SCIENTIFIC = re.compile(r"[0-9]+(?:[.,][0-9]+)?[eE][+-]?[0-9]+\Z")
_SPACED_ACT = re.compile(r"[A-Za-z]{2}\s+[0-9]{2}\Z")


def excel_hint(column: str, value: str) -> str:
    """A hint for the value of ``column`` that a rule refused, when a spreadsheet may have
    damaged it (a long number in scientific notation, a code's leading zero dropped, a space
    in an act code); '' otherwise (the issue code's own hint then). By the value's shape, not
    the issue code: the rules are the engine's (rules.py)."""
    if _SCIENTIFIC.match(value):
        return _("Excel wrote this number in scientific notation and lost its last digits: format the column "
                 "as Text, type the number again, and export again")
    digits = value.replace(" ", "").replace("-", "")
    if column in ("prescriber_code", "executing_provider") and digits.isascii() and digits.isdigit() and len(digits) == 5:
        return _("a spreadsheet drops the leading zero of a number: format the column as Text and type the code "
                 "again with its 0")
    if column == "act_code" and _SPACED_ACT.match(value):
        return _("write the act code without a space: {act}").format(act=value.replace(" ", "").upper())
    return ""


def _matricule(row: Row, report: InputReport) -> str | None:
    """The matricule as written, blanks removed (its rules are the engine's: rules.py)."""
    value = _required(row, "matricule", report)
    return None if value is None else value.replace(" ", "")


def _name(row: Row, column: str, report: InputReport, required: bool) -> str | None:
    value = _required(row, column, report) if required else row.values.get(column, "")
    if not value:
        return None if required else ""
    if not NAME.match(value):
        report.add("IN013", _("'{column}' must be 1 to 100 characters without control characters").format(column=column),
                   row.line, column)
        return None
    return value


def to_request(row: Row, report: InputReport, codes: Codes, base_dir: Path,
               attachment_name=None, prescriptions: PrescriptionFiles | None = None,
               checks: RequestChecks | None = None) -> CertificateRequest | None:
    """Turn a row into a CertificateRequest, or return None after reporting every problem.

    The row's values are read here; their rules are checked by ``checks`` (the one rule
    engine, rules.RequestChecks), on whatever could be read. The prescription is checked here
    by ``prescriptions`` (opens as a PDF, not encrypted, has a page, not too large; JPEG/PNG
    scans converted if it was asked to) and hashed; its path is relative to ``base_dir``
    unless absolute.
    """
    before = len(report.issues)
    ref = _required(row, "request_ref", report)
    if ref is not None and not REFERENCE.match(ref):
        report.add("IN014", _("request_ref '{ref}' is not a valid reference").format(ref=ref), row.line, "request_ref")
    matricule = _matricule(row, report)
    last = _name(row, "last_name", report, True)
    first = _name(row, "first_name", report, True)
    prescriber = _required(row, "prescriber_code", report)
    if prescriber is not None:
        prescriber = normalise_prescriber(prescriber)
    prescribed = parse_date(row, "prescription_date", report)
    pathologies: list[str] = []
    raw_paths = _required(row, "pathology_codes", report)
    if raw_paths is not None:
        for code in (c.strip().upper() for c in raw_paths.replace(",", ";").split(";")):
            if code and code not in pathologies:
                pathologies.append(code)
        if not pathologies:
            report.add("IN003", _("'pathology_codes' names no code"), row.line, "pathology_codes")
    treatment = _required(row, "treatment", report)
    if treatment is not None:
        treatment = TREATMENT_NAMES.get(fold(treatment), treatment.lower())
        if treatment not in codes.treatments:
            report.add("IN011", _("treatment '{treatment}' is not 'initial' or 'extension' ('initiale', 'prolongation')").format(
                treatment=treatment), row.line, "treatment")
            treatment = None
    acts = _requested_acts(row, report, codes, treatment)
    if checks is not None:
        for _unused, code, message, column in checks.request(matricule, prescriber, prescribed, pathologies, treatment, acts,
                                                       ref or ""):
            report.add(code, message, row.line, column, excel_hint(column, row.values.get(column, "")))
    pdf = _required(row, "prescription_pdf", report)
    pdf_name = pdf_sha = pdf_path = ""
    if pdf is not None:
        pdf_path, pdf_name, pdf_sha = _attachment(pdf, row, report, base_dir, prescriptions or PrescriptionFiles())
        if pdf_name and attachment_name is not None and ref is not None:
            pdf_name = attachment_name(ref)
    if any(i.is_error for i in report.issues[before:]) or None in (ref, matricule, last, first, prescriber, prescribed, treatment):
        return None  # a missing column leaves None behind: reported once, on the header
    return CertificateRequest(ref, matricule, last, first, prescriber, prescribed, pathologies,
                              treatment, acts, pdf_name, pdf_sha, pdf_path, row.line)


def _requested_acts(row: Row, report: InputReport, codes: Codes, treatment: str | None) -> list[tuple[str, int]]:
    """The requested_acts column as (act, count) pairs (the treatment's whole sequence when
    empty); the acts' rules (known, part of the treatment, within its limits) are the engine's."""
    raw = row.values.get("requested_acts", "")
    if not raw:
        return codes.treatment_sequence(treatment) if treatment in codes.treatments else []
    acts: list[tuple[str, int]] = []
    for part in raw.split(";"):
        act, _unused, count = part.strip().partition(":")
        act = act.strip().upper()
        count = count.strip()
        if not (count.isascii() and count.isdigit()) or int(count) < 1:
            report.add("IN012", _("'{part}' is not ACT:COUNT").format(part=part.strip()), row.line, "requested_acts")
            continue
        if any(act == seen for seen, _count in acts):
            report.add("IN012", _("{act} is named twice: give each act once, with its total count").format(act=act), row.line,
                       "requested_acts")
            continue
        acts.append((act, int(count)))
    return acts


def _attachment(value: str, row: Row, report: InputReport, base_dir: Path,
                prescriptions: PrescriptionFiles) -> tuple[str, str, str]:
    """Return (path, name, sha256) of the prescription PDF, or empty strings after reporting."""
    prescription, problems = prescriptions.prepare(value, base_dir)
    for problem in problems:
        report.add(problem.code, problem.message, row.line, "prescription_pdf", problem.hint)
    if prescription is None:
        return "", "", ""
    return str(prescription.path), prescription.name, prescription.sha256


#: Distinct values a SessionReader remembers of each kind: past it, it forgets them and starts
#: again (a file of millions of patients is read in bounded memory; a value is checked again).
REMEMBERED = 1 << 16


class SessionReader:
    """Turns session rows into Sessions; caches what repeats across 200,000-row files
    (dates, matricules, providers) so that each distinct value is checked once (up to
    :data:`REMEMBERED` of each)."""

    def __init__(self, report: InputReport, codes: Codes, default_provider: str | None, checks=None) -> None:
        self.report = report
        self.checks = checks  # rules.BillingChecks: the rules of the values of a row that cannot be read whole
        self.acts = codes.acts
        self.default_provider = default_provider or ""
        self.dates: dict[str, date] = {}
        self.good_matricules: set[str] = set()
        # Checked values map to one shared string each: 200,000 rows then hold a few
        # distinct act and provider strings instead of 200,000 copies.
        self.good_providers: dict[str, str] = {}
        self.good_acts: dict[str, str] = {act: act for act in codes.acts}
        self.good_certificates: set[str] = set()

    def read(self, row: Row) -> Session | None:
        """Return the row's Session, or None after reporting every problem of the row."""
        values = row.values
        cert = values.get("certificate_number")
        matricule = values.get("matricule")
        day = self.dates.get(values.get("session_date"))  # type: ignore[arg-type]
        act = values.get("act_code")
        executing = values.get("executing_provider") or self.default_provider
        act = self.good_acts.get(act)  # type: ignore[arg-type]
        executing = self.good_providers.get(executing)
        prescribed_text = values.get("prescription_date")
        prescribed = self.dates.get(prescribed_text) if prescribed_text else None  # type: ignore[arg-type]
        if (act is not None and executing is not None and day is not None and cert in self.good_certificates
                and matricule in self.good_matricules and not values.get("last_name") and not values.get("first_name")
                and (prescribed is not None or not prescribed_text)):
            return Session(cert, matricule, day, act, executing, "", "", row.line, prescribed)  # type: ignore[arg-type]
        return self._read_slow(row)

    def _read_slow(self, row: Row) -> Session | None:
        for remembered in (self.dates, self.good_matricules, self.good_providers, self.good_certificates, self.good_acts):
            if len(remembered) > REMEMBERED:
                remembered.clear()
        report = self.report
        before = len(report.issues)
        values = row.values
        cert = _required(row, "certificate_number", report)
        if cert is not None:
            if REFERENCE.match(cert):
                self.good_certificates.add(cert)
            else:
                report.add("CRT01", _("certificate_number '{number}' is not a valid certificate number").format(number=cert),
                           row.line, "certificate_number")
        matricule = _matricule(row, report)
        if matricule is not None:
            self.good_matricules.add(matricule)
        day = parse_date(row, "session_date", report, self.dates)
        act = _required(row, "act_code", report)
        if act is not None:
            act = self.good_acts.setdefault(act.upper(), act.upper())
        executing = values.get("executing_provider") or self.default_provider
        if executing:
            executing = self.good_providers.setdefault(executing, executing)
        elif "executing_provider" in values:
            report.add("IN003", _("'executing_provider' is empty and no billing provider is set"), row.line, "executing_provider")
        last = _name(row, "last_name", report, False)
        first = _name(row, "first_name", report, False)
        # Optional: empty means not known here (the certificate's request may tell).
        prescribed = parse_date(row, "prescription_date", report, self.dates) if values.get("prescription_date") else None
        if any(i.is_error for i in report.issues[before:]) or None in (cert, matricule, day, act) or not executing:
            if self.checks is not None:
                for code, message, column in self.checks.values(matricule, act, executing or None):
                    report.add(code, message, row.line, column, excel_hint(column, values.get(column, "")))
            return None  # a missing column leaves None behind: reported once, on the header
        return Session(cert, matricule, day, act, executing, last or "", first or "", row.line, prescribed)
