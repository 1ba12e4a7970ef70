"""Rows in, typed records out: the one reader of the practice's CSV, JSON and NDJSON files.

Readers stream, in bounded memory whatever the input: CSV and NDJSON are read a line at a
time and a JSON array an item at a time, each read in pieces no longer than the limits
below (a file with no line end, or /dev/zero, is refused after 1 MiB, not read whole). Every
problem becomes an :class:`Issue` naming the file, the line (CSV, NDJSON) or item number
(JSON array) and the column; reading goes on so that one run reports all the problems of a
file, up to :data:`MAX_ERRORS`.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import IO, Iterator, Mapping

from cns_exchange.rows.csvout import FORMULA_STARTS
from cns_exchange.errors import ConfigError, UsageError
from cns_exchange.domain.identifiers import normalise_prescriber
from cns_exchange.issues import Issue
from cns_exchange.domain.model import CertificateRequest, Session
from cns_exchange.domain.nomenclature import Codes
from cns_exchange.pdf.prescriptions import PrescriptionFiles
from cns_exchange.validation.rules import RequestChecks

FORMATS = ("csv", "json", "ndjson")

REQUEST_COLUMNS = (
    "request_ref", "matricule", "last_name", "first_name", "prescriber_code",
    "prescription_date", "pathology_codes", "treatment", "prescription_pdf",
)
REQUEST_OPTIONAL = ("requested_acts",)
SESSION_COLUMNS = ("certificate_number", "matricule", "session_date", "act_code")
SESSION_OPTIONAL = ("executing_provider", "last_name", "first_name", "prescription_date")

#: The header names accepted besides ours, as a practice's spreadsheet writes them (French).
#: A header is compared folded (_fold): case, accents and punctuation do not count, so
#: 'Date ordonnance', 'DATE_ORDONNANCE' and 'date d'ordonnance' differ only where listed.
#: One name gives one column; 'date' is the session's (build-request has no column of it).
HEADER_NAMES: dict[str, tuple[str, ...]] = {
    "request_ref": ("référence", "réf", "référence demande"),
    "matricule": ("matricule", "n° matricule", "numéro matricule"),
    "last_name": ("nom",),
    "first_name": ("prénom",),
    "prescriber_code": ("code médecin", "code prescripteur"),
    "prescription_date": ("date ordonnance", "date d'ordonnance", "date de l'ordonnance", "date prescription"),
    "pathology_codes": ("pathologies", "pathologie", "codes pathologie"),
    "treatment": ("traitement",),
    "prescription_pdf": ("ordonnance", "fichier ordonnance"),
    "requested_acts": ("actes demandés",),
    "certificate_number": ("titre", "n° titre", "no titre", "numéro titre", "numéro de titre", "n° de titre"),
    "session_date": ("date", "date séance", "date de séance"),
    "act_code": ("acte", "code acte"),
    "executing_provider": ("prestataire", "code prestataire"),
}
#: The treatment kinds as a practice may write them (folded), and the kind each one is.
TREATMENT_NAMES = {"initial": "initial", "initiale": "initial", "extension": "extension", "prolongation": "extension"}

REFERENCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-]{0,34}\Z")
# 1-100 characters, no control characters (XML cannot carry most of them), no blank at the ends.
NAME = re.compile(r"[^\s\x00-\x1f\x7f-\x9f]([^\x00-\x1f\x7f-\x9f]{0,98}[^\s\x00-\x1f\x7f-\x9f])?\Z")


#: The longest line of a CSV or NDJSON input, and item of a JSON array, in bytes (JSON: in
#: characters), line end included. A row of practice data is a few hundred bytes: a longer
#: line is a file that is not what it seems (no line ends, a binary file), refused (IN015).
MAX_LINE_BYTES = 1 << 20
#: The longest CSV cell, in characters: Python's csv.field_size_limit(), which cnsx leaves at
#: its default. It also bounds a quoted cell that runs over many lines.
MAX_CELL_CHARS = csv.field_size_limit()
#: Errors after which reading stops (IN016): a file with more is not one to fix line by
#: line, and the issues of a 1 GB file of bad rows would not fit in memory.
MAX_ERRORS = 1000
#: Bytes read at a time from a JSON array input.
_JSON_CHUNK = 1 << 16


@dataclass(slots=True)
class Row:
    """One input row: where it came from and its values by column name."""

    line: int
    values: dict[str, str]


@dataclass
class InputReport:
    """Issues collected while reading one input file."""

    name: str
    issues: list[Issue] = field(default_factory=list)
    errors: int = 0
    cut: bool = False   # reading stopped at a line or cell over its limit (IN015)

    def add(self, code: str, message: str, line: int | None = None, column: str = "", hint: str = "") -> None:
        issue = Issue(code, message, file=self.name, line=line, field=column, hint=hint)
        self.issues.append(issue)
        if issue.is_error:
            self.errors += 1

    @property
    def full(self) -> bool:
        """True once :data:`MAX_ERRORS` errors are in: the readers stop there."""
        return self.errors >= MAX_ERRORS

    def add_problems(self, problems, line: int, column: str) -> None:
        for code, message in problems:
            self.add(code, message, line, column)


def _fold(name: str) -> str:
    """A header name as it is compared: accents, case and punctuation dropped, words kept
    ('N° Titre' -> 'n titre', 'date_ordonnance' -> 'date ordonnance')."""
    text = unicodedata.normalize("NFKD", name.replace("°", " "))
    text = "".join(c for c in text if not unicodedata.combining(c)).casefold()
    return " ".join(re.findall(r"[a-z0-9]+", text))


_KNOWN_COLUMNS = REQUEST_COLUMNS + REQUEST_OPTIONAL + SESSION_COLUMNS + SESSION_OPTIONAL
_HEADER_MAP = {_fold(alias): column for column in _KNOWN_COLUMNS for alias in (column, *HEADER_NAMES.get(column, ()))}


@dataclass(frozen=True)
class Reading:
    """How to read a practice's file: ``encoding`` (None or 'detect': UTF-8 if the bytes are,
    else Windows-1252), ``columns`` (the config's [columns]: a practice's own header names
    mapped to cnsx's), ``strict`` (a column cnsx does not use is an error, IN002, instead of
    one warning, IN017). Raises ConfigError when ``columns`` maps a name to no column of cnsx."""

    encoding: str | None = None
    columns: Mapping[str, str] = field(default_factory=dict)
    strict: bool = False

    def __post_init__(self) -> None:
        for name, column in self.columns.items():
            if column not in _KNOWN_COLUMNS:
                raise ConfigError(f"[columns] '{name}' = '{column}': cnsx has no column '{column}'",
                                  f"map it to one of {', '.join(dict.fromkeys(_KNOWN_COLUMNS))}")

    def header_map(self) -> dict[str, str]:
        """Folded header name -> cnsx's column: ours, the French ones, then the config's."""
        return {**_HEADER_MAP, **{_fold(name): column for name, column in self.columns.items()}}


class _Columns:
    """The columns of one input: each header name resolved once to cnsx's column, or to
    None when cnsx does not use it."""

    def __init__(self, columns, optional, reading: Reading) -> None:
        self.wanted = set(columns) | set(optional)
        self.map = {**{_fold(name): name for name in self.wanted}, **reading.header_map()}
        self.strict = reading.strict

    def resolve(self, name: str) -> str | None:
        column = self.map.get(_fold(name))
        return column if column in self.wanted else None

    def report_unused(self, names: list[str], report: InputReport, line: int, what: str = "column") -> None:
        """IN017 once for all of ``names`` (a warning), or IN002 for each with --strict."""
        if self.strict:
            for name in names:
                report.add("IN002", f"unknown {what} '{name}' (--strict: every {what} must be one cnsx uses)", line, name)
        elif names:
            listed = ", ".join(f"'{n}'" for n in names)
            report.add("IN017", f"{what}{'s' if len(names) > 1 else ''} not used by cnsx, ignored: {listed}", line)


#: What a byte that is not UTF-8 is read as when the encoding is detected: the encoding of
#: Excel's "CSV (séparateur: point-virgule)" on a French (or German, English) Windows.
FALLBACK_ENCODING = "cp1252"


class _Undecodable(Exception):
    """Bytes that are not text in the input's encoding (the message says which and where)."""


