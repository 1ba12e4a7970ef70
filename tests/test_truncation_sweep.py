"""Truncation sweep: a document cut short is refused by every command that reads it.

The documents: each example of examples/ (the five kinds), and a large one of each kind that
cnsx builds once per session (a request file of 500 requests with their PDFs, a billing file
of 3,000 sessions, the sandbox's answers and payment statement to them, and an
acknowledgement rejecting a file for 3,000 anomalies): 0.3 to 1.1 MB each.

Each is cut at many offsets: always just before its closing root tag (only that tag
missing) and just before its last '>', plus seeded random offsets within its first 5 % and
in its body. Every cut must be refused, for being cut (an XML issue: XML01), by:

- ``cnsx validate``: exit 3, never 0 or 1;
- ``cnsx upload`` to a file:// drop box: exit 3, the upload folder stays empty;
- ``cnsx import``: exit 3, the file quarantined with its reason, no row in the database;
- ``cnsx print fee-notes`` / ``summary`` (billing files): exit 3 with a message, no PDF.

Printing also fails closed on its own: with a validator made to let every cut through (as
it did with lxml 6.2.0), print still refuses the cuts after the header: exit 3, no PDF.

Every command reads the examples' cuts from a file and from stdin ('-'), the large ones'
from a file. validate takes every cut; the other commands every cut of the examples and a
seeded subset of the large documents' cuts (the two fixed ones always), which keeps the
module well under a minute on two cores.

The random offsets change on every run; the seed is in the id of every random cut and in
every failure message. Replay a run, or sweep more cuts per document, with

    CNSX_SWEEP_SEED=N CNSX_SWEEP_CUTS=40 python -m pytest tests/test_truncation_sweep.py
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import random
import shutil
import sqlite3
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from cns_exchange.cli import cli
from conftest import CREATED, EXAMPLES, PROVIDER, make_matricule

# Read at import: the autouse isolated_config fixture removes CNSX_* variables from tests.
SEED = int(os.environ.get("CNSX_SWEEP_SEED") or random.SystemRandom().randrange(1 << 31))
CUTS = int(os.environ.get("CNSX_SWEEP_CUTS") or 0)  # random cuts per document (0: the defaults below)
REPLAY = f"replay: CNSX_SWEEP_SEED={SEED} python -m pytest tests/test_truncation_sweep.py"

KINDS = ("request", "billing", "ack", "answers", "payment")
ROOTS = {"request": "DemandesTitrePriseEnCharge", "billing": "FichierFacturation", "ack": "AccuseReception",
         "answers": "ReponsesTitrePriseEnCharge", "payment": "JustificatifPaiement"}
EXAMPLE_FILES = {"request": "123456_DTP_20261120_000001.xml", "billing": "123456_FAC_20261120_000001.xml",
                 "ack": "CNS_ACR_20261120_000001.xml", "answers": "CNS_RTP_20261120_000002.xml",
                 "payment": "CNS_DEC_20261125_000001.xml"}
#: Per size of document: random cuts within the first 5 %, random cuts in the body, and how
#: many of those the commands other than validate take.
RANDOM_CUTS = {"example": (6, 24, 30), "large": (4, 16, 6)}
#: Where the commands read a cut from, per size of document.
SOURCES = {"example": ("file", "stdin"), "large": ("file",)}
#: What a cut document is refused for: not well-formed (XML01), or, cut in its header, a
#: kind (XML04) or version (XML05) that cannot be told.
CUT_CODES = ("XML01", "XML04", "XML05")

LARGE_REQUESTS = 500
LARGE_SESSIONS = ("ZD11", "ZD12", "ZD13", "ZD13", "ZD13", "ZD13")  # per fee note: 3,000 sessions
LARGE_ANOMALIES = 3000


# --- the cuts -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Cut:
    """Where a document is cut: a fixed place, or a random one (``u`` in [0, 1)) in a region."""

    where: str        # "close-root", "last-gt", "head" (the first 5 %), "body" (the rest), "items" (after the header)
    u: float = 0.0

    def offset(self, data: bytes, root: str) -> int:
        close = data.rindex(f"</{root}>".encode())
        if self.where == "close-root":
            return close
        if self.where == "last-gt":
            return data.rindex(b">")
        if self.where == "items":
            start = data.index(b"</EnTete>") + len(b"</EnTete>")
            return start + int(self.u * (close - start))
        head = len(data) // 20
        if self.where == "head":
            return int(self.u * head)
        return head + int(self.u * (close - head))

    @property
    def id(self) -> str:
        return self.where if self.where in ("close-root", "last-gt") else f"{self.where}@{self.u:.5f}~seed{SEED}"


def cuts_of(key: str, size: str) -> tuple[list[Cut], list[Cut]]:
    """(every cut of the document ``key``, the subset the commands other than validate take)."""
    head, body, subset = RANDOM_CUTS[size]
    if CUTS:
        head, body, subset = max(1, CUTS // 4), CUTS - max(1, CUTS // 4), CUTS
    rng = random.Random(f"{SEED}/{key}")
    randoms = [Cut("head", rng.random()) for _ in range(head)] + [Cut("body", rng.random()) for _ in range(body)]
    fixed = [Cut("close-root"), Cut("last-gt")]
    return fixed + randoms, fixed + rng.sample(randoms, min(subset, len(randoms)))


DOCUMENTS = [(kind, size) for size in ("example", "large") for kind in KINDS]


def _cases(kinds=KINDS, subset: bool = True, sources: dict[str, tuple[str, ...]] | None = None) -> list:
    """pytest params (kind, size, cut[, source]) for every document of ``kinds``; ``sources``
    names where the command reads the cut from ("file", "stdin") per size of document."""
    cases = []
    for kind, size in DOCUMENTS:
        if kind not in kinds:
            continue
        every, some = cuts_of(f"{kind}.{size}", size)
        for cut in (some if subset else every):
            for source in (sources[size] if sources else [None]):
                values = (kind, size, cut) if source is None else (kind, size, cut, source)
                cases.append(pytest.param(*values, id=f"{kind}.{size}-{cut.id}" + (f"-{source}" if source else "")))
    return cases


# --- the documents ------------------------------------------------------------------------------

@dataclass
class Document:
    kind: str
    size: str
    path: Path                      # the whole document, under its conventional name
    attachments: list[Path] = field(default_factory=list)  # a request's prescription PDFs

    @property
    def root(self) -> str:
        return ROOTS[self.kind]

    def cut(self, cut: Cut) -> tuple[bytes, str]:
        """The cut document's bytes, and what to say about them in a failure message."""
        data = self.path.read_bytes()
        at = cut.offset(data, self.root)
        said = (f"{self.path.name} ({self.size}, {len(data)} bytes) cut at {at} [{cut.id}]: "
                f"ends {data[max(0, at - 40):at]!r}; {REPLAY}")
        return data[:at], said

    def place(self, data: bytes, folder: Path) -> Path:
        """Write ``data`` in ``folder`` under the document's name, its PDFs beside it (as upload
        wants them: a cut is then refused for being cut, not for a missing PDF)."""
        folder.mkdir(parents=True, exist_ok=True)
        for pdf in self.attachments:
            try:
                os.link(pdf, folder / pdf.name)
            except OSError:
                shutil.copy(pdf, folder / pdf.name)
        target = folder / self.path.name
        target.write_bytes(data)
        return target


