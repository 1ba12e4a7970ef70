"""status: what is asked, granted, used, billed, paid and disputed, from the practice database.

Each section is one SQL query over indexed tables, so that a database of a million sessions
answers within a second. Results are plain dicts, amounts in cents (the columns of
:data:`AMOUNTS`): each output writes them where it makes its text (:func:`as_text` for the
tables, JSON and CSV of the CLI, euros the French way in the PDF report, pdf.report). A printed report names the SHA-256 of the
canonical JSON of the sections it shows (:func:`data_sha256`), so that its figures can be tied
to the data they were printed from.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import unicodedata
from datetime import date

from cns_exchange.store import convention

from cns_exchange.domain import model
from cns_exchange.store.database import CERTIFICATE_PATIENT, COUNTED_SESSIONS, FEE_NOTE_PATIENT, LATEST_ANSWER
from cns_exchange.errors import InputError
from cns_exchange.i18n import _, ngettext
from cns_exchange.domain.identifiers import show_matricule


#: Per section, the columns that are amounts in cents (ints; None where one does not apply).
AMOUNTS: dict[str, tuple[str, ...]] = {
    "billed_awaiting_payment": ("cns_share",),
    "disputed": ("billed", "accepted"),
    "per_month": ("gross", "patient_share", "billed", "paid", "disputed"),
    "history": ("gross", "patient_share", "cns_share", "paid", "disputed"),
    "it_flat_rate": ("amount",),
}


#: SQL over a request's document ``d``: when it was sent, the first upload that reached the
#: server (its time, UTC), else the file's creation time (a request built or sent elsewhere,
#: whose upload this database did not record); and the day of that, on the practice's clock.
REQUEST_SENT_AT = """coalesce((SELECT min(u.finished_at) FROM uploads u WHERE u.sha256 = d.sha256 AND u.result = 'sent'),
                              d.created_at)"""
REQUEST_SENT_ON = """coalesce((SELECT date(min(u.finished_at), 'localtime') FROM uploads u
                               WHERE u.sha256 = d.sha256 AND u.result = 'sent'), substr(d.created_at, 1, 10))"""


def _rows(conn: sqlite3.Connection, sql: str, params: tuple = ()) -> list[dict]:
    return [dict(r) for r in conn.execute(sql, params)]


def status(conn: sqlite3.Connection, today: date, certificate: str | None = None,
           patient: str | None = None, year: int | None = None) -> dict[str, list[dict]]:
    """Return the status sections, optionally for one certificate or one patient (matricule:
    see :func:`find_patient`; then also the section ``history``, :func:`history`); with
    ``year``, also the IT flat rate of that year (section ``it_flat_rate``, one row).
    Amounts are in cents (:data:`AMOUNTS`)."""
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
        SELECT request_ref, matricule, patient, prescription_date, treatment, pathologies, sent_at,
               CAST(julianday(?) - julianday(sent_on) AS INTEGER) AS age_days
        FROM (SELECT r.request_ref, r.matricule, r.last_name || ' ' || r.first_name AS patient, r.prescription_date,
                     r.treatment, r.pathologies, {REQUEST_SENT_AT} AS sent_at, {REQUEST_SENT_ON} AS sent_on
              FROM requests r JOIN documents d ON d.id = r.document_id
              WHERE NOT EXISTS (SELECT 1 FROM answers a WHERE a.request_id = r.id)
              {"AND r.matricule = ?" if person else ""})
        ORDER BY sent_on, sent_at, request_ref""", (today.isoformat(),) + ((person,) if person else ()))
    sections["refused_requests"] = _rows(conn, f"""
        SELECT a.request_ref, a.matricule, coalesce(r.last_name || ' ' || r.first_name, '') AS patient,
               group_concat(x.code || ' ' || x.label, '; ') AS reasons
        FROM answers a LEFT JOIN anomalies x ON x.answer_id = a.id LEFT JOIN requests r ON r.id = a.request_id
        WHERE a.refused = 1 {"AND a.matricule = ?" if person else ""}
        AND a.id = ({LATEST_ANSWER})   -- the latest answer decides
        GROUP BY a.id ORDER BY a.request_ref""", (person,) if person else ())
    # Open certificates: still valid, or expired within the last 30 days (one case: all of it).
    open_only = "" if (certificate or patient) else " AND c.valid_to >= date(?, '-30 days')"
    sections["certificates"] = _rows(conn, f"""
        SELECT c.number AS certificate, c.matricule, {CERTIFICATE_PATIENT} AS patient, c.valid_from, c.valid_to,
               c.sessions_authorised, c.sessions_billed, c.sessions_remaining, c.state
        FROM (SELECT c.number, c.answer_id, c.matricule, c.valid_from, c.valid_to, c.sessions_authorised,
                     c.sessions_billed, c.sessions_authorised - c.sessions_billed AS sessions_remaining,
                     CASE WHEN c.valid_to < ? THEN 'expired' ELSE 'valid' END AS state
              FROM certificates c
              WHERE c.superseded = 0 {cert_filter}{open_only}
              ORDER BY c.valid_to LIMIT 1000) c   -- the names of the rows shown only
        ORDER BY c.valid_to""", (today.isoformat(),) + params + (() if (certificate or patient) else (today.isoformat(),)))
    note_filter = " AND f.certificate_number = ?" if certificate else (" AND f.matricule = ?" if patient else "")
    note_params = (certificate,) if certificate else ((patient,) if patient else ())
    sections["billed_awaiting_payment"] = _rows(conn, f"""
        SELECT f.certificate_number AS certificate, f.matricule, {FEE_NOTE_PATIENT} AS patient,
               s.session_date, s.act, s.cns_share, d.name AS billing_file
        FROM sessions s JOIN fee_notes f ON f.id = s.fee_note_id JOIN documents d ON d.id = s.document_id
        WHERE s.paid IS NULL AND s.counted = 1 {note_filter}
        ORDER BY s.session_date LIMIT 1000""", note_params)
    # Disputed lines still in force: a later statement may have replaced a line.
    sections["disputed"] = _rows(conn, f"""
        SELECT f.certificate_number AS certificate, f.matricule, {FEE_NOTE_PATIENT} AS patient,
               s.session_date, s.act, p.reason_code, p.reason_label,
               p.billed, p.accepted
        FROM payment_lines p JOIN sessions s ON s.id = p.session_id AND s.payment_line_id = p.id AND s.counted = 1
        JOIN fee_notes f ON f.id = s.fee_note_id
        WHERE p.reason_code IS NOT NULL {note_filter}
        ORDER BY s.session_date LIMIT 1000""", note_params)
    if note_filter:
        sections["per_month"] = _rows(conn, f"""
            SELECT substr(s.session_date, 1, 7) AS month, count(*) AS sessions,
                   sum(s.gross) AS gross, sum(s.patient_share) AS patient_share, sum(s.cns_share) AS billed,
                   coalesce(sum(s.paid), 0) AS paid, coalesce(sum(s.disputed), 0) AS disputed
            FROM sessions s JOIN fee_notes f ON f.id = s.fee_note_id
            WHERE s.counted = 1 {note_filter}
            GROUP BY month ORDER BY month""", note_params)
    else:  # the same sums, kept by import (database.md, version 3)
        sections["per_month"] = _rows(conn, """
            SELECT month, sessions, gross, patient_share, billed, paid, disputed
            FROM month_totals WHERE sessions > 0 ORDER BY month""")
    sections["final_reports_due"] = convention.final_reports_due(conn, today, certificate, patient)
    if not certificate:
        sections["due"] = due(conn, today, patient)
    if patient:
        sections["history"] = history(conn, patient)
    if year is not None:
        sections["it_flat_rate"] = [convention.it_flat_rate(conn, year, today)]
    return sections


