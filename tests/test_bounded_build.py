"""build-invoice in bounded memory (issue 12): the sessions past a budget wait, sorted, in an
anonymous temporary file (billing/spill.py, billing/notes.py).

- Any budget gives the same fee notes and the same problems, in the same order, as one that
  holds every session: on the examples and on files Hypothesis draws (notes spread over the
  file, patients with several certificates, a certificate for two patients, prescription
  dates that disagree, names).
- The temporary file is 0600 and has no name: nothing is left behind by an end, an error or
  Ctrl-C, and its descriptor is closed.
- A fee note too large to be anything but errors, the errors of the notes and the number of
  notes in one file (the written file's XSD check keeps each note's number) are bounded too.

The peak of a whole build of 400,000 sessions is measured in test_exits_and_streams.py.
"""

from __future__ import annotations

import csv
import io
import os
from datetime import date, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cns_exchange.billing.notes import MAX_FEE_NOTES, MAX_NOTE_SESSIONS, load_fee_notes
from cns_exchange.billing.spill import Sorter, Spool
from cns_exchange.documents.write import write_billing_file
from cns_exchange.domain.model import Header
from cns_exchange.domain.nomenclature import load_codes, load_nomenclature
from cns_exchange.errors import InputError
from cns_exchange.rows.reading import MAX_ERRORS
from conftest import EXAMPLES, PROVIDER, VALID_MATRICULES, make_matricule, random_matricules

CODES = load_codes()
NOMENCLATURE = load_nomenclature()
CREATED = datetime(2026, 11, 20, 9, 0, tzinfo=timezone(timedelta(hours=1)))
HEADER = Header(PROVIDER, CREATED, 1, "2")


def _built(data: bytes, budget: int | None = None, fmt: str = "csv", **kwargs):
    """(the billing file's bytes or None, every issue as (code, message, line, field, hint))."""
    if budget is not None:
        kwargs["budget"] = budget
    try:
        notes, report = load_fee_notes(io.BytesIO(data), "rows", fmt, CODES, NOMENCLATURE, PROVIDER, CREATED.date(),
                                       **kwargs)
    except InputError as exc:
        return None, [(i.code, i.message, i.line, i.field, i.hint) for i in exc.issues]
    out = io.BytesIO()
    with notes:
        write_billing_file(out, HEADER, notes, notes.totals)
    return out.getvalue(), [(i.code, i.message, i.line, i.field, i.hint) for i in report.issues]


@pytest.mark.parametrize("budget", [1, 2, 3, 5])
def test_the_examples_are_the_same_with_any_budget(budget):
    data = (EXAMPLES / "sessions.csv").read_bytes()
    written, issues = _built(data)
    assert written is not None
    assert _built(data, budget) == (written, issues)


A, B, C = VALID_MATRICULES[2], VALID_MATRICULES[3], VALID_MATRICULES[4]
CHILD = make_matricule(date(2015, 3, 1))

_row = st.tuples(st.sampled_from(["T1", "T2", "T3", "T4"]), st.sampled_from([A, B, C, CHILD]),
                 st.dates(date(2025, 1, 1), date(2026, 11, 22)).map(date.isoformat),
                 st.sampled_from(["ZD11", "ZD12", "ZD13", "ZD21"]),
                 st.sampled_from(["", "2024-12-01", "2025-06-01"]),
                 st.sampled_from(["", "Muller"]))


def _csv(rows) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["certificate_number", "matricule", "session_date", "act_code", "prescription_date", "last_name"])
    writer.writerows(rows)
    return out.getvalue().encode()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(_row, min_size=1, max_size=24), budget=st.integers(1, 6))
def test_any_budget_gives_the_same_notes_and_problems(rows, budget):
    data = _csv(rows)
    assert _built(data, budget) == _built(data)


# --- the temporary file ------------------------------------------------------------------------

