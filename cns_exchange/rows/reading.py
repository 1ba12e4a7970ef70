"""The one reader of the practice's CSV, JSON and NDJSON files: rows in, values by cnsx's
column names out (rows.records makes typed records of them).

Readers stream, in bounded memory whatever the input: CSV and NDJSON are read a line at a
time and a JSON array an item at a time, each read in pieces no longer than the limits
below (a file with no line end, or /dev/zero, is refused after 1 MiB, not read whole). Every
problem becomes an :class:`Issue` naming the file, the line (CSV, NDJSON) or item number
(JSON array) and the column; reading goes on so that one run reports all the problems of a
file, up to :data:`MAX_ERRORS`. A header names its columns in cnsx's words, in a
spreadsheet's French ones (:data:`HEADER_NAMES`) or in the practice's own ([columns]).
"""

from __future__ import annotations

import csv
import json
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Iterator, Mapping

from cns_exchange.errors import ConfigError, InputError, UsageError
from cns_exchange.issues import ERROR, Issue, Severity
from cns_exchange.rows.csvout import FORMULA_STARTS
from cns_exchange.rows.decoding import Decoder, Undecodable, canonical_encoding
from cns_exchange.i18n import _, join, ngettext, reason

FORMATS = ("csv", "json", "ndjson")

REQUEST_COLUMNS = (
    "request_ref", "matricule", "last_name", "first_name", "prescriber_code",
    "prescription_date", "pathology_codes", "treatment", "prescription_pdf",
)
REQUEST_OPTIONAL = ("requested_acts",)
SESSION_COLUMNS = ("certificate_number", "matricule", "session_date", "act_code")
SESSION_OPTIONAL = ("executing_provider", "last_name", "first_name", "prescription_date")

#: The header names accepted besides ours, as a practice's spreadsheet writes them (French).
#: A header is compared folded (fold): case, accents and punctuation do not count, so
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

    def add(self, code: str, message: str, line: int | None = None, column: str = "", hint: str = "",
            severity: Severity | None = None) -> None:
        """Add an issue; ``severity`` None: the code's (issues.CATALOGUE)."""
        issue = Issue(code, message, severity=severity, file=self.name, line=line, field=column, hint=hint)
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

    def fail_on_errors(self, what: str) -> None:
        """Raise InputError listing every issue when any is an error (``what``: _('sessions'))."""
        errors = [i for i in self.issues if i.is_error]
        if errors:
            raise InputError(
                ngettext("{file}: {n} problem in the {what}; nothing was written",
                         "{file}: {n} problems in the {what}; nothing was written",
                         len(errors)).format(file=self.name, n=len(errors), what=what),
                _("fix the rows named above and run the command again"),
                self.issues,
            )


def fold(name: str) -> str:
    """A header name as it is compared: accents, case and punctuation dropped, words kept
    ('N° Titre' -> 'n titre', 'date_ordonnance' -> 'date ordonnance')."""
    text = unicodedata.normalize("NFKD", name.replace("°", " "))
    text = "".join(c for c in text if not unicodedata.combining(c)).casefold()
    return " ".join(re.findall(r"[a-z0-9]+", text))


_KNOWN_COLUMNS = REQUEST_COLUMNS + REQUEST_OPTIONAL + SESSION_COLUMNS + SESSION_OPTIONAL
_HEADER_MAP = {fold(alias): column for column in _KNOWN_COLUMNS for alias in (column, *HEADER_NAMES.get(column, ()))}


@dataclass(frozen=True)
class Reading:
    """How to read a practice's file: ``encoding`` (None or 'detect': UTF-8 if the bytes are,
    else Windows-1252), ``columns`` (the config's [columns]: a practice's own header names
    mapped to cnsx's), ``strict`` (a column cnsx does not use is an error, IN002, instead of
    one warning, IN017; a CSV row with values in such columns only is an error, IN018, not a
    row skipped with a warning). Raises ConfigError when ``columns`` maps a name to no column of cnsx."""

    encoding: str | None = None
    columns: Mapping[str, str] = field(default_factory=dict)
    strict: bool = False

    def __post_init__(self) -> None:
        for name, column in self.columns.items():
            if column not in _KNOWN_COLUMNS:
                raise ConfigError(_("[columns] '{name}' = '{column}': cnsx has no column '{column}'").format(
                                      name=name, column=column),
                                  _("map it to one of {columns}").format(columns=", ".join(dict.fromkeys(_KNOWN_COLUMNS))))

    def header_map(self) -> dict[str, str]:
        """Folded header name -> cnsx's column: ours, the French ones, then the config's."""
        return {**_HEADER_MAP, **{fold(name): column for name, column in self.columns.items()}}



