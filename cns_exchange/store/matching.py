"""The practice database's side of import: a read document's records inserted in one
transaction, each matched with what it answers, and the counters status reads kept in step.

- Answers are matched with requests, acknowledgements with the files they acknowledge,
  payment statements with billing files and their lines with the billed sessions, whichever
  comes first (:func:`rematch` links what arrives later).
- A billed session has an identity (certificate, patient, date, act) and is counted once,
  however many files bill it; a billing file the CNS rejected counts for nothing.
- Corrections follow the order the CNS wrote its documents (``documents.rank``), not the
  order of import: the latest payment line decides a session, the latest answer a certificate.
- What a person should know once (a correction, a session billed again) becomes a notice of
  the document; an item the database keeps once and leaves out, a warning.

Reading the file, the archive and the errors folder are :mod:`cns_exchange.store.importing`'s.
"""

from __future__ import annotations

import sqlite3
from datetime import date, datetime, timezone
from typing import TYPE_CHECKING

from cns_exchange.i18n import _, join, ngettext
from cns_exchange.issues import WARNING, Issue
from cns_exchange.store.database import COUNTED_SESSIONS, DROPPED, LATEST_ANSWER, RANK, session_identity

if TYPE_CHECKING:  # pragma: no cover
    from cns_exchange.store.importing import Document


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def import_document(conn: sqlite3.Connection, doc: Document) -> tuple[bool, int, list[str]]:
    """Insert a read document (store.importing.Document, without fatal issues) in one
    transaction; return (imported now, its document id, what still matches nothing).

    Idempotent: a document whose SHA-256 is already there is not imported again (False, the
    id it has, nothing).
    """
    row = conn.execute("SELECT id FROM documents WHERE sha256 = ?", (doc.sha256,)).fetchone()
    if row is not None:
        return False, row["id"], []
    h = doc.header
    conn.execute("BEGIN IMMEDIATE")
    try:
        cur = conn.execute(
            "INSERT INTO documents (kind, name, sha256, provider, created_at, sequence, version, imported_at, warnings) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (doc.kind, doc.name, doc.sha256, h.provider, h.created.isoformat(), h.sequence, h.version, _now(),
             len(doc.warnings)))
        doc_id = cur.lastrowid
        conn.execute(f"UPDATE documents SET rank = {RANK} WHERE id = ?", (doc_id,))
        warned = len(doc.warnings)
        _INSERT[doc.kind](conn, doc_id, doc)
        if len(doc.warnings) > warned:  # rows left out while inserting, each said why
            doc.warnings.sort(key=lambda i: i.line or 0)
            conn.execute("UPDATE documents SET warnings = ? WHERE id = ?", (len(doc.warnings), doc_id))
        unmatched = rematch(conn, doc_id)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:  # (Ctrl-C just after COMMIT: there is nothing to roll back)
            conn.execute("ROLLBACK")
        raise
    return True, doc_id, unmatched


def _left_out(doc: Document, code: str, message: str, line: int, xpath: str, hint: str) -> None:
    """Warn of an item the database keeps once, and that is therefore not imported (in the
    warning the rules gave it already, if they did)."""
    xpath = f"/{doc.root}/{xpath}"
    for issue in doc.warnings:
        if issue.code == code and issue.xpath == xpath:
            issue.message, issue.hint = message, hint
            return
    doc.warnings.append(Issue(code, message, severity=WARNING, file=str(doc.path), line=line or None,
                              xpath=xpath, hint=hint))


