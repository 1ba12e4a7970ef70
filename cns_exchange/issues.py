"""Validation results as data: :class:`Issue` and the catalogue of issue codes.

Build and validate never print: they return issues. Each code has a default severity, a
hint telling the user what to do, and the source of the rule (docs/rules.md lists them all;
a test keeps that page and this catalogue in step).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import NamedTuple

from cns_exchange.i18n import _


class Severity(StrEnum):
    """How much an issue weighs (equal to its text, as JSON and CSV show it)."""

    ERROR = "error"       # the input or document is refused (exit 3); nothing is written or sent
    WARNING = "warning"   # said, and the run goes on


ERROR = Severity.ERROR
WARNING = Severity.WARNING


class Rule(NamedTuple):
    severity: Severity
    title: str
    hint: str
    source: str


_DOMAIN = "domain.md"
_REG = "RGD of 5 December 2018 (dieticians' nomenclature)"
_STATUTES = "CNS statutes, as the CNS's dietetics pages state them"

CATALOGUE: dict[str, Rule] = {
    # Input files (CSV / JSON / NDJSON)
    "IN001": Rule(ERROR, _("required column missing"), _("add the column to the header row (see docs/cli.md for the columns)"), "cnsx input format"),
    "IN002": Rule(ERROR, _("unknown column"), _("remove or rename the column; only the documented columns are accepted"), "cnsx input format"),
    "IN003": Rule(ERROR, _("required field empty"), _("fill in the field"), "cnsx input format"),
    "IN004": Rule(ERROR, _("invalid date"), _("write dates as YYYY-MM-DD or dd/mm/yyyy (day first, four-digit year)"), "cnsx input format"),
    "IN005": Rule(ERROR, _("not text in the input's encoding"), _("save the file again from the spreadsheet (as CSV UTF-8, or CSV with ';'), or pass --encoding NAME"), "cnsx input format"),
    "IN006": Rule(ERROR, _("malformed row"), _("fix the row so that it has one value per column (JSON: one object per row)"), "cnsx input format"),
    "IN007": Rule(ERROR, _("duplicate request reference"), _("give every request its own request_ref"), "request reference unique per provider"),
    "IN008": Rule(ERROR, _("prescription PDF not found"), _("check the prescription_pdf path; relative paths are read from the input file's folder"), "CNS: request with the scanned prescription"),
    "IN010": Rule(ERROR, _("no rows"), _("the input holds no data rows"), "cnsx input format"),
    "IN011": Rule(ERROR, _("invalid treatment kind"), _("write initial or extension"), "cnsx input format"),
    "IN012": Rule(ERROR, _("invalid requested_acts"), _("write act:count pairs separated by ';', e.g. ZD11:1;ZD12:1;ZD13:4"), "cnsx input format"),
    "IN013": Rule(ERROR, _("invalid name"), _("write a name of 1 to 100 characters, no leading or trailing blanks"), "schema v1 T_Nom"),
    "IN014": Rule(ERROR, _("invalid reference"), _("use 1-35 letters, digits, '.', '_' or '-', starting with a letter or digit"), "schema v1 T_Reference"),
    "IN015": Rule(ERROR, _("line or cell too long"), _("no row of practice data is that long: check that this is the right file, a text file with line ends (LF or CRLF)"), "cnsx input limits"),
    "IN017": Rule(WARNING, _("columns not used by cnsx"), _("nothing to do if they are your own notes; map a column of cnsx written under another name in the config's [columns], or pass --strict to refuse them"), "cnsx input format"),
    "IN016": Rule(ERROR, _("too many errors"), _("fix the errors shown (they often have one cause: a wrong delimiter, encoding or file), then run again"), "cnsx input limits"),
    "IN018": Rule(WARNING, _("a row with values only in columns cnsx does not use"), _("nothing to do if it is a totals or notes line; if it is a row of data, fill in its columns of cnsx (or map its columns in the config's [columns])"), "cnsx input format"),
    # Prescription PDFs (build-request reads them; validate and upload check them beside a request)
    "PDF01": Rule(ERROR, _("prescription PDF cannot be read"), _("the file is damaged: scan the prescription again, or open and save it again as PDF"), "CNS: files are XML and PDF"),
    "PDF02": Rule(ERROR, _("prescription PDF is encrypted"), _("save an unprotected copy (e.g. qpdf --decrypt in.pdf out.pdf) or scan the prescription again without a password"), "cnsx: the CNS must be able to open the prescription"),
    "PDF03": Rule(ERROR, _("prescription PDF has no page"), _("scan the prescription again: the file holds no page"), "cnsx: a prescription is at least one page"),
    "PDF04": Rule(ERROR, _("prescription PDF too large"), _("scan at 200-300 dpi in grey levels, or raise max_pdf_bytes in the config if the CNS accepts larger files"), "cnsx limit max_pdf_bytes (default 20 MiB)"),
    "PDF05": Rule(ERROR, _("prescription is not a PDF"), _("scan or export the prescription to PDF; JPEG and PNG scans: --convert-images, or img2pdf scan.jpg -o scan.pdf"), "CNS: files are XML and PDF; JPEG and HTML are refused"),
    "PDF06": Rule(ERROR, _("several files for one prescription"), _("give one PDF per prescription; only JPEG or PNG scans can be combined (--convert-images)"), "CNS: one prescription PDF per request"),
    "PDF07": Rule(ERROR, _("image cannot be converted to PDF"), _("open the image and save it again as JPEG or PNG, or scan the prescription to PDF"), "cnsx --convert-images (img2pdf)"),
    "PDF08": Rule(ERROR, _("prescription PDF not beside the request file"), _("put the PDF named in Ordonnance/NomFichier beside the request file (cnsx build-request -o FOLDER copies it there)"), "CNS: a request carries its prescription"),
    "PDF09": Rule(ERROR, _("prescription PDF differs from its SHA-256"), _("rebuild the request from the current PDF, or put back the PDF it was built from"), "cnsx: Ordonnance/Sha256"),
    # Identifiers
    "MAT01": Rule(ERROR, _("matricule is not 13 digits"), _("write the 13-digit national identification number, digits only, first digit 1-9"), _DOMAIN + " Identifiers"),
    "MAT02": Rule(ERROR, _("matricule Luhn check digit (C1) wrong"), _("re-type the matricule from the patient's card"), _DOMAIN + " Identifiers"),
    "MAT03": Rule(ERROR, _("matricule Verhoeff check digit (C2) wrong"), _("re-type the matricule from the patient's card"), _DOMAIN + " Identifiers"),
    "MAT04": Rule(WARNING, _("matricule birth date is not a calendar date"), _("nothing to do if the card shows this number: 00 stands for a month or day that is unknown (regulation of 28 November 2013)"), "grand-ducal regulation of 28 November 2013 (identification number)"),
    "MAT05": Rule(ERROR, _("old 11-digit matricule"), _("use the patient's current 13-digit number"), _DOMAIN + " Identifiers"),
    "PRV01": Rule(ERROR, _("invalid provider code"), _("a CNS provider code has 6 to 8 digits"), _DOMAIN + " Identifiers"),
    "PRS01": Rule(ERROR, _("invalid prescriber code"), _("write the doctor's CNS code as printed on the prescription: 6 to 8 digits (a '-' is allowed)"), _DOMAIN + " Identifiers"),
    "PAT01": Rule(ERROR, _("unknown pathology code"), _("use the codes D01-D15 of annex E of the CNS statutes"), "CNS statutes, annex E"),
    "ACT01": Rule(ERROR, _("unknown act code"), _("use ZD11, ZD12, ZD13 or ZD21"), _REG),
    "CRT01": Rule(ERROR, _("invalid certificate number"), _("copy the certificate number from the CNS answer"), "schema v1 T_NumeroTitre"),
    "CRT02": Rule(ERROR, _("unknown certificate"), _("bill only on certificates the CNS granted (cnsx import their answers), or pass --no-certificate-check"), "CNS: third-party payment needs a certificate obtained electronically"),
    "CRT03": Rule(ERROR, _("more sessions than the certificate authorises"), _("the certificate's authorised count is used up (sessions billed before count)"), "CNS: certificate of coverage"),
    "CRT04": Rule(ERROR, _("session outside the certificate's validity"), _("bill only sessions within the validity period"), "CNS: certificate of coverage"),
    "CRT05": Rule(ERROR, _("certificate of another patient"), _("check the certificate number and the matricule"), "CNS: certificate of coverage"),
    "CRT06": Rule(ERROR, _("session billed already"), _("leave the row out, or pass --rebill REASON if the CNS asked for it again (a billing it rejected or disputed in full is billed again without it)"), "cnsx: a session is billed once"),
    # Nomenclature and pricing
    "NOM01": Rule(ERROR, _("no tariff table in force on that date"), _("add a tariff table covering the date to the config folder (docs/rules.md, Tariffs)"), _REG),
    "NOM02": Rule(ERROR, _("gross amount differs from the tariff"), _("the gross amount is coefficient x key-letter value of the table in force on the session date"), _REG),
    "NOM03": Rule(ERROR, _("patient share wrong"), _("12 % of the gross amount for adults, 0 % for a patient under 18 on the prescription date (schema v1: on the session date)"), "CNS, patient share: 0 % under 18 on the issuance date of the prescription"),
    "NOM04": Rule(ERROR, _("gross amount is not patient share + CNS share"), _("gross amount = participation personnelle + part statutaire"), "schema v1 T_Seance"),
    "NOM05": Rule(WARNING, _("the tariff table may be out of date"), _("see the table in force with cnsx tariffs --date DATE; add the current one with cnsx tariffs add (docs/rules.md, Tariffs)"), "cnsx's own choice: tariffs follow the wage index"),
    "NOM06": Rule(ERROR, _("patient share depends on an unknown prescription date"), _("give the date on the prescription in a prescription_date column of the sessions, or import the request file and the CNS's answers (cnsx import) so that the certificate knows its request; in a document: the fee note's DateOrdonnance (schema version 2)"), "CNS, patient share: 0 % under 18 on the issuance date of the prescription"),
    "NOM07": Rule(ERROR, _("two prescription dates for one certificate"), _("a certificate has one prescription: correct the prescription_date column, or leave it out to take the request's date from the database"), "CNS: one certificate per prescription"),
    "NOM08": Rule(ERROR, _("prescription date after the session"), _("check the dates: a session is performed on a prescription issued before it"), "CNS: a treatment needs a prescription before it starts"),
    # Treatment rules
    "TRT01": Rule(ERROR, _("acts out of order"), _("an initial treatment is ZD11, then ZD12, then up to 4 x ZD13"), _REG),
    "TRT02": Rule(ERROR, _("too many sessions of an act"), _("at most 1 x ZD11, 1 x ZD12, 4 x ZD13 per initial treatment and 4 x ZD21 per extension"), _REG),
    "TRT03": Rule(ERROR, _("initial and extension acts on one certificate"), _("an extension needs its own prescription and certificate"), _REG),
    "TRT04": Rule(ERROR, _("extension before a complete initial treatment"), _("request the extension once the initial treatment (6 sessions) is complete"), _STATUTES),
    "TRT05": Rule(WARNING, _("more than one consultation per patient per day"), _("check the dates: two consultations of one patient on one day are unusual (no public rule forbids them)"), "cnsx's own choice (no public source: a warning)"),
    "TRT06": Rule(ERROR, _("prescription older than 90 days"), _("a prescription must be submitted within 90 days of its date; ask the doctor for a new one"), "CNS: prescription validation"),
    "TRT07": Rule(ERROR, _("date in the future"), _("check the date: it lies after the file's creation date"), "cnsx's own choice: nothing is prescribed or billed in the future"),
    "TRT08": Rule(ERROR, _("two initial treatments for one pathology"), _("one initial treatment per pathology per 3 years"), _STATUTES),
    "TRT10": Rule(ERROR, _("a second extension of one initial treatment"), _("an initial treatment has one extension: a new treatment starts with a new initial prescription"), _STATUTES),
    "TRT11": Rule(ERROR, _("extension more than 3 years after the initial treatment began"), _("an extension is granted within 3 years of the start of the initial treatment; after that, a new initial treatment"), _STATUTES),
    "TRT09": Rule(ERROR, _("one certificate for two patients"), _("a certificate covers one patient: check the certificate number and matricule"), "CNS: certificate of coverage"),
    # Document consistency
    "DOC01": Rule(ERROR, _("header count does not match"), _("the header count must equal the number of items in the file; rebuild the file with cnsx"), "schema v1 EnTete"),
    "DOC02": Rule(ERROR, _("header total does not match"), _("the header totals must equal the sums of the lines; rebuild the file with cnsx"), "schema v1 EnTete"),
    "DOC03": Rule(ERROR, _("validity ends before it starts"), _("the certificate's DateFinValidite must not precede DateDebutValidite"), "schema v1 T_Titre"),
    "DOC04": Rule(ERROR, _("accepted amount exceeds the billed amount"), _("an accepted amount cannot exceed the amount billed"), "schema v1 T_LignePaiement"),
    "DOC05": Rule(WARNING, _("unknown dispute reason code"), _("the code is not in the bundled list of dispute reasons; check for a newer list"), "cnsx dispute reasons table"),
    "DOC06": Rule(ERROR, _("document kind does not match the expected kind"), _("pass the right file, or let cnsx detect the kind"), "cnsx"),
    "DOC07": Rule(WARNING, _("file name does not follow the naming convention"), _("name files SENDER_KIND_YYYYMMDD_SEQUENCE.xml (docs/formats.md)"), "cnsx naming convention"),
    "DOC08": Rule(ERROR, _("duplicate line"), _("each line number may appear once per fee note"), "schema v1"),
    "DOC09": Rule(ERROR, _("file name does not match the document"), _("upload the file under its own name, SENDER_KIND_YYYYMMDD_SEQUENCE.xml from its header (CodePrestataire, kind, DateHeureCreation, NumeroSequence), as cnsx build names it"), "cnsx naming convention"),
    # XML
    "FIL01": Rule(ERROR, _("file cannot be read"), _("check the path and the file's permissions"), "cnsx"),
    "XML01": Rule(ERROR, _("not well-formed XML"), _("the file is damaged or not XML; rebuild or re-fetch it"), "XML 1.0"),
    "XML02": Rule(ERROR, _("DTD or entity declarations refused"), _("CNS documents carry no DTD; the file may be hostile, do not process it further"), "cnsx security policy"),
    "XML03": Rule(ERROR, _("file too large"), _("raise the limit with --max-size (or max_xml_bytes in the config) if the file is genuine"), "cnsx security policy"),
    "XML04": Rule(ERROR, _("unknown document kind"), _("the root element is not one of the five CNS document kinds of any installed schema set"), "docs/formats.md"),
    "XML05": Rule(ERROR, _("unknown schema version"), _("install the schema set of that version in the config folder's schemas/ (docs/formats.md)"), "docs/formats.md"),
    "VAL01": Rule(ERROR, _("a check did not run to its end"), _("the document is not taken as valid; run again with --debug and report the message if it persists"), "cnsx: fail closed"),
    "XSD01": Rule(ERROR, _("schema violation"), _("fix the element named in the message; the XSD of the version is in schemas/"), "schema set"),
}


@dataclass
class Issue:
    """One problem found in an input file or a document.

    ``line`` is the 1-based line (CSV/NDJSON/XML) or item number (JSON array), ``field`` the
    column or element concerned, ``xpath`` the element's path in an XML document.
    """

    code: str
    message: str
    severity: Severity | None = None   # None: the code's, from the catalogue
    file: str = ""
    line: int | None = None
    field: str = ""
    xpath: str = ""
    hint: str = ""

    def __post_init__(self) -> None:
        rule = CATALOGUE[self.code]
        self.severity = rule.severity if self.severity is None else Severity(self.severity)
        if not self.hint:
            self.hint = rule.hint

    @property
    def is_error(self) -> bool:
        return self.severity == ERROR

    def location(self) -> str:
        """Return ``file:line`` plus field or XPath, as shown to a user."""
        where = self.file or "<input>"
        if self.line is not None:
            where += f":{self.line}"
        if self.xpath:
            where += f" {self.xpath}"
        elif self.field:
            where += f" [{self.field}]"
        return where

    def as_dict(self) -> dict:
        return asdict(self)

