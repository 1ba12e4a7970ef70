"""The CNS sandbox: a local simulator of the CNS side of the drop box (docs/sandbox.md).

It watches the drop box's upload folder and answers every XML file deposited there as the
CNS would, into the download folder: an acknowledgement of receipt (accepted when
:meth:`Validator.validate` finds no error), then for an accepted request file the answers
(a certificate or a refusal per request) and for an accepted billing file the payment
statement (each session paid or disputed). The refusal and dispute rules are the sandbox's
model of the CNS, with the reason codes of ``data/codes.json``; they are listed in
docs/sandbox.md, which the constants below follow.

Deterministic: the return files depend only on the deposited files, the seed and the
sandbox's state, never on the wall clock. The "time of reception" is the deposited file's
own creation time plus :data:`RECEPTION_DELAY` (or the fixed clock the caller passes).

Exactly once: the state file (JSON, written atomically) records each deposit answered (name
and SHA-256), the certificates granted and the sessions paid. Return files are staged
beside the state, recorded in the state as pending, and only then published into the
download folder (a hard link: never replacing a file); a run killed in between publishes
them on its next start instead of answering twice.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import threading
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

from cns_exchange.billing.build import WRITABLE_VERSIONS
from cns_exchange.clock import from_epoch
from cns_exchange.errors import ConfigError, CnsxError, LocalIOError, UsageError
from cns_exchange.fsutil import fsync_dir, private_dir, publish, temp_file, write_atomic
from cns_exchange.domain.identifiers import anniversary, birth_date, check_provider
from cns_exchange.store.lock import run_lock
from cns_exchange.domain.model import (
    Acknowledgement,
    Anomaly,
    Answer,
    Certificate,
    CertificateRequest,
    FeeNote,
    FileRef,
    Header,
    PaymentLine,
)
from cns_exchange.domain.naming import CNS_SENDER, KIND_CODES, make_name, next_sequence, parse_name
from cns_exchange.domain.nomenclature import Codes, NoTariffError, add_months
from cns_exchange.domain.treatment import within_years
from cns_exchange.validation.validate import Report, Validator, check_attachment
from cns_exchange.documents.read import Part, read_document, read_header
from cns_exchange.documents.write import write_acknowledgement, write_answers, write_payment_statement

#: The CNS "receives" a file this long after the creation time written in its header.
RECEPTION_DELAY = timedelta(minutes=5)
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

STATE_NAME = ".sandbox-state.json"
_STATE_FORMAT = 1
_LABEL_MAX = 100  # T_Nom: the longest Libelle the schema allows
_KIND_ORDER = {"request": 0, "billing": 1}


class SandboxConflict(CnsxError):
    """A return file's name is taken in the download folder by other content (exit 1)."""


@dataclass
class Deposit:
    """What the sandbox did with one deposited file."""

    name: str
    kind: str              # request, billing, ack, answers, payment, or '' if not recognised
    accepted: bool
    outputs: list[str] = field(default_factory=list)
    certificates: int = 0  # answers: certificates granted
    refusals: int = 0      # answers: requests refused
    paid: int = 0          # payment statement: lines paid
    disputed: int = 0      # payment statement: lines disputed
    note: str = ""         # why the file was not answered at all


@dataclass
class PassReport:
    """One pass over the upload folder: the files answered, in order."""

    deposits: list[Deposit] = field(default_factory=list)
    recovered: list[str] = field(default_factory=list)   # return files of a killed run, published now


def parse_clock(value: str | None, epoch: str | None) -> datetime | None:
    """Return the fixed clock: ``value`` (ISO 8601, the --now option), else ``epoch``
    ($SOURCE_DATE_EPOCH, seconds), else None (each file's own header time is used).

    Raises UsageError for a value that is not a date-time or a number of seconds.
    """
    if value:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise UsageError(f"--now '{value}' is not an ISO 8601 date-time", "e.g. 2026-12-01T09:00:00+01:00") from None
        return (moment if moment.tzinfo else moment.astimezone()).replace(microsecond=0)
    if epoch:
        return from_epoch(epoch)
    return None


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


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _deposit_order(name: str) -> tuple:
    """Order of processing: by date in the name, requests before billing files, sequence;
    names outside the convention last."""
    parsed = parse_name(name)
    if parsed is None:
        return (1, date.max, 9, 0, name)
    return (0, parsed.day, _KIND_ORDER.get(parsed.kind, 2), parsed.sequence, name)


def _began(certificate: dict) -> date:
    """When the treatment of a certificate the sandbox granted began: its first paid session,
    else the first day of its validity."""
    return date.fromisoformat(min(certificate["days"], default=certificate["valid_from"]))


