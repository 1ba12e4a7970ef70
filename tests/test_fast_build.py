"""build-invoice's fast road (fastbill) against the row-by-row road (build.load_fee_notes).

The fast road may only ever say "clean": whenever it writes a document, the row-by-row road
must accept the same input without a single issue and write the same bytes. Hypothesis
generates session files, clean ones and ones with every kind of fault, and checks both.
"""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import random
import tempfile
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cns_exchange.build as build
import cns_exchange.fastbill as fastbill
from cns_exchange.errors import InputError
from cns_exchange.model import Header
from cns_exchange.nomenclature import load_codes, load_nomenclature
from cns_exchange.xmlwrite import write_billing_file
from conftest import CREATED, PROVIDER, make_matricule

CODES = load_codes()
TODAY = date(2026, 11, 20)
HEADER = Header(PROVIDER, datetime(2026, 11, 20, 9, 0, tzinfo=timezone(timedelta(hours=1))), 1, "1")
COLUMNS = ["certificate_number", "matricule", "session_date", "act_code", "executing_provider", "last_name", "first_name"]


def _two_tables() -> Path:
    """A config folder with a second tariff table from 2026-07-01 (other prices, minors
    below 16): fee notes then cross a table change, and an age band that differs."""
    folder = Path(tempfile.mkdtemp(prefix="cnsx-tables-"))
    (folder / "2026-07-01.json").write_text(json.dumps({
        "valid_from": "2026-07-01", "source": "test table",
        "key_letter": {"name": "ZD", "value": "12.3457"},
        "coefficients": {"ZD11": "8", "ZD12": "10", "ZD13": "5", "ZD21": "5"},
        "patient_share": {"adult_percent": "15", "minor_percent": "5", "minor_below_age": 16},
    }))
    return folder


NOMENCLATURES = {"bundled": load_nomenclature(), "two tables": load_nomenclature([_two_tables()])}


def _fast(data: bytes, nomenclature, encoding: str = "utf-8") -> bytes | None:
    try:
        clean = fastbill.plan(data, encoding, CODES, nomenclature, PROVIDER, TODAY)
    except fastbill.NotClean:
        return None
    out = io.BytesIO()
    try:
        clean.write(out, HEADER)
    except fastbill.NotClean:
        return None
    finally:
        clean.close()
    return out.getvalue()


def _slow(data: bytes, nomenclature, encoding: str = "utf-8") -> tuple[bytes | None, list]:
    """(the document or None, the issues) by the row-by-row road."""
    try:
        notes, report = build.load_fee_notes(io.BytesIO(data), "in.csv", "csv", CODES, nomenclature, PROVIDER,
                                             TODAY, encoding)
    except InputError as exc:
        return None, exc.issues
    out = io.BytesIO()
    write_billing_file(out, HEADER, notes)
    return out.getvalue(), report.issues


def _csv(rows: list[list[str]], columns=COLUMNS, delimiter=",", newline="\n", bom=False, quote=False) -> bytes:
    def cell(value: str) -> str:
        return f'"{value}"' if quote else value

    text = newline.join(delimiter.join(cell(v) for v in row) for row in [columns, *rows]) + newline
    return (("\ufeff" if bom else "") + text).encode("utf-8")


# --- generated files ----------------------------------------------------------------------

SEQUENCES = {"initial": ["ZD11", "ZD12", "ZD13", "ZD13", "ZD13", "ZD13"], "extension": ["ZD21"] * 4}
BIRTHS = [date(1950, 3, 1), date(1990, 12, 31), date(2008, 8, 15), date(2010, 7, 20), date(2012, 2, 29),
          date(2020, 1, 1), date(2008, 11, 19)]


