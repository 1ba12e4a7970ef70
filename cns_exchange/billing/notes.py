"""Session rows -> checked and priced fee notes, in bounded memory whatever the number of rows.

A fee note is one certificate and patient; its sessions are ordered by date, and the notes
follow the order in which their certificate first appears in the input. The notes are all
checked and priced before the first is written (the file's header carries the totals). Each
stage below holds at most ``budget`` sessions (:data:`SPILL_SESSIONS`) and leaves the rest,
sorted, in an anonymous temporary file (:mod:`spill`); a file of 200,000 sessions fits one
budget and never touches the disk, a file of millions is checked in the same steps:

1. **read**: each session goes to its note (certificate, matricule) as it is read; at the
   budget the notes held so far are written out, sorted by that key (parts of notes).
2. **gather**: the parts merged, each note whole: its sessions by date, its first line (the
   notes' order), its names, the prescription date its rows give (NOM07 when two differ);
   also the note after which no other names its certificate, or its patient.
3. **check and price**: the notes in order, each through the one rule engine
   (rules.BillingChecks), which is told to forget a certificate and a patient after the
   last note naming them: the rules see exactly what they would see if every note were held.
4. **write**: :class:`PricedNotes` hands the notes to the writer one at a time.

A note of more than :data:`MAX_NOTE_SESSIONS` sessions (a treatment has at most 6) can only be
errors, more than reading stops at: it ends the build (IN016) instead of being held whole. A
file of more than :data:`MAX_FEE_NOTES` notes ends it too (IN016): the written file's XSD
check (libxml2, the schema's ``xs:unique`` of the notes' numbers) keeps about 500 bytes a note
to the end of the document, the one part of a build that grows with the file.
"""

from __future__ import annotations

import gc
import heapq
from contextlib import contextmanager
from datetime import date
from typing import IO, Iterator

from cns_exchange.billing.spill import Sorter, Spool
from cns_exchange.domain.model import BilledSession, FeeNote
from cns_exchange.domain.nomenclature import Codes, Nomenclature
from cns_exchange.issues import Issue
from cns_exchange.i18n import _
from cns_exchange.rows.reading import MAX_ERRORS, SESSION_COLUMNS, SESSION_OPTIONAL, InputReport, Reading, read_rows
from cns_exchange.rows.records import REMEMBERED, SessionReader, excel_hint
from cns_exchange.validation.rules import BillingChecks

#: Sessions each stage holds in memory (about 25 MB of them); the rest waits on disk.
SPILL_SESSIONS = 250_000
#: The most sessions of one fee note that are checked: past it the note is an error (IN016).
MAX_NOTE_SESSIONS = 10_000
#: The most fee notes of one billing file (a practice bills some hundred a month): past it the
#: build stops (IN016) and asks for the sessions in several files. 100,000 notes peak at about
#: 150 MB (docs/cli.md, Limits).
MAX_FEE_NOTES = 100_000

#: A session as the stages carry it: (day, line, act, executing provider, prescription day),
#: days as ordinals (0: no prescription date given on the row).
_Row = tuple[int, int, str, str, int]


class PricedNotes:
    """The checked and priced fee notes of a session input, in order, with the header's
    totals; iterating makes each FeeNote as it is written and lets it go (read once). Past
    ``budget`` sessions the notes wait in an anonymous temporary file (:meth:`close`)."""

    def __init__(self, budget: int = SPILL_SESSIONS) -> None:
        self._notes = Spool(budget)
        self.count = self.sessions = self.gross = self.share = self.cns = 0

    def add(self, key: tuple[str, str], names: tuple[str, str], rows: list, prices: list,
            prescribed: date | None = None) -> None:
        """Add the note of ``key`` (certificate, matricule): its sessions ``rows`` (by date)
        and their ``prices`` (None: not priced, a problem is reported)."""
        sessions = []
        for n, (row, price) in enumerate(zip(rows, prices), 1):
            if price is not None:
                sessions.append((n, row[0], row[2], row[3], price.gross, price.patient_share, price.cns_share))
                self.gross += price.gross
                self.share += price.patient_share
                self.cns += price.cns_share
        self.count += 1
        self.sessions += len(sessions)
        self._notes.add((key[0], key[1], names[0], names[1], prescribed.toordinal() if prescribed else 0, sessions),
                        len(sessions) or 1)

    @property
    def totals(self) -> tuple[int, int, int, int, int]:
        """(fee notes, sessions, gross, patient share, CNS share), cents."""
        return self.count, self.sessions, self.gross, self.share, self.cns

    def __iter__(self) -> Iterator[FeeNote]:
        days = _Days()
        for number, (cert, matricule, last, first, prescribed, sessions) in enumerate(self._notes, 1):
            note = FeeNote(number, cert, matricule, last, first, prescription_date=days(prescribed) if prescribed else None)
            note.sessions = [BilledSession(n, days(day), act, executing, gross, share, cns)
                             for n, day, act, executing, gross, share, cns in sessions]
            yield note

    def close(self) -> None:
        """Let the notes go (and their temporary file)."""
        self._notes.close()

    def __enter__(self) -> PricedNotes:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Days(dict):
    """Dates by ordinal, each made once (up to REMEMBERED of them, then again)."""

    def __call__(self, ordinal: int) -> date:
        day = self.get(ordinal)
        if day is None:
            if len(self) > REMEMBERED:
                self.clear()
            day = self[ordinal] = date.fromordinal(ordinal)
        return day