def _cnsx(env: dict, *args: str) -> None:
    result = CliRunner().invoke(cli, ["-q", *args], env=env, catch_exceptions=False)
    assert result.exit_code == 0, f"cnsx {' '.join(args)}: {result.stderr}"


def _write_csv(path: Path, header: list[str], rows) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


@pytest.fixture(scope="session")
def large_documents(tmp_path_factory) -> dict[str, Document]:
    """A large document of each kind, built by cnsx once per session (about 2 s).

    The request file (500 requests) is answered by the sandbox; the billing file bills six
    sessions on each certificate granted (3,000 sessions; every 25th fee note names a
    certificate never granted), and the sandbox's payment statement pays each session, but
    disputes those of the 20 fee notes. The acknowledgement is written as the CNS would reject
    a file for 3,000 anomalies (cnsx's writer, as benchmarks/bench_import.py writes its
    statements).
    """
    from cns_exchange.domain.model import Acknowledgement, Anomaly, Header
    from cns_exchange.documents.write import write_acknowledgement

    work = tmp_path_factory.mktemp("large")
    env = {name: None for name in os.environ if name.startswith("CNSX_")}
    env.update(CNSX_CONFIG_DIR=str(work / "config"), CNSX_DATA_DIR=str(work / "data"), SOURCE_DATE_EPOCH=None)
    (work / "config").mkdir()
    rng = random.Random(20261120)
    pdf = EXAMPLES / "prescriptions" / "ordonnance-REQ-0001.pdf"
    patients = sorted({make_matricule(date(1940, 1, 1) + timedelta(days=rng.randrange(365 * 80)), rng.randrange(1000))
                       for _ in range(LARGE_REQUESTS * 2)})[:LARGE_REQUESTS]
    _write_csv(work / "requests.csv", ["request_ref", "matricule", "last_name", "first_name", "prescriber_code",
                                       "prescription_date", "pathology_codes", "treatment", "prescription_pdf"],
               ([f"REQ-{n:05d}", m, "Schmit", "Léa", "12345678", "2026-06-01", "D12", "initial", str(pdf)]
                for n, m in enumerate(patients, 1)))
    outbox, box = work / "outbox", work / "dropbox"
    outbox.mkdir()
    (box / "upload").mkdir(parents=True)
    _cnsx(env, "build-request", str(work / "requests.csv"), "--provider", PROVIDER,
          "--created", "2026-06-02T09:00:00+02:00", "-o", str(outbox))
    for path in outbox.iterdir():
        shutil.copy(path, box / "upload")
    _cnsx(env, "sandbox", "--root", str(box), "--once")
    answers = next((box / "download").glob("CNS_RTP_*.xml"))
    from cns_exchange.documents.read import read_document

    with open(answers, "rb") as f:
        granted = [(item.record.certificate.number, item.record.matricule)
                   for item in read_document(f, "answers", ROOTS["answers"])
                   if item.what == "item" and item.record.certificate is not None]
    assert len(granted) == LARGE_REQUESTS
    _write_csv(work / "sessions.csv", ["certificate_number", "matricule", "session_date", "act_code", "executing_provider"],
               ([number if n % 25 else f"TPC-2026-9{n:05d}", matricule,
                 (date(2026, 6, 3) + timedelta(days=7 * k)).isoformat(), act, PROVIDER]
                for n, (number, matricule) in enumerate(granted) for k, act in enumerate(LARGE_SESSIONS)))
    _cnsx(env, "build-invoice", str(work / "sessions.csv"), "--provider", PROVIDER, "--created", CREATED,
          "--no-certificate-check", "-o", str(outbox))
    billing = next(outbox.glob("*_FAC_*.xml"))
    shutil.copy(billing, box / "upload")
    _cnsx(env, "sandbox", "--root", str(box), "--once")
    ack = work / "CNS_ACR_20261120_000009.xml"
    received = datetime.fromisoformat("2026-11-20T09:05:00+01:00")
    anomalies = [Anomaly("DOC02", f"Montant brut de la séance {n} différent du tarif",
                         f"/FichierFacturation/MemoireHonoraires[{n // 6 + 1}]/Seance[{n % 6 + 1}]/MontantBrut")
                 for n in range(LARGE_ANOMALIES)]
    with open(ack, "wb") as out:
        write_acknowledgement(out, Header(PROVIDER, received, 9, "1"), Acknowledgement(
            billing.name, hashlib.sha256(billing.read_bytes()).hexdigest(), received, False, anomalies))
    request = next(outbox.glob("*_DTP_*.xml"))
    return {
        "request": Document("request", "large", request, sorted(outbox.glob(f"{PROVIDER}_ORD_*.pdf"))),
        "billing": Document("billing", "large", billing),
        "ack": Document("ack", "large", ack),
        "answers": Document("answers", "large", answers),
        "payment": Document("payment", "large", next((box / "download").glob("CNS_DEC_*.xml"))),
    }