def test_what_is_spilled_waits_in_a_file_of_no_name_readable_by_no_one_else():
    for spill in (Sorter(2), Spool(2)):
        for n in (3, 1, 2, 5, 4):
            spill.add((n, "1974091186700"))
        file = spill._blocks.file
        info = os.fstat(file.fileno())
        assert info.st_mode & 0o777 == 0o600 and info.st_nlink == 0   # no name in any folder
        records = list(spill)
        assert records == ([(n, "1974091186700") for n in (1, 2, 3, 4, 5)] if isinstance(spill, Sorter)
                           else [(n, "1974091186700") for n in (3, 1, 2, 5, 4)])
        assert file.closed


def _open_files() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


class _Interrupted(io.BytesIO):
    """Rows that end in Ctrl-C after ``lines`` lines."""

    def __init__(self, data: bytes, lines: int) -> None:
        super().__init__(data)
        self.lines = lines

    def readline(self, size=-1):
        self.lines -= 1
        if self.lines < 0:
            raise KeyboardInterrupt
        return super().readline(size)


def _sessions(notes: int) -> bytes:
    """Four sessions of each of ``notes`` adults, in date order (each note spread over the file)."""
    patients = [m for m in random_matricules(2 * notes, seed=3) if m[:4] < "2000"][:notes]
    rows = [((date(2026, 1, 5) + timedelta(days=n % 50 + 7 * k)).isoformat(), f"T{n}", m, act)
            for n, m in enumerate(patients) for k, act in enumerate(("ZD11", "ZD12", "ZD13", "ZD13"))]
    rows.sort()
    return ("certificate_number,matricule,session_date,act_code\n"
            + "".join(f"{cert},{m},{day},{act}\n" for day, cert, m, act in rows)).encode()


@pytest.mark.parametrize("stop", ["end", "error", "ctrl-c while reading", "ctrl-c while writing"])
def test_nothing_is_left_behind(tmp_path, monkeypatch, stop):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    data = _sessions(100)
    if stop == "error":
        data += b"T999,1974091186700,2026-13-01,ZD11\n"
    before = _open_files()
    stream = _Interrupted(data, 300) if stop == "ctrl-c while reading" else io.BytesIO(data)
    with pytest.raises(KeyboardInterrupt if stop.startswith("ctrl-c") else InputError):
        notes, _ = load_fee_notes(stream, "rows", "csv", CODES, NOMENCLATURE, PROVIDER, CREATED.date(), budget=7)
        with notes:
            for number, _ in enumerate(notes):
                if stop == "ctrl-c while writing" and number == 40:
                    raise KeyboardInterrupt
        raise InputError("read to the end", "")
    assert _open_files() == before
    assert list(tmp_path.iterdir()) == []


# --- bounds on problems ---------------------------------------------------------------------

def test_a_fee_note_of_more_sessions_than_any_treatment_has_ends_the_build():
    day = date(2019, 1, 1)
    rows = "".join(f"T1,{A},{day + timedelta(days=n)},ZD13\n" for n in range(MAX_NOTE_SESSIONS + 1))
    written, issues = _built(b"certificate_number,matricule,session_date,act_code\n" + rows.encode(), budget=1000)
    assert written is None
    assert [i[:3] for i in issues if i[0] == "IN016"] == [
        ("IN016", f"more than {MAX_NOTE_SESSIONS:,} sessions of certificate T1 for one patient (a treatment has at most "
                  "6): the file was not checked further", 2)]


def test_the_fee_notes_stop_being_checked_after_1000_errors():
    # Each note one session after the file's creation date (TRT07): one error a note.
    rows = "".join(f"T{n},{A},{date(2026, 12, 1) + timedelta(days=n)},ZD11\n" for n in range(MAX_ERRORS + 50))
    written, issues = _built(b"certificate_number,matricule,session_date,act_code\n" + rows.encode())
    assert written is None
    assert sum(1 for i in issues if i[0] == "TRT07") == MAX_ERRORS
    assert issues[-1][:3] == ("IN016", f"{MAX_ERRORS} errors in the fee notes: the notes from the one of line "
                                       f"{MAX_ERRORS + 2} on were not checked", MAX_ERRORS + 2)