def _words(text: str) -> list[str]:
    """The words of a name as a person may type it: no accents, no case, '-' a space."""
    plain = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return plain.casefold().replace("-", " ").split()


def find_patient(conn: sqlite3.Connection, query: str, mask: bool = False) -> str:
    """Return the matricule of the one patient ``query`` names: a matricule (spaces allowed,
    as pasted) or a name, or a part of one, whole words, in any order, case and accents
    ignored ('muller anne', 'Müller', 'Weber-Müller François').

    Raises InputError (exit 3) when no patient of the database matches, or when several do
    (naming each, with its matricule masked when ``mask``), so that a report is never the
    empty report of a mistyped name or the mixed report of two people.
    """
    digits = "".join(query.split())
    if digits.isdigit():
        known = conn.execute(
            """SELECT 1 FROM requests WHERE matricule = ?1 UNION ALL SELECT 1 FROM certificates WHERE matricule = ?1
               UNION ALL SELECT 1 FROM fee_notes WHERE matricule = ?1 UNION ALL SELECT 1 FROM answers WHERE matricule = ?1
               LIMIT 1""", (digits,)).fetchone()
        if known is None:
            raise InputError(_("--patient {matricule}: no patient of that matricule in the practice database").format(
                                 matricule=show_matricule(digits, mask) if len(digits) > 4 else digits),
                             _("check the number, or give the patient's name (cnsx status --patient NAME)"))
        return digits
    wanted = _words(query)
    if not wanted:
        raise InputError(_("--patient: empty"), _("give a matricule or a name"))
    names: dict[str, set[str]] = {}
    for matricule, last, first in conn.execute(
            """SELECT DISTINCT matricule, last_name, first_name FROM requests
               UNION SELECT DISTINCT matricule, last_name, first_name FROM fee_notes"""):
        words = _words(f"{last} {first}")
        if all(w in words for w in wanted):
            names.setdefault(matricule, set()).add(f"{last} {first}")
    if not names:
        raise InputError(_("--patient '{query}': no patient of that name in the practice database").format(query=query),
                         _("check the spelling (whole words: a last name, a first name), or give the matricule"))
    if len(names) > 1:
        which = "; ".join(f"{' / '.join(sorted(n))} ({show_matricule(m, mask)})" for m, n in sorted(names.items()))
        raise InputError(_("--patient '{query}': {n} patients match: {which}").format(query=query, n=len(names), which=which),
                         _("give the first name too, or the matricule"))
    return next(iter(names))