def _document(request, kind: str, size: str) -> Document:
    if size == "large":
        return request.getfixturevalue("large_documents")[kind]
    attachments = sorted(EXAMPLES.glob(f"{PROVIDER}_ORD_*.pdf")) if kind == "request" else []
    return Document(kind, size, EXAMPLES / EXAMPLE_FILES[kind], attachments)


def test_the_documents_are_valid_whole(run, request, tmp_path):
    """The sweep's documents are valid before they are cut (else a refusal would prove nothing)."""
    for kind, size in DOCUMENTS:
        document = _document(request, kind, size)
        path = document.place(document.path.read_bytes(), tmp_path / f"{kind}.{size}")
        r = run("validate", str(path))
        assert r.exit_code == 0, r.stderr
        if size == "large":
            assert 150_000 < path.stat().st_size < 3_000_000, path


# --- the commands -------------------------------------------------------------------------------

def _cut_issue(text: str) -> bool:
    return any(code in text for code in CUT_CODES)


@pytest.mark.parametrize("kind,size,cut,source", _cases(subset=False, sources=SOURCES))
def test_validate_refuses_every_cut(run, request, tmp_path, kind, size, cut, source):
    document = _document(request, kind, size)
    data, said = document.cut(cut)
    if source == "stdin":
        r = run("validate", "--json", "-", input=data)
    else:
        r = run("validate", "--json", str(document.place(data, tmp_path / "work")))
    assert r.exit_code == 3, f"validate exit {r.exit_code} for {said}\n{r.stderr[-2000:]}"
    report = json.loads(r.stdout)[0]
    errors = [i["code"] for i in report["issues"] if i["severity"] == "error"]
    assert not report["valid"] and _cut_issue(" ".join(errors)), f"validate issues {errors} for {said}"


