"""build-invoice's fast road: a clean CSV of sessions to the billing file's text, by columns.

build.load_fee_notes reads one row at a time into a Session, then a FeeNote of BilledSessions,
checks every rule on each session and reports each problem with its row and column. On
200,000 rows that is most of build-invoice's time, and most files are clean. This road:

- reads the CSV in blocks of rows, turns each block into columns, and checks each distinct
  value once (a file repeats a few hundred dates, four act codes, one provider);
- groups the rows by certificate as shared ``(date, act, provider)`` tuples, so that it holds
  no object per row;
- checks each fee note's rules at once (order and counts of the treatment:
  SessionRules.sequence_ok; one consultation a day; no date after the creation date) and
  prices it at once (Nomenclature.prices_between);
- writes the text from the same pieces as xmlwrite.write_billing_file, checking each
  patient's matricule (Luhn and Verhoeff) as its first fee note is written, while the XSD
  check of the text runs in its own thread (build.publish_document).

It only ever answers "clean". Anything else raises NotClean, and build-invoice takes
load_fee_notes instead, which reports: a problem of any severity, a blank row, a value with
spaces around it, a JSON input. Both roads write the same bytes
(tests/test_fast_build.py).
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from datetime import date
from itertools import accumulate, compress, count, islice, repeat
from operator import and_, eq, lt, ne
from typing import IO, Iterator

from cns_exchange import forked
from cns_exchange.forked import Worker
from cns_exchange.identifiers import MATRICULE_FORM, birth_date, check_matricule, check_provider
from cns_exchange.model import Header
from cns_exchange.nomenclature import Codes, Nomenclature, NoTariffError
from cns_exchange.records import NAME, REFERENCE, SESSION_COLUMNS, SESSION_OPTIONAL, csv_header, iso_date
from cns_exchange.treatment import SessionRules
from cns_exchange.xmlwrite import (
    BILLING_END, FEE_NOTE_END, TextOut, billing_start, fee_note_start, session_rest, session_start,
)

_BLOCK = 512  # rows turned into columns at a time: small enough for its strings to stay in the CPU cache
_NO_NAMES = ("", "")


class NotClean(Exception):
    """The input needs the row-by-row road (build.load_fee_notes): it has a problem to
    report, or a shape this road does not read."""


class CleanBilling:
    """The sessions of a clean file, grouped into fee notes, with the header's totals.

    The columns (one shared text per distinct value) are ordered by fee note, then date;
    fee note k is rows ``starts[k]`` up to ``starts[k + 1]``. The treatment rules and the prices of
    each note are checked and computed as it is written (:meth:`write`), while the XSD check
    of the text already written runs in its thread; the header's totals are computed before,
    from the columns (:func:`_totals`), and must come out equal to the notes' sums.
    """

    def __init__(self, table: "_Table", starts: list[int], gross: int, share: int, codes: Codes,
                 nomenclature: Nomenclature, checks: "_Matricules") -> None:
        self.table = table
        self.checks = checks
        self.starts = starts
        self.count = len(starts)
        self.sessions = len(table.days)
        self.gross = gross
        self.share = share
        self.cns = gross - share
        self.codes = codes
        self.nomenclature = nomenclature
        #: With build-invoice's certificate check: build.CertificateBook.remaining for the
        #: file's certificates; a fee note its certificate does not allow is NotClean.
        self.certificates: dict[str, tuple[str, str, str, dict[str, int]]] | None = None

    def close(self) -> None:
        """Stop the matricule checks if they still run (the write failed or never happened)."""
        self.checks.cancel()

    def write(self, stream: IO[bytes], header: Header) -> None:
        """Write the billing file. Raise NotClean, having written part of it, at the first
        fee note that breaks a treatment rule, or at the end if a matricule is wrong."""
        out = TextOut(stream)
        add = out.add
        add(billing_start(header, self.count, self.sessions, self.gross, self.share, self.cns))
        t = self.table
        certificates, matricules, days, acts, providers, dates, names = (
            t.certificates, t.matricules, t.days, t.acts, t.providers, t.dates, t.names)
        rules = SessionRules(self.codes)
        prices_between, price_for = self.nomenclature.prices_between, self.nomenclature.price_for
        sequences: dict[tuple[str, ...], object] = {}
        starts: dict[tuple[int, str], str] = {}
        rests: dict[tuple[str, str, int, int], str] = {}
        gross_sum = share_sum = 0
        for number, first, end in zip(count(1), self.starts, self.starts[1:] + [self.sessions]):
            certificate, matricule = certificates[first], matricules[first]
            note_acts = tuple(acts[first:end])
            sequence = sequences.get(note_acts, False)
            if sequence is False:
                sequence = sequences[note_acts] = rules.sequence_ok(note_acts)
            if sequence is None:
                raise NotClean(f"treatment order or counts in fee note {number}")
            note_days = days[first:end]
            if self.certificates is not None and not _allowed(self.certificates.get(certificate), matricule,
                                                               note_days, note_acts):
                raise NotClean(f"the certificate of fee note {number}")
            born = birth_date(matricule)
            prices = prices_between(note_acts, dates[note_days[0]], dates[note_days[-1]], born)
            if prices is None:  # a new tariff table or the 18th birthday within the fee note
                each = [price_for(act, dates[day], born) for day, act in zip(note_days, note_acts)]
                prices = (tuple(p.gross for p in each), tuple(p.patient_share for p in each))
            gross, share = prices
            gross_sum += sum(gross)
            share_sum += sum(share)
            parts = [fee_note_start(number, certificate, matricule, *names.get(certificate, _NO_NAMES))]
            for line_no, day, act, provider, g, s in zip(count(1), note_days, note_acts, providers[first:end],
                                                         gross, share):
                start = starts.get((line_no, day))
                if start is None:
                    start = starts[(line_no, day)] = session_start(line_no, day)
                rest = rests.get((act, provider, g, s))
                if rest is None:
                    rest = rests[(act, provider, g, s)] = session_rest(act, provider, g, s, g - s)
                parts.append(start)
                parts.append(rest)
            parts.append(FEE_NOTE_END)
            add("".join(parts))
        if (gross_sum, share_sum) != (self.gross, self.share):  # the header said otherwise
            raise NotClean("the header's totals")
        if not self.checks.all_clean(self.table.distinct_matricules):
            raise NotClean("a matricule's check digits or birth date")
        add(BILLING_END)
        out.flush()


def plan(data: bytes, encoding: str, codes: Codes, nomenclature: Nomenclature, provider: str,
         created: date, certificates=None) -> CleanBilling:
    """Read a CSV of sessions (``data``, in ``encoding``) and return its fee notes, checked
    and priced; raise NotClean if anything needs the row-by-row road. ``certificates`` (a
    build.CertificateBook) has each fee note checked against its imported certificate."""
    if "\n".encode(encoding) != b"\n":  # (UTF-16, EBCDIC...: the row-by-row road reads lines of bytes)
        raise NotClean("an encoding whose line feed is not the byte 0x0A")
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError:
        raise NotClean("encoding") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    first, _, body = text.partition("\n")
    del text
    try:
        delimiter, header = csv_header(first)
    except csv.Error:
        raise NotClean("CSV syntax") from None
    if len(set(header)) != len(header) or not set(SESSION_COLUMNS) <= set(header) <= {*SESSION_COLUMNS, *SESSION_OPTIONAL}:
        raise NotClean("columns")
    checks = _Matricules(body, delimiter, len(header), header.index("matricule"))
    try:
        table = _Table(codes, provider, created)
        for block in _blocks(body, delimiter, len(header)):
            table.add(*(block[header.index(name)] for name in SESSION_COLUMNS),
                      *(block[header.index(name)] if name in header else None for name in SESSION_OPTIONAL))
        del body
        clean = table.grouped(codes, nomenclature, checks)
        if certificates is not None:
            clean.certificates = certificates.remaining(table.distinct_certificates)
        return clean
    except BaseException:
        checks.cancel()
        raise


def _blocks(body: str, delimiter: str, width: int):
    """Yield the rows of ``body`` in blocks, each as a list of columns (lists of texts)."""
    if "\r" in body or '"' in body:  # quotes, or a carriage return not ending a line: the csv module
        try:
            reader = csv.reader(io.StringIO(body), delimiter=delimiter, strict=True)
            while block := list(islice(reader, _BLOCK)):
                if set(map(len, block)) != {width}:
                    raise NotClean("a blank row or a row of another width")
                yield [list(column) for column in zip(*block)]
        except csv.Error:
            raise NotClean("CSV syntax") from None
        return
    lines = body.split("\n")
    if lines[-1] == "":
        lines.pop()
    for at in range(0, len(lines), _BLOCK):
        block = lines[at:at + _BLOCK]
        if set(map(str.count, block, repeat(delimiter))) != {width - 1}:
            raise NotClean("a blank row or a row of another width")
        cells = delimiter.join(block).split(delimiter)
        yield [cells[i::width] for i in range(width)]


class _Table:
    """The rows read so far, as columns of shared values: each distinct value is checked
    once, and a column holds references to one string (or tuple) per distinct value."""

    def __init__(self, codes: Codes, provider: str, created: date) -> None:
        self.acts_known = codes.acts
        self.provider = provider
        self.created = created
        self.certificates: list[str] = []
        self.matricules: list[str] = []
        self.days: list[str] = []
        self.acts: list[str] = []
        self.providers: list[str] = []
        self.names: dict[str, tuple[str, str]] = {}   # certificate -> (last name, first name)
        self.dates: dict[str, date] = {}              # session date text -> date
        # Each distinct value seen -> what its rows share (see _shared).
        self._certificates: dict[str, str] = {}
        self._matricules: dict[str, str] = {}
        self._days: dict[str, str] = {}
        self._acts: dict[str, str] = {}
        self._providers: dict[str, str] = {}

    def add(self, certificates: list[str], matricules: list[str], days: list[str], acts: list[str],
            providers: list[str] | None, last_names: list[str] | None, first_names: list[str] | None) -> None:
        """Add a block of rows, as columns (an optional column absent: None)."""
        if providers is None:
            providers = [""] * len(certificates)
        if last_names is not None or first_names is not None:
            self._add_names(certificates, last_names or [""] * len(certificates),
                            first_names or [""] * len(certificates))
        self.certificates += _shared(certificates, self._certificates, self._certificate)
        self.matricules += _shared(matricules, self._matricules, self._matricule)
        self.days += _shared(days, self._days, self._day)
        self.acts += _shared(acts, self._acts, self._act)
        self.providers += _shared(providers, self._providers, self._provider)

    @staticmethod
    def _certificate(value: str) -> str:
        if not REFERENCE.match(value):
            raise NotClean("certificate number")
        return value

    @staticmethod
    def _matricule(value: str) -> str:
        if not MATRICULE_FORM.match(value):
            raise NotClean("matricule")
        return value

    def _day(self, value: str) -> str:
        try:
            day = iso_date(value)  # (the column's texts are written and compared as they are)
        except ValueError:
            raise NotClean("session date") from None
        if day > self.created:
            raise NotClean("a session after the creation date")
        self.dates[value] = day
        return value

    def _act(self, value: str) -> str:
        if value not in self.acts_known:
            raise NotClean("act code")
        return value

    def _provider(self, value: str) -> str:
        executing = value or self.provider
        if not executing or check_provider(executing):
            raise NotClean("executing provider")
        return executing

    def _add_names(self, certificates: list[str], last_names: list[str], first_names: list[str]) -> None:
        """A fee note takes the patient's names from its certificate's first row."""
        for value in set(last_names).union(first_names):
            if value and not NAME.match(value):
                raise NotClean("a name")
        first_rows = dict(zip(reversed(certificates), zip(reversed(last_names), reversed(first_names))))
        for cert in first_rows.keys() - self.names.keys():
            self.names[cert] = first_rows[cert]

    @property
    def distinct_matricules(self):
        return self._matricules.keys()

    @property
    def distinct_certificates(self):
        return self._certificates.keys()

    def grouped(self, codes: Codes, nomenclature: Nomenclature, checks: "_Matricules") -> CleanBilling:
        """Group the rows into fee notes (rows of a certificate together, by date) and check
        what is checked across notes; return the CleanBilling with the header's totals."""
        if not self.certificates:
            raise NotClean("no rows")
        starts = _run_starts(self.certificates)
        if len(starts) != len(self._certificates):
            self._regroup()  # a certificate's rows are not all together: put them together
            starts = _run_starts(self.certificates)
        c, m, d = self.certificates, self.matricules, self.days
        same_note = list(map(eq, c[1:], c[:-1]))  # row i+1 is on the fee note of row i
        if any(map(and_, same_note, map(ne, m[1:], m[:-1]))):
            raise NotClean("a certificate used for two patients")
        if any(map(and_, same_note, map(lt, d[1:], d[:-1]))):
            self._sort_days(starts)
            d = self.days
        if any(map(and_, same_note, map(eq, d[1:], d[:-1]))):
            raise NotClean("two consultations on one day")
        if len(self._matricules) != len(starts):  # a patient on several fee notes: no day twice across them
            patient_days: dict[str, set[str]] = {}
            for start, end in zip(starts, starts[1:] + [len(d)]):
                seen = patient_days.setdefault(m[start], set())
                before = len(seen)
                seen.update(d[start:end])
                if len(seen) != before + end - start:
                    raise NotClean("two consultations on one day")
        try:
            gross, share = _totals(self, starts, nomenclature)
        except NoTariffError:
            raise NotClean("no tariff table") from None
        return CleanBilling(self, starts, gross, share, codes, nomenclature, checks)

    def _reorder(self, order: list[int]) -> None:
        for name in ("certificates", "matricules", "days", "acts", "providers"):
            column = getattr(self, name)
            setattr(self, name, list(map(column.__getitem__, order)))

    def _regroup(self) -> None:
        """Put each certificate's rows together, in the order certificates first appear."""
        rank: dict[str, int] = {}
        for cert in self.certificates:
            rank.setdefault(cert, len(rank))
        ranks = list(map(rank.__getitem__, self.certificates))
        self._reorder(sorted(range(len(ranks)), key=ranks.__getitem__))  # stable: row order kept

    def _sort_days(self, starts: list[int]) -> None:
        """Order each fee note's rows by date (rows of one date keep their order)."""
        note = [0] * len(self.certificates)
        for number, start in enumerate(starts):
            note[start] = number
        note = list(accumulate(note, max))
        keys = list(zip(note, self.days))
        self._reorder(sorted(range(len(keys)), key=keys.__getitem__))