class _Decoder:
    """Bytes to text, a line or a piece at a time: in the encoding given, or detected (None):
    UTF-8 while the bytes are UTF-8, Windows-1252 from a byte that is not when nothing
    before it was UTF-8 beyond ASCII. A file that turns from UTF-8 to another encoding is
    refused at that line, not half read as one and half as the other. Raises _Undecodable."""

    def __init__(self, encoding: str | None) -> None:
        self.detect = encoding is None
        self.encoding = encoding or "utf-8"
        self.utf8_line = 0          # the first line read as UTF-8 beyond ASCII (detecting)
        self._pieces = None         # the incremental decoder of piece()

    def describe(self) -> str:
        return "UTF-8 or Windows-1252" if self.detect else self.encoding

    def line(self, raw: bytes, number: int) -> str:
        """The text of the line ``number``, ``raw`` its bytes."""
        try:
            if self.detect:
                if raw.isascii():
                    return raw.decode("ascii")
                if self.encoding == "utf-8":
                    try:
                        text = raw.decode("utf-8")
                    except UnicodeDecodeError as exc:
                        if self.utf8_line:
                            raise _Undecodable(f"byte {raw[exc.start:exc.start + 1]!r} at column {exc.start + 1} is not "
                                               f"UTF-8, as line {self.utf8_line} was: the file mixes two encodings") from None
                        self.encoding = FALLBACK_ENCODING
                    else:
                        self.utf8_line = self.utf8_line or number
                        return text
            return raw.decode(self.encoding)
        except UnicodeDecodeError as exc:
            what = "neither UTF-8 nor Windows-1252" if self.detect else f"not {self.encoding}"
            raise _Undecodable(f"byte {raw[exc.start:exc.start + 1]!r} at column {exc.start + 1} is {what}") from None
        except ValueError as exc:  # a codec's own UnicodeError: the line is not in it either
            raise _Undecodable(f"the line is not {self.encoding} ({exc})") from None

    def piece(self, data: bytes, final: bool) -> str:
        """The text of the next piece of a stream (a character may straddle two pieces)."""
        if self._pieces is None:
            self._pieces = codecs.getincrementaldecoder(self.encoding)()
        try:
            if self.detect and self.encoding == "utf-8":
                pending = self._pieces.getstate()[0]
                try:
                    text = self._pieces.decode(data, final)
                except UnicodeDecodeError:
                    if self.utf8_line:
                        raise
                    self.encoding = FALLBACK_ENCODING
                    self._pieces = codecs.getincrementaldecoder(self.encoding)()
                    return self._pieces.decode(pending + data, final)
                if not text.isascii():
                    self.utf8_line = 1
                return text
            return self._pieces.decode(data, final)
        except ValueError as exc:  # UnicodeDecodeError, or a codec's own UnicodeError
            raise _Undecodable(f"the file is not {self.describe()} ({exc})") from None