def history(conn: sqlite3.Connection, matricule: str) -> list[dict]:
    """Return the history of one patient, in date order: requests sent, answers (certificate
    granted or refused), sessions billed (those that count), fee notes, payment lines (paid or
    disputed; a line a later statement replaced says so) and final reports sent.

    Every row has the same keys: date, event, certificate, reference, act, gross,
    patient_share, cns_share, paid, disputed, detail (amounts in cents, None where they do
    not apply). ``detail`` is a message (English as data, shown in the user's language on
    the terminal); ``event`` is one of the words of :data:`EVENTS`.
    """
    rows: list[tuple[str, int, dict]] = []

    def add(day: str, order: int, event: str, certificate=None, reference=None, act=None, gross=None,
            patient_share=None, cns_share=None, paid=None, disputed=None, detail: str = "") -> None:
        rows.append((day, order, {"date": day, "event": event, "certificate": certificate, "reference": reference,
                                  "act": act, "gross": gross, "patient_share": patient_share,
                                  "cns_share": cns_share, "paid": paid, "disputed": disputed,
                                  "detail": detail}))

    for ref, created, prescribed, treatment, pathologies, prescriber in conn.execute(
            """SELECT r.request_ref, d.created_at, r.prescription_date, r.treatment, r.pathologies, r.prescriber
               FROM requests r JOIN documents d ON d.id = r.document_id WHERE r.matricule = ?""", (matricule,)):
        add(created[:10], 0, "request", reference=ref,
            detail=_("prescription of {day} by {prescriber}, {treatment}, {pathologies}").format(
                day=date.fromisoformat(prescribed), prescriber=prescriber, treatment=treatment, pathologies=pathologies))
    for ref, created, number, refused, reasons, valid_from, valid_to, authorised, superseded in conn.execute(
            """SELECT a.request_ref, d.created_at, a.certificate_number, a.refused,
                      (SELECT group_concat(x.code || ' ' || x.label, '; ') FROM anomalies x WHERE x.answer_id = a.id),
                      c.valid_from, c.valid_to, c.sessions_authorised, c.superseded
               FROM answers a JOIN documents d ON d.id = a.document_id
               LEFT JOIN certificates c ON c.number = a.certificate_number AND c.answer_id = a.id
               WHERE a.matricule = ?""", (matricule,)):
        if refused or number is None:
            add(created[:10], 1, "refused", reference=ref, detail=reasons or "")
        else:
            if not valid_from:
                detail = _("granted, superseded by a later answer") if superseded else _("granted")
            elif superseded:
                detail = _("valid {start} to {end}, {n} sessions, superseded by a later answer").format(
                    start=date.fromisoformat(valid_from), end=date.fromisoformat(valid_to), n=authorised)
            else:
                detail = _("valid {start} to {end}, {n} sessions").format(start=date.fromisoformat(valid_from),
                                                                          end=date.fromisoformat(valid_to), n=authorised)
            add(created[:10], 1, "certificate", certificate=number, reference=ref, detail=detail)
    for number, name, created, certificate, sessions, gross, share, cns in conn.execute(
            """SELECT f.number, d.name, d.created_at, f.certificate_number, count(s.id), sum(s.gross),
                      sum(s.patient_share), sum(s.cns_share)
               FROM fee_notes f JOIN documents d ON d.id = f.document_id
               LEFT JOIN sessions s ON s.fee_note_id = f.id AND s.counted = 1
               WHERE f.matricule = ? GROUP BY f.id""", (matricule,)):
        add(created[:10], 3, "fee note", certificate=certificate, reference=f"{name} #{number}", gross=gross,
            patient_share=share, cns_share=cns,
            detail=ngettext("{n} session counted", "{n} sessions counted", sessions).format(n=sessions))
    for day, act, certificate, gross, share, cns, paid, disputed in conn.execute(
            f"""SELECT s.session_date, s.act, f.certificate_number, s.gross, s.patient_share, s.cns_share,
                       s.paid, s.disputed
                FROM {COUNTED_SESSIONS} WHERE f.matricule = ?""", (matricule,)):
        add(day, 2, "session", certificate=certificate, act=act, gross=gross, patient_share=share, cns_share=cns,
            detail=_("awaiting payment") if paid is None else "")
    for paid_on, reference, certificate, act, session_day, accepted, billed, code, label, in_force in conn.execute(
            f"""SELECT p2.paid_on, p2.reference, f.certificate_number, s.act, s.session_date, p.accepted, p.billed,
                       p.reason_code, p.reason_label, p.id = s.payment_line_id
                FROM {COUNTED_SESSIONS} JOIN payment_lines p ON p.session_id = s.id JOIN payments p2 ON p2.id = p.payment_id
                WHERE f.matricule = ?""", (matricule,)):
        if code and in_force:
            detail = _("session of {day}; {code} {label}").format(day=date.fromisoformat(session_day), code=code, label=label)
        elif code:
            detail = _("session of {day}; {code} {label}; replaced by a later statement").format(
                day=date.fromisoformat(session_day), code=code, label=label)
        elif in_force:
            detail = _("session of {day}").format(day=date.fromisoformat(session_day))
        else:
            detail = _("session of {day}; replaced by a later statement").format(day=date.fromisoformat(session_day))
        add(paid_on or "", 4, "dispute" if code else "payment", certificate=certificate, reference=reference, act=act,
            paid=accepted, disputed=billed - accepted if code else None, detail=detail)
    for certificate, sent_on in conn.execute(
            """SELECT x.certificate_number, x.sent_on FROM final_reports x
               JOIN certificates c ON c.number = x.certificate_number WHERE c.matricule = ?""", (matricule,)):
        add(sent_on, 5, "final report sent", certificate=certificate)
    rows.sort(key=lambda r: (r[0], r[1], r[2]["certificate"] or "", r[2]["reference"] or "", r[2]["act"] or ""))
    return [r[2] for r in rows]


