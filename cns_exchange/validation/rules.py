"""The one rule engine: every business rule of requests and billed sessions, written once.

build-request and build-invoice call it on the practice's rows, validate on the items of a
document; nothing else decides these rules (the sandbox stays a separate judge, as the CNS
is, and tests compare the two). A problem comes back as data, ``(index, code, message,
field)``: ``index`` is the session within its fee note (-1 for the note or the request
itself), ``field`` one of :data:`FIELDS`, which each caller places in its own terms (a CSV
column, or an element's XPath).

Speed comes from doing work once per distinct value: a matricule, a provider, an (act, date,
age band) price are checked or computed once per run, whatever the number of sessions.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Protocol, Sequence

from cns_exchange.issues import CATALOGUE, ERROR
from cns_exchange.domain.model import money
from cns_exchange.domain.identifiers import anniversary, birth_date, check_matricule, check_prescriber, check_provider
from cns_exchange.domain.nomenclature import CURRENT_FOR_MONTHS, Codes, Nomenclature, NoTariffError, PrescriptionDateNeeded, Price
from cns_exchange.domain.treatment import RequestRules, SessionRules, check_prescription_age, within_years
from cns_exchange.i18n import _

#: The logical fields a problem can name.
FIELDS = ("matricule", "certificate_number", "prescriber_code", "prescription_date", "pathology_codes",
          "treatment", "requested_acts", "session_date", "act_code", "executing_provider", "gross",
          "patient_share", "cns_share", "line_no", "session")

#: A rule's finding about a row: (row index, issue code, message, field of FIELDS).
RowProblem = tuple[int, str, str, str]

#: Where a treatment rule of a session points in a row (TRT01-TRT03 are about the act).
_SESSION_RULE_FIELD = {"TRT05": "session_date", "TRT09": "matricule"}
#: Rules about a session as a whole: a document names the session element for them.
SESSION_WIDE = frozenset({"TRT01", "TRT02", "TRT03", "TRT05", "TRT09"})
#: Schema versions whose billing files cannot carry the prescription date: the patient share
#: of their sessions is judged on the session date, as those versions were made to.
SHARE_ON_SESSION_DATE = frozenset({"1"})


def check_acts_known(codes: Codes, act: str) -> list[tuple[str, str]]:
    """ACT01 for an act code that is not in the nomenclature."""
    if act in codes.acts:
        return []
    return [("ACT01", _("act code '{act}' is not one of {acts}").format(act=act, acts=", ".join(codes.acts)))]


def check_pathologies(codes: Codes, pathologies: Sequence[str]) -> list[tuple[str, str]]:
    """PAT01 for each pathology code that is not one of annex E's."""
    return [("PAT01", _("pathology code '{code}' is not one of D01-D15").format(code=code)) for code in pathologies
            if code not in codes.pathologies]


def check_requested_acts(codes: Codes, treatment: str, acts: Sequence[tuple[str, int]]) -> list[tuple[str, str]]:
    """TRT03 for an act that is not part of the treatment, TRT02 for a count over its limit."""
    if treatment not in codes.treatments:
        return []
    limits = dict(codes.treatment_sequence(treatment))
    problems = []
    for act, count in acts:
        if act not in limits:
            problems.append(("TRT03", _("act {act} is not part of an {treatment} treatment").format(act=act, treatment=treatment)))
        elif count > limits[act]:
            problems.append(("TRT02", _("{count} x {act} requested, at most {limit}").format(count=count, act=act, limit=limits[act])))
    return problems


class TreatmentHistory(Protocol):
    """What the practice database knows of a patient's earlier treatments (database.TreatmentHistory)."""

    def treatments(self, matricule: str, pathology: str, besides: str) -> list[tuple[str, str, date]]:
        """(treatment, certificate, start) of each certificate standing for the patient and
        pathology, but the request ``besides``'s; start: its first session billed, else the
        start of its validity."""


