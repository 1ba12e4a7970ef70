#!/usr/bin/env python3
"""Regenerate the example documents in examples/ (one of each of the five kinds, and a billing
file of schema v2).

The request and billing files are built by cnsx itself from requests.csv and sessions.csv
(created 2026-11-20: schema v1), and from sessions-2026-12.csv (created 2026-12-21: schema
v2, each fee note with the prescription date it knows);
the three return files (acknowledgement, answers, payment statement) are written with cnsx's
writers as the CNS would answer those two files. tests/test_examples.py checks that the
committed files are what this script produces: run it after changing a writer or the data.

    python examples/regenerate.py
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from datetime import date, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from cns_exchange.domain.model import Acknowledgement, Answer, Anomaly, Certificate, FileRef, Header, PaymentLine  # noqa: E402
from cns_exchange.domain.naming import make_name  # noqa: E402
from cns_exchange.documents.read import read_document  # noqa: E402
from cns_exchange.documents.write import write_acknowledgement, write_answers, write_payment_statement  # noqa: E402

PROVIDER = "123456"
CREATED = "2026-11-20T09:00:00+01:00"
REQUEST = make_name(PROVIDER, "request", date(2026, 11, 20), 1)
BILLING = make_name(PROVIDER, "billing", date(2026, 11, 20), 1)
CREATED_V2 = "2026-12-21T09:00:00+01:00"
BILLING_V2 = make_name(PROVIDER, "billing", date(2026, 12, 21), 1)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build() -> None:
    for command, source, name, created in (("build-request", "requests.csv", REQUEST, CREATED),
                                           ("build-invoice", "sessions.csv", BILLING, CREATED),
                                           ("build-invoice", "sessions-2026-12.csv", BILLING_V2, CREATED_V2)):
        target = HERE / name
        target.unlink(missing_ok=True)
        subprocess.run([sys.executable, "-m", "cns_exchange", "-q", command, str(HERE / source), "--provider", PROVIDER,
                        "--created", created, "--sequence", "1", "-o", str(target)], check=True)


def returns() -> None:
    cns_time = datetime.fromisoformat("2026-11-20T09:05:00+01:00")
    # Acknowledgement of the billing file.
    header = Header(PROVIDER, cns_time, 1, "1")
    with open(HERE / make_name("CNS", "ack", cns_time.date(), 1), "wb") as out:
        write_acknowledgement(out, header, Acknowledgement(BILLING, sha256(HERE / BILLING), cns_time, True))
    # Answers to the request file: two certificates and a refused extension.
    answers = [
        Answer("REQ-0001", "1974091186700", Certificate("TPC-2026-000101", date(2026, 10, 15), date(2027, 4, 14),
                                                        [("ZD11", 1), ("ZD12", 1), ("ZD13", 4)])),
        Answer("REQ-0002", "1982080285657", Certificate("TPC-2026-000102", date(2026, 11, 2), date(2027, 5, 1),
                                                        [("ZD11", 1), ("ZD12", 1), ("ZD13", 4)])),
        Answer("REQ-0003", "2001120308757", refusal=[Anomaly("R03", "Prolongation sans traitement initial complet",
                                                             "/DemandesTitrePriseEnCharge/Demande[3]/TypeTraitement")]),
    ]
    with open(HERE / make_name("CNS", "answers", cns_time.date(), 2), "wb") as out:
        write_answers(out, Header(PROVIDER, cns_time, 2, "1"), FileRef(REQUEST, sha256(HERE / REQUEST)), answers)
    # Payment statement of the billing file: every line paid but one, disputed as over the count.
    lines = []
    with open(HERE / BILLING, "rb") as f:
        for item in read_document(f, "billing", "FichierFacturation"):
            if item.what != "item":
                continue
            note = item.record
            for s in note.sessions:
                if note.certificate_number == "TPC-2026-000087" and s.line_no == 2:
                    lines.append(PaymentLine(note.number, s.line_no, note.certificate_number, s.cns_share, 0,
                                             "C01", "Nombre de séances autorisées dépassé"))
                else:
                    lines.append(PaymentLine(note.number, s.line_no, note.certificate_number, s.cns_share, s.cns_share))
    paid = datetime.fromisoformat("2026-11-25T06:00:00+01:00")
    with open(HERE / make_name("CNS", "payment", paid.date(), 1), "wb") as out:
        write_payment_statement(out, Header(PROVIDER, paid, 1, "1"), FileRef(BILLING, sha256(HERE / BILLING)),
                                date(2026, 11, 25), "VIR-2026-11-25-0042", lines)


if __name__ == "__main__":
    build()
    returns()
    for path in sorted(HERE.glob("*.xml")):
        print(path.relative_to(HERE.parent))
