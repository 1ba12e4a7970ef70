"""The CNS sandbox: a local simulator of the CNS side of the drop box (docs/sandbox.md).

It watches the drop box's upload folder and answers every XML file deposited there as the
CNS would, into the download folder: an acknowledgement of receipt (accepted when
:meth:`Validator.validate` finds no error), then for an accepted request file the answers
(a certificate or a refusal per request) and for an accepted billing file the payment
statement (each session paid or disputed). The refusal and dispute rules, the sandbox's
model of the CNS, are :mod:`cns_exchange.transport.sandbox_judge`'s; this module reads the
deposits, keeps the state and writes the return files.

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
from cns_exchange.errors import ConfigError, CnsxError, LocalIOError
from cns_exchange.fsutil import fsync_dir, private_dir, publish, temp_file, write_atomic
from cns_exchange.i18n import _
from cns_exchange.domain.identifiers import check_provider
from cns_exchange.store.lock import run_lock
from cns_exchange.domain.model import Acknowledgement, Answer, FileRef, Header, PaymentLine
from cns_exchange.domain.naming import CNS_SENDER, KIND_CODES, make_name, next_sequence, parse_name
from cns_exchange.domain.nomenclature import Codes
from cns_exchange.validation.validate import Validator
from cns_exchange.documents.read import Part, read_document, read_header
from cns_exchange.documents.write import write_acknowledgement, write_answers, write_payment_statement
from cns_exchange.transport.sandbox_judge import Judge

#: The CNS "receives" a file this long after the creation time written in its header.
RECEPTION_DELAY = timedelta(minutes=5)

STATE_NAME = ".sandbox-state.json"
_STATE_FORMAT = 1
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


class State:
    """The sandbox's memory, one JSON file: what it answered, granted and paid (the Judge reads
    and writes ``requests``, ``granted``, ``certificates``, ``certificate_counts`` and ``payments``)."""

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
                raise LocalIOError(_("{file}: the sandbox state cannot be read ({reason})").format(file=path, reason=exc.strerror),
                                   _("check the file's owner and permissions, or pass --state FILE")) from None
            try:
                loaded = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise ConfigError(_("{file}: the sandbox state cannot be read ({reason})").format(file=path, reason=str(exc)),
                                  _("move it away to start a fresh sandbox, or pass --state FILE")) from None
            if not isinstance(loaded, dict) or loaded.get("format") != _STATE_FORMAT:
                raise ConfigError(_("{file}: not a sandbox state file of format {format}").format(file=path, format=_STATE_FORMAT),
                                  _("move it away to start a fresh sandbox, or pass --state FILE"))
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

    ``validator`` decides acceptance; ``codes`` (default: the validator's) are the tables of
    the sandbox's :class:`~cns_exchange.transport.sandbox_judge.Judge` for refusals and disputes.
    ``now`` fixes the clock (see :func:`cns_exchange.clock.fixed_time`);
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
        self.judge = Judge(codes or validator.codes, validator.nomenclature, self.upload, seed)
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
        state = State(self.state_path)
        report = PassReport(recovered=self._finish_pending(state))
        for path, sha in self._waiting(state):
            if stop is not None and stop.is_set():
                break
            report.deposits.append(self._answer_file(path, sha, state))
        return report

    def _waiting(self, state: State) -> list[tuple[Path, str]]:
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

    def _answer_file(self, path: Path, sha: str, state: State) -> Deposit:
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
            deposit.note = _("no valid provider code in its header or name: nobody to answer")
            state["processed"][name] = {"sha256": sha, "outputs": []}
            state.save()
            return deposit
        received = self.now or (header.created + RECEPTION_DELAY if header is not None else self._undated(name))
        version = header.version if header is not None and header.version in WRITABLE_VERSIONS else WRITABLE_VERSIONS[-1]
        anomalies = self.judge.rejection(report)
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

    # --- answers to a request file --------------------------------------------------------

    def _answer_requests(self, path: Path, root: str, request_file: FileRef, state: State, received: datetime,
                         provider: str, version: str, deposit: Deposit) -> str:
        answers: list[Answer] = []
        with open(path, "rb") as f:
            for item in read_document(f, "request", root):
                if item.what is Part.ITEM:
                    answers.append(self.judge.answer(item.record, item.xpath, state, received, provider))
        deposit.certificates = sum(1 for a in answers if a.certificate is not None)
        deposit.refusals = len(answers) - deposit.certificates
        return self._stage(state, "answers", received, provider, version,
                           lambda out, h: write_answers(out, h, request_file, answers))

    # --- payment statement of a billing file ----------------------------------------------

    def _pay(self, path: Path, root: str, billing_file: FileRef, state: State, received: datetime,
             provider: str, version: str, deposit: Deposit) -> str:
        lines: list[PaymentLine] = []
        with open(path, "rb") as f:
            for item in read_document(f, "billing", root):
                if item.what is Part.ITEM:
                    self.judge.pay_note(item.record, state, lines)
        deposit.disputed = sum(1 for line in lines if line.disputed)
        deposit.paid = len(lines) - deposit.disputed
        paid_on, reference = self.judge.payment(state, received)
        return self._stage(state, "payment", received, provider, version,
                           lambda out, h: write_payment_statement(out, h, billing_file, paid_on, reference, lines))

    # --- return files ----------------------------------------------------------------------

    def _stage(self, state: State, kind: str, created: datetime, provider: str, version: str, write) -> str:
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
            raise CnsxError(_("the sandbox wrote an invalid {file}: {code} {message} at {xpath}").format(
                file=name, code=first.code, message=first.message, xpath=first.xpath),
                _("this is a bug of cnsx: report it with the deposited file"))

    def _finish_pending(self, state: State) -> list[str]:
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
                raise SandboxConflict(_("{file} exists with other content: something else writes return files there").format(
                    file=target), _("run one sandbox per drop box, with one state file")) from None
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.ENOTSUP):
                raise
            with temp_file(target.parent) as (stream, temp):  # another file system: copy
                stream.write(staged.read_bytes())
                stream.close()
                publish(temp, target, overwrite=False)
        fsync_dir(target.parent)
        staged.unlink()
