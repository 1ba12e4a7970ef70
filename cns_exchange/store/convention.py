"""What the convention asks of a practice beyond the exchange of files, from the practice database.

- The **final dietetic report**: at the end of a treatment, or when it is interrupted, the
  dietician sends a report to the prescribing doctor. :func:`final_reports_due` lists the
  treatments (one per certificate) that ended without a report marked sent;
  :func:`mark_final_report_sent` marks one (``cnsx report-sent``).
- The **IT flat rate** (article 38 of the convention): a yearly amount per practice that had
  enough prescriptions with reimbursed services in the year. :func:`it_flat_rate` gives the
  figures of a claim.

The figures of these rules (the flat rate, its threshold, the days without a session after
which a treatment counts as interrupted) are data, in ``data/convention.json``, with their
source. docs/cli.md says what each word means here, where the convention is silent.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from importlib import resources

from cns_exchange.store.database import BILLED_SESSIONS, CERTIFICATE_PATIENT
from cns_exchange.errors import ConfigError, InputError, UsageError
from cns_exchange.i18n import _


@dataclass(frozen=True)
class FlatRate:
    """The IT flat rate in force from ``from_year`` on (until the next entry's year)."""

    from_year: int
    yearly_amount: int      # cents
    threshold: int          # prescriptions with reimbursed services in a whole year
    source: str


@dataclass(frozen=True)
class Convention:
    """The figures of data/convention.json, checked."""

    flat_rates: tuple[FlatRate, ...]   # by from_year
    idle_days: int                     # no session for this many days, sessions left: interrupted

    def flat_rate(self, year: int) -> FlatRate:
        """Return the flat rate of ``year``; raises UsageError for a year before the first entry."""
        rates = [r for r in self.flat_rates if r.from_year <= year]
        if not rates:
            first = self.flat_rates[0].from_year
            raise UsageError(_("--year {year}: cnsx knows the IT flat rate from {first} on (earlier years had "
                               "transitional provisions that are not published)").format(year=year, first=first),
                             _("give a year from {first} on").format(first=first))
        return rates[-1]


@lru_cache(maxsize=1)
def load_convention() -> Convention:
    """Return the checked figures of data/convention.json; raises ConfigError if they are unusable."""
    name = "cns_exchange/domain/data/convention.json"
    try:
        raw = json.loads(resources.files("cns_exchange.domain.data").joinpath("convention.json").read_text("utf-8"))
        rates = []
        for entry in raw["it_flat_rate"]:
            amount = Decimal(str(entry["yearly_amount"]))
            if not amount.is_finite() or amount <= 0 or amount != amount.quantize(Decimal("0.01")):
                raise ValueError(f"yearly_amount {entry['yearly_amount']!r} is not a positive amount in cents")
            threshold = entry["threshold_prescriptions"]
            if not isinstance(threshold, int) or isinstance(threshold, bool) or threshold < 1:
                raise ValueError(f"threshold_prescriptions {threshold!r} is not a positive integer")
            if not str(entry["source"]).strip():
                raise ValueError("an entry of it_flat_rate has no source")
            rates.append(FlatRate(int(entry["from_year"]), int(amount * 100), threshold, entry["source"]))
        idle = raw["final_report"]["idle_days"]
        if not isinstance(idle, int) or isinstance(idle, bool) or idle < 1:
            raise ValueError(f"final_report.idle_days {idle!r} is not a positive integer")
    except (OSError, ValueError, KeyError, TypeError, InvalidOperation) as exc:
        raise ConfigError(_("{file}: unusable ({reason})").format(file=name, reason=str(exc)), _("reinstall cnsx")) from None
    if not rates or len({r.from_year for r in rates}) != len(rates):
        raise ConfigError(_("{file}: it_flat_rate needs entries of distinct years").format(file=name), _("reinstall cnsx"))
    return Convention(tuple(sorted(rates, key=lambda r: r.from_year)), idle)


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
    # Each certificate's last session is kept by import (certificates.last_session, version 7):
    # the treatments are one scan of the certificates, the names and prescribers looked up for
    # the rows shown only.
    return [dict(r) for r in conn.execute(f"""
        WITH ended AS (
            SELECT c.number, c.matricule, c.answer_id, c.valid_to, c.sessions_authorised, c.sessions_billed,
                   c.last_session,
                   CASE WHEN c.sessions_billed >= c.sessions_authorised THEN 'finished' ELSE 'interrupted' END AS ended,
                   CASE WHEN c.sessions_billed >= c.sessions_authorised THEN c.last_session
                        ELSE min(date(c.valid_to, '+1 day'), date(c.last_session, ?)) END AS due_since
            FROM certificates c
            WHERE c.superseded = 0 AND c.sessions_billed > 0 {case}
            AND NOT EXISTS (SELECT 1 FROM final_reports x WHERE x.certificate_number = c.number))
        SELECT c.number AS certificate, c.matricule, {CERTIFICATE_PATIENT} AS patient, r.prescriber, c.valid_to,
               c.sessions_authorised, c.sessions_billed, c.last_session, c.ended, c.due_since
        FROM (SELECT * FROM ended WHERE due_since <= ? ORDER BY due_since, number LIMIT 1000) c
        LEFT JOIN answers a ON a.id = c.answer_id LEFT JOIN requests r ON r.id = a.request_id
        ORDER BY c.due_since, c.number""", (idle, *params, today.isoformat()))]


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
        raise UsageError(_("--date {day}: after today ({today}); a report cannot have been sent yet").format(
                             day=sent_on.isoformat(), today=today),   # (the option's argument as typed)
                         _("give the day the report was sent, or leave --date out for today"))
    row = conn.execute("SELECT c.number, c.valid_from, c.superseded, a.request_id FROM certificates c "
                       "JOIN answers a ON a.id = c.answer_id WHERE c.number = ?", (certificate,)).fetchone()
    if row is None:
        raise InputError(_("{certificate}: no such certificate in the practice database").format(certificate=certificate),
                         _("check the number (cnsx status lists the reports due), or import the CNS's answers first"))
    if row["superseded"]:
        standing = conn.execute("SELECT c.number FROM certificates c JOIN answers a ON a.id = c.answer_id "
                                "WHERE a.request_id = ? AND c.superseded = 0", (row["request_id"],)).fetchone()
        if standing:
            raise InputError(_("{certificate}: superseded by a later answer of the CNS to its request (certificate "
                               "{standing})").format(certificate=certificate, standing=standing[0]),
                             _("mark the certificate that stands"))
        raise InputError(_("{certificate}: superseded by a later answer of the CNS to its request").format(
            certificate=certificate), _("check the number"))
    if sent_on.isoformat() < row["valid_from"]:
        raise InputError(_("--date {day}: before the treatment could begin ({certificate} is valid from {start})").format(
            day=sent_on.isoformat(), certificate=certificate, start=date.fromisoformat(row["valid_from"])),
            _("give the day the report was sent"))
    inserted = conn.execute("INSERT INTO final_reports (certificate_number, sent_on, recorded_at) VALUES (?, ?, ?) "
                            "ON CONFLICT (certificate_number) DO NOTHING",
                            (certificate, sent_on.isoformat(), now.isoformat(timespec="seconds"))).rowcount
    if inserted:
        return ReportMark(certificate, sent_on, already=False)
    earlier = conn.execute("SELECT sent_on FROM final_reports WHERE certificate_number = ?", (certificate,)).fetchone()
    return ReportMark(certificate, date.fromisoformat(earlier[0]), already=True)


# --- the IT flat rate --------------------------------------------------------------------------

def it_flat_rate(conn: sqlite3.Connection, year: int, today: date) -> dict:
    """Return the figures of the IT flat rate of ``year`` (one status row).

    ``prescriptions``: the prescriptions (requests; a certificate with no request in the
    database counts as its own) with at least one billed session (counted) dated in ``year``
    that the CNS paid more than 0 for; ``awaiting_payment``: the others of the year with a
    session not paid yet, which may still count. The practice's activity starts on its first
    request sent or session billed: when that falls within ``year`` the threshold (rounded
    up) and the amount (to the cent, half up) are prorated by days. ``qualifies`` when it had
    activity and the prescriptions reach the threshold; ``year_ended`` is false while the year
    runs. ``amount`` is in cents. Raises UsageError for a year the data table has no rate for.
    """
    rate = load_convention().flat_rate(year)
    first, last = date(year, 1, 1), date(year, 12, 31)
    prescriptions = awaiting = 0
    providers: set[str] = set()
    for row in conn.execute(f"""
            SELECT max(coalesce(s.paid, 0) > 0) AS reimbursed, max(s.paid IS NULL) AS unpaid,
                   group_concat(DISTINCT d.provider) AS providers
            FROM {BILLED_SESSIONS} LEFT JOIN certificates c ON c.number = f.certificate_number
            LEFT JOIN answers a ON a.id = c.answer_id
            WHERE s.session_date BETWEEN ? AND ?
            GROUP BY coalesce('request ' || a.request_id, 'certificate ' || f.certificate_number)""",
            (first.isoformat(), last.isoformat())):
        prescriptions += row["reimbursed"]
        awaiting += 1 if not row["reimbursed"] and row["unpaid"] else 0
        providers.update(row["providers"].split(","))
    started = conn.execute("""
        SELECT min(day) FROM (SELECT min(substr(created_at, 1, 10)) AS day FROM documents WHERE kind IN ('request', 'billing')
                              UNION ALL SELECT min(session_date) FROM sessions WHERE counted = 1)""").fetchone()[0]
    period_from = None if started is None or started > last.isoformat() else max(first, date.fromisoformat(started))
    days = (last - period_from).days + 1 if period_from else 0
    year_days = (last - first).days + 1
    threshold = -(-rate.threshold * days // year_days)                  # rounded up: at least the prorated figure
    cents = (2 * rate.yearly_amount * days + year_days) // (2 * year_days)  # half up
    return {"year": year, "providers": ";".join(sorted(providers)),
            "period_from": period_from.isoformat() if period_from else None, "period_to": last.isoformat(),
            "prescriptions": prescriptions, "awaiting_payment": awaiting, "threshold": threshold,
            "qualifies": days > 0 and prescriptions >= threshold, "amount": cents,
            "year_ended": today > last}