def _shared(values: list[str], known: dict[str, str], convert) -> Iterator[str]:
    """``values`` as references to one object per distinct value: ``convert`` checks each
    value not seen before (NotClean) and gives what its rows share."""
    for value in set(values).difference(known):
        known[value] = convert(value)
    return map(known.__getitem__, values)


def _run_starts(column: list[str]) -> list[int]:
    """The indexes where a run of equal values starts."""
    return [0, *compress(count(1), map(ne, column[1:], column[:-1]))]


def _allowed(certificate, matricule: str, days: list[str], acts: tuple[str, ...]) -> bool:
    """True if an imported certificate (see CleanBilling.certificates) allows a fee note:
    same patient, every date within its validity, no act beyond what remains (CRT02-CRT05)."""
    if certificate is None:
        return False
    holder, valid_from, valid_to, remaining = certificate
    if holder != matricule or days[0] < valid_from or days[-1] > valid_to:  # (dates sorted: ISO texts)
        return False
    return all(remaining.get(act, 0) >= count for act, count in Counter(acts).items())


def _totals(table: _Table, starts: list[int], nomenclature: Nomenclature) -> tuple[int, int]:
    """The gross amount and the patient share of every session, in cents, from the columns:
    each distinct (date, act) priced once for an adult, then the fee notes of the patients
    who may be minors on their first session priced exactly."""
    dates, days, acts, matricules = table.dates, table.days, table.acts, table.matricules
    gross = share = 0
    adult: dict[tuple[str, str], int] = {}
    for (day, act), sessions in Counter(zip(days, acts)).items():
        price = nomenclature.price(act, dates[day], False)
        adult[(day, act)] = price.patient_share
        gross += sessions * price.gross
        share += sessions * price.patient_share
    oldest = max(t.minor_below_age for t in nomenclature.tables)
    # A matricule starts with the birth date (YYYYMMDD): born after this, maybe a minor that day.
    born_after = {day: f"{d.year - oldest:04d}{d.month:02d}{d.day:02d}" for day, d in dates.items()}
    for start, end in zip(starts, starts[1:] + [len(days)]):
        matricule = matricules[start]
        if matricule > born_after[days[start]]:
            born = birth_date(matricule)
            note_days, note_acts = days[start:end], tuple(acts[start:end])
            prices = nomenclature.prices_between(note_acts, dates[note_days[0]], dates[note_days[-1]], born)
            exact = prices[1] if prices is not None else [
                nomenclature.price_for(act, dates[day], born).patient_share for day, act in zip(note_days, note_acts)]
            share += sum(exact) - sum(map(adult.__getitem__, zip(note_days, note_acts)))
    return gross, share