class _Prefixed(io.RawIOBase):
    """A raw stream that replays ``head`` before the rest of ``stream``."""

    def __init__(self, head: bytes, stream: IO[bytes]) -> None:
        self.head, self.stream = head, stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.head:
            n = min(len(buffer), len(self.head))
            buffer[:n], self.head = self.head[:n], self.head[n:]
            return n
        data = self.stream.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def peekable(stream: IO[bytes]) -> IO[bytes]:
    """Return ``stream`` with a ``peek`` method (stdin under some runners has none)."""
    if hasattr(stream, "peek"):
        return stream
    return io.BufferedReader(_Prefixed(b"", stream))


def detect_format(name: str, stream: IO[bytes], explicit: str | None) -> str:
    """Return 'csv', 'json' or 'ndjson': ``explicit``, else the extension, else the first byte.

    ``stream`` must be buffered (peekable) when sniffing is needed.
    """
    if explicit:
        return explicit
    suffix = Path(name).suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix == ".json":
        return "json"
    if suffix in (".ndjson", ".jsonl"):
        return "ndjson"
    head = stream.peek(64)[:64].lstrip(b"\xef\xbb\xbf \t\r\n") if hasattr(stream, "peek") else b""
    if head.startswith(b"["):
        return "json"
    if head.startswith(b"{"):
        return "ndjson"
    if suffix in ("", ".txt", ".tsv") or name == "-":
        return "csv"
    raise UsageError(f"{name}: cannot tell the input format from the extension '{suffix}'", "pass --input-format csv|json|ndjson")