def _quoted(names) -> str:
    """Column names listed in a message, each quoted as the language quotes (« » in French)."""
    return join(", ", (_("'{name}'").format(name=n) for n in names))

class _Columns:
    """The columns of one input: each header name resolved once to cnsx's column, or to
    None when cnsx does not use it."""

    def __init__(self, columns, optional, reading: Reading) -> None:
        self.wanted = set(columns) | set(optional)
        self.map = {**{fold(name): name for name in self.wanted}, **reading.header_map()}
        self.strict = reading.strict

    def resolve(self, name: str) -> str | None:
        column = self.map.get(fold(name))
        return column if column in self.wanted else None

    def report_unused(self, names: list[str], report: InputReport, line: int, field: bool = False) -> None:
        """IN017 once for all of ``names`` (a warning), or IN002 for each with --strict;
        ``field``: they are a JSON row's keys, not a header's columns."""
        if self.strict:
            unknown = (_("unknown field '{name}' (--strict: every field must be one cnsx uses)") if field
                       else _("unknown column '{name}' (--strict: every column must be one cnsx uses)"))
            for name in names:
                report.add("IN002", unknown.format(name=name), line, name)
        elif names:
            listed = _quoted(names)
            if field:
                unused = ngettext("field not used by cnsx, ignored: {names}", "fields not used by cnsx, ignored: {names}", len(names))
            else:
                unused = ngettext("column not used by cnsx, ignored: {names}", "columns not used by cnsx, ignored: {names}", len(names))
            report.add("IN017", unused.format(names=listed), line)

    def report_ignored_only(self, names: list[str], report: InputReport, line: int) -> None:
        """IN018 for a CSV row whose values are all in columns cnsx does not use (``names``:
        those that hold one): a warning, the row skipped (a totals line), or an error with
        --strict."""
        listed = _quoted(names)
        if self.strict:
            message = ngettext("only a column cnsx does not use has a value here ({names}): refused (--strict)",
                               "only columns cnsx does not use have values here ({names}): refused (--strict)", len(names))
            report.add("IN018", message.format(names=listed), line, severity=ERROR,
                       hint=_("remove the row from the file, or run without --strict to skip it with a warning"))
        else:
            message = ngettext("only a column cnsx does not use has a value here ({names}): row skipped (a totals line?)",
                               "only columns cnsx does not use have values here ({names}): row skipped (a totals line?)",
                               len(names))
            report.add("IN018", message.format(names=listed), line)


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
    raise UsageError(_("{file}: cannot tell the input format from the extension '{suffix}'").format(file=name, suffix=suffix),
                     _("pass --input-format csv|json|ndjson"))



def read_rows(stream: IO[bytes], fmt: str, report: InputReport, columns: tuple[str, ...],
              optional: tuple[str, ...], reading: Reading | None = None) -> Iterator[Row]:
    """Yield the rows of ``stream``, their values under cnsx's column names (the columns cnsx
    does not use left out); header and row problems go to ``report``. ``reading`` says the
    encoding (default: detected), the config's header names and --strict. Reading stops at a
    line over :data:`MAX_LINE_BYTES` (IN015) and after :data:`MAX_ERRORS` errors (IN016).
    Raises UsageError for an unknown encoding."""
    reading = reading or Reading()
    decoder = Decoder(None if reading.encoding in (None, "detect") else canonical_encoding(reading.encoding))
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
        report.add("IN016", _("{n} errors: the file was not read beyond line {line}").format(n=MAX_ERRORS, line=last), last)


def _lines(stream, report: InputReport) -> Iterator[tuple[int, bytes]]:
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
            report.add("IN015", _("line {line} is longer than {limit} bytes (1 MiB): the rest of the file was not read").format(
                line=number, limit=MAX_LINE_BYTES), number)
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
            report.add("IN002", _("column '{name}' appears {n} times in the header").format(name=given[0], n=len(given)),
                       line, given[0])
        else:
            report.add("IN002", _("columns {names} all give {column}").format(names=_quoted(given),
                                                                              column=column), line, column)
    names.report_unused([name for name, c in zip(header, resolved) if c is None and name], report, line)
    for name in columns:
        if name not in resolved:
            report.add("IN001", _("required column '{name}' is missing").format(name=name), line, name)
    return resolved


def _decoded_lines(stream, decoder: Decoder, report: InputReport, state: dict) -> Iterator[str]:
    """Decode ``stream`` line by line, so that a bad byte is reported on its own line."""
    for lineno, raw in _lines(stream, report):
        state["line"] = lineno
        try:
            text = decoder.line(raw, lineno)
        except Undecodable as exc:
            report.add("IN005", reason(exc), lineno, hint=exc.hint)
            state["failed"] = True
            return
        if "'" in text:
            state["quotes"] = True
        yield text