def _insert_requests(conn, doc_id, doc) -> None:
    """Insert the requests of a request file; one already recorded is left out, with a warning."""
    seen: set[str] = set()
    new = []
    for index, r in enumerate(doc.records, 1):
        known = r.request_ref not in seen and conn.execute(
            "SELECT 1 FROM requests WHERE provider = ? AND request_ref = ?", (doc.header.provider, r.request_ref)).fetchone()
        if r.request_ref in seen or known:
            if r.request_ref in seen:
                message = _("request {ref} is already recorded (earlier in this file): this one was not imported")
            else:
                message = _("request {ref} is already recorded (from an earlier file): this one was not imported")
            _left_out(doc, "IN007", message.format(ref=r.request_ref), r.line, f"Demande[{index}]/ReferenceDemande",
                      _("the same request sent again is harmless; a new request needs its own reference"))
        else:
            new.append(r)
        seen.add(r.request_ref)
    conn.executemany(
        "INSERT INTO requests (document_id, provider, request_ref, matricule, last_name, first_name, prescriber, "
        "prescription_date, pathologies, treatment, acts, pdf_name, pdf_sha256) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
        ((doc_id, doc.header.provider, r.request_ref, r.matricule, r.last_name, r.first_name, r.prescriber_code,
          r.prescription_date.isoformat(), ";".join(r.pathology_codes), r.treatment,
          ";".join(f"{a}:{n}" for a, n in r.acts), r.pdf_name, r.pdf_sha256) for r in new))


def _insert_billing(conn, doc_id, doc) -> None:
    """Insert a billing file's fee notes and sessions. Each session has an identity (its
    certificate, patient, date and act) and is counted once however many files bill it: the
    first billing counts, unless the CNS rejected its file or disputed it in full (dropped),
    in which case the new one does. Copies are recorded, reported, and count for nothing."""
    for index, note in enumerate(doc.records, 1):
        lines: dict[int, int] = {}
        kept = []
        for position, s in enumerate(note.sessions, 1):
            if s.line_no in lines:
                _left_out(doc, "DOC08", _("line number {line_no} appears twice in fee note {note} (lines {first} and "
                                          "{second}): the second was not imported").format(
                              line_no=s.line_no, note=note.number, first=lines[s.line_no], second=s.line), s.line,
                          f"MemoireHonoraires[{index}]/Seance[{position}]/NumeroLigne",
                          _("the CNS pays a line once: ask whoever built the file"))
                continue
            lines[s.line_no] = s.line
            kept.append(s)
        note_id = conn.execute(
            "INSERT INTO fee_notes (document_id, number, certificate_number, matricule, last_name, first_name) "
            "VALUES (?,?,?,?,?,?)", (doc_id, note.number, note.certificate_number, note.matricule, note.last_name,
                                     note.first_name)).lastrowid
        conn.executemany(
            "INSERT INTO sessions (fee_note_id, document_id, line_no, session_date, act, executing, gross, "
            "patient_share, cns_share, identity) VALUES (?,?,?,?,?,?,?,?,?,?)",
            ((note_id, doc_id, s.line_no, day, s.act_code, s.executing_provider, s.gross, s.patient_share, s.cns_share,
              session_identity(note.certificate_number, note.matricule, day, s.act_code))
             for s in kept for day in (s.session_date.isoformat(),)))
    # A session billed before and disputed in full (accepted 0) is billed again by this file:
    # the new billing is the one that counts.
    dropped = f"""SELECT o.id FROM sessions o JOIN sessions n ON n.identity = o.identity AND n.document_id = :doc
                  WHERE o.counted = 1 AND {DROPPED.format(s="o")}"""
    again = conn.execute(f"SELECT count(*) FROM ({dropped})", {"doc": doc_id}).fetchone()[0]
    if again:
        _set_counted(conn, dropped, {"doc": doc_id}, False)
        doc.notices.append(ngettext("{n} session disputed in full before is billed again by this file: the new billing "
                                    "counts",
                                    "{n} sessions disputed in full before are billed again by this file: the new billing "
                                    "counts", again).format(n=again))
    _count_new(conn, "SELECT id FROM sessions WHERE document_id = :doc", {"doc": doc_id})
    copies = conn.execute(
        """SELECT n.session_date, n.act, f.certificate_number, d.name FROM sessions n
           JOIN fee_notes f ON f.id = n.fee_note_id
           JOIN sessions o ON o.identity = n.identity AND o.counted = 1 JOIN documents d ON d.id = o.document_id
           WHERE n.document_id = ? AND n.counted = 0 ORDER BY n.id""", (doc_id,)).fetchall()
    if copies:
        first = copies[0]
        doc.notices.append(ngettext("{n} session of this file was billed before and is counted once (first: {day} {act} "
                                    "on certificate {certificate}, billed in {file})",
                                    "{n} sessions of this file were billed before and are counted once (first: {day} "
                                    "{act} on certificate {certificate}, billed in {file})", len(copies)).format(
                               n=len(copies), day=date.fromisoformat(first[0]), act=first[1], certificate=first[2], file=first[3]))