#: Python text codecs that are not the encoding of a file's characters: domain names
#: (punycode, idna), Python string literals, and one that refuses everything.
NOT_FILE_ENCODINGS = ("punycode", "idna", "unicode-escape", "raw-unicode-escape", "undefined")


def canonical_encoding(name: str) -> str:
    """Return Python's name for a text encoding ('utf8' -> 'utf-8'); UsageError if unknown or
    not an encoding of text files (rot13, base64, punycode...)."""

    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError):  # (ValueError: a name with a NUL in it)
        info = None
    if info is None or not getattr(info, "_is_text_encoding", True):  # rot13, base64...: not for text files
        raise UsageError(f"unknown encoding '{name}'", "e.g. utf-8, cp1252, latin-1")
    if info.name.replace("_", "-") in NOT_FILE_ENCODINGS:
        raise UsageError(f"'{name}' is not an encoding of text files", "e.g. utf-8, cp1252, latin-1")
    return info.name


def read_rows(stream: IO[bytes], fmt: str, report: InputReport, columns: tuple[str, ...],
              optional: tuple[str, ...], reading: Reading | None = None) -> Iterator[Row]:
    """Yield the rows of ``stream``, their values under cnsx's column names (the columns cnsx
    does not use left out); header and row problems go to ``report``. ``reading`` says the
    encoding (default: detected), the config's header names and --strict. Reading stops at a
    line over :data:`MAX_LINE_BYTES` (IN015) and after :data:`MAX_ERRORS` errors (IN016).
    Raises UsageError for an unknown encoding."""
    reading = reading or Reading()
    decoder = _Decoder(None if reading.encoding in (None, "detect") else canonical_encoding(reading.encoding))
    names = _Columns(columns, optional, reading)
    reader = {"csv": _read_csv, "json": _read_json_array}.get(fmt, _read_ndjson)
    line = 1
    for row in reader(stream, report, columns, names, decoder):
        yield row
        line = row.line
        if report.full:
            break
    if report.full:
        last = max((i.line for i in report.issues if i.line is not None), default=line)
        report.add("IN016", f"{MAX_ERRORS} errors: the file was not read beyond line {last}", last)


def _lines(stream, report: InputReport, unit: str = "line") -> Iterator[tuple[int, bytes]]:
    """Yield (number, bytes) of each line of ``stream``, each read in one piece of at most
    :data:`MAX_LINE_BYTES` + 1 bytes: a longer line is IN015 and ends the reading (a line is
    never read whole first; a source with no line end costs 1 MiB, and Ctrl-C is seen)."""
    number = 0
    while not report.full:
        raw = stream.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        number += 1
        if len(raw) > MAX_LINE_BYTES:
            report.add("IN015", f"{unit} {number} is longer than {MAX_LINE_BYTES} bytes (1 MiB): the rest of the file was not read",
                       number)
            report.cut = True
            return
        yield number, raw