@st.composite
def session_files(draw):
    """(rows, faults): rows of a session file; ``faults`` names what was spoilt (empty: clean)."""
    rng = random.Random(draw(st.integers(0, 2**32)))
    faults = draw(st.lists(st.sampled_from([
        "check digit", "impossible birth date", "spaces in matricule", "order", "same day", "after today",
        "before every table", "bad date", "lower-case act", "bad provider", "bad certificate", "two patients",
        "bad name", "spaces around", "blank row", "short row", "same day across notes", "count exceeded",
    ]), max_size=2, unique=True))
    rows = []
    patients = draw(st.integers(1, 6))
    serial = 0
    for p in range(patients):
        serial += 1
        matricule = make_matricule(rng.choice(BIRTHS), serial)
        names = rng.choice([("", ""), ("Schmit", "Léa"), ("Müller-Weber", "Jean Paul"), ("", "Zoé")])
        start = date(2026, 1, 5) + timedelta(days=rng.randrange(280))
        kinds = ["initial"] + (["extension"] if rng.random() < 0.3 else [])
        day = start
        for k, kind in enumerate(kinds):
            cert = f"TPC-2026-{p:03d}{k}"
            acts = SEQUENCES[kind][:rng.randint(1, len(SEQUENCES[kind]))]
            for act in acts:
                provider = rng.choice([PROVIDER, "654321", ""])
                rows.append([cert, matricule, day.isoformat(), act, provider, *names])
                day += timedelta(days=rng.choice([1, 7, 14]))
                if day > TODAY:
                    day = TODAY
    rows = [r for i, r in enumerate(rows) if i == 0 or r[2] != rows[i - 1][2] or r[1] != rows[i - 1][1]]
    if draw(st.booleans()):
        rng.shuffle(rows)  # certificates interleaved, dates out of order within a note
    at = rng.randrange(len(rows))
    row = rows[at]
    for fault in faults:
        if fault == "check digit":
            row[1] = row[1][:12] + str((int(row[1][12]) + 1) % 10)
        elif fault == "impossible birth date":
            base = "19901301" + "123"
            from stdnum import luhn, verhoeff
            bad = base + luhn.calc_check_digit(base) + verhoeff.calc_check_digit(base)
            rows = [[r[0], bad, *r[2:]] if len(r) > 1 and r[1] == row[1] else r for r in rows]
            row = rows[at]
        elif fault == "spaces in matricule":
            row[1] = row[1][:4] + " " + row[1][4:]
        elif fault == "order":
            rows.append([row[0], row[1], "2026-11-19", "ZD11", PROVIDER, *row[5:]])
        elif fault == "same day":
            rows.append(list(row))
        elif fault == "after today":
            row[2] = "2026-11-21"
        elif fault == "before every table":
            row[2] = "2018-12-31"
        elif fault == "bad date":
            row[2] = rng.choice(["2026-02-30", "20260101", "2026-1-5", ""])
        elif fault == "lower-case act":
            row[3] = row[3].lower()
        elif fault == "bad provider":
            row[4] = rng.choice(["12345", "abcdef", "0123456"])
        elif fault == "bad certificate":
            row[0] = rng.choice(["-TPC", "TPC 1", "x" * 40])
        elif fault == "two patients":
            rows.append([row[0], make_matricule(date(1960, 1, 1), 999), "2026-11-18", row[3], PROVIDER, *row[5:]])
        elif fault == "bad name":
            row[5] = "Sch\x01mit"
        elif fault == "spaces around":
            column = rng.randrange(5)
            row[column] = " " + row[column] + " "
        elif fault == "blank row":
            rows.insert(rng.randrange(len(rows) + 1), [""])
        elif fault == "short row":
            row.pop()
        elif fault == "same day across notes":
            rows.append([row[0] + "X", row[1], row[2], "ZD21", PROVIDER, *row[5:]])
        elif fault == "count exceeded":
            cert = "TPC-2026-OVER"
            for d in range(5):
                rows.append([cert, row[1], f"2025-0{d + 1}-01", "ZD21", PROVIDER, *row[5:]])
    return rows, faults


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow],
          derandomize=os.environ.get("CNSX_HYPOTHESIS_RANDOM") is None)  # (CI: the same 300 files each run)
@given(files=session_files(), tables=st.sampled_from(sorted(NOMENCLATURES)), names=st.booleans(),
       shape=st.sampled_from(["plain", "semicolon-crlf-bom", "quoted"]))