@pytest.mark.parametrize("budget", [None, 2])
def test_a_file_of_more_fee_notes_than_the_limit_ends_the_build(budget):
    data = (EXAMPLES / "sessions.csv").read_bytes()
    written, issues = _built(data)
    notes = written.count(b"<MemoireHonoraires>")
    assert notes > 1
    assert _built(data, budget, max_notes=notes) == (written, issues)   # at the limit: built as always
    refused, issues = _built(data, budget, max_notes=notes - 1)
    assert refused is None
    assert [i for i in issues if i[0] == "IN016"] == [
        ("IN016", f"more than {notes - 1:,} fee notes (certificate and patient) in one billing file: the file was "
                  "not checked further", issues[-1][2], "certificate_number",
         "split the sessions into several files, by month or by patient")]
    assert isinstance(issues[-1][2], int) and issues[-1][2] >= 2


def test_the_limit_of_fee_notes_as_a_build_meets_it(tmp_path, run):
    """One session more than MAX_FEE_NOTES notes of one session each: exit 3, nothing written."""
    rows = "".join(f"T{n},{A},2026-11-02,ZD11\n" for n in range(MAX_FEE_NOTES + 1))
    source = tmp_path / "sessions.csv"
    source.write_text("certificate_number,matricule,session_date,act_code\n" + rows, "utf-8")
    result = run("build-invoice", "--provider", PROVIDER, "--created", CREATED.date().isoformat(),
                 "--no-certificate-check", str(source), "-o", str(tmp_path / "out.xml"))
    assert result.exit_code == 3, result.stderr[-2000:]
    assert f"error IN016: more than {MAX_FEE_NOTES:,} fee notes" in result.stderr
    assert not (tmp_path / "out.xml").exists()


def test_a_request_file_of_more_requests_than_the_limit_ends_the_build():
    """build-request holds its requests until the file is written: at most MAX_REQUESTS."""
    from cns_exchange.billing.build import MAX_REQUESTS, load_requests

    assert MAX_REQUESTS == 10_000   # the documented limit (docs/rules.md, IN016)
    data = (EXAMPLES / "requests.csv").read_bytes()
    requests, _report = load_requests(io.BytesIO(data), "requests.csv", "csv", CODES, EXAMPLES, CREATED.date(), PROVIDER)
    count = len(requests)
    assert count > 1
    at_limit, _report = load_requests(io.BytesIO(data), "requests.csv", "csv", CODES, EXAMPLES, CREATED.date(), PROVIDER,
                                      max_requests=count)
    assert [r.request_ref for r in at_limit] == [r.request_ref for r in requests]
    with pytest.raises(InputError) as refused:
        load_requests(io.BytesIO(data), "requests.csv", "csv", CODES, EXAMPLES, CREATED.date(), PROVIDER,
                      max_requests=count - 1)
    stops = [i for i in refused.value.issues if i.code == "IN016"]
    assert [(i.message, i.field, i.hint) for i in stops] == [
        (f"more than {count - 1:,} requests in one request file: the file was not read further", "request_ref",
         "split the requests into several files")]
    assert stops[0].line == count + 1   # the row after the last one taken (line 1: the header)


@pytest.mark.parametrize("limit, built", [(1000, False), (10_000_000, True)])
def test_a_build_over_max_xml_bytes_is_refused_as_validate_would(tmp_path, run, limit, built):
    """A document validate and upload would refuse (XML03) is not published by the build."""
    config = tmp_path / "cnsx.toml"
    config.write_text(f"max_xml_bytes = {limit}\n", "utf-8")
    out = tmp_path / "out.xml"
    result = run("--config", str(config), "build-invoice", "--provider", PROVIDER, "--created",
                 CREATED.date().isoformat(), "--no-certificate-check", str(EXAMPLES / "sessions.csv"), "-o", str(out))
    if built:
        assert result.exit_code == 0, result.stderr
        assert out.stat().st_size > 1000
        return
    assert result.exit_code == 3, result.stderr
    assert "error XML03: " in result.stderr and f"bytes, over the limit of {limit}" in result.stderr
    assert "the billing document built from the input is over the size limit; nothing was written" in result.stderr
    assert not out.exists()