def _check_columns(header: list[str], report: InputReport, columns, names: _Columns, line: int) -> list[str | None]:
    """The column of cnsx each header name gives (None: not used), after reporting a column
    given twice (IN002), the unused ones (IN017, or IN002 with --strict) and the missing (IN001)."""
    resolved = [names.resolve(name) for name in header]
    for column in dict.fromkeys(c for c in resolved if c is not None and resolved.count(c) > 1):
        given = [name for name, c in zip(header, resolved) if c == column]
        if len(set(given)) == 1:
            report.add("IN002", f"column '{given[0]}' appears {len(given)} times in the header", line, given[0])
        else:
            report.add("IN002", f"columns {', '.join(repr(g) for g in given)} all give {column}", line, column)
    names.report_unused([name for name, c in zip(header, resolved) if c is None and name], report, line)
    for name in columns:
        if name not in resolved:
            report.add("IN001", f"required column '{name}' is missing", line, name)
    return resolved


def _decoded_lines(stream, decoder: _Decoder, report: InputReport, state: dict) -> Iterator[str]:
    """Decode ``stream`` line by line, so that a bad byte is reported on its own line."""
    for lineno, raw in _lines(stream, report):
        state["line"] = lineno
        try:
            text = decoder.line(raw, lineno)
        except _Undecodable as exc:
            report.add("IN005", str(exc), lineno)
            state["failed"] = True
            return
        if lineno == 1 and text.startswith("\ufeff"):
            text = text[1:]
        if "'" in text:
            state["quotes"] = True
        yield text


def _unquoted(value: str) -> str:
    """A cell as csvout.safe_cell wrote it, read back: the quote it added is dropped."""
    return value[1:] if value[:1] == "'" and value[1:2] in FORMULA_STARTS else value


def _read_csv(stream, report, columns, names: _Columns, decoder: _Decoder) -> Iterator[Row]:
    state: dict = {"line": 0, "failed": False, "quotes": False}
    lines = _decoded_lines(stream, decoder, report, state)
    first = next(lines, "")
    if state["failed"] or report.cut:
        return
    if not first.strip():
        report.add("IN010", "the file is empty: no header row", 1)
        return
    try:
        delimiter, header = csv_header(first)
    except csv.Error as exc:
        report.add("IN006", f"CSV syntax error in the header ({exc})", 1)
        return
    used = [(i, column) for i, column in enumerate(_check_columns(header, report, columns, names, 1)) if column]
    width = len(header)
    # strict: a quote left open would otherwise swallow the rows after it into one value.
    reader = csv.reader(lines, delimiter=delimiter, strict=True)
    count = 0
    try:
        for fields in reader:
            if report.full:
                return
            line = state["line"]
            if not any(f.strip() for f in fields):  # a blank line, or a spreadsheet's ;;;;;; row
                continue
            count += 1
            if len(fields) != width:
                report.add("IN006", f"row has {len(fields)} values, the header has {width}", line)
                continue
            if state["quotes"]:  # (a text search per line is cheaper than a test per cell)
                yield Row(line, {column: _unquoted(fields[i].strip()) for i, column in used})
            else:
                yield Row(line, {column: fields[i].strip() for i, column in used})
    except csv.Error as exc:
        if "field limit" in str(exc):   # (the only way Python's csv says it)
            report.add("IN015", f"a cell is longer than {MAX_CELL_CHARS} characters: the rest of the file was not read",
                       state["line"])
            report.cut = True
        else:
            report.add("IN006", f"CSV syntax error ({exc})", state["line"])
    if count == 0 and not state["failed"] and not report.cut and not report.full:
        report.add("IN010", "the file has a header but no data rows", 1)