def _set_counted(conn, ids_sql: str, params, counted: bool) -> None:
    """Count (or stop counting) the sessions ``ids_sql`` selects, with the month totals and
    the certificates' counts kept in step."""
    sign, before = (1, 0) if counted else (-1, 1)
    conn.execute("DROP TABLE IF EXISTS temp.recount")
    conn.execute(f"CREATE TEMP TABLE recount AS SELECT id FROM sessions WHERE id IN ({ids_sql}) AND counted = {before}",
                 params)
    conn.execute(f"""INSERT INTO month_totals (month, sessions, billed, paid, disputed, gross, patient_share)
                         SELECT substr(session_date, 1, 7), {sign} * count(*), {sign} * sum(cns_share),
                                {sign} * coalesce(sum(paid), 0), {sign} * coalesce(sum(disputed), 0),
                                {sign} * sum(gross), {sign} * sum(patient_share)
                         FROM sessions WHERE id IN (SELECT id FROM temp.recount) GROUP BY 1
                     ON CONFLICT (month) DO UPDATE SET sessions = sessions + excluded.sessions, billed = billed + excluded.billed,
                         paid = paid + excluded.paid, disputed = disputed + excluded.disputed,
                         gross = gross + excluded.gross, patient_share = patient_share + excluded.patient_share""")
    conn.execute(f"UPDATE sessions SET counted = {int(counted)} WHERE id IN (SELECT id FROM temp.recount)")
    _count_billed(conn, """number IN (SELECT f.certificate_number FROM fee_notes f JOIN sessions s ON s.fee_note_id = f.id
                                      WHERE s.id IN (SELECT id FROM temp.recount))""", {})
    conn.execute("DROP TABLE temp.recount")


def _count_new(conn, ids_sql: str, params) -> None:
    """Count each session ``ids_sql`` selects whose identity no counted session has yet (the
    first of them per identity), in a billing file the CNS did not reject."""
    _set_counted(conn, f"""SELECT min(n.id) FROM sessions n JOIN documents d ON d.id = n.document_id AND d.rejected = 0
                            WHERE n.id IN ({ids_sql}) AND n.counted = 0
                            AND NOT EXISTS (SELECT 1 FROM sessions o WHERE o.identity = n.identity AND o.counted = 1)
                            GROUP BY n.identity""", params, True)


def _insert_acks(conn, doc_id, doc) -> None:
    for a in doc.records:
        conn.execute(
            "INSERT INTO acknowledgements (document_id, file_name, file_sha256, received_at, accepted) VALUES (?,?,?,?,?)",
            (doc_id, a.file_name, a.file_sha256, a.received_at.isoformat(), int(a.accepted)))
        conn.executemany("INSERT INTO anomalies (document_id, code, label, element) VALUES (?,?,?,?)",
                         ((doc_id, x.code, x.label, x.element) for x in a.anomalies))


