"""The request rules across files (issue 14): one initial treatment per pathology per 3 years
(TRT08), one extension per initial treatment (TRT10), within 3 years of its start (TRT11).

Judged three ways, each at the day before and the day of each limit: by build-request with the
practice database, by `validate --db`, and by the sandbox from its own history (R07-R09). The
history is made by a real exchange through the sandbox: an initial treatment for D12 and D08
whose first session is on 2026-10-20, every session paid, then an extension for D12.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from conftest import EXAMPLES

PATIENT = "1974091186700"
START = "2026-10-20"        # the first session of the initial treatment
ANNIVERSARY = "2029-10-20"  # its third anniversary: the periods are over that day
DAY_BEFORE = "2029-10-19"
PDF = EXAMPLES / "prescriptions" / "ordonnance-REQ-0001.pdf"


@pytest.fixture
def practice(tmp_path, dropbox, monkeypatch, run):
    """A drop box answered by the sandbox, and a practice database holding the history."""
    p = Practice(run, tmp_path, dropbox[0], monkeypatch)
    p.exchange(p.requests("base", [("REQ-A", "2026-10-15", "D12;D08", "initial")], "2026-10-16"))
    p.exchange(p.sessions([("ZD11", START), ("ZD12", "2026-10-27"), ("ZD13", "2026-11-03"), ("ZD13", "2026-11-10"),
                           ("ZD13", "2026-11-17"), ("ZD13", "2026-11-24")]))
    answers = p.exchange(p.requests("ext", [("REQ-E", "2026-11-25", "D12", "extension")], "2026-11-26"))
    assert p.certificates() == 2, f"the sandbox granted the initial treatment and its extension: {answers}"
    return p


class Practice:
    def __init__(self, run, folder: Path, root: Path, monkeypatch) -> None:
        self.run, self.folder, self.root, self.monkeypatch = run, folder, root, monkeypatch
        self.outbox = folder / "outbox"
        self.outbox.mkdir()

    def requests(self, name: str, rows, created: str, db: bool = True) -> Path:
        """Build a request file of ``rows`` (ref, prescription date, pathologies, treatment);
        with ``db`` checked against the practice database, else built as if there were none."""
        path = self.folder / f"{name}.csv"
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["request_ref", "matricule", "last_name", "first_name", "prescriber_code",
                             "prescription_date", "pathology_codes", "treatment", "prescription_pdf"])
            for ref, prescribed, pathologies, treatment in rows:
                # Each request its own scan (bytes after %%EOF: the same page, another file).
                scan = self.folder / f"{ref}-{name}.pdf"
                scan.write_bytes(PDF.read_bytes() + f"\n% {ref} {name}\n".encode())
                writer.writerow([ref, PATIENT, "Schmit", "Léa", "12345678", prescribed, pathologies, treatment, scan.name])
        out = self.folder / f"out-{name}"
        out.mkdir()
        if not db:
            self.monkeypatch.setenv("CNSX_DATA_DIR", str(self.folder / "no-database"))
        try:
            self.last = self.run("build-request", str(path), "--created", f"{created}T09:00:00+01:00", "-o", str(out))
        finally:
            self.monkeypatch.setenv("CNSX_DATA_DIR", str(self.folder / "data"))
        return out

    def sessions(self, rows) -> Path:
        path = self.folder / "sessions.csv"
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["certificate_number", "matricule", "session_date", "act_code"])
            number = json.loads(self.run("status", "--json").stdout)["certificates"][0]["certificate"]
            writer.writerows([number, PATIENT, day, act] for act, day in rows)
        out = self.folder / "out-sessions"
        out.mkdir()
        built = self.run("build-invoice", str(path), "--created", "2026-11-25T09:00:00+01:00", "-o", str(out))
        assert built.exit_code == 0, built.stderr
        return out

    def exchange(self, out: Path) -> dict:
        """Send the documents of ``out``, let the sandbox answer, fetch and import; return the
        answers to requests by reference (certificate number, or the refusal codes)."""
        sent = self.run("upload", *map(str, out.glob("*.xml")))
        assert sent.exit_code == 0, sent.stderr
        assert self.run("sandbox", "--once").exit_code == 0
        assert self.run("fetch").exit_code == 0
        assert self.run("import").exit_code == 0
        answers = {}
        for path in (self.folder / "data").rglob("CNS_RTP_*.xml"):
            text = path.read_text("utf-8")
            for block in text.split("<Reponse>")[1:]:
                ref = block[block.index("<ReferenceDemande>") + 18:block.index("</ReferenceDemande>")]
                answers[ref] = (block[block.index("<NumeroTitre>") + 13:block.index("</NumeroTitre>")]
                                if "<Titre>" in block else sorted({part[:3] for part in block.split("<Code>")[1:]}))
        return answers

    def certificates(self) -> int:
        return len(json.loads(self.run("status", "--json").stdout)["certificates"])

    def codes_of_last_build(self) -> set[str]:
        return {code for code in ("TRT08", "TRT10", "TRT11") if code in self.last.stderr}


@pytest.mark.parametrize("prescribed, expected", [(DAY_BEFORE, {"TRT08"}), (ANNIVERSARY, set())])
def test_a_second_initial_treatment_for_a_pathology_within_3_years(practice, run, prescribed, expected):
    created = prescribed[:-2] + f"{int(prescribed[-2:]) + 1:02d}"
    out = practice.requests("again", [("REQ-I2", prescribed, "D08", "initial")], created)
    assert practice.codes_of_last_build() == expected, practice.last.stderr
    assert practice.last.exit_code == (3 if expected else 0)
    # validate --db judges the same document the same way; the sandbox from its own history.
    unchecked = practice.requests("again-unchecked", [("REQ-I2", prescribed, "D08", "initial")], created, db=False)
    [document] = unchecked.glob("*.xml")
    checked = run("validate", "--json", "--db", str(practice.folder / "data" / "practice.sqlite"), str(document))
    assert {i["code"] for i in json.loads(checked.stdout)[0]["issues"]} & {"TRT08"} == expected
    assert run("validate", str(document)).exit_code == 0  # on its own, the document is fine
    answer = practice.exchange(unchecked)["REQ-I2"]
    assert answer == ["R07"] if expected else isinstance(answer, str), answer


def test_a_second_extension_of_one_initial_treatment(practice, run):
    practice.requests("ext2", [("REQ-E2", "2026-12-01", "D12", "extension")], "2026-12-02")
    assert practice.codes_of_last_build() == {"TRT10"} and practice.last.exit_code == 3, practice.last.stderr
    unchecked = practice.requests("ext2-unchecked", [("REQ-E2", "2026-12-01", "D12", "extension")], "2026-12-02", db=False)
    [document] = unchecked.glob("*.xml")
    checked = run("validate", "--json", "--db", str(practice.folder / "data" / "practice.sqlite"), str(document))
    assert "TRT10" in {i["code"] for i in json.loads(checked.stdout)[0]["issues"]}
    assert practice.exchange(unchecked)["REQ-E2"] == ["R08"]


@pytest.mark.parametrize("prescribed, expected", [(DAY_BEFORE, set()), (ANNIVERSARY, {"TRT11"})])
def test_an_extension_within_3_years_of_the_start_of_its_initial_treatment(practice, run, prescribed, expected):
    """D08 has had no extension yet: one is possible until the day before the anniversary."""
    created = prescribed[:-2] + f"{int(prescribed[-2:]) + 1:02d}"
    practice.requests("ext-d08", [("REQ-E3", prescribed, "D08", "extension")], created)
    assert practice.codes_of_last_build() == expected, practice.last.stderr
    unchecked = practice.requests("ext-d08-unchecked", [("REQ-E3", prescribed, "D08", "extension")], created, db=False)
    answer = practice.exchange(unchecked)["REQ-E3"]
    assert answer == ["R09"] if expected else isinstance(answer, str), answer