def csv_header(line: str) -> tuple[str, list[str]]:
    """The delimiter and the column names of a CSV file's first line: ';' if it holds more
    semicolons than commas (as spreadsheets here write), else ','. Raises csv.Error."""
    delimiter = ";" if line.count(";") > line.count(",") else ","
    return delimiter, [name.strip() for name in next(csv.reader([line], delimiter=delimiter, strict=True))]


def _row_from_object(obj, line: int, report: InputReport, what: str) -> Row | None:
    if not isinstance(obj, dict):
        report.add("IN006", f"{what} is not a JSON object", line)
        return None
    values: dict[str, str] = {}
    for key, value in obj.items():
        if value is None:
            values[key] = ""
        elif isinstance(value, list):
            values[key] = ";".join(str(v) for v in value)
        elif isinstance(value, bool) or isinstance(value, dict):
            report.add("IN006", f"{what}: '{key}' must be a string or a number", line, key)
            return None
        else:
            values[key] = str(value).strip()
    return Row(line, values)


def _read_json_array(stream, report, columns, names: _Columns, decoder: _Decoder) -> Iterator[Row]:
    seen_keys: dict[str, str | None] = {}
    count = 0
    for index, obj in _JsonItems(stream, report, decoder):
        count = index
        row = _row_from_object(obj, index, report, f"item {index}")
        if row is None:
            continue
        yield _check_row_columns(row, report, columns, names, seen_keys)
    if count == 0 and not report.issues:
        report.add("IN010", "the array is empty", 1)


