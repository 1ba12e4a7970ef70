"""import's streamed road for large payment statements (importing._StreamedRecords).

A worker process reads the lines while the database inserts them, and libxml2 checks the
file in a thread; the lines stand only if the check passes the file. Whatever the file, the
database must end up exactly as by the ordinary road (read everything, check, insert), and
the command must say the same: here both roads import the same files into two databases.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

import cns_exchange.importing as importing
import cns_exchange.validate as validate
from cns_exchange.model import FileRef, Header, PaymentLine
from cns_exchange.xmlwrite import write_payment_statement
from conftest import CREATED, PROVIDER, make_matricule

NOTES = 1500  # 6,000 lines: more than one chunk of the worker's (importing._CHUNK_RECORDS)


def _make_files(folder: Path, notes: int) -> tuple[Path, Path]:
    """A billing file of ``notes`` x 4 sessions (built by cnsx) and its payment statement."""
    from click.testing import CliRunner

    from cns_exchange.cli import cli

    rng = random.Random(3)
    rows = ["certificate_number,matricule,session_date,act_code"]
    for n in range(notes):
        matricule = make_matricule(date(1950, 1, 1) + timedelta(days=rng.randrange(20000)), n % 1000)
        start = date(2026, 1, 5) + timedelta(days=rng.randrange(250))
        rows += [f"TPC-2026-{n:06d},{matricule},{start + timedelta(days=7 * k)},{act}"
                 for k, act in enumerate(("ZD11", "ZD12", "ZD13", "ZD13"))]
    (folder / "sessions.csv").write_text("\n".join(rows) + "\n")
    r = CliRunner().invoke(cli, ["-q", "build-invoice", str(folder / "sessions.csv"), "--provider", PROVIDER,
                                 "--created", CREATED, "-o", str(folder), "--no-certificate-check"])
    assert r.exit_code == 0, r.output
    billing = next(folder.glob("*_FAC_*.xml"))
    lines = []
    for n in range(notes):
        for line_no, cns in enumerate((7822, 9778, 4888, 4888), 1):
            if rng.random() < 0.05:
                lines.append(PaymentLine(n + 1, line_no, f"TPC-2026-{n:06d}", cns, 0, "C04", "Séance facturée en double"))
            else:
                lines.append(PaymentLine(n + 1, line_no, f"TPC-2026-{n:06d}", cns, cns))
    payment = folder / "CNS_DEC_20261125_000001.xml"
    with open(payment, "wb") as out:
        write_payment_statement(out, Header("123456", datetime(2026, 11, 25, 6), 1, "1"),
                                FileRef(billing.name, hashlib.sha256(billing.read_bytes()).hexdigest()),
                                date(2026, 11, 25), "VIR-1", lines)
    return billing, payment


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> tuple[Path, Path]:
    return _make_files(tmp_path_factory.mktemp("streamed"), NOTES)


def _dump(db: Path) -> dict:
    conn = sqlite3.connect(db)
    try:
        return {
            "documents": conn.execute("SELECT id, kind, name, sha256, warnings, rejected FROM documents ORDER BY id").fetchall(),
            "payment_lines": conn.execute("SELECT * FROM payment_lines ORDER BY id").fetchall(),
            "sessions": conn.execute("SELECT id, paid, disputed, payment_line_id FROM sessions ORDER BY id").fetchall(),
            "month_totals": conn.execute("SELECT * FROM month_totals ORDER BY month").fetchall(),
        }
    finally:
        conn.close()


def _again(data: bytes, which: int, where: int) -> bytes:
    """``data`` with a copy of its first payment line, accepted for 12.34 EUR only, inserted at ``where``."""
    start = data.index(b"<Ligne>")
    line = data[start:data.index(b"</Ligne>", start) + len(b"</Ligne>")]
    accepted = line[line.index(b"<MontantAccepte>"):line.index(b"</MontantAccepte>")]
    line = line.replace(accepted, b"<MontantAccepte>12.34") + b"\n  "
    return data[:where] + line + data[where:]


EDITS = {
    "as-is": (lambda b: b, NOTES * 4),
    # Deviating from the schema near the end: the lines inserted do not stand; the lenient
    # road imports what it can read, with a warning.
    "deviating": (lambda b: b[:b.rindex(b"<NumeroTitre>") + 13] + b"not a certificate" + b[b.rindex(b"</NumeroTitre>"):],
                  NOTES * 4),
    # Written plainly but a number is not one: the worker stops at it.
    "not a number near the end": (lambda b: b[:b.rindex(b"<NumeroLigne>") + 13] + b"x" + b[b.rindex(b"<NumeroLigne>") + 14:],
                                  4096),
    # A line given again later in the statement (a later chunk, a later id): it decides.
    "a line given again in a later chunk": (lambda b: _again(b, 0, b.rindex(b"</JustificatifPaiement>")), NOTES * 4 + 1),
    # ... and within one chunk.
    "a line given again in the same chunk": (lambda b: _again(b, 0, b.index(b"<Ligne>", 5000)), NOTES * 4 + 1),
    # A comment: the worker finds it in the first block it reads, and stops.
    "comment near the end": (lambda b: b[:b.rindex(b"<Ligne>")] + b"<Ligne><!-- x -->" + b[b.rindex(b"<Ligne>") + 7:], 0),
    # Not plain in the header: the ordinary road from the start.
    "not plain header": (lambda b: b.replace(b"<ReferencePaiement>", b"<ReferencePaiement><!-- x -->", 1), 0),
    # Not well-formed near the end: unreadable by either road, into the errors folder.
    "not well-formed": (lambda b: b[:b.rindex(b"</Ligne>")] + b"</Lig>" + b[b.rindex(b"</Ligne>") + 8:], 4096),
}


@pytest.mark.parametrize("edit", sorted(EDITS), ids=str)
def test_the_streamed_road_leaves_the_database_as_the_ordinary_road(run, tmp_path, monkeypatch, files, edit):
    billing, payment = files
    change, lines_streamed = EDITS[edit]
    source = tmp_path / payment.name
    source.write_bytes(change(payment.read_bytes()))
    started = []

    read = []

    class Counted(importing._StreamedRecords):
        def __init__(self, *args):
            started.append(self)
            super().__init__(*args)

        def chunks(self):
            for values, once in super().chunks():
                read.extend(values)
                yield values, once

    monkeypatch.setattr(importing, "_StreamedRecords", Counted)
    outcomes = []
    for road, threshold in (("ordinary", 10**12), ("streamed", 0)):
        monkeypatch.setattr(validate, "PARALLEL_XSD_BYTES", threshold)
        monkeypatch.setenv("CNSX_DATA_DIR", str(tmp_path / road))
        db = tmp_path / road / "practice.sqlite"
        r = run("import", "--db", str(db), str(billing))
        assert r.exit_code == 0, r.stderr
        r = run("import", "--db", str(db), str(source))
        outcomes.append((r.exit_code, r.stderr.replace(str(tmp_path / road), "DATA"), _dump(db),
                         sorted(str(p.relative_to(tmp_path / road)) for p in (tmp_path / road).rglob("*.xml"))))
    assert outcomes[0] == outcomes[1]
    assert len(started) == 1  # the payment file by the streamed road (a billing file never is)
    assert len(read) >= lines_streamed and (lines_streamed or not read)
    assert all(s.proc is None for s in started) and not multiprocessing.active_children()
    if edit.startswith("a line given again"):  # the copy, imported after the original, decides
        assert 1234 in {paid for _, paid, _, _ in outcomes[1][2]["sessions"]}
    if edit == "as-is":
        assert outcomes[1][1] == "" and len(outcomes[1][2]["payment_lines"]) == NOTES * 4
    if edit == "deviating":  # every line read, then the XSD check's verdict: read again, with a warning
        assert len(read) == NOTES * 4 and "XSD01" in outcomes[1][1] and outcomes[1][0] == 0


def test_a_streamed_file_imported_twice_changes_nothing_and_leaves_no_worker(run, tmp_path, monkeypatch, files):
    billing, payment = files
    monkeypatch.setattr(validate, "PARALLEL_XSD_BYTES", 0)
    monkeypatch.setenv("CNSX_DATA_DIR", str(tmp_path / "data"))
    db = tmp_path / "data" / "practice.sqlite"
    for path in (billing, payment):
        assert run("import", "--db", str(db), str(path)).exit_code == 0
    before = _dump(db)
    r = run("import", "--db", str(db), str(payment))
    assert r.exit_code == 0 and "already imported" in r.stderr
    assert _dump(db) == before and not multiprocessing.active_children()


def test_sigkill_during_a_streamed_import_never_leaves_a_partial_statement(tmp_path):
    """Kill cnsx import of a payment statement large enough for the streamed road (over
    PARALLEL_XSD_BYTES) at random moments; after a re-run it is there whole, once, and no
    worker of a killed run is left behind."""
    notes = 6000
    billing, payment = _make_files(tmp_path, notes)
    assert payment.stat().st_size > validate.PARALLEL_XSD_BYTES
    env = dict(os.environ, CNSX_DATA_DIR=str(tmp_path / "data"), CNSX_CONFIG_DIR=str(tmp_path / "cfg"))
    db = tmp_path / "data" / "practice.sqlite"
    assert subprocess.run([sys.executable, "-m", "cns_exchange", "-q", "import", str(billing)], env=env).returncode == 0
    command = [sys.executable, "-m", "cns_exchange", "-q", "import", str(payment)]
    probe = tmp_path / "probe"
    shutil.copytree(tmp_path / "data", probe)
    t = time.perf_counter()
    assert subprocess.run(command, env=dict(env, CNSX_DATA_DIR=str(probe)), capture_output=True).returncode == 0
    full = time.perf_counter() - t
    rng = random.Random(11)
    for _ in range(10):
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        time.sleep(rng.uniform(0, full))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        conn = sqlite3.connect(db)
        lines, paid = conn.execute("SELECT count(*) FROM payment_lines").fetchone()[0], \
            conn.execute("SELECT count(*) FROM sessions WHERE paid IS NOT NULL").fetchone()[0]
        conn.close()
        assert (lines, paid) in ((0, 0), (notes * 4, notes * 4))
        deadline = time.monotonic() + 10  # a worker of the killed run ends (its pipe is gone)
        while _group_alive(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _group_alive(proc.pid)
    assert subprocess.run(command, env=env, capture_output=True).returncode == 0
    after, expected = _dump(db), _dump(probe / "practice.sqlite")
    assert after["payment_lines"] == expected["payment_lines"] and after["sessions"] == expected["sessions"]
    assert after["month_totals"] == expected["month_totals"]


def _group_alive(pgid: int) -> bool:
    """True if a process of the group still runs (a zombie waiting to be reaped does not)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":  # (state, ppid, pgrp, ...)
            return True
    return False