def _unquoted(value: str) -> str:
    """A cell as csvout.safe_cell wrote it, read back: the quote it added is dropped."""
    return value[1:] if value[:1] == "'" and value[1:2] in FORMULA_STARTS else value


def _read_csv(stream, report, columns, names: _Columns, decoder: Decoder) -> Iterator[Row]:
    state: dict = {"line": 0, "failed": False, "quotes": False}
    lines = _decoded_lines(stream, decoder, report, state)
    first = next(lines, "")
    if state["failed"] or report.cut:
        return
    if not first.strip():
        report.add("IN010", _("the file is empty: no header row"), 1)
        return
    try:
        delimiter, header = csv_header(first)
    except csv.Error as exc:
        report.add("IN006", _("CSV syntax error in the header ({error})").format(error=exc), 1)
        return
    resolved = _check_columns(header, report, columns, names, 1)
    used = [(i, column) for i, column in enumerate(resolved) if column]
    # A row with values in ignored columns only is told (IN018) when the header gives every
    # required column: without one, every row would be told, after the header's IN001.
    ignored = [(i, name or _("column {number}").format(number=i + 1))
               for i, (name, column) in enumerate(zip(header, resolved)) if column is None]
    tell_ignored_only = bool(ignored) and all(name in resolved for name in columns)
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
            if len(fields) != width:
                count += 1
                report.add("IN006", _("row has {n} values, the header has {width}").format(n=len(fields), width=width), line)
                continue
            if state["quotes"]:  # (a text search per line is cheaper than a test per cell)
                values = {column: _unquoted(fields[i].strip()) for i, column in used}
            else:
                values = {column: fields[i].strip() for i, column in used}
            if tell_ignored_only and not any(values.values()):  # a totals line: 'Total' and a sum only
                names.report_ignored_only([name for i, name in ignored if fields[i].strip()], report, line)
                continue
            count += 1
            yield Row(line, values)
    except csv.Error as exc:
        if "field limit" in str(exc):   # (the only way Python's csv says it)
            report.add("IN015", _("a cell is longer than {limit} characters: the rest of the file was not read").format(
                limit=MAX_CELL_CHARS), state["line"])
            report.cut = True
        else:
            report.add("IN006", _("CSV syntax error ({error})").format(error=exc), state["line"])
    if count == 0 and not state["failed"] and not report.cut and not report.full:
        report.add("IN010", _("the file has a header but no data rows"), 1)


def csv_header(line: str) -> tuple[str, list[str]]:
    """The delimiter and the column names of a CSV file's first line: ';' if it holds more
    semicolons than commas (as spreadsheets here write), else ','. Raises csv.Error."""
    delimiter = ";" if line.count(";") > line.count(",") else ","
    return delimiter, [name.strip() for name in next(csv.reader([line], delimiter=delimiter, strict=True))]


def _row_from_object(obj, line: int, report: InputReport, item: int | None = None) -> Row | None:
    """The row of a JSON object: ``item`` its number in an array, None for an NDJSON line."""
    if not isinstance(obj, dict):
        report.add("IN006", _("line is not a JSON object") if item is None
                   else _("item {item} is not a JSON object").format(item=item), line)
        return None
    values: dict[str, str] = {}
    for key, value in obj.items():
        if value is None:
            values[key] = ""
        elif isinstance(value, list):
            values[key] = ";".join(str(v) for v in value)
        elif isinstance(value, bool) or isinstance(value, dict):
            message = (_("line: '{key}' must be a string or a number") if item is None
                       else _("item {item}: '{key}' must be a string or a number"))
            report.add("IN006", message.format(key=key, item=item), line, key)
            return None
        else:
            values[key] = str(value).strip()
    return Row(line, values)


def _read_json_array(stream, report, columns, names: _Columns, decoder: Decoder) -> Iterator[Row]:
    seen_keys: dict[str, str | None] = {}
    count = 0
    for index, obj in _JsonItems(stream, report, decoder):
        count = index
        row = _row_from_object(obj, index, report, index)
        if row is None:
            continue
        yield _check_row_columns(row, report, columns, names, seen_keys)
    if count == 0 and not report.issues:
        report.add("IN010", _("the array is empty"), 1)


