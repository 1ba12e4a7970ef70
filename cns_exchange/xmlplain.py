"""A fast reader for plainly written billing files and payment statements.

``xmlread.read_document`` asks lxml for an element per value: on a file of 200,000 sessions
that costs more than the schema check itself. Most files are written plainly, one value per
element, no comments, references, CDATA or processing instructions, as cnsx and the CNS write
them; for those, one regular expression per item reads the same texts at a fraction of the
cost. Anything else raises :class:`NotPlain` and the caller reads the file with lxml.

This reader does not check the document: the caller uses its records only once libxml2 has
found the document well-formed and schema-valid (see ``validate.xsd_check``). Under that
condition, and because every item must match where the previous one ended (only white space
in between), it yields exactly what ``read_document`` yields: the same texts, records,
lines and XPaths.
"""

from __future__ import annotations

import codecs
import io
import re
from datetime import date
from typing import IO, Iterator

from cns_exchange.model import PaymentLine
from cns_exchange.xmlread import ITEM_TAGS, FeeNoteColumns, Item, _reason, cents_of, read_document

#: Read this much at a time: memory stays flat whatever the file's size.
CHUNK = 4 << 20
#: No plainly written item is this long: past it, a failed match means "not plain".
MAX_ITEM = 1 << 20
#: The header must end within this many bytes (as for ``xmlread.read_header``).
HEADER_LIMIT = 1 << 16

_DECLARATION = re.compile(
    r"<\?xml\s+version\s*=\s*(['\"])1\.\d+\1(?:\s+encoding\s*=\s*(['\"])(?i:utf-8)\2)?"
    r"(?:\s+standalone\s*=\s*(['\"])(?:yes|no)\3)?\s*\?>")


def _value(tag: str) -> str:
    return rf"\s*<{tag}>([^<]*)</{tag}>"


def _skip(tag: str) -> str:
    return rf"\s*<{tag}>[^<]*</{tag}>"


_SESSION = r"\s*<Seance>" + "".join(_skip(t) for t in (
    "NumeroLigne", "DateSeance", "CodeActe", "PrestataireExecutant", "MontantBrut",
    "ParticipationPersonnelle", "PartStatutaire")) + r"\s*</Seance>"
_FEE_NOTE = re.compile(
    r"\s*(<)MemoireHonoraires>" + _value("NumeroMemoire") + _value("NumeroTitre")
    + r"\s*<Patient>" + _value("Matricule") + f"(?:{_value('Nom')})?(?:{_value('Prenom')})?" + r"\s*</Patient>"
    + f"((?:{_SESSION})+)" + r"\s*</MemoireHonoraires>")
#: The seven texts of each session of a block that _FEE_NOTE matched, in document order.
_SESSION_TEXT = re.compile(r">([^<]*)</(?!Seance>)")
_PAYMENT_LINE = re.compile(
    r"\s*(<)Ligne>" + _value("NumeroMemoire") + _value("NumeroLigne") + _value("NumeroTitre") + _value("MontantFacture")
    + f"(?:{_value('MontantAccepte')}|" + r"\s*<Contestation>" + _value("CodeMotif") + _value("Libelle")
    + _value("MontantAccepte") + r"\s*</Contestation>)" + r"\s*</Ligne>")


class NotPlain(Exception):
    """The document is not written plainly enough for this reader: read it with lxml."""


class _SessionLines:
    """The line of each session of a fee note, counted only when asked for (on a problem)."""

    __slots__ = ("text", "first_line", "count", "_lines")

    def __init__(self, text: str, first_line: int, count: int) -> None:
        self.text, self.first_line, self.count, self._lines = text, first_line, count, None

    def _list(self) -> list[int]:
        if self._lines is None:
            lines, position, line, text = [], 0, self.first_line, self.text
            for _ in range(self.count):
                found = text.index("<Seance>", position)
                line += text.count("\n", position, found)
                lines.append(line)
                position = found + 1
            self._lines = lines
        return self._lines

    def __len__(self) -> int:
        return self.count

    def __iter__(self):
        return iter(self._list())

    def __getitem__(self, index):
        return self._list()[index]

    def __eq__(self, other) -> bool:
        return list(self) == list(other)