class _JsonItems:
    """The items of a JSON array, parsed one at a time from a window of the text that never
    holds much more than two items' worth of :data:`MAX_LINE_BYTES` (a 1 GB array costs what
    a 2 MiB one does; a minified array on one line too). Yields (number, value); a syntax
    error is IN006 with its line and column, an item longer than the limit IN015; both end
    the reading (nothing after them can be told apart)."""

    _BLANK = re.compile(r"[ \t\n\r]*")

    def __init__(self, stream, report: InputReport, decoder: _Decoder) -> None:
        self.stream, self.report, self.decoder = stream, report, decoder
        self.text = ""          # the window
        self.pos = 0            # where the reader stands in it
        self.eof = False
        self.lines_before = 0   # new lines in the text dropped before the window
        self.column_base = 0    # characters of the window's first line dropped before it

    def __iter__(self) -> Iterator[tuple[int, object]]:
        try:
            yield from self._items()
        except _Undecodable as exc:
            self.report.add("IN005", str(exc), self._line(self.pos))

    def _items(self) -> Iterator[tuple[int, object]]:
        self._fill()
        if self.text.startswith("\ufeff"):
            self.pos = 1
        self._skip_blanks()
        if self._at_end():
            return self._fail("IN006", "not valid JSON", detail="the file is empty")
        if self.text[self.pos] != "[":
            return self._fail("IN006", "a JSON input is an array of objects, one per row", detail="")
        self.pos += 1
        decode = json.JSONDecoder().raw_decode
        number = 0
        while not self.report.full:
            self._fill()
            self._skip_blanks()
            if self._at_end():
                return self._fail("IN006", "not valid JSON", detail="the array is not closed: the file ends inside it")
            if self.text[self.pos] == "]" and number == 0:
                self.pos += 1
                break
            start = self.pos
            try:
                value, end = decode(self.text, start)
            except json.JSONDecodeError as exc:
                if not self.eof and (exc.msg.startswith("Unterminated string") or exc.pos - start >= MAX_LINE_BYTES - 8):
                    return self._too_long(number + 1, start)   # it runs past the window: longer than the limit
                return self._fail("IN006", "not valid JSON", exc.pos, exc.msg)
            except RecursionError:
                return self._fail("IN006", "JSON nested too deeply: an input is an array of flat objects", start, "")
            if end - start > MAX_LINE_BYTES:
                return self._too_long(number + 1, start)
            number += 1
            yield number, value
            self.pos = end
            self._skip_blanks()
            self._fill()
            if self._at_end():
                return self._fail("IN006", "not valid JSON", detail="the array is not closed: the file ends inside it")
            if self.text[self.pos] == "]":
                self.pos += 1
                break
            if self.text[self.pos] != ",":
                return self._fail("IN006", "not valid JSON", detail="Expecting ',' delimiter")
            self.pos += 1
        else:
            return
        self._fill()
        self._skip_blanks()
        if not self._at_end():
            self._fail("IN006", "not valid JSON", detail="Extra data: something follows the array")

    def _fill(self) -> None:
        """Make the window hold at least MAX_LINE_BYTES + 1 characters after the reader (or
        all that is left), reading twice that at once so that this happens once per MiB."""
        if self.eof or len(self.text) - self.pos > MAX_LINE_BYTES:
            return
        dropped = self.text[:self.pos]
        newlines = dropped.count("\n")
        if newlines:
            self.lines_before += newlines
            self.column_base = len(dropped) - dropped.rfind("\n") - 1
        else:
            self.column_base += len(dropped)
        pieces = [self.text[self.pos:]]
        size = len(pieces[0])
        while size <= 2 * MAX_LINE_BYTES:
            chunk = self.stream.read(_JSON_CHUNK)
            text = self.decoder.piece(chunk, final=not chunk)
            pieces.append(text)
            size += len(text)
            if not chunk:
                self.eof = True
                break
        self.text, self.pos = "".join(pieces), 0

    def _skip_blanks(self) -> None:
        self.pos = self._BLANK.match(self.text, self.pos).end()
        if self.pos == len(self.text) and not self.eof:
            self._fill()
            self.pos = self._BLANK.match(self.text, self.pos).end()

    def _at_end(self) -> bool:
        return self.pos >= len(self.text) and self.eof

    def _line(self, pos: int) -> int:
        return self.lines_before + self.text.count("\n", 0, pos) + 1

    def _fail(self, code: str, message: str, pos: int | None = None, detail: str = "") -> None:
        """Report ``message`` at ``pos`` (default: where the reader stands): with ``detail``,
        as 'MESSAGE at column N (DETAIL)'."""
        pos = self.pos if pos is None else pos
        if detail:
            last = self.text.rfind("\n", 0, pos)
            column = pos - last if last >= 0 else self.column_base + pos + 1
            message = f"{message} at column {column} ({detail})"
        self.report.add(code, message, self._line(pos))

    def _too_long(self, number: int, start: int) -> None:
        self.report.add("IN015", f"item {number} is longer than {MAX_LINE_BYTES} characters (1 MiB): the rest of the file was not read",
                        self._line(start))
        self.report.cut = True


def _read_ndjson(stream, report, columns, names: _Columns, decoder: _Decoder) -> Iterator[Row]:
    seen_keys: dict[str, str | None] = {}
    count = 0
    for lineno, raw in _lines(stream, report):
        try:
            text = decoder.line(raw, lineno)
        except _Undecodable as exc:
            report.add("IN005", str(exc), lineno)
            continue
        if lineno == 1:
            text = text.lstrip("\ufeff")
        if not text.strip():
            continue
        count += 1
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            report.add("IN006", f"not valid JSON at column {exc.colno} ({exc.msg})", lineno)
            continue
        except RecursionError:
            report.add("IN006", "JSON nested too deeply: each line is one flat object", lineno)
            continue
        row = _row_from_object(obj, lineno, report, "line")
        if row is None:
            continue
        yield _check_row_columns(row, report, columns, names, seen_keys)
    if count == 0 and not report.cut:
        report.add("IN010", "the file holds no JSON lines", 1)