class RequestChecks:
    """Every rule of the requests of one file, in file order; with a ``history`` (the practice
    database), also against the treatments granted before (TRT08, TRT10, TRT11)."""

    def __init__(self, codes: Codes, submitted: date | None, history: TreatmentHistory | None = None) -> None:
        self.codes = codes
        self.submitted = submitted
        self.history = history
        self._cross = RequestRules(codes)
        self._matricules: dict[str, list[tuple[str, str]]] = {}

    def matricule(self, matricule: str) -> list[tuple[str, str]]:
        """MAT01-MAT05 of a matricule (checked once per distinct value)."""
        found = self._matricules.get(matricule)
        if found is None:
            found = self._matricules[matricule] = check_matricule(matricule)
        return found

    def request(self, matricule: str | None, prescriber: str | None, prescribed: date | None,
                pathologies: Sequence[str], treatment: str | None, acts: Sequence[tuple[str, int]],
                reference: str = "") -> list[RowProblem]:
        """Check one request against the rules and the earlier requests of its file.

        A value given as None could not be read (its own problem is reported by the reader):
        the rules that need it are left out, the others still run, so that one run reports
        every problem of a row.
        """
        out: list[RowProblem] = []
        add = out.append
        codes = self.codes
        if matricule is not None:
            for code, message in self.matricule(matricule):
                add((-1, code, message, "matricule"))
        if prescriber is not None:
            for code, message in check_prescriber(prescriber):
                add((-1, code, message, "prescriber_code"))
        for code, message in check_pathologies(codes, pathologies):
            add((-1, code, message, "pathology_codes"))
        for act, _count in acts:
            for code, message in check_acts_known(codes, act):
                add((-1, code, message, "requested_acts"))
        if treatment is not None:
            for code, message in check_requested_acts(codes, treatment, [(a, n) for a, n in acts if a in codes.acts]):
                add((-1, code, message, "requested_acts"))
        if prescribed is not None and self.submitted is not None:
            for code, message in check_prescription_age(prescribed, self.submitted, codes.prescription_max_age_days):
                add((-1, code, message, "prescription_date"))
        if matricule is not None and prescribed is not None and treatment in codes.treatments \
                and all(CATALOGUE[problem[1]].severity != ERROR for problem in out):
            known = [c for c in pathologies if c in codes.pathologies]
            for code, message in self._cross.check(matricule, known, treatment, prescribed):
                add((-1, code, message, "treatment"))
            if self.history is not None:
                for code, message in self._earlier(matricule, known, treatment, prescribed, reference):
                    add((-1, code, message, "treatment"))
        return out

    def _earlier(self, matricule: str, pathologies: list[str], treatment: str, prescribed: date,
                 reference: str) -> list[tuple[str, str]]:
        """The rules of a request against the treatments granted before, per pathology: one
        initial treatment per pathology per 3 years (TRT08); an extension within 3 years of
        the start of its initial treatment (TRT11), once (TRT10). CNS statutes, as the CNS's
        dietetics pages state them."""
        codes, problems = self.codes, []
        for code in pathologies:
            granted = self.history.treatments(matricule, code, reference)
            initials = sorted((start, number) for kind, number, start in granted if kind == "initial")
            if treatment == "initial":
                for start, number in initials:
                    if within_years(start, prescribed, codes.initial_treatment_interval_years):
                        problems.append(("TRT08", _("an initial treatment for {code} began on {start} (certificate {number}): "
                                                    "no other before {until}").format(
                            code=code, start=start, number=number, until=anniversary(start, codes.initial_treatment_interval_years))))
                continue
            before = [(start, number) for start, number in initials if start <= prescribed]
            if not before:
                continue  # no initial treatment known here: the CNS judges it (its R03)
            start, number = before[-1]
            end = anniversary(start, codes.extension_window_years)
            if prescribed >= end:
                problems.append(("TRT11", _("the initial treatment for {code} began on {start} (certificate {number}): "
                                            "an extension is possible until {last}").format(
                    code=code, start=start, number=number, last=end - timedelta(days=1))))
            extensions = [n for kind, n, when in granted if kind == "extension" and when >= start]
            if len(extensions) >= codes.extensions_per_initial:
                problems.append(("TRT10", _("the initial treatment for {code} of {start} has had its extension already "
                                            "(certificate {numbers})").format(code=code, start=start, numbers=", ".join(extensions))))
        return problems