class _JsonItems:
    """The items of a JSON array, parsed one at a time from a window of the text that never
    holds much more than two items' worth of :data:`MAX_LINE_BYTES` (a 1 GB array costs what
    a 2 MiB one does; a minified array on one line too). Yields (number, value); a syntax
    error is IN006 with its line and column, an item longer than the limit IN015; both end
    the reading (nothing after them can be told apart)."""

    _BLANK = re.compile(r"[ \t\n\r]*")

    def __init__(self, stream, report: InputReport, decoder: Decoder) -> None:
        self.stream, self.report, self.decoder = stream, report, decoder
        self.text = ""          # the window
        self.pos = 0            # where the reader stands in it
        self.eof = False
        self.lines_before = 0   # new lines in the text dropped before the window
        self.column_base = 0    # characters of the window's first line dropped before it

    def __iter__(self) -> Iterator[tuple[int, object]]:
        try:
            yield from self._items()
        except Undecodable as exc:
            self.report.add("IN005", reason(exc), self._line(self.pos), hint=exc.hint)

    def _items(self) -> Iterator[tuple[int, object]]:
        self._fill()
        self._skip_blanks()
        if self._at_end():
            return self._fail("IN006", _("not valid JSON"), detail=_("the file is empty"))
        if self.text[self.pos] != "[":
            return self._fail("IN006", _("a JSON input is an array of objects, one per row"), detail="")
        self.pos += 1
        decode = json.JSONDecoder().raw_decode
        number = 0
        while not self.report.full:
            self._fill()
            self._skip_blanks()
            if self._at_end():
                return self._fail("IN006", _("not valid JSON"), detail=_("the array is not closed: the file ends inside it"))
            if self.text[self.pos] == "]" and number == 0:
                self.pos += 1
                break
            start = self.pos
            try:
                value, end = decode(self.text, start)
            except json.JSONDecodeError as exc:
                if not self.eof and (exc.msg.startswith("Unterminated string") or exc.pos - start >= MAX_LINE_BYTES - 8):
                    return self._too_long(number + 1, start)   # it runs past the window: longer than the limit
                return self._fail("IN006", _("not valid JSON"), exc.pos, exc.msg)
            except RecursionError:
                return self._fail("IN006", _("JSON nested too deeply: an input is an array of flat objects"), start, "")
            if end - start > MAX_LINE_BYTES:
                return self._too_long(number + 1, start)
            number += 1
            yield number, value
            self.pos = end
            self._skip_blanks()
            self._fill()
            if self._at_end():
                return self._fail("IN006", _("not valid JSON"), detail=_("the array is not closed: the file ends inside it"))
            if self.text[self.pos] == "]":
                self.pos += 1
                break
            if self.text[self.pos] != ",":
                return self._fail("IN006", _("not valid JSON"), detail=_("Expecting ',' delimiter"))
            self.pos += 1
        else:
            return
        self._fill()
        self._skip_blanks()
        if not self._at_end():
            self._fail("IN006", _("not valid JSON"), detail=_("Extra data: something follows the array"))

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
            message = _("{message} at column {column} ({detail})").format(message=message, column=column, detail=detail)
        self.report.add(code, message, self._line(pos))

    def _too_long(self, number: int, start: int) -> None:
        self.report.add("IN015", _("item {item} is longer than {limit} characters (1 MiB): the rest of the file was not read").format(
            item=number, limit=MAX_LINE_BYTES), self._line(start))
        self.report.cut = True


def _read_ndjson(stream, report, columns, names: _Columns, decoder: Decoder) -> Iterator[Row]:
    seen_keys: dict[str, str | None] = {}
    count = 0
    for lineno, raw in _lines(stream, report):
        try:
            text = decoder.line(raw, lineno)
        except Undecodable as exc:
            report.add("IN005", reason(exc), lineno, hint=exc.hint)
            continue
        if not text.strip():
            continue
        count += 1
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            report.add("IN006", _("not valid JSON at column {column} ({detail})").format(column=exc.colno, detail=exc.msg), lineno)
            continue
        except RecursionError:
            report.add("IN006", _("JSON nested too deeply: each line is one flat object"), lineno)
            continue
        row = _row_from_object(obj, lineno, report)
        if row is None:
            continue
        yield _check_row_columns(row, report, columns, names, seen_keys)
    if count == 0 and not report.cut:
        report.add("IN010", _("the file holds no JSON lines"), 1)


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
                names.report_unused([key], report, row.line, field=True)
        column = seen_keys[key]
        if column is None:
            continue
        if column in values:
            report.add("IN002", _("two fields give {column}").format(column=column), row.line, column)
        values[column] = value
    for name in columns:
        if name not in values:
            report.add("IN001", _("required field '{name}' is missing").format(name=name), row.line, name)
    return Row(row.line, values)