class _Matricules(Worker):
    """The check digits and birth dates of every distinct matricule of the file, checked in
    a forked process (see forked) while this one reads, groups and writes. Checked here
    where fork is not available, or if the worker failed."""

    def __init__(self, body: str, delimiter: str, width: int, column: int) -> None:
        if forked.available():
            self.start(_check_matricules, body, delimiter, width, column)

    def all_clean(self, matricules) -> bool:
        """True if none of ``matricules`` (the file's distinct ones) has a problem, not even
        the MAT04 warning."""
        found = None
        if self.proc is not None:
            try:
                found = self.conn.recv()
            except EOFError:  # the worker died
                pass
            finally:
                self.stop()
        if found is None or found[0] != len(matricules):  # (the worker read what this process read)
            return not any(map(check_matricule, matricules))
        return not found[1]

    def cancel(self) -> None:
        self.stop()


def _check_matricules(conn, body: str, delimiter: str, width: int, column: int) -> None:  # pragma: no cover - runs in the child
    """In the worker: send (number of distinct matricules, those with a problem), or None."""
    try:
        distinct: set[str] = set()
        for block in _blocks(body, delimiter, width):
            distinct.update(block[column])
        conn.send((len(distinct), [m for m in distinct if check_matricule(m)]))
    except NotClean:
        conn.send(None)