#: The words of the ``event`` column of :func:`history` (data: English in JSON and CSV; the
#: terminal shows them translated, console.print_tables).
EVENTS = ("request", "refused", "certificate", "fee note", "session", "payment", "dispute", "final report sent")

#: What needs doing soon: certificates expiring within this many days, requests unanswered after.
EXPIRING_DAYS = 30
UNANSWERED_DAYS = 14


def due(conn: sqlite3.Connection, today: date, matricule: str | None = None) -> list[dict]:
    """Return what needs a person soon, soonest first: certificates standing that expire
    within EXPIRING_DAYS days (with sessions left) or have one session or none left (still
    valid), and requests still unanswered UNANSWERED_DAYS days after they were sent.

    Rows: what ('certificate' or 'request'), reference (certificate number or request
    reference), matricule, patient, date (valid_to, or the day the request was sent), days
    (days to expiry, or days waited), sessions_remaining (certificates only), reason.
    """
    day = today.isoformat()
    who = " AND c.matricule = ?" if matricule else ""
    rows = _rows(conn, f"""
        SELECT 'certificate' AS what, c.number AS reference, c.matricule, {CERTIFICATE_PATIENT} AS patient,
               c.valid_to AS date, CAST(julianday(c.valid_to) - julianday(?1) AS INTEGER) AS days,
               c.sessions_authorised - c.sessions_billed AS sessions_remaining,
               CASE WHEN c.sessions_authorised - c.sessions_billed <= 1 THEN 'sessions' ELSE 'expiring' END AS reason
        FROM (SELECT * FROM certificates c
              WHERE c.superseded = 0 AND c.valid_to >= ?1 {who}
              AND ((c.valid_to <= date(?1, '+{EXPIRING_DAYS} days') AND c.sessions_authorised > c.sessions_billed)
                   OR c.sessions_authorised - c.sessions_billed <= 1)
              ORDER BY c.valid_to, c.number LIMIT 1000) c   -- the names of the rows shown only
        ORDER BY c.valid_to, c.number""", (day, matricule) if matricule else (day,))
    rows += _rows(conn, f"""
        SELECT what, reference, matricule, patient, date, CAST(julianday(?1) - julianday(date) AS INTEGER) AS days,
               NULL AS sessions_remaining, 'unanswered' AS reason
        FROM (SELECT 'request' AS what, r.request_ref AS reference, r.matricule,
                     r.last_name || ' ' || r.first_name AS patient, {REQUEST_SENT_ON} AS date
              FROM requests r JOIN documents d ON d.id = r.document_id
              WHERE NOT EXISTS (SELECT 1 FROM answers a WHERE a.request_id = r.id) {who.replace("c.", "r.")})
        WHERE date <= date(?1, '-{UNANSWERED_DAYS} days')
        ORDER BY date, reference LIMIT 1000""", (day, matricule) if matricule else (day,))
    return rows


