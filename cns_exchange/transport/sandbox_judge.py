"""The sandbox's model of the CNS: what it answers to a deposited file (docs/sandbox.md).

:class:`Judge` decides, for the sandbox (:mod:`cns_exchange.transport.sandbox`, which reads
the deposits, keeps the state and writes the return files): whether a file is accepted (the
acknowledgement), whether each request gets a certificate or a refusal with every reason
that applies (``R01``-``R09``), and whether each billed session is paid or disputed
(``C01``-``C07``), with the reason codes of ``data/codes.json``. It is a separate judge, on
purpose: it remembers what it granted and paid as the CNS would, and is compared with cnsx's
own rule engine by the tests, not built on it. docs/sandbox.md lists these rules; the
constants below follow it.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from cns_exchange.domain.identifiers import anniversary, birth_date
from cns_exchange.domain.model import Anomaly, Answer, Certificate, CertificateRequest, FeeNote, PaymentLine
from cns_exchange.domain.nomenclature import Codes, Nomenclature, NoTariffError, add_months
from cns_exchange.domain.treatment import within_years
from cns_exchange.validation.validate import Report, check_attachment

if TYPE_CHECKING:  # pragma: no cover
    from cns_exchange.transport.sandbox import State

#: A certificate is valid from the prescription date for this many months (minus one day).
VALIDITY_MONTHS = 6
#: The payment statement announces the transfer this many days after reception.
PAYMENT_DELAY_DAYS = 5
#: Certificate numbers of a year start after this number; each seed gets its own block.
CERTIFICATE_BASE = 100
SEED_BLOCK = 1000
#: The refusal code of a request whose prescription PDF was not deposited (or differs).
MISSING_PRESCRIPTION = "R06"
#: Document kinds a practice deposits; anything else is rejected in the acknowledgement.
DEPOSIT_KINDS = ("request", "billing")

_LABEL_MAX = 100  # T_Nom: the longest Libelle the schema allows


def validity_end(start: date) -> date:
    """Return the last day of validity of a certificate whose validity starts on ``start``:
    the day before the same day :data:`VALIDITY_MONTHS` months later, or that month's last
    day when the same day does not exist in it (2026-08-31 -> 2027-02-28)."""
    end = add_months(start, VALIDITY_MONTHS)
    return end - timedelta(days=1) if end.day == start.day else end


def _label(text: str) -> str:
    """Return ``text`` as a Libelle: one line, no outer blanks, at most 100 characters."""
    text = " ".join(text.split())
    if len(text) > _LABEL_MAX:
        text = text[:_LABEL_MAX - 1].rstrip() + "…"
    return text or "?"


def _began(certificate: dict) -> date:
    """When the treatment of a certificate the sandbox granted began: its first paid session,
    else the first day of its validity."""
    return date.fromisoformat(min(certificate["days"], default=certificate["valid_from"]))


class Judge:
    """The CNS's decisions on what a practice deposits in ``upload``, given its ``codes``
    (refusal and dispute reasons, treatment limits) and ``nomenclature`` (tariffs); ``seed``
    gives the certificate numbers and payment references their own block. What it grants and
    pays is written into the sandbox's state, which it reads back for later deposits."""

    def __init__(self, codes: Codes, nomenclature: Nomenclature, upload: Path, seed: int = 0) -> None:
        self.codes = codes
        self.nomenclature = nomenclature
        self.upload = upload
        self.seed = seed

    def rejection(self, report: Report) -> list[Anomaly]:
        """The anomalies that make the acknowledgement a rejection (none: accepted)."""
        errors = [i for i in report.issues if i.is_error]
        if errors:
            return [Anomaly(i.code, _label(i.message), i.xpath) for i in errors]
        if report.kind not in DEPOSIT_KINDS:
            return [Anomaly("DOC06", _label(f"a document of kind {report.kind} is a CNS return file: "
                                            "deposit request or billing files only"), "")]
        return []

    def answer(self, r: CertificateRequest, xpath: str, state: State, received: datetime, provider: str) -> Answer:
        """Grant a certificate for one request, or refuse it with every reason that applies."""
        reasons = self.codes.refusal_reasons
        refusal: list[Anomaly] = []

        def refuse(code: str, element: str) -> None:
            refusal.append(Anomaly(code, _label(reasons[code]), xpath + element))

        for j, code in enumerate(r.pathology_codes, 1):
            if code not in self.codes.pathologies:
                refuse("R01", f"/CodesPathologie/CodePathologie[{j}]")
        if (received.date() - r.prescription_date).days > self.codes.prescription_max_age_days:
            refuse("R02", "/DateOrdonnance")
        if r.treatment == "extension" and not all(self._initial_complete(state, r.matricule, code)
                                                  for code in r.pathology_codes):
            refuse("R03", "/TypeTraitement")
        reference = f"{provider}/{r.request_ref}"
        keys = [f"{r.matricule}/{code}/{r.prescription_date.isoformat()}" for code in r.pathology_codes]
        if reference in state["requests"]:
            refuse("R04", "/ReferenceDemande")
        elif any(state.is_granted(key) for key in keys):
            refuse("R04", "/DateOrdonnance")
        else:  # (a request sent again is a duplicate, not a second treatment)
            for code in self._history_refusals(state, r):
                refuse(code, "/DateOrdonnance" if code == "R09" else "/TypeTraitement")
        if not self._prescription_deposited(r):
            refuse(MISSING_PRESCRIPTION, "/Ordonnance/NomFichier")
        if refusal:
            state["requests"].setdefault(reference, "")
            return Answer(r.request_ref, r.matricule, refusal=refusal)
        certificate = Certificate(self._certificate_number(state, received.year), r.prescription_date,
                                  validity_end(r.prescription_date), [(act, n) for act, n in r.acts])
        state["requests"][reference] = certificate.number
        for key in keys:
            state.grant(key)
        state["certificates"][certificate.number] = {
            "provider": provider, "request": r.request_ref, "matricule": r.matricule,
            "pathologies": list(r.pathology_codes), "treatment": r.treatment,
            "prescription_date": r.prescription_date.isoformat(), "valid_from": certificate.valid_from.isoformat(), "valid_to": certificate.valid_to.isoformat(),
            "acts": {act: n for act, n in certificate.acts}, "paid": {}, "days": [],
        }
        return Answer(r.request_ref, r.matricule, certificate)

    def _history_refusals(self, state: State, r: CertificateRequest) -> list[str]:
        """The sandbox's own judgement of a request against what it granted before, as the CNS
        would from its records: R07 (a second initial treatment within 3 years), R08 (a
        second extension of one initial treatment), R09 (an extension 3 years or more after
        the initial treatment began). Each reason once."""
        years, window = self.codes.initial_treatment_interval_years, self.codes.extension_window_years
        found: list[str] = []
        for code in r.pathology_codes:
            mine = [c for c in state["certificates"].values() if c["matricule"] == r.matricule and code in c["pathologies"]]
            initials = sorted(_began(c) for c in mine if c["treatment"] == "initial")
            if r.treatment == "initial":
                if any(within_years(start, r.prescription_date, years) for start in initials):
                    found.append("R07")
                continue
            before = [start for start in initials if start <= r.prescription_date]
            if not before:
                continue  # R03 says it
            if r.prescription_date >= anniversary(before[-1], window):
                found.append("R09")
            if sum(1 for c in mine if c["treatment"] == "extension" and _began(c) >= before[-1]) >= self.codes.extensions_per_initial:
                found.append("R08")
        return list(dict.fromkeys(found))

    def _initial_complete(self, state: State, matricule: str, pathology: str) -> bool:
        """True if an initial certificate for this patient and pathology has every session it
        authorised paid (R03)."""
        for c in state["certificates"].values():
            if (c["matricule"] == matricule and c["treatment"] == "initial" and pathology in c["pathologies"]
                    and all(c["paid"].get(act, 0) >= n for act, n in c["acts"].items())):
                return True
        return False

    def _prescription_deposited(self, r: CertificateRequest) -> bool:
        """True if the PDF the request names is in the upload folder with the SHA-256 it gives
        (the check of PDF08 and PDF09 in ``cnsx validate``)."""
        try:
            return check_attachment(self.upload, r.pdf_name, r.pdf_sha256)[1] is None
        except OSError:
            return False

    def _certificate_number(self, state: State, year: int) -> str:
        """The next certificate number of ``year``: TPC-YYYY-NNNNNN, in the seed's block."""
        counts = state["certificate_counts"]
        while True:
            counts[str(year)] = counts.get(str(year), 0) + 1
            serial = (CERTIFICATE_BASE + SEED_BLOCK * self.seed + counts[str(year)]) % 1_000_000
            number = f"TPC-{year}-{serial:06d}"
            if serial and number not in state["certificates"]:
                return number

    def pay_note(self, note: FeeNote, state: State, lines: list[PaymentLine]) -> None:
        reasons = self.codes.dispute_reasons
        certificate = state["certificates"].get(note.certificate_number)
        for s in note.sessions:
            code = (self._dispute(certificate, note.matricule, s.session_date, s.act_code)
                    or self._tariff(certificate, note.matricule, s))
            if code:
                lines.append(PaymentLine(note.number, s.line_no, note.certificate_number, s.cns_share, 0,
                                         code, _label(reasons[code])))
                continue
            certificate["paid"][s.act_code] = certificate["paid"].get(s.act_code, 0) + 1
            certificate["days"].append(s.session_date.isoformat())
            lines.append(PaymentLine(note.number, s.line_no, note.certificate_number, s.cns_share, s.cns_share))

    @staticmethod
    def _dispute(certificate: dict | None, matricule: str, day: date, act: str) -> str:
        """The dispute reason of one session, '' if it is paid. The first that applies:
        C02 unknown certificate, C07 another patient's, C03 outside its validity, C04 the
        certificate already paid a session that day, C01 the act's count used up."""
        if certificate is None:
            return "C02"
        if certificate["matricule"] != matricule:
            return "C07"
        if not certificate["valid_from"] <= day.isoformat() <= certificate["valid_to"]:
            return "C03"
        if day.isoformat() in certificate["days"]:
            return "C04"
        if certificate["paid"].get(act, 0) >= certificate["acts"].get(act, 0):
            return "C01"
        return ""

    def _tariff(self, certificate: dict, matricule: str, s) -> str:
        """C05 when a session's amounts are not the tariff's for this patient, '' when they are.

        The patient's age is taken on the date of the prescription the sandbox granted the
        certificate on (its own memory, as the CNS has its own: never the billing file's
        DateOrdonnance, nor the session date of a v1 file); the price is the nomenclature's.
        """
        prescribed = date.fromisoformat(certificate.get("prescription_date", certificate["valid_from"]))
        try:
            price = self.nomenclature.price_for(s.act_code, s.session_date, birth_date(matricule), prescribed)
        except NoTariffError:
            return "C05"
        return "" if (price.gross, price.patient_share, price.cns_share) == (s.gross, s.patient_share, s.cns_share) else "C05"

    def payment(self, state: State, received: datetime) -> tuple[date, str]:
        """The transfer date and the bank reference of the next payment statement."""
        state["payments"] += 1
        paid_on = received.date() + timedelta(days=PAYMENT_DELAY_DAYS)
        return paid_on, f"VIR-{paid_on:%Y%m%d}-{(SEED_BLOCK * self.seed + state['payments']) % 1_000_000:06d}"
