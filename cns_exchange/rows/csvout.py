"""CSV out: the one writer of cnsx's CSV outputs (``import --csv``, ``status --csv``,
``export accounting``).

A cell a spreadsheet would take for a formula is written so that it cannot run: a practice
opens these files in Excel or LibreOffice, and a label from a return file or a name from an
input must not become ``=cmd|' /C calc'!A0`` there. records.py reads such cells back as
they were, so that ``import --no-db --csv`` rows still build the same document.
"""

from __future__ import annotations

import csv
import io
import re
from contextlib import contextmanager
from typing import IO, Iterator

from cns_exchange.domain import model

#: First characters that make a spreadsheet read a cell as a formula (or, tab and CR, hide
#: one): OWASP, "CSV Injection". Such a cell is written with a single quote before it.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?[0-9]+([.,][0-9]+)?\Z")  # (a decimal comma: the French convention)


def safe_cell(value):
    """``value`` as a CSV cell no spreadsheet runs: text starting with = + - @ tab or CR gets
    a single quote before it (``'=cmd|' /C calc'!A0``), as OWASP advises; a plain number
    (``-12.50``) is no formula and stays as it is, and so does anything that is not text."""
    if isinstance(value, str) and value[:1] in FORMULA_STARTS and not _PLAIN_NUMBER.match(value):
        return "'" + value
    return value


def amount(cents: int | None, decimal: str = ".") -> str:
    """Cents as a decimal amount, ``-1234`` → ``-12.34`` (``-12,34`` with ``decimal=","``);
    None (no amount yet) → an empty cell."""
    return "" if cents is None else model.amount(cents).replace(".", decimal)


class CsvWriter:
    """The one CSV writer of cnsx's outputs (``import --csv``, ``status --csv``,
    ``export accounting``): every cell goes through :func:`safe_cell`; lines end with a new
    line.

    ``french=True`` writes the convention of Excel in French (and LibreOffice) locales, which
    open such a file with a double click and no import dialog: a UTF-8 byte order mark first,
    ``;`` between cells, CRLF line ends, and the ``amounts`` columns (cents, in
    :meth:`writedicts`) with a decimal comma, ``1234,56``, no thousands separator."""

    def __init__(self, stream: IO[str], columns: list[str] | tuple[str, ...] = (), *, french: bool = False,
                 amounts: list[str] | tuple[str, ...] = ()) -> None:
        options = {"delimiter": ";", "lineterminator": "\r\n"} if french else {"lineterminator": "\n"}
        self._writer = csv.writer(stream, **options)
        # Python's csv quotes a cell holding a new line but not one holding a lone CR, which
        # other readers take for a line end: a row with a CR in a cell is written all quoted.
        self._quoting = csv.writer(stream, quoting=csv.QUOTE_ALL, **options)
        self.columns = list(columns)
        self._decimal = "," if french else "."
        self._amounts = frozenset(amounts)
        if french:
            stream.write("\ufeff")

    def writerow(self, values) -> None:
        cells = [safe_cell(v) for v in values]
        if any(isinstance(c, str) and "\r" in c for c in cells):
            self._quoting.writerow(cells)
        else:
            self._writer.writerow(cells)

    def writerows(self, rows) -> None:
        for values in rows:
            self.writerow(values)

    def writeheader(self) -> None:
        self.writerow(self.columns)

    def writedicts(self, rows) -> None:
        """Write each mapping's values in the order of ``columns`` (KeyError if one lacks one);
        those of the ``amounts`` columns are cents, written as decimal amounts."""
        for row in rows:
            self.writerow([amount(row[c], self._decimal) if c in self._amounts else row[c] for c in self.columns])


@contextmanager
def utf8_text(binary: IO[bytes]) -> Iterator[IO[str]]:
    """A UTF-8 text stream over ``binary`` (stdout or a file) for a CSV in any locale, with no
    newline translation; flushed and detached at the end, ``binary`` left open."""
    text = io.TextIOWrapper(binary, encoding="utf-8", newline="")
    try:
        yield text
        text.flush()
    finally:
        text.detach()
