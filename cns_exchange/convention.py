"""What the convention asks of a practice beyond the exchange of files, from the practice database.

- The **final dietetic report**: at the end of a treatment, or when it is interrupted, the
  dietician sends a report to the prescribing doctor. :func:`final_reports_due` lists the
  treatments (one per certificate) that ended without a report marked sent;
  :func:`mark_final_report_sent` marks one (``cnsx report-sent``).

The figures of these rules (the days without a session after which a treatment counts as
interrupted) are data, in ``data/convention.json``, with their source. docs/cli.md says what
each word means here, where the convention is silent.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from importlib import resources

from cns_exchange.database import BILLED_SESSIONS
from cns_exchange.errors import ConfigError, InputError, UsageError


@dataclass(frozen=True)
class Convention:
    """The figures of data/convention.json, checked."""

    idle_days: int                     # no session for this many days, sessions left: interrupted


@lru_cache(maxsize=1)
def load_convention() -> Convention:
    """Return the checked figures of data/convention.json; raises ConfigError if they are unusable."""
    name = "cns_exchange/data/convention.json"
    try:
        raw = json.loads(resources.files("cns_exchange.data").joinpath("convention.json").read_text("utf-8"))
        idle = raw["final_report"]["idle_days"]
        if not isinstance(idle, int) or isinstance(idle, bool) or idle < 1:
            raise ValueError(f"final_report.idle_days {idle!r} is not a positive integer")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{name}: unusable ({exc})", "reinstall cnsx") from None
    return Convention(idle)


# --- the final dietetic report -----------------------------------------------------------------

def final_reports_due(conn: sqlite3.Connection, today: date, certificate: str | None = None,
                      patient: str | None = None) -> list[dict]:
    """Return the treatments that ended on or before ``today`` and whose final report is not
    marked sent, the longest due first (at most 1,000), optionally of one certificate or patient.

    One treatment is one certificate that stands (not superseded) with at least one billed
    session (counted). It is ``finished`` when all its authorised sessions are billed, from
    the day of its last session; ``interrupted`` when sessions are left and either the
    certificate expired (from the day after ``valid_to``) or no session was billed for
    ``idle_days`` days (from the last session + ``idle_days``), whichever comes first.
    A certificate with no session billed is a treatment that never began: nothing is due.
    """
    idle = f"+{load_convention().idle_days} days"
    case, params = "", ()
    if certificate:
        case, params = " AND c.number = ?", (certificate,)
    elif patient:
        case, params = " AND c.matricule = ?", (patient,)
    # Materialised: each treatment's last session is looked up once (not again for the WHERE
    # and the ORDER BY), and the prescriber only for the rows shown.
    return [dict(r) for r in conn.execute(f"""
        WITH started AS MATERIALIZED (
            SELECT c.number, c.matricule, c.answer_id, c.valid_to, c.sessions_authorised, c.sessions_billed,
                   (SELECT max(s.session_date) FROM {BILLED_SESSIONS} WHERE f.certificate_number = c.number)
                       AS last_session
            FROM certificates c
            WHERE c.superseded = 0 AND c.sessions_billed > 0 {case}
            AND NOT EXISTS (SELECT 1 FROM final_reports x WHERE x.certificate_number = c.number)),
        ended AS MATERIALIZED (
            SELECT *, CASE WHEN sessions_billed >= sessions_authorised THEN 'finished' ELSE 'interrupted' END AS ended,
                   CASE WHEN sessions_billed >= sessions_authorised THEN last_session
                        ELSE min(date(valid_to, '+1 day'), date(last_session, ?)) END AS due_since
            FROM started)
        SELECT e.number AS certificate, e.matricule, r.prescriber, e.valid_to, e.sessions_authorised,
               e.sessions_billed, e.last_session, e.ended, e.due_since
        FROM (SELECT * FROM ended WHERE due_since <= ? ORDER BY due_since, number LIMIT 1000) e
        LEFT JOIN answers a ON a.id = e.answer_id LEFT JOIN requests r ON r.id = a.request_id
        ORDER BY e.due_since, e.number""", (*params, idle, today.isoformat()))]


@dataclass(frozen=True)
class ReportMark:
    """The final report of ``certificate``'s treatment, marked sent on ``sent_on``."""

    certificate: str
    sent_on: date
    already: bool     # marked before (``sent_on`` is the day recorded then): nothing changed


def mark_final_report_sent(conn: sqlite3.Connection, certificate: str, sent_on: date, today: date,
                           now: datetime) -> ReportMark:
    """Record that the final report of ``certificate``'s treatment went to the prescriber on
    ``sent_on``; return what the database holds. Marking again changes nothing (``already``).

    Raises UsageError for a day after ``today``; InputError for a certificate the database
    does not know, one superseded by a later answer, or a day before the certificate's validity.
    """
    if sent_on > today:
        raise UsageError(f"--date {sent_on}: after today ({today}); a report cannot have been sent yet",
                         "give the day the report was sent, or leave --date out for today")
    row = conn.execute("SELECT c.number, c.valid_from, c.superseded, a.request_id FROM certificates c "
                       "JOIN answers a ON a.id = c.answer_id WHERE c.number = ?", (certificate,)).fetchone()
    if row is None:
        raise InputError(f"{certificate}: no such certificate in the practice database",
                         "check the number (cnsx status lists the reports due), or import the CNS's answers first")
    if row["superseded"]:
        standing = conn.execute("SELECT c.number FROM certificates c JOIN answers a ON a.id = c.answer_id "
                                "WHERE a.request_id = ? AND c.superseded = 0", (row["request_id"],)).fetchone()
        raise InputError(f"{certificate}: superseded by a later answer of the CNS to its request"
                         + (f" (certificate {standing[0]})" if standing else ""),
                         "mark the certificate that stands" if standing else "check the number")
    if sent_on.isoformat() < row["valid_from"]:
        raise InputError(f"--date {sent_on}: before the treatment could begin ({certificate} is valid from "
                         f"{row['valid_from']})", "give the day the report was sent")
    inserted = conn.execute("INSERT INTO final_reports (certificate_number, sent_on, recorded_at) VALUES (?, ?, ?) "
                            "ON CONFLICT (certificate_number) DO NOTHING",
                            (certificate, sent_on.isoformat(), now.isoformat(timespec="seconds"))).rowcount
    if inserted:
        return ReportMark(certificate, sent_on, already=False)
    earlier = conn.execute("SELECT sent_on FROM final_reports WHERE certificate_number = ?", (certificate,)).fetchone()
    return ReportMark(certificate, date.fromisoformat(earlier[0]), already=True)