def _insert_answers(conn, doc_id, doc) -> None:
    """Insert the CNS's answers. A certificate granted again (a correction: new dates or
    counts) takes the values of the answer the CNS wrote last, by its date and sequence; the
    latest answer to a request decides whether its earlier certificates still stand."""
    rank = conn.execute("SELECT rank FROM documents WHERE id = ?", (doc_id,)).fetchone()[0]
    for a in doc.records:
        c = a.certificate
        answer_id = conn.execute(
            "INSERT INTO answers (document_id, request_ref, matricule, certificate_number, refused) VALUES (?,?,?,?,?)",
            (doc_id, a.request_ref, a.matricule, c.number if c else None, int(c is None))).lastrowid
        if c is not None:
            values = (a.matricule, c.valid_from.isoformat(), c.valid_to.isoformat(), ";".join(f"{x}:{n}" for x, n in c.acts),
                      sum(n for _act, n in c.acts))
            key = f"{rank}#{answer_id:012d}"
            before = conn.execute("SELECT matricule, valid_from, valid_to, acts, sessions_authorised, rank FROM certificates "
                                  "WHERE number = ?", (c.number,)).fetchone()
            conn.execute(
                "INSERT INTO certificates (number, answer_id, matricule, valid_from, valid_to, acts, sessions_authorised, rank) "
                "VALUES (?,?,?,?,?,?,?,?) ON CONFLICT (number) DO UPDATE SET answer_id = excluded.answer_id, "
                "matricule = excluded.matricule, valid_from = excluded.valid_from, valid_to = excluded.valid_to, "
                "acts = excluded.acts, sessions_authorised = excluded.sessions_authorised, rank = excluded.rank "
                "WHERE excluded.rank > certificates.rank", (c.number, answer_id, *values, key))
            if before is not None and tuple(before)[:5] != values:
                if key > before["rank"]:
                    doc.notices.append(_("certificate {number} corrected: valid {start} to {end}, {sessions} ({acts})").format(
                        number=c.number, start=c.valid_from, end=c.valid_to,
                        sessions=ngettext("{n} session", "{n} sessions", values[4]).format(n=values[4]), acts=values[3]))
                else:
                    doc.notices.append(_("certificate {number}: this answer is older than the one already imported, "
                                         "which stands (valid {start} to {end})").format(
                        number=c.number, start=date.fromisoformat(before["valid_from"]), end=date.fromisoformat(before["valid_to"])))
        conn.executemany("INSERT INTO anomalies (document_id, answer_id, code, label, element) VALUES (?,?,?,?,?)",
                         ((doc_id, answer_id, x.code, x.label, x.element) for x in a.refusal))
    # The latest answer to each request this file answers decides (by the CNS's date and sequence).
    replaced = conn.execute(f"""SELECT c.number, a.request_ref FROM certificates c JOIN answers a ON a.id = c.answer_id
                                WHERE c.superseded = 0 AND a.request_ref IN (SELECT request_ref FROM answers WHERE document_id = :doc)
                                AND c.answer_id != ({LATEST_ANSWER})""", {"doc": doc_id}).fetchall()
    conn.execute(f"""UPDATE certificates SET superseded = (certificates.answer_id != ({LATEST_ANSWER}))
                     FROM answers a WHERE a.id = certificates.answer_id
                     AND a.request_ref IN (SELECT request_ref FROM answers WHERE document_id = :doc)""", {"doc": doc_id})
    for number, ref in replaced:
        doc.notices.append(_("certificate {number} no longer stands: a later answer to request {ref} replaces it").format(
            number=number, ref=ref))


