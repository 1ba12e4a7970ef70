"""status: what is asked, granted, used, billed, paid and disputed, from the practice database.

Each section is one SQL query over indexed tables, so that a database of a million sessions
answers within a second. Results are plain dicts (printed as tables, JSON or CSV by the CLI,
or drawn as a PDF report by the pdf module). A printed report names the SHA-256 of the
canonical JSON of the sections it shows (:func:`data_sha256`), so that its figures can be tied
to the data they were printed from.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from datetime import date

from cns_exchange import convention
from cns_exchange.pdf import show_matricule


def _rows(conn: sqlite3.Connection, sql: str, params: tuple = ()) -> list[dict]:
    return [dict(r) for r in conn.execute(sql, params)]


#: The patient's name of certificate ``c`` (SQL): as the request gave it, else as a fee note
#: billed on it gave it (a certificate whose request is not in the database), else ''.
CERTIFICATE_PATIENT = """coalesce(
    (SELECT r.last_name || ' ' || r.first_name FROM answers a JOIN requests r ON r.id = a.request_id WHERE a.id = c.answer_id),
    (SELECT f.last_name || ' ' || f.first_name FROM fee_notes f WHERE f.certificate_number = c.number LIMIT 1), '')"""


def _with_patient(conn: sqlite3.Connection, row: dict) -> dict:
    """``row`` (of a certificate, key 'certificate') with the patient's name after its matricule."""
    name = conn.execute(f"SELECT {CERTIFICATE_PATIENT} FROM certificates c WHERE c.number = ?",
                        (row["certificate"],)).fetchone()
    out: dict = {}
    for key, value in row.items():
        out[key] = value
        if key == "matricule":
            out["patient"] = name[0] if name else ""
    return out