def test_the_fast_road_writes_only_what_the_row_by_row_road_writes_without_an_issue(files, tables, names, shape):
    rows, faults = files
    columns = COLUMNS if names else COLUMNS[:5]
    rows = [r if len(r) == 1 else r[:len(columns) - (len(r) < len(COLUMNS))] for r in rows]  # (a short row stays short)
    data = _csv(rows, columns, **{"plain": {}, "semicolon-crlf-bom": {"delimiter": ";", "newline": "\r\n", "bom": True},
                                  "quoted": {"quote": True}}[shape])
    nomenclature = NOMENCLATURES[tables]
    fast = _fast(data, nomenclature)
    slow, issues = _slow(data, nomenclature)
    if fast is not None:
        assert issues == [] and fast == slow
    if not faults:  # a clean file of an ordinary shape takes the fast road
        assert slow is not None and issues == []
        assert fast == slow


def _bench_like(notes: int, seed: int = 7) -> list[list[str]]:
    rng = random.Random(seed)
    rows = []
    for n in range(notes):
        matricule = make_matricule(date(1940, 1, 1) + timedelta(days=rng.randrange(365 * 80)), n % 1000)
        start = date(2026, 1, 5) + timedelta(days=rng.randrange(250))
        for k, act in enumerate(("ZD11", "ZD12", "ZD13", "ZD13")):
            rows.append([f"TPC-2026-{n:06d}", matricule, (start + timedelta(days=7 * k)).isoformat(), act, PROVIDER])
    return rows


@pytest.mark.parametrize("tables", sorted(NOMENCLATURES))
def test_a_large_clean_file_gives_the_same_bytes_by_either_road(tables):
    # Several blocks of rows (fastbill._BLOCK), certificates interleaved across blocks.
    rows = _bench_like(9000)
    rows = rows[::2] + rows[1::2]
    data = _csv(rows, COLUMNS[:5])
    fast = _fast(data, NOMENCLATURES[tables])
    slow, issues = _slow(data, NOMENCLATURES[tables])
    assert issues == [] and fast is not None and fast == slow


def _matricule_of(born: date, serial: int = 1) -> str:
    return make_matricule(born, serial)


def _impossible_birth_date() -> str:
    from stdnum import luhn, verhoeff

    base = "19901301123"
    return base + luhn.calc_check_digit(base) + verhoeff.calc_check_digit(base)


def _for_note(rows, note: int, column: int, value: str):
    return [[*r[:column], value, *r[column + 1:]] if r[0] == f"TPC-2026-{note:06d}" else r for r in rows]


#: One fault each, on a clean file of 4-session fee notes (ZD11, ZD12, ZD13, ZD13, a week
#: apart): (what it does to the rows, the issue the row-by-row road reports, or None when
#: that road reads it without an issue: a shape only the row-by-row road reads).
FAULTS = {
    "check digit C1": (lambda r: _for_note(r, 1, 1, r[4][1][:11] + str((int(r[4][1][11]) + 1) % 10) + r[4][1][12]), "MAT02"),
    "check digit C2": (lambda r: _for_note(r, 1, 1, r[4][1][:12] + str((int(r[4][1][12]) + 1) % 10)), "MAT03"),
    "impossible birth date": (lambda r: _for_note(r, 1, 1, _impossible_birth_date()), "MAT04"),
    "old 11-digit matricule": (lambda r: _for_note(r, 1, 1, r[4][1][:11]), "MAT05"),
    "order": (lambda r: [*r[:4], [*r[4][:3], "ZD12", r[4][4]], [*r[5][:3], "ZD11", r[5][4]], *r[6:]], "TRT01"),
    "count exceeded": (lambda r: r + [[r[4][0], r[4][1], f"2026-11-{d:02d}", "ZD13", PROVIDER] for d in (16, 17, 18)], "TRT02"),
    "extension act on an initial treatment": (lambda r: r + [[r[4][0], r[4][1], "2026-11-18", "ZD21", PROVIDER]], "TRT03"),
    "same day": (lambda r: r[:5] + [[*r[4][:3], "ZD13", PROVIDER]] + r[5:], "TRT05"),
    "same day on another certificate": (lambda r: r + [["TPC-2026-EXT", r[4][1], r[4][2], "ZD21", PROVIDER]], "TRT05"),
    "after the creation date": (lambda r: r[:-1] + [[*r[-1][:2], "2026-11-21", *r[-1][3:]]], "TRT07"),
    "two patients": (lambda r: r + [[r[4][0], _matricule_of(date(1960, 1, 1), 999), "2026-11-18", "ZD13", PROVIDER]], "TRT09"),
    "before every tariff table": (lambda r: [[*r[0][:2], "2018-12-31", *r[0][3:]]] + r[1:], "NOM01"),
    "not a date": (lambda r: [[*r[0][:2], "2026-02-30", *r[0][3:]]] + r[1:], "IN004"),
    "a week date": (lambda r: [[*r[0][:2], date.fromisoformat(r[0][2]).strftime("%G-W%V-%u"), *r[0][3:]]] + r[1:], "IN004"),
    "a date without dashes": (lambda r: [[*r[0][:2], r[0][2].replace("-", ""), *r[0][3:]]] + r[1:], "IN004"),
    "no date": (lambda r: [[*r[0][:2], "", *r[0][3:]]] + r[1:], "IN003"),
    "unknown act": (lambda r: [[*r[0][:3], "ZD99", r[0][4]]] + r[1:], "ACT01"),
    "bad provider": (lambda r: [[*r[0][:4], "12345"]] + r[1:], "PRV01"),
    "bad certificate": (lambda r: _for_note(r, 2, 0, "TPC 2026"), "CRT01"),
    "short row": (lambda r: r[:3] + [r[3][:4]] + r[4:], "IN006"),
    "spaces in a matricule": (lambda r: _for_note(r, 1, 1, r[4][1][:4] + " " + r[4][1][4:]), None),
    "spaces around a value": (lambda r: [[" " + r[0][0] + " ", *r[0][1:]]] + r[1:], None),
    "lower-case act": (lambda r: [[*r[0][:3], r[0][3].lower(), r[0][4]]] + r[1:], None),
    "blank row": (lambda r: r[:6] + [[""]] + r[6:], None),
}