def due_lines(rows: list[dict]) -> list[str]:
    """Return one line of text per row of :func:`due`, for a person (the cron mail): messages,
    shown in the user's language with i18n.tr."""
    lines = []
    for row in rows:
        who = f"{row['patient']} ({row['matricule']})" if row["patient"] else row["matricule"]
        if row["what"] == "request":
            lines.append(ngettext("request {ref}, {who}: unanswered since {day} ({n} day)",
                                  "request {ref}, {who}: unanswered since {day} ({n} days)", row["days"]).format(
                ref=row["reference"], who=who, day=date.fromisoformat(row["date"]), n=row["days"]))
            continue
        left = row["sessions_remaining"]
        if left <= 0:
            sessions = _("no session left")
        else:
            sessions = ngettext("{n} session left", "{n} sessions left", left).format(n=left)
        if row["days"] == 0:
            when = _("today")
        else:
            when = ngettext("in {n} day", "in {n} days", row["days"]).format(n=row["days"])
        lines.append(_("certificate {ref}, {who}: expires on {day} ({when}), {sessions}").format(
            ref=row["reference"], who=who, day=date.fromisoformat(row["date"]), when=when, sessions=sessions))
    return lines


#: The columns of :func:`new_certificates`, in the order the CSV gives them.
NEW_CERTIFICATE_COLUMNS = ["request_ref", "patient", "matricule", "certificate", "valid_from", "valid_to",
                           "sessions_authorised", "answered_on"]


