"""Treatment rules shared by build and validate.

An initial treatment is ZD11, then ZD12, then up to 4 x ZD13, in that order; an extension is
up to 4 x ZD21 on its own certificate, after a complete initial treatment; at most one
consultation per patient per day; a prescription is submitted within 90 days of its date.
The sequences and limits come from ``data/codes.json``.

Checkers return ``(issue code, message)`` pairs; callers add the location.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from cns_exchange.domain.identifiers import Problem, anniversary
from cns_exchange.i18n import _
from cns_exchange.domain.nomenclature import Codes


@dataclass(slots=True)
class _CertificateState:
    matricule: str
    kind: str
    position: int = -1          # index in the sequence of the last act seen
    counts: dict[str, int] = field(default_factory=dict)


class SessionRules:
    """Checks sessions one by one, in date order per certificate, across a whole file."""

    def __init__(self, codes: Codes) -> None:
        self.codes = codes
        self._positions: dict[str, tuple[str, int, int]] = {}
        for kind in codes.treatments:
            for index, (act, limit) in enumerate(codes.treatment_sequence(kind)):
                self._positions[act] = (kind, index, limit)
        self._certificates: dict[str, _CertificateState] = {}
        self._patient_days: dict[str, set[date]] = {}

    def check(self, certificate: str, matricule: str, day: date, act: str) -> list[Problem]:
        """Check one session against what was seen before; return its problems."""
        problems: list[Problem] = []
        days = self._patient_days.get(matricule)
        if days is None:
            self._patient_days[matricule] = {day}
        elif day in days:
            problems.append(("TRT05", _("a consultation for this patient on {day} is already billed").format(day=day)))
        else:
            days.add(day)
        kind, position, limit = self._positions[act]
        state = self._certificates.get(certificate)
        if state is None:
            self._certificates[certificate] = _CertificateState(matricule, kind, position, {act: 1})
            return problems
        if state.matricule != matricule:
            problems.append(("TRT09", _("certificate {certificate} is already used for another patient").format(certificate=certificate)))
            return problems
        if state.kind != kind:
            problems.append(("TRT03", _("{act} belongs to an {kind} treatment, certificate {certificate} to an {other} one")
                             .format(act=act, kind=kind, certificate=certificate, other=state.kind)))
            return problems
        count = state.counts.get(act, 0) + 1
        state.counts[act] = count
        if count > limit:
            problems.append(("TRT02", _("session {count} of {act} on certificate {certificate}: at most {limit}")
                             .format(count=count, act=act, certificate=certificate, limit=limit)))
        if position < state.position:
            previous = self.codes.treatment_sequence(kind)[state.position][0]
            order = " → ".join(a for a, _limit in self.codes.treatment_sequence(kind))
            problems.append(("TRT01", _("{act} on {day} comes after {previous}: the order is {order}")
                             .format(act=act, day=day, previous=previous, order=order)))
        else:
            state.position = position
        return problems

    def forget(self, certificate: str | None = None, matricule: str | None = None) -> None:
        """Let go of what was seen of ``certificate`` and of the patient ``matricule``: the
        caller knows that no later session names them (a build that has sorted its input),
        so that a file of any size is checked in bounded memory."""
        if certificate is not None:
            self._certificates.pop(certificate, None)
        if matricule is not None:
            self._patient_days.pop(matricule, None)


def check_prescription_age(prescribed: date, submitted: date, max_days: int) -> list[Problem]:
    """Check that a prescription is submitted within ``max_days`` of its date, not before it."""
    if prescribed > submitted:
        return [("TRT07", _("prescription date {prescribed} is after the submission date {submitted}")
                 .format(prescribed=prescribed, submitted=submitted))]
    age = (submitted - prescribed).days
    if age > max_days:
        return [("TRT06", _("prescription of {prescribed} is {age} days old on {submitted} (at most {max_days})")
                 .format(prescribed=prescribed, age=age, submitted=submitted, max_days=max_days))]
    return []


def within_years(first: date, second: date, years: int) -> bool:
    """True if the later of two dates comes before the ``years``-th anniversary of the earlier
    (identifiers.anniversary): on the anniversary itself the period is over."""
    earlier, later = min(first, second), max(first, second)
    return later < anniversary(earlier, years)


class RequestRules:
    """Cross-request rules within one request file."""

    def __init__(self, codes: Codes) -> None:
        self.codes = codes
        self._initial: dict[tuple[str, str], date] = {}
        self._extension: dict[tuple[str, str], date] = {}

    def check(self, matricule: str, pathologies: list[str], treatment: str, prescribed: date) -> list[Problem]:
        """Check one request against the earlier requests of the same file."""
        problems: list[Problem] = []
        years = self.codes.initial_treatment_interval_years
        for code in pathologies:
            key = (matricule, code)
            if treatment == "initial":
                other = self._initial.get(key)
                if other is not None and within_years(other, prescribed, years):
                    problems.append(("TRT08", _("a second initial treatment for {code} within {years} years in this file")
                                     .format(code=code, years=years)))
                self._initial.setdefault(key, prescribed)
                if key in self._extension:
                    problems.append(("TRT04", _("an extension for {code} is requested in the same file as its initial treatment")
                                     .format(code=code)))
            else:
                if key in self._initial:
                    problems.append(("TRT04", _("extension for {code} requested in the same file as its initial treatment, "
                                               "which cannot be complete yet").format(code=code)))
                self._extension.setdefault(key, prescribed)
        return problems