@pytest.mark.parametrize("fault", sorted(FAULTS), ids=str)
def test_each_fault_leaves_the_fast_road(fault):
    change, code = FAULTS[fault]
    nomenclature = NOMENCLATURES["bundled"]
    clean = _bench_like(6)
    assert _fast(_csv(clean, COLUMNS[:5]), nomenclature) is not None
    data = _csv(change([list(r) for r in clean]), COLUMNS[:5])
    slow, issues = _slow(data, nomenclature)
    assert _fast(data, nomenclature) is None
    if code is None:  # the row-by-row road reads it as the clean file
        assert issues == [] and slow == _slow(_csv(clean, COLUMNS[:5]), nomenclature)[0]
    else:
        assert code in {i.code for i in issues}, issues


@pytest.mark.parametrize("name, code", [("Sch\x01mit", "IN013"), ("x" * 101, "IN013"), (" Schmit", None)])
def test_a_name_the_fast_road_does_not_take(name, code):
    nomenclature = NOMENCLATURES["bundled"]
    clean = [[*r, "Schmit", "Léa"] for r in _bench_like(3)]
    spoilt = [list(r) for r in clean]
    spoilt[6][5] = name  # not the first row of its certificate: checked all the same
    slow, issues = _slow(_csv(spoilt), nomenclature)
    assert _fast(_csv(spoilt), nomenclature) is None
    assert _fast(_csv(clean), nomenclature) == _slow(_csv(clean), nomenclature)[0] is not None
    if code is None:
        assert issues == [] and slow == _slow(_csv(clean), nomenclature)[0]
    else:
        assert code in {i.code for i in issues}, issues


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32", "cp037"])
def test_an_encoding_whose_line_feed_is_not_0x0a_is_read_as_the_row_by_row_road_reads_it(run, tmp_path, encoding):
    source = tmp_path / "sessions.csv"
    source.write_bytes(_csv(_bench_like(3), COLUMNS[:5]).decode().encode(encoding))
    data = source.read_bytes()
    assert _fast(data, NOMENCLATURES["bundled"], encoding) is None
    r = run("build-invoice", str(source), "--encoding", encoding, "--provider", PROVIDER, "--created", CREATED)
    slow, issues = _slow(data, NOMENCLATURES["bundled"], encoding)
    assert r.exit_code == (0 if slow is not None else 3) and (slow is None or r.stdout_bytes == slow)


