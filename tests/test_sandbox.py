"""cnsx sandbox: the local CNS simulator (docs/sandbox.md).

The return files it writes for the examples are compared with golden files in
tests/golden/sandbox/. To update them after an intended change:

    CNSX_UPDATE_GOLDEN=1 python -m pytest tests/test_sandbox.py

then review the diff of tests/golden/sandbox/ before committing it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import date, datetime, timezone
from pathlib import Path

import pytest

from cns_exchange.domain.nomenclature import load_codes, load_nomenclature
from cns_exchange.transport.sandbox import Sandbox
from cns_exchange.transport.sandbox_judge import validity_end
from cns_exchange.documents.schemas import SchemaRegistry
from cns_exchange.validation.validate import Validator
from cns_exchange.documents.read import read_document
from conftest import EXAMPLES, PROVIDER, ROOT, SCHEMAS, xmllint

# Read at import: the autouse isolated_config fixture removes CNSX_* variables from tests.
UPDATE = os.environ.get("CNSX_UPDATE_GOLDEN") == "1"
GOLDEN = ROOT / "tests" / "golden" / "sandbox"
REQUEST = EXAMPLES / "123456_DTP_20261120_000001.xml"
BILLING = EXAMPLES / "123456_FAC_20261120_000001.xml"
PDFS = sorted(EXAMPLES.glob("123456_ORD_REQ-000*.pdf"))
PRESCRIPTION = EXAMPLES / "prescriptions" / "ordonnance-REQ-0001.pdf"
ROOTS = {"ack": "AccuseReception", "answers": "ReponsesTitrePriseEnCharge", "payment": "JustificatifPaiement"}
XSD_BY_ROOT = {spec["root"]: SCHEMAS / "v1" / spec["xsd"]
               for spec in json.loads((SCHEMAS / "v1" / "manifest.json").read_text("utf-8"))["documents"].values()}

SCHMIT = "1974091186700"   # REQ-0001 of the examples: D12, prescription 2026-10-15 -> TPC-2026-000101
WEBER = "1982080285657"    # REQ-0002: D08, prescription 2026-11-02 -> TPC-2026-000102


# --- helpers -----------------------------------------------------------------------------------

@pytest.fixture
def box(tmp_path) -> Path:
    """An empty drop box: ROOT/upload (ROOT/download is the sandbox's to create)."""
    root = tmp_path / "dropbox"
    (root / "upload").mkdir(parents=True)
    return root


def deposit_examples(root: Path, billing: bool = True) -> None:
    """The example request file with its three PDFs (and the billing file), as uploaded."""
    for path in [*PDFS, REQUEST, *([BILLING] if billing else [])]:
        shutil.copy(path, root / "upload" / path.name)


def answer(run, root: Path, *options: str) -> dict[str, list[Path]]:
    """Run `cnsx sandbox --once` on ``root``; return the new return files by kind code (ACR, RTP, DEC)."""
    download = root / "download"
    before = set(os.listdir(download)) if download.is_dir() else set()
    r = run("sandbox", "--root", str(root), "--once", *options)
    assert r.exit_code == 0, r.stderr
    assert r.stdout == ""
    new: dict[str, list[Path]] = {}
    for name in sorted(set(os.listdir(download)) - before):
        new.setdefault(name.split("_")[1], []).append(download / name)
    return new


def records(path: Path, kind: str) -> list:
    with open(path, "rb") as f:
        return [item.record for item in read_document(f, kind, ROOTS[kind]) if item.what == "item"]


def answers_by_ref(path: Path) -> dict:
    return {a.request_ref: a for a in records(path, "answers")}


def refusal_codes(answer) -> list[str]:
    return [a.code for a in answer.refusal]


def build_requests(run, root: Path, rows: list[dict], created: str) -> None:
    """Build a request file from ``rows`` into the upload folder (PDFs copied beside it)."""
    columns = ["request_ref", "matricule", "last_name", "first_name", "prescriber_code", "prescription_date",
               "pathology_codes", "treatment", "prescription_pdf", "requested_acts"]
    defaults = {"last_name": "Test", "first_name": "Patient", "prescriber_code": "12345678", "pathology_codes": "D12",
                "treatment": "initial", "prescription_pdf": str(PRESCRIPTION), "requested_acts": ""}
    _build(run, root, "build-request", columns, [{**defaults, **row} for row in rows], created)


def bill(run, root: Path, rows: list[tuple[str, str, str, str]], created: str) -> None:
    """Build a billing file of (certificate, matricule, session date, act) rows into the upload folder."""
    columns = ["certificate_number", "matricule", "session_date", "act_code"]
    _build(run, root, "build-invoice", columns, [dict(zip(columns, row)) for row in rows], created)


def _build(run, root: Path, command: str, columns: list[str], rows: list[dict], created: str) -> None:
    source = root.parent / f"input-{len(list(root.parent.glob('input-*')))}.csv"
    source.write_text(";".join(columns) + "\n" + "".join(";".join(row[c] for c in columns) + "\n" for row in rows), "utf-8")
    r = run(command, str(source), "--provider", PROVIDER, "--created", created, "-o", str(root / "upload"))
    assert r.exit_code == 0, r.stderr


def dispute_codes(path: Path) -> list[str]:
    """The reason code of each line of a payment statement ('' for a paid line)."""
    return [line.reason_code for line in records(path, "payment")]


def tree(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


# --- golden files --------------------------------------------------------------------------------

def test_examples_are_answered_as_the_golden_files(run, box):
    deposit_examples(box)
    r = run("sandbox", "--root", str(box), "--once")
    assert r.exit_code == 0, r.stderr
    assert r.stdout == ""
    assert r.stderr.splitlines() == [
        "123456_DTP_20261120_000001.xml: accepted → CNS_ACR_20261120_000001.xml, CNS_RTP_20261120_000001.xml"
        " (2 certificates, 1 refusal)",
        "123456_FAC_20261120_000001.xml: accepted → CNS_ACR_20261120_000002.xml, CNS_DEC_20261120_000001.xml"
        " (6 sessions paid, 2 disputed)",
    ]
    produced = tree(box / "download")
    if UPDATE:
        GOLDEN.mkdir(parents=True, exist_ok=True)
        for old in GOLDEN.glob("*.xml"):
            old.unlink()
        for name, data in produced.items():
            (GOLDEN / name).write_bytes(data)
    golden = tree(GOLDEN)
    assert sorted(produced) == sorted(golden), "set CNSX_UPDATE_GOLDEN=1 to update tests/golden/sandbox/"
    for name in golden:
        assert produced[name] == golden[name], f"{name} differs from its golden file (CNSX_UPDATE_GOLDEN=1 updates it)"


def test_the_examples_answered_in_french(run, box, monkeypatch):
    """The counts of the answer lines agree in number in French, as in English above."""
    monkeypatch.setenv("LANG", "fr_FR.UTF-8")
    deposit_examples(box)
    r = run("sandbox", "--root", str(box), "--once")
    assert r.exit_code == 0, r.stderr
    assert r.stderr.splitlines() == [
        "123456_DTP_20261120_000001.xml : accepté → CNS_ACR_20261120_000001.xml, CNS_RTP_20261120_000001.xml"
        " (2 titres de prise en charge, 1 refus)",
        "123456_FAC_20261120_000001.xml : accepté → CNS_ACR_20261120_000002.xml, CNS_DEC_20261120_000001.xml"
        " (6 séances payées, 2 contestées)",
    ]


def test_golden_files_say_what_the_rules_say():
    answers = answers_by_ref(GOLDEN / "CNS_RTP_20261120_000001.xml")
    assert answers["REQ-0001"].certificate.number == "TPC-2026-000101"
    assert (answers["REQ-0001"].certificate.valid_from, answers["REQ-0001"].certificate.valid_to) == (date(2026, 10, 15), date(2027, 4, 14))
    assert answers["REQ-0001"].certificate.acts == [("ZD11", 1), ("ZD12", 1), ("ZD13", 4)]
    assert answers["REQ-0002"].certificate.number == "TPC-2026-000102"
    assert refusal_codes(answers["REQ-0003"]) == ["R03"]   # an extension with no initial treatment
    # The billing file's third fee note uses TPC-2026-000087, which the sandbox never granted.
    assert dispute_codes(GOLDEN / "CNS_DEC_20261120_000001.xml") == [""] * 6 + ["C02"] * 2


@pytest.mark.parametrize("name", sorted(p.name for p in GOLDEN.glob("*.xml")))
def test_golden_files_are_valid(run, name):
    path = GOLDEN / name
    r = run("validate", str(path))
    assert r.exit_code == 0, r.stderr
    root = path.read_text("utf-8").splitlines()[1].strip("<>")
    proc = xmllint(path, XSD_BY_ROOT[root])
    assert proc.returncode == 0, proc.stderr


# --- exactly once, determinism -------------------------------------------------------------------

def test_a_second_run_answers_nothing(run, box):
    deposit_examples(box)
    assert len(sum(answer(run, box).values(), [])) == 4
    state = (box / ".sandbox-state.json").read_bytes()
    files = tree(box / "download")
    r = run("sandbox", "--root", str(box), "--once")
    assert (r.exit_code, r.stdout, r.stderr) == (0, "", "")
    assert tree(box / "download") == files
    assert (box / ".sandbox-state.json").read_bytes() == state


def test_two_fresh_runs_give_identical_bytes(run, tmp_path):
    outputs = []
    for n in (1, 2):
        root = tmp_path / f"run{n}" / "box"
        (root / "upload").mkdir(parents=True)
        deposit_examples(root)
        (root / "upload" / "123456_FAC_20261121_000001.xml").write_text("not XML\n")
        answer(run, root)
        outputs.append(tree(root / "download"))
    assert len(outputs[0]) == 5
    assert outputs[0] == outputs[1]


def test_the_seed_moves_the_numbering_block(run, box):
    deposit_examples(box)
    new = answer(run, box, "--seed", "3")
    assert answers_by_ref(new["RTP"][0])["REQ-0001"].certificate.number == "TPC-2026-003101"
    text = new["DEC"][0].read_text("utf-8")
    assert "<ReferencePaiement>VIR-20261125-003001</ReferencePaiement>" in text
    assert "<NumeroTitre>TPC-2026-003101</NumeroTitre>" not in text  # the examples bill TPC-2026-000101: unknown here


def test_return_files_are_dated_by_the_deposited_file_or_the_fixed_clock(run, box, monkeypatch):
    deposit_examples(box, billing=False)
    ack = answer(run, box)["ACR"][0].read_text("utf-8")
    assert "<DateHeureReception>2026-11-20T09:05:00+01:00</DateHeureReception>" in ack
    # SOURCE_DATE_EPOCH fixes the clock when --now is not given.
    (box / "upload" / "123456_DTP_20261120_000002.xml").write_text(
        REQUEST.read_text("utf-8").replace("<NumeroSequence>1<", "<NumeroSequence>2<"), "utf-8")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(int(datetime(2026, 12, 1, 8, 0, tzinfo=timezone.utc).timestamp())))
    new = answer(run, box)
    assert [p.name for p in new["ACR"]] == ["CNS_ACR_20261201_000001.xml"]
    assert "<DateHeureReception>2026-12-01T08:00:00+00:00</DateHeureReception>" in new["ACR"][0].read_text("utf-8")


def test_sequence_numbers_never_collide_after_the_practice_deleted_its_files(run, box):
    deposit_examples(box, billing=False)
    answer(run, box)
    for path in (box / "download").iterdir():
        path.unlink()   # fetched with after_fetch = "delete"
    (box / "upload" / "123456_DTP_20261120_000002.xml").write_text(
        REQUEST.read_text("utf-8").replace("<NumeroSequence>1<", "<NumeroSequence>2<"), "utf-8")
    new = answer(run, box)
    assert [p.name for p in new["ACR"] + new["RTP"]] == ["CNS_ACR_20261120_000002.xml", "CNS_RTP_20261120_000002.xml"]
    assert "<NumeroSequence>2</NumeroSequence>" in new["ACR"][0].read_text("utf-8")


def test_hidden_temporary_and_attachment_files_are_not_answered(run, box):
    for name in (".cnsx-123456_FAC_20261120_000001.xml.1a2b.part", "123456_ORD_REQ-0001.pdf", "notes.txt"):
        (box / "upload" / name).write_bytes(BILLING.read_bytes())
    (box / "upload" / ".hidden.xml").write_bytes(BILLING.read_bytes())
    assert answer(run, box) == {}
    assert not (box / ".sandbox-state.json").exists()   # nothing answered, nothing to remember


# --- the acknowledgement -------------------------------------------------------------------------

def _bad_matricule(text: str) -> str:
    return text.replace(SCHMIT, "1974091186701")


@pytest.mark.parametrize("name, content, code, element", [
    ("123456_FAC_20261120_000002.xml", lambda: _bad_matricule(BILLING.read_text("utf-8")), "MAT03",
     "/FichierFacturation/MemoireHonoraires[1]/Patient/Matricule"),
    ("123456_FAC_20261120_000002.xml", lambda: BILLING.read_text("utf-8").replace("<NombreSeances>8<", "<NombreSeances>9<"),
     "DOC01", "/FichierFacturation/EnTete/NombreSeances"),
    ("123456_DTP_20261120_000002.xml", lambda: REQUEST.read_text("utf-8").replace("<CodePathologie>D12<", "<CodePathologie>D16<"),
     "XSD01", "/DemandesTitrePriseEnCharge/Demande[1]/CodesPathologie/CodePathologie[1]"),
    ("123456_FAC_20261120_000002.xml", lambda: "not XML at all\n", "XML01", None),
    ("CNS_ACR_20261120_000001.xml", lambda: (EXAMPLES / "CNS_ACR_20261120_000001.xml").read_text("utf-8"), "DOC06", None),
], ids=["business-rule", "header-count", "schema", "not-xml", "a-return-file"])
def test_an_invalid_file_is_rejected_with_its_anomalies(run, box, name, content, code, element):
    (box / "upload" / name).write_text(content(), "utf-8")
    r = run("sandbox", "--root", str(box), "--once")
    assert r.exit_code == 0, r.stderr
    assert f"{name}: rejected → CNS_ACR_20261120_000001.xml" in r.stderr
    download = box / "download"
    assert sorted(os.listdir(download)) == ["CNS_ACR_20261120_000001.xml"]   # nothing but the acknowledgement
    [ack] = records(download / "CNS_ACR_20261120_000001.xml", "ack")
    assert not ack.accepted and ack.file_name == name
    assert code in [a.code for a in ack.anomalies]
    anomaly = next(a for a in ack.anomalies if a.code == code)
    assert anomaly.label and len(anomaly.label) <= 100
    if element:
        assert anomaly.element == element
    assert run("validate", str(download / "CNS_ACR_20261120_000001.xml")).exit_code == 0


# --- refusals ------------------------------------------------------------------------------------

def _validator() -> Validator:
    return Validator(SchemaRegistry(), load_codes(), load_nomenclature(), 1 << 29)


def test_R01_pathology_code_not_in_the_sandbox_list(box):
    # The bundled tables reject an unknown code in the acknowledgement (XSD, PAT01): R01 is
    # what a sandbox answers whose own list lacks a code the validator still knows.
    deposit_examples(box, billing=False)
    codes = load_codes()
    narrower = dataclasses.replace(codes, pathologies={k: v for k, v in codes.pathologies.items() if k != "D12"})
    sandbox = Sandbox(box / "upload", box / "download", box / ".sandbox-state.json", _validator(), codes=narrower)
    [deposit] = sandbox.run_once().deposits
    assert deposit.accepted and (deposit.certificates, deposit.refusals) == (1, 2)
    answers = answers_by_ref(box / "download" / "CNS_RTP_20261120_000001.xml")
    [anomaly] = answers["REQ-0001"].refusal
    assert (anomaly.code, anomaly.label) == ("R01", "Code de pathologie inconnu")
    assert anomaly.element == "/DemandesTitrePriseEnCharge/Demande[1]/CodesPathologie/CodePathologie[1]"


@pytest.mark.parametrize("clock", ["--now", "SOURCE_DATE_EPOCH"])
def test_R02_prescription_older_than_90_days_on_reception(run, box, monkeypatch, clock):
    deposit_examples(box, billing=False)
    received = datetime(2027, 1, 14, 9, 0, tzinfo=timezone.utc)   # REQ-0001 (2026-10-15): 91 days
    if clock == "--now":
        new = answer(run, box, "--now", received.isoformat())
    else:
        monkeypatch.setenv("SOURCE_DATE_EPOCH", str(int(received.timestamp())))
        new = answer(run, box)
    answers = answers_by_ref(new["RTP"][0])
    [anomaly] = answers["REQ-0001"].refusal
    assert anomaly.code == "R02" and anomaly.element == "/DemandesTitrePriseEnCharge/Demande[1]/DateOrdonnance"
    assert answers["REQ-0002"].certificate is not None          # 2026-11-02: 73 days
    assert refusal_codes(answers["REQ-0003"]) == ["R03"]
    assert "<DateHeureReception>2027-01-14T09:00:00+00:00</DateHeureReception>" in new["ACR"][0].read_text("utf-8")


def test_R02_counts_90_days_as_still_in_time(run, box):
    deposit_examples(box, billing=False)
    new = answer(run, box, "--now", "2027-01-13T09:00:00+01:00")   # REQ-0001: exactly 90 days
    assert answers_by_ref(new["RTP"][0])["REQ-0001"].certificate is not None


def test_R03_extension_needs_a_complete_initial_treatment_in_the_history(run, box):
    initial = {"request_ref": "INI-1", "matricule": SCHMIT, "prescription_date": "2026-08-01"}
    build_requests(run, box, [initial], "2026-08-03T09:00:00+02:00")
    granted = answers_by_ref(answer(run, box)["RTP"][0])["INI-1"].certificate
    assert granted.number == "TPC-2026-000101"
    number = granted.number
    # Five of the six sessions paid: not complete yet.
    bill(run, box, [(number, SCHMIT, "2026-08-05", "ZD11"), (number, SCHMIT, "2026-08-12", "ZD12"),
                    (number, SCHMIT, "2026-08-19", "ZD13"), (number, SCHMIT, "2026-08-26", "ZD13"),
                    (number, SCHMIT, "2026-09-02", "ZD13")], "2026-09-03T09:00:00+02:00")
    assert dispute_codes(answer(run, box)["DEC"][0]) == [""] * 5
    extension = {"matricule": SCHMIT, "treatment": "extension", "prescription_date": "2026-09-03"}
    build_requests(run, box, [{**extension, "request_ref": "EXT-1"}], "2026-09-04T09:00:00+02:00")
    [anomaly] = answers_by_ref(answer(run, box)["RTP"][0])["EXT-1"].refusal
    assert (anomaly.code, anomaly.element) == ("R03", "/DemandesTitrePriseEnCharge/Demande[1]/TypeTraitement")
    # An extension for another pathology than the initial treatment's is refused too, even when complete.
    bill(run, box, [(number, SCHMIT, "2026-09-09", "ZD13")], "2026-09-10T09:00:00+02:00")
    assert dispute_codes(answer(run, box)["DEC"][0]) == [""]
    build_requests(run, box, [{**extension, "request_ref": "EXT-2", "prescription_date": "2026-09-10"},
                              {**extension, "request_ref": "EXT-3", "prescription_date": "2026-09-10", "pathology_codes": "D08"}],
                   "2026-09-11T09:00:00+02:00")
    answers = answers_by_ref(answer(run, box)["RTP"][0])
    assert answers["EXT-2"].certificate.acts == [("ZD21", 4)]
    assert answers["EXT-2"].certificate.number == "TPC-2026-000102"
    assert refusal_codes(answers["EXT-3"]) == ["R03"]


def test_R04_request_reference_already_answered(run, box):
    deposit_examples(box, billing=False)
    answer(run, box)
    # The same requests again, in a renumbered file (as `cnsx upload --force` sends them).
    (box / "upload" / "123456_DTP_20261120_000002.xml").write_text(
        REQUEST.read_text("utf-8").replace("<NumeroSequence>1<", "<NumeroSequence>2<"), "utf-8")
    answers = answers_by_ref(answer(run, box)["RTP"][0])
    assert refusal_codes(answers["REQ-0001"]) == ["R04"]
    assert answers["REQ-0001"].refusal[0].element == "/DemandesTitrePriseEnCharge/Demande[1]/ReferenceDemande"
    assert refusal_codes(answers["REQ-0002"]) == ["R04"]
    assert refusal_codes(answers["REQ-0003"]) == ["R03", "R04"]   # every reason that applies


def test_R04_same_patient_pathology_and_prescription_date(run, box):
    deposit_examples(box, billing=False)
    answer(run, box)
    build_requests(run, box, [{"request_ref": "REQ-0009", "matricule": SCHMIT, "prescription_date": "2026-10-15"},
                              {"request_ref": "REQ-0010", "matricule": SCHMIT, "prescription_date": "2026-10-15",
                               "pathology_codes": "D13"}], "2026-11-20T10:00:00+01:00")
    answers = answers_by_ref(answer(run, box)["RTP"][0])
    [anomaly] = answers["REQ-0009"].refusal
    assert (anomaly.code, anomaly.element) == ("R04", "/DemandesTitrePriseEnCharge/Demande[1]/DateOrdonnance")
    assert answers["REQ-0010"].certificate is not None   # another pathology: not a duplicate


def test_R06_prescription_pdf_missing_or_not_the_one_announced(run, box):
    deposit_examples(box, billing=False)
    (box / "upload" / "123456_ORD_REQ-0001.pdf").write_bytes(b"%PDF-1.4 another scan\n")
    (box / "upload" / "123456_ORD_REQ-0002.pdf").unlink()
    answers = answers_by_ref(answer(run, box)["RTP"][0])
    for ref, n in (("REQ-0001", 1), ("REQ-0002", 2)):
        [anomaly] = answers[ref].refusal
        assert anomaly.code == "R06"
        assert anomaly.label == "Ordonnance manquante ou différente de celle annoncée"
        assert anomaly.element == f"/DemandesTitrePriseEnCharge/Demande[{n}]/Ordonnance/NomFichier"
    assert refusal_codes(answers["REQ-0003"]) == ["R03"]   # its PDF is there


# --- disputes ------------------------------------------------------------------------------------

@pytest.fixture
def granted(run, box):
    """The examples' requests answered: TPC-2026-000101 (Schmit, from 2026-10-15) and
    TPC-2026-000102 (Weber-Müller, from 2026-11-02), each for ZD11, ZD12, 4 x ZD13."""
    deposit_examples(box, billing=False)
    answer(run, box)
    return box


def test_C01_count_of_an_act_used_up(run, granted):
    t = "TPC-2026-000102"
    bill(run, granted, [(t, WEBER, "2026-11-05", "ZD11"), (t, WEBER, "2026-11-12", "ZD12"), (t, WEBER, "2026-11-19", "ZD13"),
                        (t, WEBER, "2026-11-26", "ZD13"), (t, WEBER, "2026-12-03", "ZD13"), (t, WEBER, "2026-12-10", "ZD13")],
         "2026-12-20T09:00:00+01:00")
    bill(run, granted, [(t, WEBER, "2026-12-17", "ZD13")], "2026-12-20T09:00:00+01:00")   # a fifth ZD13
    bill(run, granted, [(t, WEBER, "2026-12-18", "ZD21")], "2026-12-20T09:00:00+01:00")   # an act not authorised
    first, second, third = answer(run, granted)["DEC"]
    assert dispute_codes(first) == [""] * 6
    assert dispute_codes(second) == ["C01"]
    assert dispute_codes(third) == ["C01"]
    [line] = records(second, "payment")
    assert (line.billed, line.accepted, line.reason_label) == (4888, 0, "Nombre de séances autorisées dépassé")


def test_C02_certificate_not_granted_by_the_sandbox(run, granted):
    bill(run, granted, [("TPC-2026-000999", SCHMIT, "2026-10-20", "ZD11")], "2026-11-20T09:00:00+01:00")
    [statement] = answer(run, granted)["DEC"]
    assert dispute_codes(statement) == ["C02"]
    text = statement.read_text("utf-8")
    assert "<TotalAccepte>0.00</TotalAccepte>" in text and "<TotalConteste>78.22</TotalConteste>" in text


def test_C03_session_outside_the_validity(run, granted):
    t = "TPC-2026-000101"   # valid 2026-10-15 .. 2027-04-14
    bill(run, granted, [(t, SCHMIT, "2026-10-14", "ZD11"), (t, SCHMIT, "2026-10-15", "ZD12"),
                        (t, SCHMIT, "2027-04-14", "ZD13"), (t, SCHMIT, "2027-04-15", "ZD13")], "2027-04-20T09:00:00+02:00")
    [statement] = answer(run, granted)["DEC"]
    assert dispute_codes(statement) == ["C03", "", "", "C03"]


def test_C04_session_already_paid_that_day(run, granted):
    t = "TPC-2026-000101"
    bill(run, granted, [(t, SCHMIT, "2026-10-20", "ZD11")], "2026-11-20T09:00:00+01:00")
    bill(run, granted, [(t, SCHMIT, "2026-10-20", "ZD12"), (t, SCHMIT, "2026-10-27", "ZD13")], "2026-11-20T09:00:00+01:00")
    first, second = answer(run, granted)["DEC"]
    assert dispute_codes(first) == [""]
    assert dispute_codes(second) == ["C04", ""]


def test_C07_certificate_of_another_patient(run, granted):
    bill(run, granted, [("TPC-2026-000101", WEBER, "2026-11-05", "ZD11")], "2026-11-20T09:00:00+01:00")
    [statement] = answer(run, granted)["DEC"]
    assert dispute_codes(statement) == ["C07"]


def test_payment_statement_header(run, granted):
    bill(run, granted, [("TPC-2026-000101", SCHMIT, "2026-10-20", "ZD11")], "2026-11-20T09:00:00+01:00")
    [statement] = answer(run, granted)["DEC"]
    assert statement.name == "CNS_DEC_20261120_000001.xml"
    text = statement.read_text("utf-8")
    assert "<DatePaiement>2026-11-25</DatePaiement>" in text
    assert "<ReferencePaiement>VIR-20261125-000001</ReferencePaiement>" in text
    assert "<TotalAccepte>78.22</TotalAccepte>" in text


# --- interruptions, the loop, the profile ----------------------------------------------------------

def test_return_files_left_pending_by_a_killed_run_are_published_once(box, monkeypatch):
    deposit_examples(box, billing=False)
    state = box / ".sandbox-state.json"
    sandbox = Sandbox(box / "upload", box / "download", state, _validator())
    real_link = os.link
    calls = []

    def dies_after_the_first_publication(src, dst, *args, **kwargs):
        calls.append(dst)
        if len(calls) == 2:
            raise KeyboardInterrupt   # killed between the acknowledgement and the answers
        return real_link(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "link", dies_after_the_first_publication)
    with pytest.raises(KeyboardInterrupt):
        sandbox.run_once()
    monkeypatch.setattr(os, "link", real_link)
    assert os.listdir(box / "download") == ["CNS_ACR_20261120_000001.xml"]
    assert json.loads(state.read_text("utf-8"))["pending"] == ["CNS_ACR_20261120_000001.xml", "CNS_RTP_20261120_000001.xml"]
    report = Sandbox(box / "upload", box / "download", state, _validator()).run_once()
    assert report.recovered == ["CNS_RTP_20261120_000001.xml"] and report.deposits == []
    assert sorted(os.listdir(box / "download")) == ["CNS_ACR_20261120_000001.xml", "CNS_RTP_20261120_000001.xml"]
    assert list((box / ".sandbox-state.json.outgoing").iterdir()) == []
    again = Sandbox(box / "upload", box / "download", state, _validator()).run_once()
    assert (again.recovered, again.deposits) == ([], [])


def _wait_for(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_the_loop_answers_new_files_and_stops_on_sigterm(run, box, isolated_config):
    env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
    proc = subprocess.Popen([sys.executable, "-m", "cns_exchange", "sandbox", "--root", str(box), "--interval", "0.1"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert _wait_for(lambda: (box / "download").is_dir())
        for path in [*PDFS, REQUEST]:   # as cnsx upload does: a temporary name, then a rename
            temp = box / "upload" / f".cnsx-{path.name}.0000.part"
            shutil.copy(path, temp)
            os.rename(temp, box / "upload" / path.name)
        assert _wait_for(lambda: len(os.listdir(box / "download")) == 2), os.listdir(box / "download")
        locked = run("sandbox", "--root", str(box), "--once")
        assert locked.exit_code == 7, locked.stderr      # one sandbox per state
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr
    assert stdout == ""
    assert "123456_DTP_20261120_000001.xml: accepted" in stderr
    assert sorted(os.listdir(box / "download")) == ["CNS_ACR_20261120_000001.xml", "CNS_RTP_20261120_000001.xml"]


def test_round_trip_through_the_test_sftp_server(run, sshd, isolated_config, tmp_path, monkeypatch):
    """upload over SFTP, the sandbox answers in the folder sshd serves, fetch brings the answers."""
    monkeypatch.setenv("CNSX_DATA_DIR", str(tmp_path / "data"))
    config = isolated_config / "config.toml"
    config.write_text(f'provider = "{PROVIDER}"\nremote = "sftp://{sshd.user}@{sshd.host}:{sshd.port}"\n'
                      f'known_hosts = "{sshd.known_hosts}"\nkey_file = "{sshd.client_key}"\nretries = 0\n')
    config.chmod(0o600)
    work = tmp_path / "work"
    work.mkdir()
    for path in [*PDFS, REQUEST, BILLING]:
        shutil.copy(path, work)
    r = run("upload", str(work / REQUEST.name), str(work / BILLING.name))
    assert r.exit_code == 0, r.stderr
    r = run("sandbox", "--root", str(sshd.home), "--state", str(tmp_path / "sandbox.json"), "--once")
    assert r.exit_code == 0, r.stderr
    assert "123456_FAC_20261120_000001.xml: accepted" in r.stderr
    r = run("fetch")
    assert r.exit_code == 0, r.stderr
    fetched = {json.loads(line)["name"]: Path(json.loads(line)["path"]) for line in r.stdout.splitlines()}
    assert sorted(fetched) == sorted(p.name for p in GOLDEN.glob("*.xml"))
    for name, path in fetched.items():
        assert path.read_bytes() == (GOLDEN / name).read_bytes()


def test_the_profile_file_remote_is_the_default_root(run, box, isolated_config):
    config = isolated_config / "config.toml"
    config.write_text(f'provider = "{PROVIDER}"\nremote = "file://{box}"\ndownload_dir = "answers"\n')
    config.chmod(0o600)
    deposit_examples(box, billing=False)
    r = run("sandbox", "--once")
    assert r.exit_code == 0, r.stderr
    assert sorted(os.listdir(box / "answers")) == ["CNS_ACR_20261120_000001.xml", "CNS_RTP_20261120_000001.xml"]


def test_an_sftp_profile_needs_root(run, isolated_config):
    config = isolated_config / "config.toml"
    config.write_text('remote = "sftp://cabinet@127.0.0.1:2222"\n')
    config.chmod(0o600)
    r = run("sandbox", "--once")
    assert r.exit_code == 2
    assert "--root" in r.stderr


@pytest.mark.parametrize("args, message", [
    (["--root", "/nonexistent/cns-sandbox"], "no such folder"),
    (["--now", "yesterday"], "ISO 8601"),
    (["--seed", "-1"], "-1"),
])
def test_bad_options_are_usage_errors(run, box, args, message):
    r = run("sandbox", "--once", *(["--root", str(box)] if "--root" not in args else []), *args)
    assert r.exit_code == 2
    assert message in r.stderr


def test_an_unreadable_state_is_a_configuration_error(run, box):
    (box / ".sandbox-state.json").write_text("{not json")
    r = run("sandbox", "--root", str(box), "--once")
    assert r.exit_code == 4
    assert ".sandbox-state.json" in r.stderr


@pytest.mark.parametrize("start, end", [
    (date(2026, 10, 15), date(2027, 4, 14)), (date(2026, 8, 31), date(2027, 2, 28)),
    (date(2026, 8, 28), date(2027, 2, 27)), (date(2026, 12, 31), date(2027, 6, 30)),
])
def test_validity_is_six_months_from_the_prescription(start, end):
    assert validity_end(start) == end
