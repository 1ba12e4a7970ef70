"""The records of the exchange, in the domain's words.

Amounts are integers in cents, so that sums and comparisons are exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal


@dataclass(slots=True)
class Header:
    """The header (EnTete) common to every document; ``extra`` holds the kind's own fields."""

    provider: str
    created: datetime
    sequence: int
    version: str
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class CertificateRequest:
    """A request for a certificate of coverage (demande de titre de prise en charge)."""

    request_ref: str
    matricule: str
    last_name: str
    first_name: str
    prescriber_code: str
    prescription_date: date
    pathology_codes: list[str]
    treatment: str  # 'initial' or 'extension'
    acts: list[tuple[str, int]]
    pdf_name: str
    pdf_sha256: str
    pdf_path: str = ""
    line: int = 0


@dataclass(slots=True)
class Session:
    """A session performed, read from the practice's data, to be billed on a certificate."""

    certificate_number: str
    matricule: str
    session_date: date
    act_code: str
    executing_provider: str
    last_name: str = ""
    first_name: str = ""
    line: int = 0
    prescription_date: date | None = None  # the optional column: the certificate's prescription


@dataclass(slots=True)
class BilledSession:
    """A session on a fee note: numbered line, priced."""

    line_no: int
    session_date: date
    act_code: str
    executing_provider: str
    gross: int
    patient_share: int
    cns_share: int
    line: int = 0  # source line, when read from a document


@dataclass(slots=True)
class FeeNote:
    """A fee note (mémoire d'honoraires): one patient's sessions on one certificate, and the
    date of the certificate's prescription (None: not known, or not carried: schema v1)."""

    number: int
    certificate_number: str
    matricule: str
    last_name: str
    first_name: str
    sessions: list[BilledSession] = field(default_factory=list)
    prescription_date: date | None = None


@dataclass(slots=True)
class Anomaly:
    """An anomaly message of the CNS: code, label, element concerned."""

    code: str
    label: str
    element: str = ""


@dataclass(slots=True)
class Acknowledgement:
    """An acknowledgement of receipt (accusé de réception)."""

    file_name: str
    file_sha256: str
    received_at: datetime
    accepted: bool
    anomalies: list[Anomaly] = field(default_factory=list)


@dataclass(slots=True)
class Certificate:
    """A certificate of coverage (titre de prise en charge)."""

    number: str
    valid_from: date
    valid_to: date
    acts: list[tuple[str, int]]


@dataclass(slots=True)
class Answer:
    """The CNS's answer to one request: a certificate or a refusal with anomalies."""

    request_ref: str
    matricule: str
    certificate: Certificate | None = None
    refusal: list[Anomaly] = field(default_factory=list)


@dataclass(slots=True)
class PaymentLine:
    """One billed session on a payment statement: accepted, or disputed with a reason."""

    fee_note: int
    line_no: int
    certificate_number: str
    billed: int
    accepted: int
    reason_code: str = ""
    reason_label: str = ""

    @property
    def disputed(self) -> bool:
        return bool(self.reason_code)


@dataclass(slots=True)
class FileRef:
    """A file named by its name and SHA-256."""

    name: str
    sha256: str


def money(cents: int) -> Decimal:
    """Cents as a number of euros (8889 -> Decimal('88.89')): an amount as it goes into a
    message, shown '88.89' in English and '88,89' in French (i18n.tr)."""
    return Decimal(cents).scaleb(-2)


def amount(cents: int) -> str:
    """Return cents as a decimal amount, the T_Montant form (8889 -> '88.89', -50 -> '-0.50')."""
    sign = "-" if cents < 0 else ""
    cents = abs(cents)
    return f"{sign}{cents // 100}.{cents % 100:02d}"