def test_a_matricule_worker_whose_parent_is_gone_ends():
    # Were the parent killed, nothing would read the worker's answer: the worker must get
    # EPIPE and end, not wait forever to write (it holds the input and stdout open).
    from stdnum import luhn

    rows = [[f"TPC-{n:06d}", f"19{n:09d}{luhn.calc_check_digit(f'19{n:09d}')}0", "2026-01-05", "ZD11", PROVIDER]
            for n in range(1, 40001)]  # wrong C2 digits: an answer of about 600 KB
    body = "\n".join(",".join(r) for r in rows) + "\n"
    checks = fastbill._Matricules(body, ",", 5, 1)
    checks.conn.close()  # as the parent's death would
    checks.proc.join(timeout=60)
    alive = checks.proc.is_alive()
    if alive:
        checks.proc.kill()
    checks.proc.join()
    assert not alive


# --- the matricule checks in a worker process --------------------------------------------

def _with_bad_matricule() -> bytes:
    rows = _bench_like(50)
    bad = rows[-1][1][:12] + str((int(rows[-1][1][12]) + 1) % 10)
    rows[-1][1] = bad
    for row in rows:
        if row[0] == rows[-1][0]:
            row[1] = bad
    return _csv(rows, COLUMNS[:5])


@pytest.mark.parametrize("worker", ["forked", "no fork", "died"])
def test_a_wrong_matricule_leaves_the_fast_road_however_it_is_checked(monkeypatch, worker):
    if worker == "no fork":
        monkeypatch.setattr(multiprocessing, "get_all_start_methods", lambda: ["spawn"])
    elif worker == "died":
        monkeypatch.setattr(fastbill, "_check_matricules", lambda *args: None)  # sends nothing: EOF
    nomenclature = NOMENCLATURES["bundled"]
    clean = _csv(_bench_like(50), COLUMNS[:5])
    assert _fast(clean, nomenclature) == _slow(clean, nomenclature)[0]
    assert _fast(_with_bad_matricule(), nomenclature) is None
    assert {i.code for i in _slow(_with_bad_matricule(), nomenclature)[1]} == {"MAT03"}


def test_the_header_totals_must_come_out_as_the_fee_notes_sums(monkeypatch):
    data = _csv(_bench_like(20), COLUMNS[:5])
    real = fastbill._totals
    monkeypatch.setattr(fastbill, "_totals", lambda *args: (lambda g, s: (g, s + 1))(*real(*args)))
    assert _fast(data, NOMENCLATURES["bundled"]) is None


def test_a_plan_given_up_stops_its_worker(monkeypatch):
    started = []
    real = fastbill._Matricules.__init__

    def init(self, *args):
        real(self, *args)
        started.append(self)

    monkeypatch.setattr(fastbill._Matricules, "__init__", init)
    rows = _bench_like(20)
    rows[3][2] = "2026-11-21"  # after the creation date: given up after the worker started
    with pytest.raises(fastbill.NotClean):
        fastbill.plan(_csv(rows, COLUMNS[:5]), "utf-8", CODES, NOMENCLATURES["bundled"], PROVIDER, TODAY)
    assert started and all(s.proc is None for s in started)


# --- the command takes the road it should -------------------------------------------------

def _no_row_by_row(*args, **kwargs):
    raise AssertionError("the row-by-row road was taken")


def test_build_invoice_takes_the_fast_road_for_a_clean_csv(run, examples, monkeypatch, tmp_path):
    expected = run("build-invoice", str(examples / "sessions.csv"), "--provider", PROVIDER, "--created", CREATED)
    assert expected.exit_code == 0, expected.stderr
    monkeypatch.setattr(build, "load_fee_notes", _no_row_by_row)
    r = run("build-invoice", str(examples / "sessions.csv"), "--provider", PROVIDER, "--created", CREATED)
    assert r.exit_code == 0, r.stderr
    assert r.stdout_bytes == expected.stdout_bytes and r.stderr == expected.stderr


def test_build_invoice_reports_by_the_row_by_row_road(run, tmp_path):
    rows = _bench_like(30)
    rows[7][1] = rows[7][1][:12] + str((int(rows[7][1][12]) + 1) % 10)  # MAT03 on line 9
    source = tmp_path / "sessions.csv"
    source.write_bytes(_csv(rows, COLUMNS[:5]))
    out = tmp_path / "out"
    out.mkdir()
    r = run("build-invoice", str(source), "--provider", PROVIDER, "--created", CREATED, "-o", str(out))
    assert r.exit_code == 3
    assert f"{source}:9" in r.stderr and "MAT03" in r.stderr and "matricule" in r.stderr
    assert list(out.iterdir()) == []