def load_fee_notes(stream: IO[bytes], name: str, fmt: str, codes: Codes, nomenclature: Nomenclature,
                   provider: str, created: date, reading: Reading | None = None,
                   certificates=None, share_on_session_date: bool = False,
                   budget: int = SPILL_SESSIONS, max_notes: int = MAX_FEE_NOTES) -> tuple[PricedNotes, InputReport]:
    """Read session rows, group them into priced fee notes (one per certificate and patient).

    Sessions are ordered by date within a fee note; fee notes follow the order in which their
    certificate first appears. Every rule is the one engine's (rules.BillingChecks), which
    also prices the sessions; ``certificates`` (a CertificateBook) checks each session against
    the certificates imported from the CNS. The patient share follows the age on the date of
    the certificate's prescription: the request's in the database, else the optional
    prescription_date column (NOM07 when they, or two rows, disagree); the notes carry it,
    unless ``share_on_session_date`` (writing schema v1, which judges on the session date and
    cannot carry it). Each stage holds at most ``budget`` sessions in memory, and a file of
    more than ``max_notes`` notes is an error (the module's docstring). Raises InputError listing every problem; the caller closes the notes.
    """
    report = InputReport(name)
    checks = BillingChecks(codes, nomenclature, created, certificates, share_on_session_date)
    reader = SessionReader(report, codes, provider, checks)
    parts, notes, releases = Sorter(budget), Sorter(budget), Sorter(budget // 4)
    priced = PricedNotes(budget)
    try:
        with _without_cycle_collection():
            _read(read_rows(stream, fmt, report, SESSION_COLUMNS, SESSION_OPTIONAL, reading), reader, parts, budget)
            if _gather(parts, notes, releases, report, budget, max_notes):
                _check(notes, releases, priced, report, checks, certificates, share_on_session_date)
        report.fail_on_errors(_("sessions"))
    except BaseException:
        priced.close()
        raise
    finally:
        for stage in (parts, notes, releases):
            stage.close()
    return priced, report


@contextmanager
def _without_cycle_collection():
    """The stages make millions of tuples and lists that hold only strings and numbers: they
    form no cycles, and Python's cycle collector, run every few hundred allocations, would
    walk them again and again for nothing (a tenth of a build's time). Reference counting
    frees them all the same; the collector runs again afterwards."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _read(rows, reader: SessionReader, parts: Sorter, budget: int) -> None:
    """Stage 1: each session read into its note; at ``budget`` sessions, the notes so far go to
    ``parts`` as (certificate, matricule, first line, last name, first name, rows)."""
    held: dict[tuple[str, str], list] = {}
    weight = 0
    for row in rows:
        s = reader.read(row)
        if s is None:
            continue
        key = (s.certificate_number, s.matricule)
        note = held.get(key)
        if note is None:
            note = held[key] = [s.line, s.last_name, s.first_name, []]
        note[3].append((s.session_date.toordinal(), s.line, s.act_code, s.executing_provider,
                        s.prescription_date.toordinal() if s.prescription_date is not None else 0))
        weight += 1
        if weight >= budget:
            _hand_over(held, parts)
            weight = 0
    _hand_over(held, parts)


def _hand_over(held: dict, parts: Sorter) -> None:
    for (cert, matricule), (line, last, first, rows) in held.items():
        parts.add((cert, matricule, line, last, first, rows), len(rows))
    held.clear()


def _gather(parts: Sorter, notes: Sorter, releases: Sorter, report: InputReport, budget: int,
            max_notes: int = MAX_FEE_NOTES) -> bool:
    """Stage 2: the parts of each note merged (they come sorted by certificate and patient,
    the earliest part first), the note to ``notes`` by its first line, and to ``releases``
    (line, 0 | 1, certificate | matricule): the first line of the last note naming each
    certificate and each patient. NOM07 for rows giving two prescription dates of one note.
    Returns False when a note is too large to be checked, or the notes too many to be written
    (IN016, reported)."""
    patients = Sorter(budget // 4)   # (a note's matricule and line: a quarter of a session's size, or less)
    stated: list[Issue] = []   # NOM07 of the rows, placed among the reading's issues by line
    current: list | None = None
    last_cert, last_line = None, 0
    count = 0

    def finish(note: list) -> None:
        nonlocal last_cert, last_line
        cert, matricule, line, last, first, rows = note
        rows.sort()
        given_day = given_line = 0
        if any(row[4] for row in rows):
            given = sorted((row[1], row[4]) for row in rows if row[4])
            given_line, given_day = given[0]
            for at, day in given[1:]:
                if day != given_day and len(stated) < MAX_ERRORS:
                    stated.append(Issue("NOM07", _("prescription date {day} differs from {other} on line {line}, for the same "
                                                   "certificate {certificate}").format(
                        day=date.fromordinal(day), other=date.fromordinal(given_day), line=given_line, certificate=cert),
                        file=report.name, line=at, field="prescription_date"))
        notes.add((line, cert, matricule, last, first, given_day, given_line, rows), len(rows))
        patients.add((matricule, line))
        if cert != last_cert:
            if last_cert is not None:
                releases.add((last_line, 0, last_cert))
            last_cert, last_line = cert, line
        else:
            last_line = max(last_line, line)

    try:
        for part in parts:
            if current is not None and part[0] == current[0] and part[1] == current[1]:
                current[5].extend(part[5])   # a later part of the same note: later lines
                if len(current[5]) > MAX_NOTE_SESSIONS:
                    report.add("IN016", _("more than {n} sessions of certificate {certificate} for one patient (a treatment "
                                          "has at most 6): the file was not checked further").format(
                        n=f"{MAX_NOTE_SESSIONS:,}", certificate=current[0]), current[2], "certificate_number")
                    return False
                continue
            if current is not None:
                finish(current)
            count += 1
            if count > max_notes:
                report.add("IN016", _("more than {n} fee notes (certificate and patient) in one billing file: "
                                      "the file was not checked further").format(n=f"{max_notes:,}"), part[2], "certificate_number",
                           _("split the sessions into several files, by month or by patient"))
                return False
            current = list(part)
        if current is not None:
            finish(current)
        if last_cert is not None:
            releases.add((last_line, 0, last_cert))
        _patient_releases(patients, releases)
    finally:
        patients.close()
        _place_by_line(report, stated)
    return True


def _patient_releases(patients: Sorter, releases: Sorter) -> None:
    """The first line of the last note of each patient, from (matricule, line) of every note."""
    previous, line = None, 0
    for matricule, at in patients:
        if matricule != previous and previous is not None:
            releases.add((line, 1, previous))
        previous, line = matricule, at
    if previous is not None:
        releases.add((line, 1, previous))


def _place_by_line(report: InputReport, issues: list[Issue]) -> None:
    """Put ``issues`` (of rows) among the reading's, by line, as if reported while reading."""
    if issues:
        issues.sort(key=lambda i: i.line)
        report.issues = list(heapq.merge(report.issues, issues, key=lambda i: i.line or 0))
        report.errors += sum(issue.is_error for issue in issues)


def _check(notes: Sorter, releases: Sorter, priced: PricedNotes, report: InputReport, checks: BillingChecks,
           certificates, share_on_session_date: bool) -> None:
    """Stage 3: each note in order through the rule engine, priced; after the last note of a
    certificate or patient the engine forgets it. Stops once the notes have given MAX_ERRORS
    errors (IN016): their issues are held in memory too."""
    stop_at = report.errors + MAX_ERRORS
    events = iter(releases)
    event = next(events, None)
    days = _Days()
    add = report.add
    for line, cert, matricule, last, first, given_day, given_line, rows in notes:
        if report.errors >= stop_at:
            add("IN016", _("{n} errors in the fee notes: the notes from the one of line {line} on were not "
                           "checked").format(n=MAX_ERRORS, line=line), line)
            break
        key = (cert, matricule)
        prescribed = _prescription_date(key, (days(given_day), given_line) if given_day else None, certificates, report)
        prices, problems = checks.fee_note(cert, matricule, [days(r[0]) for r in rows], [r[2] for r in rows],
                                           [r[3] for r in rows], prescribed=prescribed)
        for index, code, message, column in problems:
            _day, at, act, executing, _prescribed = rows[max(index, 0)]
            add(code, message, at, column,
                excel_hint(column, {"matricule": matricule, "act_code": act, "executing_provider": executing}.get(column, "")))
        priced.add(key, (last, first), rows, prices, None if share_on_session_date else prescribed)
        while event is not None and event[0] <= line:
            if event[1] == 0:
                checks.forget(certificate=event[2])
            else:
                checks.forget(matricule=event[2])
            event = next(events, None)


def _prescription_date(key: tuple[str, str], given: tuple[date, int] | None, certificates,
                       report: InputReport) -> date | None:
    """The date of a certificate's prescription: its request's in the practice database, else
    the prescription_date column's (``given``: date and line); NOM07 when both are there and
    differ. None when neither tells."""
    recorded = certificates.prescription_date(key[0]) if certificates is not None else None
    if recorded is None:
        return given[0] if given is not None else None
    if given is not None and given[0] != recorded[0]:
        report.add("NOM07", _("prescription date {day} differs from {other}, the date of request {ref} of certificate "
                              "{certificate} in the practice database").format(
            day=given[0], other=recorded[0], ref=recorded[1], certificate=key[0]), given[1], "prescription_date")
    return recorded[0]