def new_certificates(conn: sqlite3.Connection, since: date) -> list[dict]:
    """Return the certificates granted by answers imported on or after ``since`` (the day
    the practice learnt of them), standing (not superseded), in the order they arrived:
    request_ref, patient, matricule, certificate, valid_from, valid_to, sessions_authorised,
    answered_on (the day the answer was imported)."""
    return _rows(conn, f"""
        SELECT a.request_ref, {CERTIFICATE_PATIENT} AS patient, c.matricule, c.number AS certificate,
               c.valid_from, c.valid_to, c.sessions_authorised, substr(d.imported_at, 1, 10) AS answered_on
        FROM certificates c JOIN answers a ON a.id = c.answer_id JOIN documents d ON d.id = a.document_id
        WHERE c.superseded = 0 AND substr(d.imported_at, 1, 10) >= ?
        ORDER BY d.imported_at, a.request_ref, c.number""", (since.isoformat(),))


#: The sessions that count (fee note f, session s), as SQL to follow FROM.



def providers(conn: sqlite3.Connection) -> list[str]:
    """Return the provider codes of the documents in the database (the practice's), sorted."""
    return [row[0] for row in conn.execute("SELECT DISTINCT provider FROM documents ORDER BY provider")]


def masked(sections: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """Return a copy of ``sections`` whose matricules are masked but for their last 4 digits
    (as on the printed documents: '•••••••••6700')."""
    return {name: [{k: show_matricule(v, True) if k == "matricule" and isinstance(v, str) else v for k, v in row.items()}
                   for row in rows] for name, rows in sections.items()}


def as_text(sections: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """Return a copy of ``sections`` whose amounts (:data:`AMOUNTS`, in cents) are written as
    decimal text, '1234.56', '-0.50': what ``cnsx status`` prints in its tables, JSON and CSV
    (docs/cli.md)."""
    def row_text(row: dict, keys: tuple[str, ...]) -> dict:
        return {k: model.amount(v) if k in keys and v is not None else v for k, v in row.items()}

    return {name: [row_text(r, AMOUNTS[name]) for r in rows] if name in AMOUNTS else rows
            for name, rows in sections.items()}


def canonical_json(sections: dict[str, list[dict]]) -> bytes:
    """Return the canonical JSON of ``sections`` (as :func:`status` returns them): their
    :func:`as_text`, UTF-8, keys sorted, no blanks between items.

    The same as ``json.dumps(d, ensure_ascii=False, sort_keys=True, separators=(",", ":"))``
    of the object ``cnsx status --json`` prints, so that anyone can compute it again.
    """
    return json.dumps(as_text(sections), ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")


def data_sha256(sections: dict[str, list[dict]]) -> str:
    """Return the hex SHA-256 of :func:`canonical_json` of ``sections``."""
    return hashlib.sha256(canonical_json(sections)).hexdigest()