class _State:
    """The sandbox's memory, one JSON file: what it answered, granted and paid."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict = {
            "format": _STATE_FORMAT,
            "processed": {},       # deposited name -> {"sha256", "outputs"}
            "pending": [],         # return files staged, not yet published
            "sequences": {},       # "ACR_20261120" -> last sequence number used
            "certificate_counts": {},  # year -> certificates granted that year
            "payments": 0,         # payment statements written
            "requests": {},        # "provider/request_ref" -> certificate number, '' if refused
            "granted": [],         # "matricule/pathology/prescription date" of every certificate
            "certificates": {},    # number -> what was granted, and what was paid on it
        }
        if path.exists():
            try:
                raw = path.read_bytes()
            except OSError as exc:
                raise LocalIOError(f"{path}: the sandbox state cannot be read ({exc.strerror})",
                                   "check the file's owner and permissions, or pass --state FILE") from None
            try:
                loaded = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise ConfigError(f"{path}: the sandbox state cannot be read ({exc})",
                                  "move it away to start a fresh sandbox, or pass --state FILE") from None
            if not isinstance(loaded, dict) or loaded.get("format") != _STATE_FORMAT:
                raise ConfigError(f"{path}: not a sandbox state file of format {_STATE_FORMAT}",
                                  "move it away to start a fresh sandbox, or pass --state FILE")
            self.data.update(loaded)
        self._granted = set(self.data["granted"])

    def __getitem__(self, key: str):
        return self.data[key]

    def __setitem__(self, key: str, value) -> None:
        self.data[key] = value

    def grant(self, key: str) -> None:
        if key not in self._granted:
            self._granted.add(key)
            self.data["granted"].append(key)

    def is_granted(self, key: str) -> bool:
        return key in self._granted

    def save(self) -> None:
        write_atomic(self.path, (json.dumps(self.data, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8"))


class Sandbox:
    """Answers the files deposited in ``upload`` into ``download``, as the CNS would.

    ``validator`` decides acceptance; ``codes`` (default: the validator's) are the sandbox's
    own tables for refusals and disputes. ``now`` fixes the clock (see :func:`parse_clock`);
    ``default_provider`` addresses the answer to a file whose header and name name none.
    """

    def __init__(self, upload: Path, download: Path, state_path: Path, validator: Validator,
                 codes: Codes | None = None, seed: int = 0, now: datetime | None = None,
                 default_provider: str | None = None) -> None:
        self.upload = Path(upload)
        self.download = Path(download)
        self.state_path = Path(state_path)
        self.staging = Path(f"{self.state_path}.outgoing")
        self.validator = validator
        self.codes = codes or validator.codes
        self.seed = seed
        self.now = now
        self.default_provider = default_provider
        self._hashes: dict[str, tuple[tuple[int, int, int], str]] = {}

    # --- running -------------------------------------------------------------------------

    def run_once(self) -> PassReport:
        """Answer every file waiting in the upload folder; return what was done.

        Raises LockedError if another sandbox uses the same state, ConfigError for an
        unreadable state, SandboxConflict if a return file's name is taken.
        """
        with run_lock(self.state_path):
            return self.process()

    def serve(self, interval: float, stop: threading.Event, on_pass: Callable[[PassReport], None]) -> None:
        """Answer new files every ``interval`` seconds until ``stop`` is set.

        The lock is held throughout; ``stop`` is checked between files, so a file is always
        answered completely. Raises what :meth:`run_once` raises.
        """
        with run_lock(self.state_path):
            while not stop.is_set():
                on_pass(self.process(stop))
                stop.wait(interval)

    def process(self, stop: threading.Event | None = None) -> PassReport:
        """One pass, without taking the lock (the caller holds it)."""
        for folder in (self.upload, self.download, self.staging):
            private_dir(folder)
        state = _State(self.state_path)
        report = PassReport(recovered=self._finish_pending(state))
        for path, sha in self._waiting(state):
            if stop is not None and stop.is_set():
                break
            report.deposits.append(self._answer_file(path, sha, state))
        return report

    def _waiting(self, state: _State) -> list[tuple[Path, str]]:
        """The deposited XML files not answered yet (same name and SHA-256), in order."""
        found = []
        with os.scandir(self.upload) as entries:
            for entry in entries:
                name = entry.name
                # Hidden and temporary files (.cnsx-*.part) are uploads in flight; PDFs are
                # attachments, read when their request is.
                if name.startswith(".") or not name.lower().endswith(".xml") or not entry.is_file(follow_symlinks=False):
                    continue
                found.append(name)
        waiting = []
        for name in sorted(found, key=_deposit_order):
            path = self.upload / name
            try:
                sha = self._hash(path)
            except FileNotFoundError:
                continue  # taken away meanwhile
            done = state["processed"].get(name)
            if done is None or done["sha256"] != sha:
                waiting.append((path, sha))
        return waiting

    def _hash(self, path: Path) -> str:
        """SHA-256 of a deposited file; a file unchanged since the last pass is not read again."""
        st = path.stat()
        key = (st.st_size, st.st_mtime_ns, st.st_ino)
        known = self._hashes.get(path.name)
        if known is not None and known[0] == key:
            return known[1]
        sha = _sha256(path)
        self._hashes[path.name] = (key, sha)
        return sha

    # --- one deposited file ----------------------------------------------------------------

    def _answer_file(self, path: Path, sha: str, state: _State) -> Deposit:
        name = path.name
        # The acknowledgement judges the XML document; each request's prescription PDF is
        # judged when the request is answered (R06), so that one missing scan refuses one
        # request, not the whole file.
        report = self.validator.validate(str(path), attachments=False)
        with open(path, "rb") as f:
            header = read_header(f)
        deposit = Deposit(name, report.kind, False)
        provider = self._provider(header, name)
        if provider is None:
            deposit.note = "no valid provider code in its header or name: nobody to answer"
            state["processed"][name] = {"sha256": sha, "outputs": []}
            state.save()
            return deposit
        received = self.now or (header.created + RECEPTION_DELAY if header is not None else self._undated(name))
        version = header.version if header is not None and header.version in WRITABLE_VERSIONS else WRITABLE_VERSIONS[-1]
        anomalies = self._rejection(report)
        deposit.accepted = not anomalies
        staged: list[str] = []
        try:
            ack = Acknowledgement(name, sha, received, deposit.accepted, anomalies)
            staged.append(self._stage(state, "ack", received, provider, version,
                                      lambda out, h: write_acknowledgement(out, h, ack)))
            if deposit.accepted:
                root = self.validator.registry.get(report.version).documents[report.kind].root
                if report.kind == "request":
                    staged.append(self._answer_requests(path, root, FileRef(name, sha), state, received, provider,
                                                        version, deposit))
                else:
                    staged.append(self._pay(path, root, FileRef(name, sha), state, received, provider, version, deposit))
            for output in staged:
                self._check_output(output)
        except BaseException:
            for output in staged:
                (self.staging / output).unlink(missing_ok=True)
            raise
        deposit.outputs = staged
        state["processed"][name] = {"sha256": sha, "outputs": staged}
        state["pending"] = list(staged)
        state.save()
        self._finish_pending(state)
        return deposit

    def _provider(self, header: Header | None, name: str) -> str | None:
        """Whom to answer: the header's provider, else the name's sender, else the default."""
        parsed = parse_name(name)
        for candidate in (header.provider if header else None,
                          parsed.sender if parsed is not None and parsed.sender != CNS_SENDER else None,
                          self.default_provider):
            if candidate and not check_provider(candidate):
                return candidate
        return None

    def _undated(self, name: str) -> datetime:
        """The reception time of a file without a readable header: midnight UTC of the date
        in its name, else the Unix epoch (never the wall clock)."""
        parsed = parse_name(name)
        day = parsed.day if parsed is not None else date(1970, 1, 1)
        return datetime(day.year, day.month, day.day, tzinfo=timezone.utc)

    def _rejection(self, report: Report) -> list[Anomaly]:
        """The anomalies that make the acknowledgement a rejection (none: accepted)."""
        errors = [i for i in report.issues if i.is_error]
        if errors:
            return [Anomaly(i.code, _label(i.message), i.xpath) for i in errors]
        if report.kind not in DEPOSIT_KINDS:
            return [Anomaly("DOC06", _label(f"a document of kind {report.kind} is a CNS return file: "
                                            "deposit request or billing files only"), "")]
        return []

    # --- answers to a request file --------------------------------------------------------

    def _answer_requests(self, path: Path, root: str, request_file: FileRef, state: _State, received: datetime,
                         provider: str, version: str, deposit: Deposit) -> str:
        answers: list[Answer] = []
        with open(path, "rb") as f:
            for item in read_document(f, "request", root):
                if item.what is Part.ITEM:
                    answers.append(self._answer(item.record, item.xpath, state, received, provider))
        deposit.certificates = sum(1 for a in answers if a.certificate is not None)
        deposit.refusals = len(answers) - deposit.certificates
        return self._stage(state, "answers", received, provider, version,
                           lambda out, h: write_answers(out, h, request_file, answers))

    def _answer(self, r: CertificateRequest, xpath: str, state: _State, received: datetime, provider: str) -> Answer:
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

    def _history_refusals(self, state: _State, r: CertificateRequest) -> list[str]:
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

    def _initial_complete(self, state: _State, matricule: str, pathology: str) -> bool:
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

    def _certificate_number(self, state: _State, year: int) -> str:
        """The next certificate number of ``year``: TPC-YYYY-NNNNNN, in the seed's block."""
        counts = state["certificate_counts"]
        while True:
            counts[str(year)] = counts.get(str(year), 0) + 1
            serial = (CERTIFICATE_BASE + SEED_BLOCK * self.seed + counts[str(year)]) % 1_000_000
            number = f"TPC-{year}-{serial:06d}"
            if serial and number not in state["certificates"]:
                return number

    # --- payment statement of a billing file ----------------------------------------------

    def _pay(self, path: Path, root: str, billing_file: FileRef, state: _State, received: datetime,
             provider: str, version: str, deposit: Deposit) -> str:
        lines: list[PaymentLine] = []
        with open(path, "rb") as f:
            for item in read_document(f, "billing", root):
                if item.what is Part.ITEM:
                    self._pay_note(item.record, state, lines)
        deposit.disputed = sum(1 for line in lines if line.disputed)
        deposit.paid = len(lines) - deposit.disputed
        state["payments"] += 1
        paid_on = received.date() + timedelta(days=PAYMENT_DELAY_DAYS)
        reference = f"VIR-{paid_on:%Y%m%d}-{(SEED_BLOCK * self.seed + state['payments']) % 1_000_000:06d}"
        return self._stage(state, "payment", received, provider, version,
                           lambda out, h: write_payment_statement(out, h, billing_file, paid_on, reference, lines))

    def _pay_note(self, note: FeeNote, state: _State, lines: list[PaymentLine]) -> None:
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
            price = self.validator.nomenclature.price_for(s.act_code, s.session_date, birth_date(matricule), prescribed)
        except NoTariffError:
            return "C05"
        return "" if (price.gross, price.patient_share, price.cns_share) == (s.gross, s.patient_share, s.cns_share) else "C05"

    # --- return files ----------------------------------------------------------------------

    def _stage(self, state: _State, kind: str, created: datetime, provider: str, version: str, write) -> str:
        """Write a return file into the staging folder under its conventional name; return the name.

        Its sequence number is one more than the highest the sandbox ever used for that kind
        and day, and than any such file in the download folder: it never collides, even after
        the practice fetched and deleted earlier ones.
        """
        day = created.date()
        key = f"{CNS_SENDER}_{KIND_CODES[kind]}_{day:%Y%m%d}"  # e.g. CNS_ACR_20261120
        used = max(state["sequences"].get(key, 0), next_sequence(self.download, CNS_SENDER, kind, day) - 1)
        sequence = used + 1
        state["sequences"][key] = sequence
        name = make_name(CNS_SENDER, kind, day, sequence)
        header = Header(provider, created, sequence, version)
        with temp_file(self.staging) as (stream, temp):
            write(stream, header)
            stream.close()
            if os.geteuid() == 0:
                # Beside an SFTP server, the drop box belongs to the practice's account: its
                # return files must too, or that account could not fetch them (they are 0600).
                owner = self.download.stat()
                os.chown(temp, owner.st_uid, owner.st_gid)
            publish(temp, self.staging / name)
        return name

    def _check_output(self, name: str) -> None:
        """Refuse to publish a return file that fails validation (that would be a bug here)."""
        report = self.validator.validate(str(self.staging / name), check_name=False)
        if not report.ok:
            first = next(i for i in report.issues if i.is_error)
            raise CnsxError(f"the sandbox wrote an invalid {name}: {first.code} {first.message} at {first.xpath}",
                            "this is a bug of cnsx: report it with the deposited file")

    def _finish_pending(self, state: _State) -> list[str]:
        """Publish the staged return files the state lists as pending; drop stray ones."""
        published = []
        for name in state["pending"]:
            staged = self.staging / name
            if staged.exists():
                self._publish(staged, self.download / name)
                published.append(name)
        if state["pending"]:
            state["pending"] = []
            state.save()
        for stray in self.staging.iterdir():
            stray.unlink()  # staged by a run killed before it recorded them: answered again
        return published

    def _publish(self, staged: Path, target: Path) -> None:
        try:
            os.link(staged, target)  # never replaces a file
        except FileExistsError:
            if target.read_bytes() != staged.read_bytes():
                raise SandboxConflict(f"{target} exists with other content: something else writes return files there",
                                      "run one sandbox per drop box, with one state file") from None
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.ENOTSUP):
                raise
            with temp_file(target.parent) as (stream, temp):  # another file system: copy
                stream.write(staged.read_bytes())
                stream.close()
                publish(temp, target, overwrite=False)
        fsync_dir(target.parent)
        staged.unlink()
