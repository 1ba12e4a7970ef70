"""The file naming convention, owned here and nowhere else.

    SENDER_KIND_YYYYMMDD_SEQUENCE.xml     e.g. 123456_FAC_20261126_000001.xml

SENDER is the provider code for files sent to the CNS and ``CNS`` for return files; KIND is
the document kind code below; SEQUENCE the file's sequence number (6 digits), also written
in the header's NumeroSequence.

A prescription attached to a request is named after the request it belongs to:

    SENDER_ORD_REQUESTREF.pdf             e.g. 123456_ORD_REQ-0001.pdf

The printed documents of a billing file (``cnsx print``) are named after it: the summary
statement RECAP; the fee note of each patient after the patient (ASCII letters and digits),
the day of the note's last session, the billing file and the note's number (NumeroMemoire),
so that a folder of fee notes sorts by patient and date, and no two notes share a name:

    123456_FAC_20261120_000001_RECAP.pdf
    Hoffmann_Zoe_2026-11-17_123456_FAC_20261120_000001_MH0004.pdf
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from cns_exchange.i18n import _

KIND_CODES = {
    "request": "DTP",   # demande de titre de prise en charge
    "billing": "FAC",   # fichier de facturation
    "ack": "ACR",       # accusé de réception
    "answers": "RTP",   # réponses titres de prise en charge
    "payment": "DEC",   # décompte / justificatif de paiement
}
KINDS_BY_CODE = {code: kind for kind, code in KIND_CODES.items()}
CNS_SENDER = "CNS"

_PATTERN = re.compile(r"(?P<sender>CNS|[1-9][0-9]{5,7})_(?P<code>[A-Z]{3})_(?P<day>[0-9]{8})_(?P<seq>[0-9]{6})\.xml\Z")


@dataclass(frozen=True)
class FileName:
    """The parts of a conventional file name."""

    sender: str
    kind: str
    day: date
    sequence: int

    def __str__(self) -> str:
        return f"{self.sender}_{KIND_CODES[self.kind]}_{self.day:%Y%m%d}_{self.sequence:06d}.xml"


def make_name(sender: str, kind: str, day: date, sequence: int) -> str:
    """Return the conventional name of a document."""
    if not 1 <= sequence <= 999999:
        raise ValueError(_("sequence number {sequence} out of range 1-999999").format(sequence=sequence))
    return str(FileName(sender, kind, day, sequence))


def parse_name(name: str) -> FileName | None:
    """Return the parts of a conventional name, or None if ``name`` does not follow it."""
    match = _PATTERN.match(name)
    if not match or match["code"] not in KINDS_BY_CODE:
        return None
    try:
        day = date(int(match["day"][:4]), int(match["day"][4:6]), int(match["day"][6:]))
    except ValueError:
        return None
    return FileName(match["sender"], KINDS_BY_CODE[match["code"]], day, int(match["seq"]))


def disagreements(name: str, kind: str, provider: str, created: date, sequence: int) -> list[str]:
    """What the conventional name ``name`` says otherwise than its document, whose kind,
    header provider (CodePrestataire), creation date and NumeroSequence are given: one
    phrase per part that differs, none when the name is the document's own. A name that does
    not follow the convention is one phrase."""
    parsed = parse_name(name)
    if parsed is None:
        return [_("'{name}' does not follow SENDER_KIND_YYYYMMDD_SEQUENCE.xml").format(name=name)]
    found = []
    if parsed.sender != provider:
        found.append(_("provider {named}, the document's is {provider}").format(named=parsed.sender, provider=provider))
    if parsed.kind != kind:
        found.append(_("kind {named}, the document is {kind}").format(named=KIND_CODES[parsed.kind],
                                                                      kind=KIND_CODES.get(kind, kind)))
    if parsed.day != created:
        found.append(_("date {named}, the document was created on {created}").format(named=f"{parsed.day:%Y%m%d}",
                                                                                   created=f"{created:%Y%m%d}"))
    if parsed.sequence != sequence:
        found.append(_("sequence {named}, the document's NumeroSequence is {sequence}").format(
            named=f"{parsed.sequence:06d}", sequence=f"{sequence:06d}"))
    return found


def attachment_name(sender: str, request_ref: str) -> str:
    """Return the conventional name of the prescription PDF of a request."""
    return f"{sender}_ORD_{request_ref}.pdf"


def fee_note_pdf_name(billing: FileName, number: int, last_name: str, first_name: str, day: date) -> str:
    """Return the name of the printed fee note ``number`` of a billing file, whose patient is
    ``last_name`` ``first_name`` and whose last session is on ``day``:
    ``LAST_FIRST_YYYY-MM-DD_<billing file>_MHnnnn.pdf``.

    The names are made safe by :func:`file_name_part` ('Hoffmann', 'Zoë' -> 'Hoffmann_Zoe'):
    no path separator, dot, space or control character can come from a name, and the name is
    the same on every file system. The billing file and the note's number make it unique.
    """
    who = "_".join(part for part in (file_name_part(last_name), file_name_part(first_name)) if part) or "patient"
    return f"{who}_{day:%Y-%m-%d}_{fee_note_pdf_suffix(billing, number)}"


def fee_note_pdf_suffix(billing: FileName, number: int | None = None) -> str:
    """Return how the printed fee note ``number`` of a billing file ends its name
    (``123456_FAC_20261120_000001_MH0004.pdf``); without ``number``, the part common to
    every fee note of the file (``123456_FAC_20261120_000001_MH``)."""
    common = f"{str(billing)[:-4]}_MH"
    return common if number is None else f"{common}{number:04d}.pdf"


#: Letters NFKD does not take apart into a letter and its accent.
_FOLDED = str.maketrans({"Œ": "OE", "œ": "oe", "Æ": "AE", "æ": "ae", "ß": "ss", "Ø": "O", "ø": "o", "Ł": "L",
                         "ł": "l", "Đ": "D", "đ": "d", "Þ": "Th", "þ": "th", "ı": "i"})
_NOT_SAFE = re.compile(r"[^A-Za-z0-9]+")


def file_name_part(text: str, limit: int = 40) -> str:
    """Return ``text`` as a safe part of a file name: accents dropped, other letters folded to
    ASCII ('Œ' -> 'OE'), every run of anything but ASCII letters and digits one '-', none at
    either end, at most ``limit`` characters ('Da Costa Gonçalves' -> 'Da-Costa-Goncalves',
    '../x' -> 'x'). May be empty."""
    plain = unicodedata.normalize("NFKD", text.translate(_FOLDED))
    plain = "".join(c for c in plain if not unicodedata.combining(c)).translate(_FOLDED)
    return _NOT_SAFE.sub("-", plain).strip("-")[:limit].rstrip("-")


def summary_pdf_name(billing: FileName) -> str:
    """Return the name of the printed summary statement of a billing file."""
    return f"{str(billing)[:-4]}_RECAP.pdf"


def next_sequence(folder: Path, sender: str, kind: str, day: date) -> int:
    """Return the next free sequence number for ``sender``/``kind``/``day`` in ``folder``."""
    highest = 0
    prefix = f"{sender}_{KIND_CODES[kind]}_{day:%Y%m%d}_"
    for path in folder.glob(prefix + "*.xml"):
        parsed = parse_name(path.name)
        if parsed is not None:
            highest = max(highest, parsed.sequence)
    return highest + 1