def _rows(database: Path) -> dict[str, int]:
    """The tables of the practice database that hold rows, with their counts."""
    if not database.exists():
        return {}
    conn = sqlite3.connect(database)
    try:
        tables = [name for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
        counts = {table: conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0] for table in tables}
    finally:
        conn.close()
    return {table: n for table, n in counts.items() if n}


@pytest.mark.parametrize("kind,size,cut,source", _cases(sources=SOURCES))
def test_upload_sends_no_cut(run, request, tmp_path, dropbox, kind, size, cut, source):
    root, data = dropbox
    document = _document(request, kind, size)
    cut_data, said = document.cut(cut)
    if source == "stdin":  # (kept in the outbox under its name, as upload does with stdin)
        r = run("upload", "-", "--name", document.path.name, input=cut_data)
    else:
        r = run("upload", str(document.place(cut_data, tmp_path / "work")))
    sent = sorted(p.name for p in (root / "upload").iterdir())
    assert r.exit_code == 3 and not sent, f"upload exit {r.exit_code}, sent {sent} for {said}\n{r.stderr[-2000:]}"
    assert "nothing was sent" in r.stderr and _cut_issue(r.stderr), f"upload refused {said} for another reason:\n{r.stderr[-2000:]}"
    assert _rows(data / "practice.sqlite") == {}, said


@pytest.mark.parametrize("kind,size,cut,source", _cases(sources=SOURCES))
def test_import_takes_no_cut(run, request, monkeypatch, tmp_path, kind, size, cut, source):
    data = tmp_path / "data"
    monkeypatch.setenv("CNSX_DATA_DIR", str(data))
    document = _document(request, kind, size)
    cut_data, said = document.cut(cut)
    if source == "stdin":  # (spooled into the inbox, and from there moved to the errors folder)
        r = run("import", "-", input=cut_data)
    else:
        r = run("import", str(document.place(cut_data, tmp_path / "work")))
    rows = _rows(data / "practice.sqlite")
    if source == "stdin" and not cut_data.strip():
        # An empty stdin is a quiet night's `cnsx fetch | cnsx import -`: nothing to do (issue 12).
        assert r.exit_code == 0 and r.stderr == "" and not rows, said
        return
    assert r.exit_code == 3 and not rows, f"import exit {r.exit_code}, rows {rows} for {said}\n{r.stderr[-2000:]}"
    assert _cut_issue(r.stderr), f"import refused {said} for another reason:\n{r.stderr[-2000:]}"
    why = list((data / "errors").glob("*.why.txt"))
    assert len(why) == 1 and _cut_issue(why[0].read_text("utf-8")), f"import of {said}: no reason in {data / 'errors'}"
    assert not list((data / "archive").glob("*.xml")) and not list((data / "inbox").glob("*.xml")), said


