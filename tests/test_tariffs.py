"""Tariffs a practice can trust: the newest table taken as current for 12 months (NOM05, one
rule for build-invoice and validate), and a likely tariff change in a payment statement said
once by import. (`cnsx tariffs` itself: test_cli_tariffs.py.)

Each rule is tested at its boundary: the day before, the day of and the day after.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from cns_exchange.domain.nomenclature import add_months, load_nomenclature
from conftest import CREATED, EXAMPLES, PROVIDER, make_matricule

ADULT = "1974091186700"
NOM05_HINT = "hint: see the table in force with cnsx tariffs --date DATE; add the current one with cnsx tariffs add"


def user_table(config: Path, valid_from: str, key: str = "11.1108") -> Path:
    folder = config / "nomenclature"
    folder.mkdir(exist_ok=True)
    path = folder / f"{valid_from}.json"
    path.write_text(json.dumps({
        "valid_from": valid_from, "source": "test table",
        "key_letter": {"name": "ZD", "value": key},
        "coefficients": {"ZD11": "8", "ZD12": "10", "ZD13": "5", "ZD21": "5"},
        "patient_share": {"adult_percent": "12", "minor_percent": "0", "minor_below_age": 18},
    }), "utf-8")
    return path


def sessions_csv(folder: Path, rows: list[tuple[str, str, str, str]], name: str = "sessions.csv") -> Path:
    path = folder / name
    path.write_text("certificate_number,matricule,session_date,act_code\n"
                    + "".join(",".join(row) + "\n" for row in rows), "utf-8")
    return path


def nom05_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if " NOM05: " in line]


# --- when the newest table stops being current -----------------------------------------------

@pytest.mark.parametrize("start,last", [
    (date(2019, 1, 1), date(2020, 1, 1)),
    (date(2025, 3, 15), date(2026, 3, 15)),
    (date(2024, 2, 29), date(2025, 2, 28)),   # no 29 February in 2025: its last day
    (date(2023, 12, 31), date(2024, 12, 31)),
])
def test_the_newest_table_is_current_for_12_months(start, last):
    assert add_months(start, 12) == last


def test_the_bundled_table_alone_is_current_until_2020_01_01():
    assert load_nomenclature().current_until() == date(2020, 1, 1)


def test_the_newest_user_table_decides(isolated_config):
    user_table(isolated_config, "2025-03-15")
    user_table(isolated_config, "2023-01-01")
    assert load_nomenclature([isolated_config / "nomenclature"]).current_until() == date(2026, 3, 15)


# --- NOM05 through build-invoice and validate ------------------------------------------------

@pytest.mark.parametrize("day,warned", [("2026-03-14", False), ("2026-03-15", False), ("2026-03-16", True)])
def test_build_and_validate_warn_more_than_12_months_after_the_newest_table(run, isolated_config, tmp_path, day, warned):
    table = user_table(isolated_config, "2025-03-15")
    rows = sessions_csv(tmp_path, [("T-1", ADULT, day, "ZD11")])
    out = tmp_path / "out"
    out.mkdir()
    r = run("build-invoice", str(rows), "--provider", PROVIDER, "--created", CREATED, "-o", str(out))
    assert r.exit_code == 0, r.stderr          # a warning: the file is written all the same
    [built] = out.glob("*.xml")
    v = run("validate", str(built))
    assert v.exit_code == 0, v.stderr
    if not warned:
        assert nom05_lines(r.stderr) == [] and nom05_lines(v.stderr) == [], r.stderr + v.stderr
        return
    expected = (f"warning NOM05: sessions after 2026-03-15 are priced with the newest tariff table, {table}, in force "
                "since 2025-03-15: tariffs follow the wage index, a table more than 12 months old may be out of date")
    assert nom05_lines(r.stderr) == [f"{rows}:2 [session_date]: {expected}"], r.stderr
    assert NOM05_HINT in r.stderr
    [line] = nom05_lines(v.stderr)
    assert line.endswith(f" /FichierFacturation/MemoireHonoraires[1]/Seance[1]/DateSeance: {expected}"), line
    assert line.startswith(f"{built}:") and NOM05_HINT in v.stderr


def test_the_warning_is_said_once_per_file_at_its_first_late_session(run, isolated_config, tmp_path):
    user_table(isolated_config, "2025-03-15")
    child = make_matricule(date(2015, 5, 5))
    rows = sessions_csv(tmp_path, [("T-1", ADULT, "2026-03-01", "ZD11"),   # current: fee note 1, session 1
                                   ("T-1", ADULT, "2026-03-20", "ZD12"),   # late: fee note 1, session 2
                                   ("T-1", ADULT, "2026-03-27", "ZD13"),
                                   ("T-2", child, "2026-04-01", "ZD11"),
                                   ("T-2", child, "2026-04-08", "ZD12")])
    out = tmp_path / "out"
    out.mkdir()
    r = run("-q", "build-invoice", str(rows), "--provider", PROVIDER, "--created", CREATED, "-o", str(out))
    assert r.exit_code == 0, r.stderr
    assert [line.split(": warning")[0] for line in nom05_lines(r.stderr)] == [f"{rows}:3 [session_date]"], r.stderr
    [built] = out.glob("*.xml")
    v = run("validate", "--json", str(built))
    issues = json.loads(v.stdout)[0]["issues"]
    assert [(i["code"], i["severity"], i["xpath"]) for i in issues] == [
        ("NOM05", "warning", "/FichierFacturation/MemoireHonoraires[1]/Seance[2]/DateSeance")]
    assert v.exit_code == 0


def test_with_the_bundled_table_alone_it_names_that_table(run, examples):
    r = run("build-invoice", str(examples / "sessions.csv"), "--provider", PROVIDER, "--created", CREATED)
    assert r.exit_code == 0, r.stderr
    [line] = nom05_lines(r.stderr)
    assert "sessions after 2020-01-01 are priced with the newest tariff table, bundled 2019-01-01.json" in line


def test_a_table_of_the_last_12_months_silences_it(run, examples, current_tariffs):
    r = run("build-invoice", str(examples / "sessions.csv"), "--provider", PROVIDER, "--created", CREATED)
    assert r.exit_code == 0 and r.stderr.startswith("3 fee notes"), r.stderr
    assert nom05_lines(r.stderr) == []


def test_import_does_not_repeat_it_for_a_billing_file_already_sent(run, examples, tmp_path, data):
    out = tmp_path / "out"
    out.mkdir()
    r = run("build-invoice", str(examples / "sessions.csv"), "--provider", PROVIDER, "--created", CREATED, "-o", str(out))
    assert len(nom05_lines(r.stderr)) == 1
    [built] = out.glob("*.xml")
    i = run("import", str(built))
    assert i.exit_code == 0 and i.stderr == "", i.stderr


# --- a likely tariff change in a payment statement, said once by import ----------------------

BILLING = EXAMPLES / "123456_FAC_20261120_000001.xml"
#: The lines of examples/CNS_DEC_20261125_000001.xml: (fee note, line, certificate, billed
#: CNS share in cents, act, session date); the last one is disputed (C01, accepted 0).
LINES = [(1, 1, "TPC-2026-000101", 7822, "ZD11", "2026-10-20"), (1, 2, "TPC-2026-000101", 9778, "ZD12", "2026-10-27"),
         (1, 3, "TPC-2026-000101", 4888, "ZD13", "2026-11-03"), (1, 4, "TPC-2026-000101", 4888, "ZD13", "2026-11-10"),
         (2, 1, "TPC-2026-000102", 7822, "ZD11", "2026-11-05"), (2, 2, "TPC-2026-000102", 9778, "ZD12", "2026-11-12"),
         (3, 1, "TPC-2026-000087", 5555, "ZD21", "2026-11-04")]
#: What the CNS pays when its tariffs are lower than the table cnsx priced with (it pays no
#: more than billed: DOC04).
CNS_PRICES = {7822: 7631, 9778: 9539, 4888: 4769, 5555: 5420}


def statement(folder: Path, paid, sequence: int = 1) -> Path:
    """The example payment statement with each undisputed line paid ``paid(billed, line)``
    (no dispute reason), and the disputed C01 line as it is."""
    from cns_exchange.domain.model import FileRef, Header, PaymentLine
    from cns_exchange.documents.write import write_payment_statement

    lines = [PaymentLine(note, line, cert, billed, paid(billed, (note, line))) for note, line, cert, billed, _, _ in LINES]
    lines.append(PaymentLine(3, 2, "TPC-2026-000087", 5555, 0, "C01", "Nombre de séances autorisées dépassé"))
    path = folder / f"CNS_DEC_20261125_{sequence:06d}.xml"
    header = Header("123456", datetime(2026, 11, 25, 6, 0, tzinfo=timezone(timedelta(hours=1))), sequence, "1")
    with open(path, "wb") as out:
        write_payment_statement(out, header, FileRef(BILLING.name, hashlib.sha256(BILLING.read_bytes()).hexdigest()),
                                date(2026, 11, 25), "VIR-2026-11-25-0042", lines)
    return path


def notes(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("note: ")]


def test_the_example_statement_says_nothing_of_tariffs(run, data):
    r = run("import", str(BILLING), str(EXAMPLES / "CNS_DEC_20261125_000001.xml"))
    assert r.exit_code == 0 and r.stderr == "", r.stderr


def test_amounts_paid_consistently_otherwise_are_a_likely_tariff_change_said_once(run, data, tmp_path):
    assert run("import", str(BILLING)).exit_code == 0
    payment = statement(tmp_path, lambda billed, _: CNS_PRICES[billed])
    assert run("validate", str(payment)).exit_code == 0
    r = run("import", str(payment))
    assert r.exit_code == 0, r.stderr
    assert notes(r.stderr) == [
        f"note: {payment.name}: likely a tariff change: 7 lines paid without a dispute reason at another amount than "
        "billed (the CNS's share, sessions from 2026-10-20), one amount for each amount billed: 48.88 → 47.69 "
        "(ZD13: 2 lines), 55.55 → 54.20 (ZD21: 1 line), 78.22 → 76.31 (ZD11: 2 lines), 97.78 → 95.39 (ZD12: 2 lines). "
        "See the table cnsx priced them with (cnsx tariffs --date 2026-10-20) and add the CNS's tariffs (cnsx tariffs add)"]
    assert r.stderr == notes(r.stderr)[0] + "\n"     # one line, no warning per line
    # Not disputes: status lists only the line the CNS disputed, and counts what it paid.
    status = json.loads(run("status", "--json").stdout)
    assert [(d["certificate"], d["reason_code"]) for d in status["disputed"]] == [("TPC-2026-000087", "C01")]
    assert {m["month"]: m["paid"] for m in status["per_month"]} == {"2026-10": "171.70", "2026-11": "321.28"}
    # Imported again: nothing changes, nothing is said again.
    again = run("import", str(payment))
    assert again.exit_code == 0 and notes(again.stderr) == []


@pytest.mark.parametrize("change,said", [(0, False), (-1, True), (+1, True)])
def test_one_cent_is_enough(run, data, tmp_path, change, said):
    """At the boundary: paid as billed (nothing), a cent less or more on one line (said)."""
    assert run("import", str(BILLING)).exit_code == 0
    payment = statement(tmp_path, lambda billed, line: billed + change if line == (2, 2) else billed)
    r = run("import", str(payment))
    assert r.exit_code == 0
    found = notes(r.stderr)
    assert bool(found) is said, r.stderr
    if said:
        assert found == [f"note: {payment.name}: likely a tariff change: 1 line paid without a dispute reason at another "
                         f"amount than billed (the CNS's share, sessions from 2026-11-12), one amount for each amount "
                         f"billed: 97.78 → {(9778 + change) / 100:.2f} (ZD12: 1 line). See the table cnsx priced them with "
                         "(cnsx tariffs --date 2026-11-12) and add the CNS's tariffs (cnsx tariffs add)"]


def test_amounts_that_differ_without_a_pattern_are_said_once_as_such(run, data, tmp_path):
    assert run("import", str(BILLING)).exit_code == 0
    odd = {(1, 1): 7631, (2, 1): 7000}      # the two ZD11 at 78.22: paid at two other amounts
    payment = statement(tmp_path, lambda billed, line: odd.get(line, billed))
    r = run("import", str(payment))
    assert r.exit_code == 0
    assert notes(r.stderr) == [
        f"note: {payment.name}: 2 lines paid without a dispute reason at another amount than billed (the CNS's share, "
        "sessions from 2026-10-20), not one amount for each amount billed (78.22 paid as 70.00 and 76.31): "
        "not a tariff change; ask the CNS why"]


def test_before_its_billing_file_is_imported_the_amounts_alone_tell(run, data, tmp_path):
    payment = statement(tmp_path, lambda billed, _: CNS_PRICES[billed])
    r = run("import", str(payment))
    assert r.exit_code == 0
    [note] = [n for n in notes(r.stderr) if "tariff" in n]
    assert ("likely a tariff change: 7 lines paid without a dispute reason at another amount than billed (the CNS's "
            "share), one amount for each amount billed: 48.88 → 47.69 (2 lines), 55.55 → 54.20 (1 line), 78.22 → 76.31 "
            "(2 lines), 97.78 → 95.39 (2 lines). See the table cnsx priced them with (cnsx tariffs --date DATE)") in note