def status(conn: sqlite3.Connection, today: date, certificate: str | None = None,
           patient: str | None = None, year: int | None = None) -> dict[str, list[dict]]:
    """Return the status sections, optionally for one certificate or one patient (matricule);
    with ``year``, also the IT flat rate of that year (section ``it_flat_rate``, one row)."""
    cert_filter = ""
    params: tuple = ()
    if certificate:
        cert_filter, params = " AND c.number = ?", (certificate,)
    elif patient:
        cert_filter, params = " AND c.matricule = ?", (patient,)
    # Requests and refusals of one case are those of its patient (never anyone else's).
    person = patient
    if certificate:
        row = (conn.execute("SELECT matricule FROM certificates WHERE number = ?", (certificate,)).fetchone()
               or conn.execute("SELECT matricule FROM fee_notes WHERE certificate_number = ? LIMIT 1",
                               (certificate,)).fetchone())
        person = row[0] if row else "\x00"  # an unknown certificate: no one's requests
    sections: dict[str, list[dict]] = {}
    sections["requests_awaiting_answer"] = _rows(conn, f"""
        SELECT r.request_ref, r.matricule, r.last_name || ' ' || r.first_name AS patient, r.prescription_date, r.treatment, r.pathologies, d.created_at AS sent_at,
               CAST(julianday(?) - julianday(substr(d.created_at, 1, 10)) AS INTEGER) AS age_days
        FROM requests r JOIN documents d ON d.id = r.document_id
        WHERE NOT EXISTS (SELECT 1 FROM answers a WHERE a.request_id = r.id)
        {"AND r.matricule = ?" if person else ""}
        ORDER BY d.created_at""", (today.isoformat(),) + ((person,) if person else ()))
    sections["refused_requests"] = _rows(conn, f"""
        SELECT a.request_ref, a.matricule, coalesce(r.last_name || ' ' || r.first_name, '') AS patient,
               group_concat(x.code || ' ' || x.label, '; ') AS reasons
        FROM answers a LEFT JOIN anomalies x ON x.answer_id = a.id LEFT JOIN requests r ON r.id = a.request_id
        WHERE a.refused = 1 {"AND a.matricule = ?" if person else ""}
        AND a.id = (SELECT a2.id FROM answers a2 JOIN documents d2 ON d2.id = a2.document_id   -- the latest answer decides
                    WHERE a2.request_ref = a.request_ref ORDER BY d2.rank DESC, a2.id DESC LIMIT 1)
        GROUP BY a.id ORDER BY a.request_ref""", (person,) if person else ())
    # Open certificates: still valid, or expired within the last 30 days (one case: all of it).
    open_only = "" if (certificate or patient) else " AND c.valid_to >= date(?, '-30 days')"
    sections["certificates"] = _rows(conn, f"""
        SELECT c.number AS certificate, c.matricule, {CERTIFICATE_PATIENT} AS patient, c.valid_from, c.valid_to, c.sessions_authorised,
               c.sessions_billed, c.sessions_authorised - c.sessions_billed AS sessions_remaining,
               CASE WHEN c.valid_to < ? THEN 'expired' ELSE 'valid' END AS state
        FROM certificates c
        WHERE c.superseded = 0 {cert_filter}{open_only}
        ORDER BY c.valid_to LIMIT 1000""", (today.isoformat(),) + params + (() if (certificate or patient) else (today.isoformat(),)))
    note_filter = " AND f.certificate_number = ?" if certificate else (" AND f.matricule = ?" if patient else "")
    note_params = (certificate,) if certificate else ((patient,) if patient else ())
    sections["billed_awaiting_payment"] = _rows(conn, f"""
        SELECT f.certificate_number AS certificate, f.matricule, f.last_name || ' ' || f.first_name AS patient,
               s.session_date, s.act, printf('%.2f', s.cns_share / 100.0) AS cns_share, d.name AS billing_file
        FROM sessions s JOIN fee_notes f ON f.id = s.fee_note_id JOIN documents d ON d.id = s.document_id
        WHERE s.paid IS NULL AND s.counted = 1 {note_filter}
        ORDER BY s.session_date LIMIT 1000""", note_params)
    # Disputed lines still in force: a later statement may have replaced a line.
    sections["disputed"] = _rows(conn, f"""
        SELECT f.certificate_number AS certificate, f.matricule, f.last_name || ' ' || f.first_name AS patient,
               s.session_date, s.act, p.reason_code, p.reason_label,
               printf('%.2f', p.billed / 100.0) AS billed, printf('%.2f', p.accepted / 100.0) AS accepted
        FROM payment_lines p JOIN sessions s ON s.id = p.session_id AND s.payment_line_id = p.id AND s.counted = 1
        JOIN fee_notes f ON f.id = s.fee_note_id
        WHERE p.reason_code IS NOT NULL {note_filter}
        ORDER BY s.session_date LIMIT 1000""", note_params)
    if note_filter:
        sections["per_month"] = _rows(conn, f"""
            SELECT substr(s.session_date, 1, 7) AS month, count(*) AS sessions,
                   printf('%.2f', sum(s.gross) / 100.0) AS gross,
                   printf('%.2f', sum(s.patient_share) / 100.0) AS patient_share,
                   printf('%.2f', sum(s.cns_share) / 100.0) AS billed,
                   printf('%.2f', coalesce(sum(s.paid), 0) / 100.0) AS paid,
                   printf('%.2f', coalesce(sum(s.disputed), 0) / 100.0) AS disputed
            FROM sessions s JOIN fee_notes f ON f.id = s.fee_note_id
            WHERE s.counted = 1 {note_filter}
            GROUP BY month ORDER BY month""", note_params)
    else:  # the same sums, kept by import (database.md, version 3)
        sections["per_month"] = _rows(conn, """
            SELECT month, sessions, printf('%.2f', gross / 100.0) AS gross,
                   printf('%.2f', patient_share / 100.0) AS patient_share, printf('%.2f', billed / 100.0) AS billed, printf('%.2f', paid / 100.0) AS paid,
                   printf('%.2f', disputed / 100.0) AS disputed
            FROM month_totals WHERE sessions > 0 ORDER BY month""")
    sections["final_reports_due"] = [_with_patient(conn, row) for row in
                                     convention.final_reports_due(conn, today, certificate, patient)]
    if year is not None:
        sections["it_flat_rate"] = [convention.it_flat_rate(conn, year, today)]
    return sections


def providers(conn: sqlite3.Connection) -> list[str]:
    """Return the provider codes of the documents in the database (the practice's), sorted."""
    return [row[0] for row in conn.execute("SELECT DISTINCT provider FROM documents ORDER BY provider")]


def masked(sections: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """Return a copy of ``sections`` whose matricules are masked but for their last 4 digits
    (as on the printed documents: '•••••••••6700')."""
    return {name: [{k: show_matricule(v, True) if k == "matricule" and isinstance(v, str) else v for k, v in row.items()}
                   for row in rows] for name, rows in sections.items()}


def canonical_json(sections: dict[str, list[dict]]) -> bytes:
    """Return the canonical JSON of ``sections``: UTF-8, keys sorted, no blanks between items.

    The same as ``json.dumps(d, ensure_ascii=False, sort_keys=True, separators=(",", ":"))``
    of the object ``cnsx status --json`` prints, so that anyone can compute it again.
    """
    return json.dumps(sections, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")


def data_sha256(sections: dict[str, list[dict]]) -> str:
    """Return the hex SHA-256 of :func:`canonical_json` of ``sections``."""
    return hashlib.sha256(canonical_json(sections)).hexdigest()
