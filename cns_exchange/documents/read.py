"""XML documents of schema sets v1 and v2 -> records, streaming.

``read_document`` walks a document with lxml's ``iterparse`` (optionally validating against
an XSD at the same time), yields the header and then one record per item, and frees each item
once read, so memory stays flat whatever the file's size. Converters are lenient: an item
that cannot be read yields ``None`` with the reason, never an exception.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import IO, Any, Iterator

from lxml import etree

from cns_exchange.domain.model import (
    Acknowledgement,
    Anomaly,
    Answer,
    BilledSession,
    Certificate,
    CertificateRequest,
    FeeNote,
    Header,
    PaymentLine,
)
from cns_exchange.documents.safe import PARSER_OPTIONS, has_doctype
from cns_exchange.i18n import _, reason

ITEM_TAGS = {"request": "Demande", "billing": "MemoireHonoraires", "answers": "Reponse", "payment": "Ligne", "ack": None}
_TREATMENT = {"initial": "initial", "prolongation": "extension"}


class HostileDocument(Exception):
    """The document declares a DOCTYPE (refused: see xmlsafe)."""


class Part(StrEnum):
    """Which part of a document an :class:`Item` is (equal to its text: 'header', 'item')."""

    HEADER = "header"    # EnTete, once, first
    ITEM = "item"        # one request, fee note, answer, payment line (an acknowledgement is one item)


@dataclass(slots=True)
class Item:
    """What the reader yields: the header or one item, where it stands, and its record."""

    what: Part
    record: Any          # the record, or None if it could not be read
    line: int
    xpath: str
    error: str = ""      # why the record could not be read


def parse_amount(text: str | None) -> int:
    """Return a T_Montant text ('88.89') in cents; ValueError for anything else (the
    inverse of :func:`cns_exchange.domain.model.amount`)."""
    if text and not text[-1].isdigit() or text and not text[0].isdigit():
        text = text.strip()  # XSD decimals collapse white space: ' 88.89 ' is valid
    if text and text[-3:-2] == "." and text.isascii():
        digits = text.replace(".", "", 1)
        if digits.isdigit():
            return int(digits)
    raise ValueError(_("'{text}' is not an amount").format(text=text))


def date_of(text: str | None, cache: dict[str, date]) -> date:
    """Return an xs:date text as a date, converted once per distinct text (``cache``)."""
    value = cache.get(text)  # type: ignore[arg-type]
    if value is None:
        value = cache[text] = date.fromisoformat((text or "").strip())  # type: ignore[index]
    return value


def amount_of(text: str, cache: dict[str, int]) -> int:
    """:func:`parse_amount`, converted once per distinct text (``cache``): amounts repeat (a few tariffs)."""
    value = cache.get(text)
    if value is None:
        value = cache[text] = parse_amount(text)
    return value


def _anomalies(parent) -> list[Anomaly]:
    if parent is None:
        return []
    return [Anomaly(a.findtext("Code") or "", a.findtext("Libelle") or "", a.findtext("ElementConcerne") or "")
            for a in parent.iterfind("Anomalie")]


def _acts(parent) -> list[tuple[str, int]]:
    if parent is None:
        return []
    return [(a.findtext("CodeActe") or "", int(a.findtext("Nombre") or "0")) for a in parent.iterfind("Acte")]


def _header(el) -> Header:
    extra: dict[str, str] = {}
    common: dict[str, str] = {}
    for child in el:
        if not isinstance(child.tag, str):
            continue
        if len(child):
            for grandchild in child:
                if isinstance(grandchild.tag, str):
                    extra[f"{child.tag}/{grandchild.tag}"] = (grandchild.text or "").strip()
        elif child.tag in ("CodePrestataire", "DateHeureCreation", "NumeroSequence", "VersionSchema"):
            common[child.tag] = (child.text or "").strip()
        else:
            extra[child.tag] = (child.text or "").strip()
    return Header(
        provider=common.get("CodePrestataire", ""),
        created=datetime.fromisoformat(common["DateHeureCreation"]),
        sequence=int(common["NumeroSequence"]),
        version=common.get("VersionSchema", ""),
        extra=extra,
    )


def _request(el, dates) -> CertificateRequest:
    patient = el.find("Patient")
    return CertificateRequest(
        request_ref=el.findtext("ReferenceDemande") or "",
        matricule=(patient.findtext("Matricule") or "").strip(),
        last_name=patient.findtext("Nom") or "",
        first_name=patient.findtext("Prenom") or "",
        prescriber_code=el.findtext("CodeMedecinPrescripteur") or "",
        prescription_date=date_of(el.findtext("DateOrdonnance"), dates),
        pathology_codes=[c.text or "" for c in el.iterfind("CodesPathologie/CodePathologie")],
        treatment=_TREATMENT[el.findtext("TypeTraitement") or ""],
        acts=_acts(el.find("ActesDemandes")),
        pdf_name=el.findtext("Ordonnance/NomFichier") or "",
        pdf_sha256=el.findtext("Ordonnance/Sha256") or "",
        line=el.sourceline or 0,
    )


_SESSION_TEXTS = etree.XPath("Seance/*/text()", smart_strings=False)


@dataclass(slots=True)
class FeeNoteColumns:
    """A fee note as read, before conversion: its sessions' seven fields as one flat list
    of texts (field k of session i at ``texts[7 * i + k]``), and each session's line;
    ``prescription_date`` is the text of DateOrdonnance (schema v2; '' when absent)."""

    number: int
    certificate_number: str
    matricule: str
    last_name: str
    first_name: str
    texts: list[str]
    lines: list[int]
    prescription_date: str = ""

    def to_fee_note(self, dates: dict[str, date]) -> FeeNote:
        """Convert to a FeeNote; ValueError if a field is not of its type."""
        sessions: list[BilledSession] = []
        append = sessions.append
        texts = self.texts
        for k, line in enumerate(self.lines):
            n, day, act, executing, gross, share, cns = texts[7 * k:7 * k + 7]
            when = dates.get(day)
            if when is None:
                when = date_of(day, dates)
            append(BilledSession(int(n), when, act, executing.strip(), parse_amount(gross), parse_amount(share), parse_amount(cns), line))
        prescribed = date_of(self.prescription_date, dates) if self.prescription_date else None
        return FeeNote(self.number, self.certificate_number, self.matricule, self.last_name, self.first_name, sessions,
                       prescribed)


def _fee_note_columns(el, dates) -> FeeNoteColumns:
    # The hot path of validate and import. A session's seven fields are taken in one C-level
    # XPath call and read by position: the XSD, checked in the same run, fixes their order
    # and forbids empty ones, and a document that fails it gets no business-rule verdict.
    number = certificate = patient = None
    prescribed = ""
    session_lines: list[int] = []
    for child in el:
        tag = child.tag
        if tag == "Seance":
            session_lines.append(child.sourceline or 0)
        elif tag == "NumeroMemoire":
            number = int(child.text)
        elif tag == "NumeroTitre":
            certificate = child.text
        elif tag == "Patient":
            patient = child
        elif tag == "DateOrdonnance":
            prescribed = (child.text or "").strip()
    if number is None or certificate is None or patient is None:
        raise ValueError(_("NumeroMemoire, NumeroTitre or Patient missing"))
    texts = _SESSION_TEXTS(el)
    if len(texts) != 7 * len(session_lines):
        raise ValueError(_("a session does not have its seven fields"))
    return FeeNoteColumns(number, certificate, (patient.findtext("Matricule") or "").strip(),
                          patient.findtext("Nom") or "", patient.findtext("Prenom") or "", texts, session_lines,
                          prescribed)


def _fee_note(el, dates) -> FeeNote:
    return _fee_note_columns(el, dates).to_fee_note(dates)


def _ack(el, dates) -> Acknowledgement:
    return Acknowledgement(
        file_name=el.findtext("FichierAccuse/NomFichier") or "",
        file_sha256=el.findtext("FichierAccuse/Sha256") or "",
        received_at=datetime.fromisoformat(el.findtext("DateHeureReception") or ""),
        accepted=(el.findtext("Statut") == "accepte"),
        anomalies=_anomalies(el.find("Anomalies")),
    )


def _answer(el, dates) -> Answer:
    titre = el.find("Titre")
    certificate = None
    if titre is not None:
        certificate = Certificate(
            number=titre.findtext("NumeroTitre") or "",
            valid_from=date_of(titre.findtext("DateDebutValidite"), dates),
            valid_to=date_of(titre.findtext("DateFinValidite"), dates),
            acts=_acts(titre.find("ActesAutorises")),
        )
    return Answer(el.findtext("ReferenceDemande") or "", (el.findtext("Matricule") or "").strip(),
                  certificate, _anomalies(el.find("Refus")))


def _payment_line(el, dates) -> PaymentLine:
    # One pass over the children (find() per field costs several times more on 200,000 lines).
    fields: dict[str, str | None] = {}
    reason_code = reason_label = ""
    accepted = None
    for child in el:
        tag = child.tag
        if tag == "Contestation":
            for part in child:
                if part.tag == "CodeMotif":
                    reason_code = part.text or ""
                elif part.tag == "Libelle":
                    reason_label = part.text or ""
                elif part.tag == "MontantAccepte":
                    accepted = part.text
        else:
            fields[tag] = child.text
    if accepted is None:
        accepted = fields.get("MontantAccepte")
    return PaymentLine(
        fee_note=int(fields.get("NumeroMemoire") or ""),
        line_no=int(fields.get("NumeroLigne") or ""),
        certificate_number=fields.get("NumeroTitre") or "",
        billed=parse_amount(fields.get("MontantFacture")),
        accepted=parse_amount(accepted),
        reason_code=reason_code,
        reason_label=reason_label,
    )


CONVERTERS = {"request": _request, "billing": _fee_note, "ack": _ack, "answers": _answer, "payment": _payment_line}


def read_document(source: IO[bytes], kind: str, root: str, schema=None, columns: bool = False) -> Iterator[Item]:
    """Yield the header, then each item of a ``kind`` document, as records.

    With ``columns``, fee notes come as :class:`FeeNoteColumns` (converted by the caller).

    With ``schema`` the document is validated while it is read; lxml raises
    ``etree.XMLSyntaxError`` at the end (or at a well-formedness error) if it is invalid.
    Raises HostileDocument if the document declares a DOCTYPE.
    """
    item_tag = ITEM_TAGS[kind] or root
    convert = _fee_note_columns if columns and kind == "billing" else CONVERTERS[kind]
    context = etree.iterparse(source, events=("end",), tag=("EnTete", item_tag), schema=schema, **PARSER_OPTIONS)
    dates: dict[str, date] = {}
    index = 0
    checked = False
    for event, el in context:
        if not checked:
            checked = True
            if has_doctype(el):
                raise HostileDocument()
        if el.tag == "EnTete" and el.getparent() is not None and el.getparent().getparent() is None:
            try:
                yield Item(Part.HEADER, _header(el), el.sourceline or 0, f"/{root}/EnTete")
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                yield Item(Part.HEADER, None, el.sourceline or 0, f"/{root}/EnTete", _why_unreadable(exc))
            continue
        if el.tag != item_tag:
            continue
        index += 1
        xpath = f"/{root}" if item_tag == root else f"/{root}/{item_tag}[{index}]"
        try:
            record = convert(el, dates)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            yield Item(Part.ITEM, None, el.sourceline or 0, xpath, _why_unreadable(exc))
        else:
            yield Item(Part.ITEM, record, el.sourceline or 0, xpath)
        if item_tag != root:
            el.clear()
            parent = el.getparent()
            while el.getprevious() is not None:
                del parent[0]


def read_header(source: IO[bytes], limit: int = 1 << 16) -> Header | None:
    """Return the header (EnTete) of a document of any kind, or None if it cannot be read.

    Reads at most the first ``limit`` bytes: enough for any header, and a damaged or hostile
    document costs no more than that. Used to answer a document that failed validation (whose
    records are not read), so it never raises for a bad document.
    """
    data = source.read(limit)
    try:
        for _event, el in etree.iterparse(io.BytesIO(data), events=("end",), tag="EnTete", **PARSER_OPTIONS):
            if has_doctype(el):
                return None
            parent = el.getparent()
            if parent is not None and parent.getparent() is None:
                return _header(el)
    except (etree.XMLSyntaxError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return None


def _why_unreadable(exc: Exception) -> str:
    """What a record that cannot be read lacks, said to a user (the reader's Item.error)."""
    if isinstance(exc, KeyError):
        return _("element {name} missing").format(name=exc.args[0])
    if isinstance(exc, AttributeError):
        return _("a required element is missing")
    return reason(exc)


class _LineReader:
    """Feeds the parser one line per read, so that errors can be tied to their line."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.line = 0

    def read(self, size: int = -1) -> bytes:
        data = self.stream.readline()
        if data:
            self.line += 1
        return data


#: Elements that may repeat among their siblings: their XPath steps keep an index, even [1].
REPEATABLE = frozenset({"Demande", "MemoireHonoraires", "Seance", "Reponse", "Ligne", "Acte", "Anomalie", "CodePathologie"})


class _PathTracker:
    """Follows start/end events and knows each open element's XPath and line."""

    def __init__(self) -> None:
        self.stack: list[tuple[str, str, int]] = []   # (tag, xpath, line)
        self.counters: list[dict[str, int]] = [{}]
        self.last_closed: tuple[str, str, int] = ("", "", 0)

    def start(self, el) -> str:
        siblings = self.counters[-1]
        n = siblings[el.tag] = siblings.get(el.tag, 0) + 1
        parent = self.stack[-1][1] if self.stack else ""
        step = el.tag if not self.stack or (n == 1 and el.tag not in REPEATABLE) else f"{el.tag}[{n}]"
        xpath = f"{parent}/{step}"
        self.stack.append((el.tag, xpath, el.sourceline or 0))
        self.counters.append({})
        return xpath

    def end(self) -> None:
        self.last_closed = self.stack.pop()
        self.counters.pop()

    def element_named(self, name: str, line: int) -> tuple[str, int]:
        """Return (xpath, line) of the element an XSD message names: the one just closed,
        else the innermost open one of that name, else a child of the innermost open one."""
        if self.last_closed[0] == name:
            return self.last_closed[1], self.last_closed[2]
        for tag, xpath, start in reversed(self.stack):
            if tag == name:
                return xpath, start
        parent = self.stack[-1][1] if self.stack else ""
        return (f"{parent}/{name}" if name else parent), line


def locate_schema_errors(source: IO[bytes], schema, limit: int = 1000) -> list[tuple[int, str, str]]:
    """Return ``(line, xpath, message)`` for each XSD error, by a second, slower pass.

    The fast pass validates while streaming but libxml2 reports those errors without a
    line; here the parser is fed line by line, and each new error is tied to the element it
    names among those just read: its XPath and the line where it starts (as xmllint does).
    """
    etree.clear_error_log()
    reader = _LineReader(source)
    context = etree.iterparse(reader, events=("start", "end"), schema=schema, **PARSER_OPTIONS)
    paths = _PathTracker()
    seen = 0
    found: list[tuple[int, str, str]] = []
    try:
        for event, el in context:
            if event == "start":
                paths.start(el)
            else:
                paths.end()
                if len(paths.stack) == 1:
                    el.clear()
            log = context.error_log
            if len(log) > seen:
                for entry in list(log)[seen:]:
                    if entry.domain_name != "SCHEMASV":
                        continue
                    name = entry.message.split("'")[1] if entry.message.startswith("Element '") else ""
                    xpath, line = paths.element_named(name, reader.line)
                    found.append((line or reader.line, xpath, clean_message(entry.message)))
                seen = len(log)
                if len(found) >= limit:
                    break
    except etree.XMLSyntaxError:
        pass
    return found


def locate_paths(source: IO[bytes], xpaths: set[str]) -> dict[str, int]:
    """Return the line where each element of ``xpaths`` starts (those found).

    Business rules see records, not elements; when they find problems, this pass ties each
    XPath they name to its line.
    """
    wanted = set(xpaths)
    lines: dict[str, int] = {}
    paths = _PathTracker()
    try:
        for event, el in etree.iterparse(source, events=("start", "end"), **PARSER_OPTIONS):
            if event == "start":
                xpath = paths.start(el)
                if xpath in wanted:
                    lines[xpath] = el.sourceline or 0
                    wanted.discard(xpath)
                    if not wanted:
                        break
            else:
                paths.end()
                if len(paths.stack) == 1:
                    el.clear()
    except etree.XMLSyntaxError:
        pass
    return lines


#: Elements whose values are personal data: XSD messages about them do not repeat the value
#: (they reach stderr and cron mail; the line and XPath say where to look).
PERSONAL_ELEMENTS = ("Matricule", "Nom", "Prenom")
_ELEMENT = re.compile(r"Element '(\w+)'")


def clean_message(message: str) -> str:
    """A libxml2 message as cnsx prints it: one sentence, personal values left out."""
    message = message.strip().rstrip(".") + "."
    named = _ELEMENT.match(message)
    if named and named.group(1) in PERSONAL_ELEMENTS:
        message = re.sub(r"The value '[^']*'", "The value (not shown)", message)
        message = re.sub(r"^(Element '\w+': )'[^']*'", r"\1the value (not shown)", message)
    return message


#: What the XSD check found: (issue code, line, XPath, message).
Finding = tuple[str, "int | None", str, str]


def schema_findings(path: str, schema, item_tag: str, root: str, native: bool | None,
                    explained: bool = False) -> list[Finding]:
    """The XSD check's findings on the file at ``path``, given libxml2's verdict ``native``.

    With a verdict of True there is nothing to find. Otherwise lxml's schema pass says where
    and why (XSD01 per violation, XML01 when it cannot read the file); when it finds nothing
    although libxml2 refused the file, one XSD01 says so (unless ``explained``: the caller
    already found the file not well-formed): the file stays invalid.
    Well-formedness is not this function's to judge alone (lxml's schema pass may close a
    truncated document: lxml 6.2): the caller also reads the file to its end without it.
    """
    if native is True:
        return []
    etree.clear_error_log()  # libxml2's log is global: a previous document must not speak here
    with open(path, "rb") as source:
        try:
            for _event, el in etree.iterparse(source, events=("end",), tag=(item_tag, root), schema=schema, **PARSER_OPTIONS):
                if el.getparent() is None:
                    continue
                el.clear()  # items are only validated here: free them as they pass
                parent = el.getparent()
                while el.getprevious() is not None:
                    del parent[0]
        except etree.XMLSyntaxError as exc:
            schema_errors = [e for e in exc.error_log if e.domain_name == "SCHEMASV"]
            parse_errors = [e for e in exc.error_log if e.domain_name != "SCHEMASV"]
            if parse_errors or not schema_errors:
                if parse_errors:
                    return [("XML01", parse_errors[0].line or None, "", clean_message(parse_errors[0].message))]
                return [("XML01", exc.lineno or None, "", clean_message(exc.msg or str(exc)))]
            source.seek(0)
            located = locate_schema_errors(source, schema)
            if not located:
                located = [(None, "", clean_message(e.message)) for e in schema_errors]
            return [("XSD01", line, xpath, message) for line, xpath, message in located]
    if native is False and not explained:
        return [("XSD01", None, f"/{root}", _("libxml2's schema validator refuses this document, and lxml's detailed pass "
                                              "names no element: the document is not taken as valid."))]
    return []