def _fee_note(m: re.Match, text: str, line: int, amounts: dict[str, int]) -> FeeNoteColumns:
    number, certificate, matricule, last_name, first_name, sessions = m.group(2, 3, 4, 5, 6, 7)
    texts = _SESSION_TEXT.findall(sessions)
    # The lines are counted from the note's own text: a record never holds on to the chunk.
    return FeeNoteColumns(int(number), certificate, matricule.strip(), last_name or "", first_name or "", texts,
                          _SessionLines(text[m.start(1):m.end()], line, len(texts) // 7))  # type: ignore[arg-type]


def _payment_values(m: re.Match, text: str, line: int, amounts: dict[str, int]) -> tuple:
    """A payment line's fields, in the order of PaymentLine's."""
    fee_note, line_no, certificate, billed, accepted, reason_code, reason_label, partly = m.group(2, 3, 4, 5, 6, 7, 8, 9)
    return (int(fee_note), int(line_no), certificate, cents_of(billed, amounts),
            cents_of(accepted if accepted is not None else partly, amounts), reason_code or "", reason_label or "")


def _payment_line(m: re.Match, text: str, line: int, amounts: dict[str, int]) -> PaymentLine:
    return PaymentLine(*_payment_values(m, text, line, amounts))


_READERS = {"billing": (_FEE_NOTE, _fee_note), "payment": (_PAYMENT_LINE, _payment_line)}
KINDS = frozenset(_READERS)


def read_plain(source: IO[bytes], kind: str, root: str, columns: bool = False) -> Iterator[Item]:
    """Yield what ``read_document(source, kind, root, columns=columns)`` yields, for a
    plainly written ``kind`` document (billing or payment) that is well-formed and schema-valid.

    Raises NotPlain, possibly after some items, where the document is written otherwise.
    """
    convert = _READERS[kind][1]
    dates: dict[str, date] = {}
    amounts: dict[str, int] = {}
    item_tag = ITEM_TAGS[kind]
    scan = _scan(source, kind, root)
    yield next(scan)  # type: ignore[misc]
    line, index = next(scan), 0
    for m, text, position in scan:  # type: ignore[misc]
        start = m.start(1)
        line += text.count("\n", position, start)
        index += 1
        xpath = f"/{root}/{item_tag}[{index}]"
        try:
            record = convert(m, text, line, amounts)
            if kind == "billing" and not columns:
                record = record.to_fee_note(dates)
        except (ValueError, TypeError) as exc:
            yield Item("item", None, line, xpath, _reason(exc))
        else:
            yield Item("item", record, line, xpath)
        line += text.count("\n", start, m.end())


def read_plain_records(source: IO[bytes], kind: str, root: str, values: bool = False) -> Iterator[Item | object]:
    """Yield the header item, then the bare records (no Item around them) of a plainly
    written ``kind`` document: what import needs of a well-formed, schema-valid one.
    With ``values``, a payment statement's records come as tuples of PaymentLine's fields.

    Raises NotPlain where :func:`read_plain` would, and also where an item cannot be
    converted: its warning needs the line and XPath only the full reader gives.
    """
    if kind == "billing":  # sessions carry their line (import's warnings name it): the full reader
        for item in read_plain(source, kind, root):
            if item.what == "item" and item.record is None:
                raise NotPlain("an item cannot be converted")
            yield item if item.what == "header" else item.record
        return
    convert = _payment_values if values and kind == "payment" else _READERS[kind][1]
    amounts: dict[str, int] = {}
    scan = _scan(source, kind, root)
    yield next(scan)
    next(scan)
    try:
        for m, text, _ in scan:  # type: ignore[misc]
            yield convert(m, text, 0, amounts)  # a payment line has no line of its own
    except (ValueError, TypeError):
        raise NotPlain("an item cannot be converted") from None


def _scan(source: IO[bytes], kind: str, root: str) -> Iterator:
    """Yield the header item, the line where the items begin, then ``(match, text,
    position)`` for each item: ``match`` over ``text`` from ``position``, where the previous
    item ended. Raises NotPlain where the document is not written plainly."""
    pattern = _READERS[kind][0]
    item_tag, end = ITEM_TAGS[kind], re.compile(rf"\s*</{root}>\s*")
    decoder = codecs.getincrementaldecoder("utf-8")()
    data = source.read(CHUNK)
    while b"</EnTete>" not in data and len(data) < HEADER_LIMIT and (more := source.read(CHUNK)):
        data += more
    header_end = data.find(b"</EnTete>")
    if header_end < 0:
        raise NotPlain("no header in the first bytes")
    if data.startswith(b"<?xml") and not _DECLARATION.match(data[:200].decode("ascii", "replace")):
        raise NotPlain("not UTF-8, or an unusual XML declaration")
    header_end += len(b"</EnTete>")
    prolog = data[5:header_end] if data.startswith(b"<?xml") else data[:header_end]
    if not data.startswith((b"<?xml", b"<")) or any(bad in prolog for bad in (b"<?", b"<!", b"&", b"\r")):
        raise NotPlain("the prolog or header is not plain")
    yield _header_item(data[:header_end] + f"</{root}>".encode(), root)
    try:
        text = decoder.decode(data[header_end:])
    except UnicodeDecodeError:
        raise NotPlain("not UTF-8") from None
    _check(text, "")
    yield data.count(b"\n", 0, header_end) + 1
    position, at_end, match = 0, False, pattern.match
    while True:
        m = match(text, position)
        if m is None:  # the next item is cut by the chunk's end, or not plain, or the root ends
            if not at_end and len(text) - position < MAX_ITEM:
                more = source.read(CHUNK)
                at_end = not more
                try:
                    added = decoder.decode(more, final=at_end)
                except UnicodeDecodeError:
                    raise NotPlain("not UTF-8") from None
                _check(added, text[-1:])
                text, position = text[position:] + added, 0
                continue
            if end.fullmatch(text, position):
                return
            raise NotPlain(f"an {item_tag} element not written plainly")
        yield m, text, position
        position = m.end()


def _check(text: str, before: str) -> None:
    if "&" in text or "\r" in text or "<!" in text or "<?" in text or (before == "<" and text[:1] in ("!", "?")):
        raise NotPlain("a reference, comment, CDATA section or processing instruction")


def _header_item(head: bytes, root: str) -> Item:
    """The header as read_document gives it, from the document's first bytes closed early."""
    try:
        for item in read_document(io.BytesIO(head), "ack", root):  # the root is the item: the header comes first
            if item.what == "header":
                return item
    except Exception:  # noqa: BLE001 - any trouble: the caller reads the file with lxml
        pass
    raise NotPlain("the header cannot be read here")