def _insert_payment(conn, doc_id, doc) -> None:
    extra = doc.header.extra
    sha256 = extra.get("FichierFacture/Sha256", "")
    row = conn.execute("SELECT id FROM documents WHERE sha256 = ? AND kind = 'billing'", (sha256,)).fetchone()
    billing_id = row[0] if row else None
    rank = conn.execute("SELECT rank FROM documents WHERE id = ?", (doc_id,)).fetchone()[0]
    payment_id = conn.execute(
        "INSERT INTO payments (document_id, billing_name, billing_sha256, billing_document_id, paid_on, reference) "
        "VALUES (?,?,?,?,?,?)",
        (doc_id, extra.get("FichierFacture/NomFichier", ""), sha256, billing_id,
         extra.get("DatePaiement", ""), extra.get("ReferencePaiement", ""))).lastrowid
    # Each line is matched with its billed session as it goes in (two index look-ups: its fee
    # note, the first of that number in the billing file, then the session); a line whose
    # billing file is not imported yet is matched by rematch once it is. The values go to
    # SQLite as they come, with nothing done per line in Python.
    values = ((p.fee_note, p.line_no, p.certificate_number, p.billed, p.accepted, p.reason_code, p.reason_label)
              for p in doc.records)  # (made as SQLite takes them: 200,000 tuples need not be held at once)
    once = _names_once(doc.records)  # (a line given twice is validate's DOC08, a warning here)
    insert = (
        "INSERT INTO payment_lines (payment_id, fee_note_number, line_no, certificate_number, billed, accepted, "
        "reason_code, reason_label, rank, session_id) VALUES "
        f"({int(payment_id)}, ?1, ?2, ?3, ?4, ?5, nullif(?6, ''), nullif(?7, ''), '{rank}', (SELECT s.id FROM sessions s "
        f"WHERE s.line_no = ?2 AND s.fee_note_id = (SELECT min(f.id) FROM fee_notes f "
        f"WHERE f.document_id = {int(billing_id) if billing_id is not None else 'NULL'} AND f.number = ?1)))")
    first = conn.execute("SELECT coalesce(max(id), 0) + 1 FROM payment_lines").fetchone()[0]
    conn.executemany(insert, values)
    _apply_payment_lines(conn, "id >= ?", (first,), once)
    _say_tariff_change(conn, doc, payment_id, first)
    copies = conn.execute("""SELECT count(*) FROM payment_lines p JOIN sessions s ON s.id = p.session_id
                             WHERE p.payment_id = ? AND s.counted = 0 AND p.accepted > 0""", (payment_id,)).fetchone()[0]
    if copies:
        doc.notices.append(ngettext("{n} line of this statement pays a session billed twice (counted once): check with "
                                    "the CNS whether it was paid twice",
                                    "{n} lines of this statement pay a session billed twice (counted once): check with "
                                    "the CNS whether it was paid twice", copies).format(n=copies))


def _say_tariff_change(conn, doc: Document, payment_id: int, first: int) -> None:
    """Say once, as a notice, when lines paid without a dispute reason were paid at another
    amount than billed: a likely tariff change when each amount billed was paid at one other
    amount (the CNS prices with other tariffs than cnsx's table), else that the amounts differ.
    Not a dispute per line: the CNS gave no reason, and the lines stay paid at what it paid."""
    from cns_exchange.domain.model import money

    rows = conn.execute(
        """SELECT p.billed, p.accepted, count(*), min(s.session_date), group_concat(DISTINCT s.act)
           FROM payment_lines p LEFT JOIN sessions s ON s.id = p.session_id
           WHERE p.id >= ? AND p.payment_id = ? AND p.reason_code IS NULL AND p.accepted > 0 AND p.accepted != p.billed
           GROUP BY p.billed, p.accepted ORDER BY p.billed, p.accepted""", (first, payment_id)).fetchall()
    if not rows:
        return
    lines = sum(row[2] for row in rows)
    paid_as: dict[int, list] = {}
    for row in rows:
        paid_as.setdefault(row[0], []).append(row)
    days = [row[3] for row in rows if row[3]]
    if days:
        what = ngettext("{n} line paid without a dispute reason at another amount than billed (the CNS's share, "
                        "sessions from {day})",
                        "{n} lines paid without a dispute reason at another amount than billed (the CNS's share, "
                        "sessions from {day})", lines).format(n=lines, day=date.fromisoformat(min(days)))
    else:
        what = ngettext("{n} line paid without a dispute reason at another amount than billed (the CNS's share)",
                        "{n} lines paid without a dispute reason at another amount than billed (the CNS's share)",
                        lines).format(n=lines)
    if any(len(paid) > 1 for paid in paid_as.values()):
        mixed = next(paid for paid in paid_as.values() if len(paid) > 1)
        doc.notices.append(_("{what}, not one amount for each amount billed ({billed} paid as {paid}): not a tariff "
                             "change; ask the CNS why").format(
            what=what, billed=money(mixed[0][0]), paid=join(_(" and "), [money(row[1]) for row in mixed])))
        return

    def move(billed, row) -> str:
        count = ngettext("{n} line", "{n} lines", row[2]).format(n=row[2])
        if row[4]:
            return _("{billed} → {paid} ({acts}: {count})").format(
                billed=money(billed), paid=money(row[1]), acts=", ".join(sorted(row[4].split(","))), count=count)
        return _("{billed} → {paid} ({count})").format(billed=money(billed), paid=money(row[1]), count=count)

    moves = join(", ", [move(billed, row) for billed, [row] in paid_as.items()])
    doc.notices.append(_("likely a tariff change: {what}, one amount for each amount billed: {moves}. See the table "
                         "cnsx priced them with (cnsx tariffs --date {day}) and add the CNS's tariffs (cnsx tariffs add)")
                       .format(what=what, moves=moves, day=min(days) if days else "DATE"))