@pytest.mark.parametrize("what", ["fee-notes", "summary"])
@pytest.mark.parametrize("kind,size,cut,source", _cases(kinds=("billing",), sources=SOURCES))
def test_print_prints_no_cut(run, request, tmp_path, kind, size, cut, what, source):
    document = _document(request, kind, size)
    data, said = document.cut(cut)
    printed = tmp_path / "printed"
    printed.mkdir()
    output = str(printed / "notes") if what == "fee-notes" else str(printed)
    if source == "stdin":
        r = run("print", what, "-", "-o", output, "--created", CREATED, input=data)
    else:
        r = run("print", what, str(document.place(data, tmp_path / "work")), "-o", output, "--created", CREATED)
    left = sorted(str(p.relative_to(printed)) for p in printed.rglob("*") if p.is_file())
    assert r.exit_code == 3 and not left, f"print {what} exit {r.exit_code}, wrote {left[:3]}… for {said}\n{r.stderr[-2000:]}"
    assert "error:" in r.stderr and "nothing was printed" in r.stderr, f"print {what} of {said}:\n{r.stderr[-2000:]}"
    assert _cut_issue(r.stderr), f"print {what} refused {said} for another reason:\n{r.stderr[-2000:]}"


def _lying_validator(monkeypatch) -> None:
    """Make every document valid, as lxml 6.2.0 once made most cuts (the errors are dropped)."""
    from cns_exchange.validation.validate import Validator

    honest = Validator.validate

    def validate(self, *args, **kwargs):
        report = honest(self, *args, **kwargs)
        report.issues = [i for i in report.issues if not i.is_error]
        return report

    monkeypatch.setattr(Validator, "validate", validate)


def _item_cuts() -> list:
    """Cuts of the example billing file after its header: the fixed ones, and its random body
    cuts moved after the header (where the validator's lie can still say kind and version)."""
    every, _ = cuts_of("billing.example", "example")
    cuts = [cut if cut.where != "body" else Cut("items", cut.u) for cut in every if cut.where != "head"]
    return [pytest.param("billing", "example", cut, id=f"billing.example-{cut.id}") for cut in cuts]


@pytest.mark.parametrize("what", ["fee-notes", "summary"])
@pytest.mark.parametrize("kind,size,cut", _item_cuts())
def test_print_fails_closed_when_validation_lets_a_cut_through(run, request, monkeypatch, tmp_path, kind, size, cut, what):
    """Printing reads the document again; where that reading fails (validation having passed
    it), the document is refused, exit 3, and no PDF is published: not exit 1 after the fee
    notes read so far were written. (Cuts in the header are left out: there the lie would
    not even say the version to read the file with.)"""
    document = _document(request, kind, size)
    data, said = document.cut(cut)
    _lying_validator(monkeypatch)
    printed = tmp_path / "printed"
    printed.mkdir()
    r = run("print", what, str(document.place(data, tmp_path / "work")), "-o",
            str(printed / "notes") if what == "fee-notes" else str(printed), "--created", CREATED)
    left = sorted(str(p.relative_to(printed)) for p in printed.rglob("*") if p.is_file())
    assert r.exit_code == 3 and not left, f"print {what} exit {r.exit_code}, wrote {left[:3]}… for {said}\n{r.stderr[-2000:]}"
    assert "nothing was printed" in r.stderr, f"print {what} of {said}:\n{r.stderr[-2000:]}"