def _check_row_columns(row: Row, report: InputReport, columns, names: _Columns,
                       seen_keys: dict[str, str | None]) -> Row:
    """JSON rows carry their own keys: the row under cnsx's column names, after reporting a
    key cnsx does not use once (IN017, or IN002 with --strict), a missing one per row (IN001)
    and two keys giving one column (IN002)."""
    values: dict[str, str] = {}
    for key, value in row.values.items():
        if key not in seen_keys:
            seen_keys[key] = names.resolve(key)
            if seen_keys[key] is None:
                names.report_unused([key], report, row.line, "field")
        column = seen_keys[key]
        if column is None:
            continue
        if column in values:
            report.add("IN002", f"two fields give {column}", row.line, column)
        values[column] = value
    for name in columns:
        if name not in values:
            report.add("IN001", f"required field '{name}' is missing", row.line, name)
    return Row(row.line, values)


# --- typed records -------------------------------------------------------------------------

def _required(row: Row, column: str, report: InputReport) -> str | None:
    value = row.values.get(column)
    if value is None:
        return None  # missing column, already reported
    if value == "":
        report.add("IN003", f"'{column}' is empty", row.line, column)
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
                raise ValueError("no such day in the calendar") from None
            raise ValueError("not a date: write YYYY-MM-DD or dd/mm/yyyy (day first)") from None
    day, _, month, year = match.groups()
    if len(year) != 4:
        raise ValueError("the year must have four digits (a two-digit year is ambiguous)")
    try:
        return date(int(year), int(month), int(day))
    except ValueError:
        raise ValueError(f"no such day: day {int(day)} of month {int(month)} of {year} (dates are read day first)") from None


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
        report.add("IN004", f"'{column}' value '{value}': {exc}", row.line, column)
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
        return ("Excel wrote this number in scientific notation and lost its last digits: format the column "
                "as Text, type the number again, and export again")
    digits = value.replace(" ", "").replace("-", "")
    if column in ("prescriber_code", "executing_provider") and digits.isascii() and digits.isdigit() and len(digits) == 5:
        return ("a spreadsheet drops the leading zero of a number: format the column as Text and type the code "
                "again with its 0")
    if column == "act_code" and _SPACED_ACT.match(value):
        return f"write the act code without a space: {value.replace(' ', '').upper()}"
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
        report.add("IN013", f"'{column}' must be 1 to 100 characters without control characters", row.line, column)
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
        report.add("IN014", f"request_ref '{ref}' is not a valid reference", row.line, "request_ref")
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
            report.add("IN003", "'pathology_codes' names no code", row.line, "pathology_codes")
    treatment = _required(row, "treatment", report)
    if treatment is not None:
        treatment = TREATMENT_NAMES.get(_fold(treatment), treatment.lower())
        if treatment not in codes.treatments:
            report.add("IN011", f"treatment '{treatment}' is not 'initial' or 'extension' ('initiale', 'prolongation')",
                       row.line, "treatment")
            treatment = None
    acts = _requested_acts(row, report, codes, treatment)
    if checks is not None:
        for _, code, message, column in checks.request(matricule, prescriber, prescribed, pathologies, treatment, acts,
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
        act, _, count = part.strip().partition(":")
        act = act.strip().upper()
        count = count.strip()
        if not (count.isascii() and count.isdigit()) or int(count) < 1:
            report.add("IN012", f"'{part.strip()}' is not ACT:COUNT", row.line, "requested_acts")
            continue
        if any(act == seen for seen, _ in acts):
            report.add("IN012", f"{act} is named twice: give each act once, with its total count", row.line,
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


class SessionReader:
    """Turns session rows into Sessions; caches what repeats across 200,000-row files
    (dates, matricules, providers) so that each distinct value is checked once."""

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
        report = self.report
        before = len(report.issues)
        values = row.values
        cert = _required(row, "certificate_number", report)
        if cert is not None:
            if REFERENCE.match(cert):
                self.good_certificates.add(cert)
            else:
                report.add("CRT01", f"certificate_number '{cert}' is not a valid certificate number", row.line, "certificate_number")
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
            report.add("IN003", "'executing_provider' is empty and no billing provider is set", row.line, "executing_provider")
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