class BillingChecks:
    """Every rule of billed sessions, across the fee notes of one file (or one input).

    ``created`` is the file's creation date (no session after it); ``certificates`` (a
    build.CertificateBook) checks sessions against the certificates imported from the CNS;
    ``share_on_session_date`` judges the patient share on the session date, for a document
    of a version that cannot carry the prescription date (:data:`SHARE_ON_SESSION_DATE`).
    """

    def __init__(self, codes: Codes, nomenclature: Nomenclature, created: date | None, certificates=None,
                 share_on_session_date: bool = False) -> None:
        self.codes = codes
        self.nomenclature = nomenclature
        self.created = created
        self.certificates = certificates
        self.share_on_session_date = share_on_session_date
        self.treatment = SessionRules(codes)
        self._matricules: dict[str, tuple[list[tuple[str, str]], date | None]] = {}
        self._providers: dict[str, list[tuple[str, str]]] = {}
        # NOM05 is said once per file, at its first session dated after this day.
        self._current_until = nomenclature.current_until() or date.max

    def matricule(self, matricule: str) -> tuple[list[tuple[str, str]], date | None]:
        """(MAT problems, birth date or None when the matricule is unusable), once per value."""
        found = self._matricules.get(matricule)
        if found is None:
            problems = check_matricule(matricule)
            usable = all(code == "MAT04" for code, _message in problems)
            found = self._matricules[matricule] = (problems, birth_date(matricule) if usable else None)
        return found

    def forget(self, certificate: str | None = None, matricule: str | None = None) -> None:
        """Let go of what the rules keep of ``certificate`` and of the patient ``matricule``
        (SessionRules.forget, and the certificates' counts): no later fee note names them."""
        self.treatment.forget(certificate, matricule)
        if matricule is not None:
            self._matricules.pop(matricule, None)
        if certificate is not None and self.certificates is not None:
            self.certificates.forget(certificate)

    def values(self, matricule: str | None, act: str | None, provider: str | None) -> list[tuple[str, str, str]]:
        """(code, message, field) of the rules of single values, for a session that cannot be
        checked whole (another of its values could not be read): one run still reports them."""
        out = []
        if matricule is not None:
            out += [(code, message, "matricule") for code, message in self.matricule(matricule)[0]]
        if act is not None:
            out += [(code, message, "act_code") for code, message in check_acts_known(self.codes, act)]
        if provider:
            out += [(code, message, "executing_provider") for code, message in self._provider(provider)]
        return out

    def _provider(self, code: str) -> list[tuple[str, str]]:
        found = self._providers.get(code)
        if found is None:
            if len(self._providers) > 1 << 16:  # (a cache: a file of countless providers stays in bounded memory)
                self._providers.clear()
            found = self._providers[code] = check_provider(code)
        return found

    def fee_note(self, certificate: str, matricule: str, days: Sequence[date], acts: Sequence[str],
                 providers: Sequence[str], billed: tuple[Sequence[int], Sequence[int], Sequence[int], Sequence[int]] | None = None,
                 prescribed: date | None = None) -> tuple[list[Price | None], list[RowProblem]]:
        """Check one fee note's sessions, in their order; return (prices, problems).

        ``prices[i]`` is the tariff's price of session i (None where it cannot be priced).
        With ``billed`` = (line numbers, gross, patient shares, CNS shares), as a document
        states them, those are checked against the tariff (NOM02-NOM04, DOC08).
        ``prescribed`` is the date of the certificate's prescription (None: not known); the
        patient's age on it decides the patient share (NOM06 when it is needed and not known,
        NOM08 for a session before it).
        """
        out: list[RowProblem] = []
        add = out.append
        mat_problems, born = self.matricule(matricule)
        for code, message in mat_problems:
            add((-1, code, message, "matricule"))
        created, check_session, book = self.created, self.treatment.check, self.certificates
        current_until = self._current_until
        price_for, known_acts, provider_checked = self.nomenclature.price_for, self.codes.acts, self._providers
        prices: list[Price | None] = []
        seen_lines: dict[int, int] = {}
        on_session_date, share_asked = self.share_on_session_date, False
        for i, day in enumerate(days):
            act, executing = acts[i], providers[i]
            price: Price | None = None
            if created is not None and day > created:
                add((i, "TRT07", _("session date {day} is after the file's creation date {created}").format(day=day, created=created),
                     "session_date"))
            if day > current_until:
                newest = self.nomenclature.tables[-1]
                add((i, "NOM05", _("sessions after {until} are priced with the newest tariff table, {table}, "
                                   "in force since {start}: tariffs follow the wage index, a table more than "
                                   "{months} months old may be out of date").format(
                    until=current_until, table=newest.path, start=newest.valid_from, months=CURRENT_FOR_MONTHS), "session_date"))
                current_until = self._current_until = date.max
            if prescribed is not None and prescribed > day:
                add((i, "NOM08", _("session date {day} is before the prescription date {prescribed}").format(day=day, prescribed=prescribed),
                     "prescription_date"))
            provider_problems = provider_checked.get(executing)
            if provider_problems is None:
                provider_problems = self._provider(executing)
            for code, message in provider_problems:
                add((i, code, message, "executing_provider"))
            if billed is not None:
                line_no, gross, share, cns = billed[0][i], billed[1][i], billed[2][i], billed[3][i]
                if line_no in seen_lines:
                    add((i, "DOC08", _("line number {line} appears twice in the fee note (sessions {first} and {second})")
                         .format(line=line_no, first=seen_lines[line_no], second=i + 1), "line_no"))
                else:
                    seen_lines[line_no] = i + 1
                if gross != share + cns:
                    add((i, "NOM04", _("{gross} ≠ {share} + {cns}").format(gross=money(gross), share=money(share), cns=money(cns)),
                         "gross"))
            if act not in known_acts:
                for code, message in check_acts_known(self.codes, act):
                    add((i, code, message, "act_code"))
                prices.append(None)
                continue
            for code, message in check_session(certificate, matricule, day, act):
                add((i, code, message, _SESSION_RULE_FIELD.get(code, "act_code")))
            if born is not None:
                try:
                    price = price_for(act, day, born, day if on_session_date else prescribed)
                    if on_session_date and prescribed is not None and not share_asked \
                            and price_for(act, day, born, prescribed) != price:
                        share_asked = True
                        add((i, "NOM06", _("the patient share on the prescription date {prescribed} is not the one on the "
                                           "session date {day}, on which schema version 1 judges it: that version cannot "
                                           "carry the prescription date").format(prescribed=prescribed, day=day), "prescription_date"))
                except NoTariffError:
                    add((i, "NOM01", _("no tariff table is in force on {day}").format(day=day), "session_date"))
                except PrescriptionDateNeeded as exc:
                    if not share_asked:
                        share_asked = True
                        add((i, "NOM06", _("the patient came of age on {birthday}, less than {years} years before the "
                                           "session of {day}: the share depends on the prescription date, which is not known")
                             .format(birthday=exc.birthday, years=self.nomenclature.reach, day=day), "prescription_date"))
                else:
                    if billed is not None:
                        if price.gross != gross:
                            add((i, "NOM02", _("{act} on {day} costs {price}, billed {billed}").format(
                                act=act, day=day, price=money(price.gross), billed=money(gross)), "gross"))
                        elif price.patient_share != share:
                            add((i, "NOM03", _("patient share should be {price}, billed {billed}").format(
                                price=money(price.patient_share), billed=money(share)), "patient_share"))
            if book is not None:
                for code, message in book.check(certificate, matricule, day, act):
                    add((i, code, message, "certificate_number"))
            prices.append(price)
        return prices, out