def _names_once(lines: list) -> bool:
    """True if no two payment lines name the same (fee note, line): then no "latest per
    session" step is needed (the rule: a statement pays a line once)."""
    return len({p.fee_note << 32 | p.line_no for p in lines}) == len(lines)  # (ints: less memory)


#: A payment line's place in the order the CNS wrote them: its statement's rank, then its id.
_LINE_KEY = "rank || printf('#%012d', id)"


def _apply_payment_lines(conn, where: str, params: tuple, once: bool = False) -> None:
    """Set sessions' paid and disputed amounts from the matched payment lines ``where`` says,
    and the month totals with them. For each session the line the CNS wrote last decides
    (by its statement's date and sequence: a corrected statement replaces an earlier one,
    whatever the order of import); an older line changes nothing. Sessions not counted (a
    copy of a session billed before) take their lines but stay out of the totals.
    ``once``: no two of these lines name the same session."""
    disputed = "CASE WHEN reason_code IS NOT NULL THEN billed - accepted END"
    if once:
        source = (f"(SELECT session_id, id AS line_id, {_LINE_KEY} AS key, accepted, {disputed} AS disputed "
                  f"FROM payment_lines WHERE {where})")
    else:
        conn.execute("DROP TABLE IF EXISTS temp.applied")
        # SQLite takes the other columns from the row of max(key): the latest line per session.
        conn.execute(f"""CREATE TEMP TABLE applied AS
                            SELECT session_id, max({_LINE_KEY}) AS key, id AS line_id, accepted, {disputed} AS disputed
                            FROM payment_lines WHERE {where} AND session_id IS NOT NULL GROUP BY session_id""", params)
        source, params = "temp.applied", ()
    conn.execute(f"""INSERT INTO month_totals (month, paid, disputed)
                         SELECT substr(s.session_date, 1, 7), sum(a.accepted - coalesce(s.paid, 0)),
                                sum(coalesce(a.disputed, 0) - coalesce(s.disputed, 0))
                         FROM {source} a JOIN sessions s ON s.id = a.session_id AND s.counted = 1
                         WHERE s.payment_key IS NULL OR s.payment_key < a.key GROUP BY 1
                     ON CONFLICT (month) DO UPDATE SET paid = paid + excluded.paid, disputed = disputed + excluded.disputed""",
                 params)
    conn.execute(f"""UPDATE sessions SET paid = a.accepted, disputed = a.disputed, payment_line_id = a.line_id,
                                         payment_key = a.key
                     FROM {source} a
                     WHERE sessions.id = a.session_id AND (sessions.payment_key IS NULL OR sessions.payment_key < a.key)""",
                 params)
    if not once:
        conn.execute("DROP TABLE temp.applied")


_INSERT = {"request": _insert_requests, "billing": _insert_billing, "ack": _insert_acks,
           "answers": _insert_answers, "payment": _insert_payment}


