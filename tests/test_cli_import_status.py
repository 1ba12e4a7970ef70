"""import and status: lenient import, idempotence, matching in any order, rows round trip."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import CREATED, EXAMPLES, PROVIDER, ROOT

REQUEST = EXAMPLES / "123456_DTP_20261120_000001.xml"
BILLING = EXAMPLES / "123456_FAC_20261120_000001.xml"
ACK = EXAMPLES / "CNS_ACR_20261120_000001.xml"
ANSWERS = EXAMPLES / "CNS_RTP_20261120_000002.xml"
PAYMENT = EXAMPLES / "CNS_DEC_20261125_000001.xml"


def _count(db, table):
    """Rows in ``table``; 0 if the table is not there yet (a run killed before its first
    migration committed leaves an empty database file)."""
    conn = sqlite3.connect(db)
    try:
        if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone() is None:
            return 0
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    finally:
        conn.close()


def test_import_examples_then_status(run, data):
    r = run("import", str(REQUEST), str(BILLING), str(ACK), str(ANSWERS), str(PAYMENT))
    assert r.exit_code == 0, r.stderr
    assert r.stdout == ""
    assert "note:" not in r.stderr  # everything matched
    s = run("status", "--json")
    assert s.exit_code == 0, s.stderr
    status = json.loads(s.stdout)
    assert status["requests_awaiting_answer"] == []
    assert [(x["request_ref"], x["reasons"][:3]) for x in status["refused_requests"]] == [("REQ-0003", "R03")]
    certs = {c["certificate"]: (c["sessions_authorised"], c["sessions_billed"], c["sessions_remaining"]) for c in status["certificates"]}
    assert certs == {"TPC-2026-000101": (6, 4, 2), "TPC-2026-000102": (6, 2, 4)}
    assert status["billed_awaiting_payment"] == []
    assert [(d["certificate"], d["reason_code"], d["billed"], d["accepted"]) for d in status["disputed"]] == [
        ("TPC-2026-000087", "C01", "55.55", "0.00")]
    months = {m["month"]: (m["sessions"], m["billed"], m["paid"], m["disputed"]) for m in status["per_month"]}
    assert months == {"2026-10": (2, "176.00", "176.00", "0.00"), "2026-11": (6, "384.86", "329.31", "55.55")}
    one = json.loads(run("status", "--json", "--certificate", "TPC-2026-000102").stdout)
    assert [c["certificate"] for c in one["certificates"]] == ["TPC-2026-000102"]
    assert one["disputed"] == []
    # One case shows its own patient only: REQ-0003 (refused) is another patient's.
    assert one["refused_requests"] == [] and one["requests_awaiting_answer"] == []
    refused = status["refused_requests"][0]["matricule"]
    case = json.loads(run("status", "--json", "--patient", refused).stdout)
    assert [x["request_ref"] for x in case["refused_requests"]] == ["REQ-0003"]
    unknown = json.loads(run("status", "--json", "--certificate", "TPC-2099-999999").stdout)
    assert all(rows == [] for rows in unknown.values()), unknown


def test_reimport_changes_nothing(run, data):
    assert run("import", str(BILLING), str(PAYMENT)).exit_code == 0
    db = data / "practice.sqlite"
    before = [_count(db, t) for t in ("documents", "sessions", "payment_lines")]
    r = run("import", str(BILLING), str(PAYMENT))
    assert r.exit_code == 0
    assert r.stderr.count("already imported") == 2
    assert [_count(db, t) for t in ("documents", "sessions", "payment_lines")] == before == [2, 8, 8]


def test_returns_before_what_they_answer_are_matched_later(run, data):
    r = run("import", str(PAYMENT), str(ANSWERS))
    assert r.exit_code == 0
    assert "1 payment statement matches no billing file" in r.stderr and "3 answers match no request" in r.stderr
    status = json.loads(run("status", "--json").stdout)
    assert status["disputed"] == []  # not linked to a session yet
    r = run("import", str(BILLING), str(REQUEST))
    assert r.exit_code == 0
    conn = sqlite3.connect(data / "practice.sqlite")
    assert conn.execute("SELECT count(*) FROM answers WHERE request_id IS NULL").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM payment_lines WHERE session_id IS NULL").fetchone()[0] == 0
    status = json.loads(run("status", "--json").stdout)
    assert [d["reason_code"] for d in status["disputed"]] == ["C01"]
    assert status["billed_awaiting_payment"] == []


def test_billed_sessions_awaiting_payment_and_requests_awaiting_answers(run, data):
    assert run("import", str(REQUEST), str(BILLING)).exit_code == 0
    status = json.loads(run("status", "--json").stdout)
    assert len(status["billed_awaiting_payment"]) == 8
    assert sorted(r["request_ref"] for r in status["requests_awaiting_answer"]) == ["REQ-0001", "REQ-0002", "REQ-0003"]
    assert all(isinstance(r["age_days"], int) for r in status["requests_awaiting_answer"])


@pytest.mark.parametrize("source, command", [(BILLING, "build-invoice"), (REQUEST, "build-request")])
def test_rows_build_the_same_document_again(run, tmp_path, source, command):
    r = run("import", "--no-db", "--csv", str(source))
    assert r.exit_code == 0, r.stderr
    work = tmp_path / "work"
    work.mkdir()
    for pdf in EXAMPLES.glob("123456_ORD_*.pdf"):
        shutil.copy(pdf, work)
    rows = work / "rows.csv"
    rows.write_text(r.stdout, "utf-8")
    again = run(command, str(rows), "--provider", PROVIDER, "--created", CREATED, "--sequence", "1")
    assert again.exit_code == 0, again.stderr
    assert again.stdout_bytes == source.read_bytes()
    assert not (tmp_path / "data").exists()  # --no-db touched nothing


def test_no_db_from_stdin_leaves_nothing_behind(run, tmp_path):
    """--no-db reading a document on stdin keeps no copy where a later import would take it."""
    r = run("import", "--no-db", "--csv", "-", input=PAYMENT.read_bytes())
    assert r.exit_code == 0, r.stderr
    assert len(r.stdout.splitlines()) == 9
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").rglob("*.xml"))


def test_a_document_on_stdin_over_the_limit_leaves_nothing_behind(run, data, monkeypatch):
    """stdin is copied a chunk at a time, bounded by max_xml_bytes: beyond it, exit 3 and no
    file (not even the hidden temp file) in the inbox."""
    monkeypatch.setenv("CNSX_MAX_XML_BYTES", "1000")
    for document in (PAYMENT.read_bytes(), b"\n".join([json.dumps({"path": str(PAYMENT)}).encode()] * 40)):
        assert len(document) > 1000
        r = run("import", "-", input=document)
        assert r.exit_code == 3, r.stderr
        assert "<stdin>: more than 1000 bytes, over the limit" in r.stderr and r.stdout == ""
        assert list((data / "inbox").iterdir()) == []
    assert not (data / "practice.sqlite").exists()


def test_a_document_on_stdin_is_imported_once_and_leaves_no_temp_file(run, data):
    first = run("import", "-", input=PAYMENT.read_bytes())
    assert first.exit_code == 0, first.stderr
    same = run("import", "-", input=PAYMENT.read_bytes())
    assert same.exit_code == 0 and "already imported, nothing changed" in same.stderr
    assert list((data / "inbox").iterdir()) == []   # archived from there; no temp file left
    assert [p.name for p in (data / "archive").glob("stdin-*.xml")] == [
        f"stdin-{hashlib.sha256(PAYMENT.read_bytes()).hexdigest()[:16]}.xml"]


def test_a_list_line_that_is_not_utf8_is_named(run, data):
    lines = json.dumps({"path": str(ACK)}).encode() + b"\n" + b'{"path": "caf\xe9.xml"}\n'
    r = run("import", "-", input=lines)
    assert r.exit_code == 3, r.stderr
    assert "<stdin>:2: not a line of cnsx fetch" in r.stderr and "Traceback" not in r.stderr
    assert not (data / "practice.sqlite").exists()   # nothing imported: the list is read first


def test_an_inbox_file_taken_by_another_run_is_skipped(run, data, tmp_path, monkeypatch):
    """The inbox is listed before the lock is ours: a file another run imported meanwhile is
    skipped with a line, and the others are imported."""
    inbox = data / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    shutil.copy(ACK, inbox)
    r = run("import", input=b"")  # the inbox, nothing vanished: a baseline
    assert r.exit_code == 0, r.stderr
    from cns_exchange.store import inbox as sources

    listed = sources.import_sources

    def vanishing(files, stdin, settings, spool_dir=None):
        found = listed(files, stdin, settings, spool_dir)
        (inbox / BILLING.name).unlink()  # what another run does after this listing
        return found

    shutil.copy(BILLING, inbox)
    shutil.copy(PAYMENT, inbox)
    monkeypatch.setattr(sources, "import_sources", vanishing)
    r = run("import")
    assert r.exit_code == 0, r.stderr
    assert f"{BILLING.name}: no longer in the inbox" in r.stderr
    assert not (inbox / PAYMENT.name).exists() and (data / "archive" / PAYMENT.name).exists()


def test_json_and_ndjson_rows_for_every_kind(run):
    r = run("import", "--no-db", "--ndjson", str(ACK), str(ANSWERS), str(PAYMENT))
    assert r.exit_code == 0
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert {row["kind"] for row in rows} == {"ack", "answers", "payment"}
    assert sum(row["kind"] == "payment" for row in rows) == 8
    paid = [row for row in rows if row["kind"] == "payment"]
    assert {(row["paid_on"], row["payment_reference"], row["billing_file"]) for row in paid} == {
        ("2026-11-25", "VIR-2026-11-25-0042", "123456_FAC_20261120_000001.xml")}   # for the accountant
    assert [row["status"] for row in rows if row["kind"] == "ack"] == ["accepted"]
    r = run("import", "--no-db", "--json", str(ANSWERS))
    doc = json.loads(r.stdout)
    assert doc["kind"] == "answers" and len(doc["rows"]) == 3


def test_deviating_file_imports_what_it_can(run, data, tmp_path):
    text = PAYMENT.read_text("utf-8")
    lines = text.splitlines(keepends=True)
    index = next(i for i, line in enumerate(lines) if "<MontantFacture>" in line)
    lines[index] = lines[index].replace("<MontantFacture>", "<MontantFacture>x")
    bad = tmp_path / PAYMENT.name
    bad.write_text("".join(lines), "utf-8")
    r = run("import", str(bad))
    assert r.exit_code == 0, r.stderr
    assert f"{bad}:{index + 1}" in r.stderr and "warning XSD01" in r.stderr
    assert "not imported" in r.stderr
    assert _count(data / "practice.sqlite", "payment_lines") == 7


def test_schema_warnings_do_not_repeat_a_matricule(run, data, tmp_path):
    """An XSD message about a Matricule names the line and element, never the value."""
    text = ANSWERS.read_text("utf-8")
    matricule = text.split("<Matricule>")[1].split("<")[0]
    broken = matricule[:-1] + "X"
    bad = tmp_path / ANSWERS.name
    bad.write_text(text.replace(f"<Matricule>{matricule}<", f"<Matricule>{broken}<", 1), "utf-8")
    r = run("import", str(bad))
    assert "warning XSD01" in r.stderr and "Matricule" in r.stderr, r.stderr
    assert broken not in r.stderr and "(not shown)" in r.stderr, r.stderr
    v = run("validate", str(bad))
    assert v.exit_code == 3 and "Matricule" in v.stderr and broken not in v.stderr, v.stderr


def test_unreadable_file_goes_to_errors_with_reason(run, data, tmp_path):
    inbox = data / "inbox"
    inbox.mkdir(parents=True)
    broken = inbox / "CNS_DEC_20261125_000009.xml"
    broken.write_text("<JustificatifPaiement><EnTete>")
    good = inbox / ACK.name
    shutil.copy(ACK, good)
    r = run("import")
    assert r.exit_code == 3
    assert f"cannot be read; moved to {data / 'errors' / broken.name}" in r.stderr
    assert not broken.exists() and not good.exists()  # inbox emptied
    assert (data / "errors" / broken.name).exists()
    why = (data / "errors" / f"{broken.name}.why.txt").read_text()
    assert f"{broken}:1: error XML01: " in why and "\n    hint: " in why   # as the terminal shows it
    assert (data / "archive" / ACK.name).read_bytes() == ACK.read_bytes()
    sidecar = (data / "archive" / f"{ACK.name}.sha256").read_text()
    import hashlib

    assert sidecar.split()[0] == hashlib.sha256(ACK.read_bytes()).hexdigest()
    assert _count(data / "practice.sqlite", "documents") == 1


def test_fetch_pipes_into_import(run, data, tmp_path, isolated_config):
    root = tmp_path / "dropbox"
    (root / "upload").mkdir(parents=True)
    (root / "download").mkdir()
    for f in (ACK, ANSWERS, PAYMENT):
        shutil.copy(f, root / "download")
    (isolated_config / "config.toml").write_text(f'remote = "file://{root}"\n')
    fetched = run("fetch")
    assert fetched.exit_code == 0
    r = run("import", "-", input=fetched.stdout)
    assert r.exit_code == 0, r.stderr
    assert _count(data / "practice.sqlite", "documents") == 3
    assert list((data / "inbox").glob("*.xml")) == []
    conn = sqlite3.connect(data / "practice.sqlite")
    paths = [row[0] for row in conn.execute("SELECT local_path FROM fetched")]
    assert all("/archive/" in p for p in paths)


def test_sigkill_during_import_never_leaves_a_partial_document(tmp_path):
    """Kill cnsx import at random moments; after a re-run each document is there whole, once."""
    notes = 3000
    gen = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_foundation.py"), "--notes", str(notes),
                          "--workdir", str(tmp_path / "gen"), "--repeat", "1"], capture_output=True, text=True)
    assert gen.returncode == 0, gen.stderr
    big = next((tmp_path / "gen" / "out").glob("*.xml"))
    env = dict(os.environ, CNSX_DATA_DIR=str(tmp_path / "data"), CNSX_CONFIG_DIR=str(tmp_path / "cfg"))
    command = [sys.executable, "-m", "cns_exchange", "-q", "import", str(big)]
    t = time.perf_counter()
    assert subprocess.run(command, env=dict(env, CNSX_DATA_DIR=str(tmp_path / "probe")), capture_output=True).returncode == 0
    full = time.perf_counter() - t
    rng = random.Random(7)
    db = tmp_path / "data" / "practice.sqlite"
    for _ in range(10):
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0, full))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if db.exists():
            documents, sessions = _count(db, "documents"), _count(db, "sessions")
            assert (documents, sessions) in ((0, 0), (1, notes * 4))
    assert subprocess.run(command, env=env, capture_output=True).returncode == 0
    assert (_count(db, "documents"), _count(db, "fee_notes"), _count(db, "sessions")) == (1, notes, notes * 4)


def test_build_invoice_checks_sessions_against_imported_certificates(run, data, tmp_path):
    assert run("import", str(REQUEST), str(ANSWERS)).exit_code == 0
    rows = tmp_path / "s.csv"
    rows.write_text("certificate_number,matricule,session_date,act_code\n"
                    "TPC-2026-000101,1974091186700,2026-10-20,ZD11\n"     # good
                    "TPC-2026-999999,1974091186700,2026-10-27,ZD12\n"     # unknown certificate
                    "TPC-2026-000102,1974091186700,2026-11-05,ZD11\n"     # another patient's certificate
                    "TPC-2026-000101,1974091186700,2026-09-01,ZD12\n")    # before the validity
    r = run("build-invoice", str(rows), "--provider", PROVIDER, "--created", CREATED)
    assert r.exit_code == 3
    assert f"{rows}:3 [certificate_number]" in r.stderr and "CRT02" in r.stderr
    assert f"{rows}:4 [certificate_number]" in r.stderr and "CRT05" in r.stderr
    assert f"{rows}:5 [certificate_number]" in r.stderr and "CRT04" in r.stderr
    assert ":2 [certificate_number]" not in r.stderr  # (line 2 breaks only the order rule: ZD12 on 09-01 precedes it)
    ok = run("build-invoice", str(rows), "--provider", PROVIDER, "--created", CREATED, "--no-certificate-check")
    assert ok.exit_code == 3 and "CRT0" not in ok.stderr  # only the order rule (TRT01) is left


def test_build_invoice_counts_sessions_already_billed(run, data, tmp_path, current_tariffs):
    assert run("import", str(REQUEST), str(ANSWERS), str(BILLING)).exit_code == 0
    rows = tmp_path / "s.csv"
    rows.write_text("certificate_number,matricule,session_date,act_code\n"
                    "TPC-2026-000101,1974091186700,2026-11-17,ZD13\n"     # third ZD13: fine (4 authorised)
                    "TPC-2026-000101,1974091186700,2026-11-18,ZD13\n"     # fourth: fine
                    "TPC-2026-000101,1974091186700,2026-11-19,ZD13\n")    # fifth: over
    r = run("build-invoice", str(rows), "--provider", PROVIDER, "--created", CREATED)
    assert r.exit_code == 3
    assert f"{rows}:4 [certificate_number]" in r.stderr and "CRT03" in r.stderr
    assert f"{rows}:2 [" not in r.stderr and f"{rows}:3 [" not in r.stderr


def test_a_run_killed_after_archiving_leaves_no_copy_without_mode_or_sidecar(run, data):
    """A run killed right after putting the copy in the archive (before chmod and sidecar):
    the next run of the same file makes the copy private and writes its sidecar."""
    assert run("import", str(ACK)).exit_code == 0
    kept = data / "archive" / ACK.name
    kept.chmod(0o644)
    Path(f"{kept}.sha256").unlink()
    r = run("import", str(ACK))
    assert r.exit_code == 0 and "already imported" in r.stderr, r.stderr
    assert kept.stat().st_mode & 0o777 == 0o600
    assert Path(f"{kept}.sha256").read_text().split()[0] == hashlib.sha256(ACK.read_bytes()).hexdigest()


def test_the_archive_copy_must_be_the_file_that_was_read(tmp_path):
    # The copy kept as evidence is checked against the SHA-256 of what was imported: a file
    # changed in between is refused, and nothing half-written or wrong is left in the archive.
    from cns_exchange.errors import InputError
    from cns_exchange.store.importing import _keep

    source = tmp_path / PAYMENT.name
    source.write_bytes(PAYMENT.read_bytes())
    archive = tmp_path / "archive"
    with pytest.raises(InputError, match="changed while cnsx read it"):
        _keep(source, archive, hashlib.sha256(b"what was read").hexdigest(), move=False)
    assert list(archive.iterdir()) == [] and source.exists()
    kept = _keep(source, archive, hashlib.sha256(source.read_bytes()).hexdigest(), move=False)
    assert kept.read_bytes() == source.read_bytes() and oct(kept.stat().st_mode & 0o777) == "0o600"
    assert sorted(p.name for p in archive.iterdir()) == [PAYMENT.name, PAYMENT.name + ".sha256"]


def test_the_reason_of_an_unreadable_file_in_french(run, data, monkeypatch):
    """NAME.why.txt is read by a person: in the user's language, like the terminal."""
    monkeypatch.setenv("LANG", "fr_LU.UTF-8")
    inbox = data / "inbox"
    inbox.mkdir(parents=True)
    broken = inbox / "CNS_DEC_20261125_000009.xml"
    broken.write_text("<JustificatifPaiement><EnTete>")
    assert run("import").exit_code == 3
    why = (data / "errors" / f"{broken.name}.why.txt").read_text("utf-8")
    assert f"{broken}:1 : erreur XML01 : " in why and "\n    conseil : " in why, why
    assert "hint" not in why