# --- with the certificates imported from the CNS -------------------------------------------

def _with_certificates(run, data: Path, *more: Path) -> Path:
    from conftest import EXAMPLES

    db = data / "practice.sqlite"
    for path in (EXAMPLES / "123456_DTP_20261120_000001.xml", EXAMPLES / "CNS_RTP_20261120_000002.xml", *more):
        assert run("import", "--db", str(db), str(path)).exit_code == 0
    return db


#: Changes to examples/sessions.csv (the rows whose certificates the examples' answers grant),
#: each with the issue the certificate check reports; None: allowed.
CERTIFICATE_FAULTS = {
    "as-is": (lambda t: t, None),
    "unknown certificate": (lambda t: t.replace("TPC-2026-000102", "TPC-2026-999999"), "CRT02"),
    "count exceeded": (lambda t: t + t.splitlines()[6].replace("2026-11-12", "2026-11-19") + "\n", "CRT03"),
    "outside the validity": (lambda t: t.replace("2026-10-20", "2026-10-01"), "CRT04"),
    "another patient": (lambda t: t.replace("1982080285657", "1974091186700"), "CRT05"),
}


@pytest.mark.parametrize("fault", sorted(CERTIFICATE_FAULTS), ids=str)
def test_the_certificate_check_is_the_same_by_either_road(run, tmp_path, monkeypatch, fault):
    from conftest import EXAMPLES

    monkeypatch.setenv("CNSX_DATA_DIR", str(tmp_path / "data"))
    db = _with_certificates(run, tmp_path / "data")
    change, code = CERTIFICATE_FAULTS[fault]
    source = tmp_path / "sessions.csv"
    granted = "".join(line for line in (EXAMPLES / "sessions.csv").read_text(encoding="utf-8").splitlines(True)
                      if "TPC-2026-000087" not in line)  # (an extension granted in an answer not among the examples)
    source.write_text(change(granted), encoding="utf-8")
    args = ("build-invoice", str(source), "--provider", PROVIDER, "--created", CREATED, "--db", str(db))
    fast = run(*args)
    with monkeypatch.context() as m:
        m.setattr(fastbill, "plan", lambda *a, **k: (_ for _ in ()).throw(fastbill.NotClean("forced")))
        slow = run(*args)
    assert (fast.exit_code, fast.stdout_bytes, fast.stderr) == (slow.exit_code, slow.stdout_bytes, slow.stderr)
    if code is None:
        assert fast.exit_code == 0
        monkeypatch.setattr(build, "load_fee_notes", _no_row_by_row)
        assert run(*args).stdout_bytes == fast.stdout_bytes  # by the fast road
    else:
        assert fast.exit_code == 3 and code in fast.stderr, fast.stderr


def test_sessions_billed_in_an_earlier_file_count_on_the_fast_road(run, tmp_path, monkeypatch):
    from conftest import EXAMPLES

    monkeypatch.setenv("CNSX_DATA_DIR", str(tmp_path / "data"))
    db = _with_certificates(run, tmp_path / "data", EXAMPLES / "123456_FAC_20261120_000001.xml")
    source = tmp_path / "sessions.csv"
    source.write_text("certificate_number,matricule,session_date,act_code\n"
                      "TPC-2026-000101,1974091186700,2026-11-17,ZD13\n"   # third ZD13 (two billed): allowed
                      "TPC-2026-000101,1974091186700,2026-11-18,ZD13\n")  # fourth: allowed
    args = ("build-invoice", str(source), "--provider", PROVIDER, "--created", CREATED, "--db", str(db))
    with monkeypatch.context() as m:
        m.setattr(build, "load_fee_notes", _no_row_by_row)
        assert run(*args).exit_code == 0
    with open(source, "a") as f:
        f.write("TPC-2026-000101,1974091186700,2026-11-19,ZD13\n")    # fifth: over
    r = run(*args)
    assert r.exit_code == 3 and "CRT03" in r.stderr and f"{source}:4" in r.stderr