def rematch(conn: sqlite3.Connection, document_id: int | None = None) -> list[str]:
    """Link every return not yet linked to what it answers; keep the counters status reads
    (sessions paid/disputed, month totals, certificates' sessions billed) up to date; return
    what still matches nothing."""
    conn.execute("""UPDATE answers SET request_id = (
                        SELECT r.id FROM requests r JOIN documents d ON d.id = answers.document_id
                        WHERE r.request_ref = answers.request_ref AND r.provider = d.provider)
                    WHERE request_id IS NULL""")
    conn.execute("""UPDATE acknowledgements SET
                        upload_id = (SELECT u.id FROM uploads u WHERE u.name = acknowledgements.file_name
                                     AND u.sha256 = acknowledgements.file_sha256),
                        acked_document_id = (SELECT d.id FROM documents d WHERE d.sha256 = acknowledgements.file_sha256)
                    WHERE upload_id IS NULL OR acked_document_id IS NULL""")
    _reject_billing_files(conn)
    conn.execute("""UPDATE payments SET billing_document_id = (
                        SELECT d.id FROM documents d WHERE d.sha256 = payments.billing_sha256 AND d.kind = 'billing')
                    WHERE billing_document_id IS NULL""")
    # Lines not matched yet (the partial index lists them: usually none) whose billing file is
    # now known: matched, then applied.
    conn.execute("DROP TABLE IF EXISTS temp.unmatched")
    conn.execute("""CREATE TEMP TABLE unmatched AS SELECT id FROM payment_lines WHERE session_id IS NULL
                    AND payment_id IN (SELECT id FROM payments WHERE billing_document_id IS NOT NULL)""")
    conn.execute("""UPDATE payment_lines SET session_id = (
                        SELECT s.id FROM payments p
                        JOIN fee_notes f ON f.document_id = p.billing_document_id AND f.number = payment_lines.fee_note_number
                        JOIN sessions s ON s.fee_note_id = f.id AND s.line_no = payment_lines.line_no
                        WHERE p.id = payment_lines.payment_id)
                    WHERE id IN (SELECT id FROM temp.unmatched)""")
    _apply_payment_lines(conn, "id IN (SELECT id FROM temp.unmatched)", ())
    conn.execute("DROP TABLE temp.unmatched")
    if document_id is not None:
        # (A billing file's certificates were recounted as its sessions were counted: _set_counted.)
        _count_billed(conn, "answer_id IN (SELECT id FROM answers WHERE document_id = :doc)", {"doc": document_id})
    unmatched = []
    for query, said in (
        ("SELECT count(*) FROM answers WHERE request_id IS NULL",
         lambda n: ngettext("{n} answer matches no request", "{n} answers match no request", n)),
        ("SELECT count(*) FROM acknowledgements WHERE upload_id IS NULL AND acked_document_id IS NULL",
         lambda n: ngettext("{n} acknowledgement matches no uploaded or imported file",
                            "{n} acknowledgements match no uploaded or imported file", n)),
        ("SELECT count(*) FROM payments WHERE billing_document_id IS NULL",
         lambda n: ngettext("{n} payment statement matches no billing file",
                            "{n} payment statements match no billing file", n)),
        ("SELECT count(*) FROM payment_lines WHERE session_id IS NULL",
         lambda n: ngettext("{n} payment line matches no billed session", "{n} payment lines match no billed session", n)),
    ):
        n = conn.execute(query).fetchone()[0]
        if n:
            unmatched.append(said(n).format(n=n))
    return unmatched


def _count_billed(conn: sqlite3.Connection, where: str, params: dict) -> None:
    """Recount the sessions billed on the certificates ``where`` selects (rejected files aside)."""
    conn.execute(f"""UPDATE certificates SET sessions_billed = (
                         SELECT count(*) FROM {COUNTED_SESSIONS} WHERE f.certificate_number = certificates.number)
                     WHERE {where}""", params)


def _reject_billing_files(conn: sqlite3.Connection) -> None:
    """A billing file the CNS rejected (an acknowledgement says so) bills nothing: its sessions
    stop counting (month totals, certificates' counts, payments awaited), and a copy of one
    billed in another file counts in its place. Their rows stay, as the record of what was sent."""
    rejected = [row[0] for row in conn.execute(
        """SELECT DISTINCT d.id FROM acknowledgements a JOIN documents d ON d.id = a.acked_document_id
           WHERE a.accepted = 0 AND d.kind = 'billing' AND d.rejected = 0""")]
    for doc_id in rejected:
        conn.execute("UPDATE documents SET rejected = 1 WHERE id = ?", (doc_id,))
        _set_counted(conn, "SELECT id FROM sessions WHERE document_id = :doc", {"doc": doc_id}, False)
        _count_new(conn, """SELECT o.id FROM sessions o JOIN sessions n ON n.identity = o.identity AND n.document_id = :doc
                            WHERE o.document_id != :doc""", {"doc": doc_id})
