#!/usr/bin/env python3
"""Benchmark of import and status. Prints figures; asserts nothing.

    python benchmarks/bench_import.py [--notes 50000] [--status-sessions 1000000]

- import of a payment statement of 4 x NOTES lines (after its billing file): lines/s, peak MB;
- cnsx status --json on a database holding STATUS-SESSIONS sessions (made with SQL).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import time
from datetime import date, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cns_exchange.domain.model import FileRef, Header, PaymentLine  # noqa: E402
from cns_exchange.documents.read import read_document  # noqa: E402
from cns_exchange.documents.write import write_payment_statement  # noqa: E402


def measured(cmd: list[str], env: dict) -> tuple[float, float]:
    wrapper = [sys.executable, "-c",
               "import resource,subprocess,sys,time;t=time.perf_counter();"
               "r=subprocess.run(sys.argv[1:],stdout=subprocess.DEVNULL,stderr=subprocess.PIPE);"
               "w=time.perf_counter()-t;sys.stderr.write(r.stderr.decode()[-1500:] if r.returncode else '');"
               "print(w, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss/1024)"] + cmd
    out = subprocess.run(wrapper, capture_output=True, text=True, env=env)
    sys.stderr.write(out.stderr)
    wall, peak = out.stdout.split()
    return float(wall), float(peak)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--notes", type=int, default=50000)
    ap.add_argument("--status-sessions", type=int, default=1_000_000)
    ap.add_argument("--workdir", default=str(ROOT / "benchmarks" / "data-import"))
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    work = Path(args.workdir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_foundation.py"), "--notes", str(args.notes),
                    "--workdir", str(work / "gen"), "--repeat", "1"], check=True, capture_output=True)
    billing = next((work / "gen" / "out").glob("*.xml"))
    rng = random.Random(1)
    lines = []
    with open(billing, "rb") as f:
        for item in read_document(f, "billing", "FichierFacturation"):
            if item.what == "item":
                for s in item.record.sessions:
                    if rng.random() < 0.02:
                        lines.append(PaymentLine(item.record.number, s.line_no, item.record.certificate_number, s.cns_share, 0,
                                                 "C04", "Séance facturée en double"))
                    else:
                        lines.append(PaymentLine(item.record.number, s.line_no, item.record.certificate_number,
                                                 s.cns_share, s.cns_share))
    payment = work / "CNS_DEC_20261125_000001.xml"
    sha = hashlib.sha256(billing.read_bytes()).hexdigest()
    with open(payment, "wb") as out:
        write_payment_statement(out, Header("123456", datetime(2026, 11, 25, 6), 1, "1"), FileRef(billing.name, sha),
                                date(2026, 11, 25), "VIR-1", lines)
    env = dict(os.environ, CNSX_DATA_DIR=str(work / "data"), CNSX_CONFIG_DIR=str(work / "cfg"))
    cnsx = [sys.executable, "-m", "cns_exchange", "-q", "import"]
    t_billing, _ = measured(cnsx + [str(billing)], env)
    n = len(lines)
    print(f"import billing file of {n} sessions: {t_billing:.2f} s ({n / t_billing:,.0f} sessions/s)")
    # The payment statement, --repeat times into a copy of the database holding the billing
    # file (best run reported: this machine's timings vary by tens of percent).
    shutil.copytree(work / "data", work / "data-billed")
    runs = []
    for _ in range(args.repeat):
        shutil.rmtree(work / "data")
        shutil.copytree(work / "data-billed", work / "data")
        os.sync()  # the copy's writeback is not the import's work
        runs.append(measured(cnsx + [str(payment)], env))
    t_payment = min(t for t, _ in runs)
    peak = max(p for _, p in runs)
    median = sorted(t for t, _ in runs)[len(runs) // 2]
    print(f"import payment statement of {n} lines: {t_payment:.2f} s, {n / t_payment:,.0f} lines/s (goal >= 50,000), "
          f"peak {peak:.0f} MB (goal <= 150); runs: {', '.join(f'{t:.2f} s' for t, _ in runs)}; "
          f"median {median:.2f} s = {n / median:,.0f} lines/s")

    # status on a large database, filled with SQL (the shape import writes)
    db = work / "status.sqlite"
    from cns_exchange.store.database import connect

    conn = connect(db)
    conn.execute("PRAGMA foreign_keys = OFF")  # synthetic rows: certificates point at no real answer
    total = args.status_sessions
    per_note = 4
    conn.execute("BEGIN")
    conn.execute("INSERT INTO documents (id, kind, name, sha256, provider, created_at, sequence, version, imported_at) "
                 "VALUES (1, 'billing', 'b.xml', 'x', '123456', '2026-01-01T00:00:00', 1, '1', '2026-01-01')")
    conn.executemany("INSERT INTO fee_notes (id, document_id, number, certificate_number, matricule, last_name, first_name) "
                     "VALUES (?, 1, ?, ?, ?, '', '')",
                     ((i, i, f"TPC-{i:07d}", f"19700101{i % 1000:03d}00") for i in range(1, total // per_note + 1)))
    # Each session counted once (database version 4): its identity, counted = 1.
    conn.executemany("INSERT INTO sessions (fee_note_id, document_id, line_no, session_date, act, executing, gross, "
                     "patient_share, cns_share, identity, counted) VALUES (?1, 1, ?2, ?3, 'ZD13', '123456', 5555, 667, 4888, "
                     "printf('TPC-%07d|19700101%03d00|%s|ZD13', ?1, ?1 % 1000, ?3), 1)",
                     ((i // per_note + 1, i % per_note + 1, f"2025-{(i % 12) + 1:02d}-{(i % 28) + 1:02d}")
                      for i in range(total)))
    # (Each certificate's last_session is set by the database as it is inserted: version 7.)
    conn.executemany("INSERT INTO certificates (number, answer_id, matricule, valid_from, valid_to, acts, sessions_authorised, "
                     "sessions_billed) VALUES (?, 1, ?, '2026-01-01', '2027-12-31', 'ZD13:4', 4, 4)",
                     ((f"TPC-{i:07d}", f"19700101{i % 1000:03d}00") for i in range(1, total // per_note + 1)))
    # One request per certificate, each answered (the fee notes carry no names: status names
    # them from these requests, database.REQUEST_NAMES).
    conn.execute("INSERT INTO documents (id, kind, name, sha256, provider, created_at, sequence, version, imported_at) "
                 "VALUES (2, 'request', 'r.xml', 'y', '123456', '2026-01-01T00:00:00', 1, '1', '2026-01-01')")
    conn.executemany("INSERT INTO requests (id, document_id, provider, request_ref, matricule, last_name, first_name, "
                     "prescriber, prescription_date, pathologies, treatment, acts, pdf_name, pdf_sha256) "
                     "VALUES (?1, 2, '123456', printf('REQ-%07d', ?1), ?2, printf('Name%d', ?1), 'First', '12345678', "
                     "'2025-12-01', 'D01', 'initial', 'ZD13:4', 'p.pdf', '')",
                     ((i, f"19700101{i % 1000:03d}00") for i in range(1, total // per_note + 1)))
    conn.executemany("INSERT INTO answers (document_id, request_ref, request_id, matricule, certificate_number, refused) "
                     "VALUES (2, printf('REQ-%07d', ?1), ?1, '', '', 0)", ((i,) for i in range(1, total // per_note + 1)))
    # Nine sessions in ten paid, and the month totals import keeps (database.md, version 3).
    conn.execute("UPDATE sessions SET paid = cns_share WHERE id % 10 <> 0")
    conn.execute("INSERT INTO month_totals (month, sessions, billed, paid, disputed, gross, patient_share) "
                 "SELECT substr(session_date, 1, 7), count(*), sum(cns_share), coalesce(sum(paid), 0), 0, sum(gross), "
                 "sum(patient_share) FROM sessions GROUP BY 1")
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.close()
    best = min(measured([sys.executable, "-m", "cns_exchange", "status", "--json", "--db", str(db)], env)[0]
               for _ in range(3))
    print(f"cnsx status --json on {total:,} sessions: {best:.2f} s (goal < 1)")


if __name__ == "__main__":
    main()
