"""cnsx tariffs: the table in force on a date, and cnsx tariffs add, a checked new table.

Amounts are worked out by hand (coefficient x key-letter value, rounded half up; 12 % of the
gross for an adult), not with the code's own formula. Exit codes, stdout and stderr are
checked apart.
"""

from __future__ import annotations

import json
import stat
from datetime import date
from pathlib import Path

import pytest

from conftest import CREATED, PROVIDER

ALL_ACTS = ("ZD11", "ZD12", "ZD13", "ZD21")


def prices(*amounts: str) -> list[str]:
    args = []
    for act, amount in zip(ALL_ACTS, amounts):
        args += ["--price", f"{act}={amount}"]
    return args


def coefficients(*values: str) -> list[str]:
    args = []
    for act, value in zip(ALL_ACTS, values):
        args += ["--coefficient", f"{act}={value}"]
    return args


def tables_dir(config: Path) -> Path:
    return config / "nomenclature"


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def add(run, *args: str):
    return run("tariffs", "add", *args)


# --- cnsx tariffs: the table in force --------------------------------------------------------

def test_the_table_in_force_where_it_comes_from_and_since_when(run):
    r = run("tariffs", "--date", "2026-11-20")
    assert r.exit_code == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "tariff table in force on 2026-11-20"
    assert "  file          bundled 2019-01-01.json" in lines
    assert "  in force      from 2019-01-01 (no later table)" in lines
    assert any(line.startswith("  source        Acts: grand-ducal regulation of 5 December 2018") for line in lines)
    assert "  inferred      key_letter, coefficients (not read from an official text)" in lines
    assert "  prices        coefficient x key-letter value 11.1108 EUR, rounded half up to the cent" in lines
    assert "  patient share 12 % from age 18, 0 % below" in lines
    rows = [line.split() for line in lines if line.startswith("ZD")]
    assert rows == [["ZD11", "8", "88.89", "10.67", "78.22", "0.00", "88.89"],
                    ["ZD12", "10", "111.11", "13.33", "97.78", "0.00", "111.11"],
                    ["ZD13", "5", "55.55", "6.67", "48.88", "0.00", "55.55"],
                    ["ZD21", "5", "55.55", "6.67", "48.88", "0.00", "55.55"]]
    # More than 12 months after the newest table's start: said on stderr, naming it and the command.
    assert r.stderr.startswith("warning: the newest tariff table, bundled 2019-01-01.json, is in force since "
                               "2019-01-01: on 2026-11-20 it is more than 12 months old"), r.stderr
    assert "hint: add the table in force with cnsx tariffs add" in r.stderr


def test_show_is_the_default(run):
    assert run("tariffs", "show", "--date", "2026-11-20").stdout == run("tariffs", "--date", "2026-11-20").stdout


def test_default_date_is_today(run):
    r = run("tariffs", "--json")
    assert r.exit_code == 0
    assert json.loads(r.stdout)["date"] == date.today().isoformat()


def test_json(run):
    r = run("tariffs", "--date", "2019-06-01", "--json")
    assert r.exit_code == 0 and r.stderr == "", r.stderr   # in 2019 the table was current
    shown = json.loads(r.stdout)
    assert shown["date"] == "2019-06-01" and shown["out_of_date"] is False
    assert shown["newest"] == {"file": "bundled 2019-01-01.json", "valid_from": "2019-01-01"}
    assert shown["current_until"] == "2020-01-01"
    table = shown["table"]
    assert {k: table[k] for k in ("file", "valid_from", "valid_until", "key_letter", "coefficients", "prices",
                                  "inferred", "patient_share")} == {
        "file": "bundled 2019-01-01.json", "valid_from": "2019-01-01", "valid_until": None, "key_letter": "11.1108",
        "coefficients": {"ZD11": "8", "ZD12": "10", "ZD13": "5", "ZD21": "5"}, "prices": None,
        "inferred": ["key_letter", "coefficients"],
        "patient_share": {"adult_percent": "12", "minor_percent": "0", "minor_below_age": 18}}
    assert table["acts"]["ZD12"] == {"gross": "111.11", "adult": {"patient_share": "13.33", "cns_share": "97.78"},
                                     "minor": {"patient_share": "0.00", "cns_share": "111.11"}}


@pytest.mark.parametrize("day,warned", [("2026-03-14", False), ("2026-03-15", False), ("2026-03-16", True)])
def test_the_warning_at_its_boundary(run, isolated_config, day, warned):
    assert add(run, "--valid-from", "2025-03-15", "--source", "CNS letter", *prices("90", "112", "56", "56")).exit_code == 0
    r = run("tariffs", "--date", day, "--json")
    assert r.exit_code == 0
    assert json.loads(r.stdout)["out_of_date"] is warned
    assert ("more than 12 months old" in r.stderr) is warned, r.stderr


@pytest.mark.parametrize("day,expected", [("2026-10-31", "bundled 2019-01-01.json"), ("2026-11-01", "2026-11-01.json"),
                                          ("2026-11-02", "2026-11-01.json")])
def test_the_table_in_force_at_a_table_boundary(run, isolated_config, day, expected):
    assert add(run, "--valid-from", "2026-11-01", "--source", "CNS letter", *prices("90", "112", "56", "56")).exit_code == 0
    table = json.loads(run("tariffs", "--date", day, "--json").stdout)["table"]
    assert table["file"].endswith(expected)
    if expected.startswith("bundled"):
        assert table["valid_until"] == "2026-10-31"   # the day before the next table starts


@pytest.mark.parametrize("day,code", [("2018-12-31", 2), ("2019-01-01", 0), ("2019-01-02", 0)])
def test_before_every_table(run, day, code):
    r = run("tariffs", "--date", day)
    assert r.exit_code == code, r.stderr
    if code:
        assert r.stdout == ""
        assert "error: no tariff table is in force on 2018-12-31 (the first starts 2019-01-01)" in r.stderr


def test_all_tables_oldest_first(run, isolated_config):
    add(run, "--valid-from", "2026-11-01", "--source", "CNS letter", *prices("90", "112", "56", "56"))
    add(run, "--valid-from", "2023-04-01", "--source", "older letter", *prices("89", "111", "55", "55"))
    r = run("tariffs", "--all", "--json")
    assert r.exit_code == 0
    tables = json.loads(r.stdout)["tables"]
    assert [(t["valid_from"], t["valid_until"]) for t in tables] == [
        ("2019-01-01", "2023-03-31"), ("2023-04-01", "2026-10-31"), ("2026-11-01", None)]
    text = run("tariffs", "--all")
    assert [line[:22].split() for line in text.stdout.splitlines()[1:] if line[:1].isdigit()] == [
        ["2019-01-01", "2023-03-31"], ["2023-04-01", "2026-10-31"], ["2026-11-01"]]


@pytest.mark.parametrize("args", [
    ["tariffs", "--date", "2026-11-20", "--all"],
    ["tariffs", "--date", "2026-13-01"],
    ["tariffs", "--date", "20261120"],
    ["tariffs", "--json", "add", "--valid-from", "2026-11-01", "--source", "x", "--price", "ZD11=1"],
])
def test_usage_errors(run, args):
    r = run(*args)
    assert r.exit_code == 2, r.stderr
    assert r.stdout == ""


def test_a_broken_user_table_is_exit_4(run, isolated_config):
    tables_dir(isolated_config).mkdir()
    (tables_dir(isolated_config) / "x.json").write_text("{", "utf-8")
    r = run("tariffs")
    assert r.exit_code == 4 and "x.json" in r.stderr


# --- cnsx tariffs add ------------------------------------------------------------------------

def test_add_prices_writes_a_private_checked_table(run, isolated_config):
    r = add(run, "--valid-from", "2026-11-01", "--source", "CNS letter of 15 October 2026",
            *prices("91.12", "113,9", "56.95", "56.95"))
    assert r.exit_code == 0, r.stderr
    path = tables_dir(isolated_config) / "2026-11-01.json"
    assert files_in(tables_dir(isolated_config)) == ["2026-11-01.json"]     # no temp file left
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(tables_dir(isolated_config).stat().st_mode) == 0o700
    assert json.loads(path.read_text("utf-8")) == {
        "valid_from": "2026-11-01", "source": "CNS letter of 15 October 2026",
        "prices": {"ZD11": "91.12", "ZD12": "113.90", "ZD13": "56.95", "ZD21": "56.95"},
        "patient_share": {"adult_percent": "12", "minor_percent": "0", "minor_below_age": 18}}
    # What was written is printed: the table on stdout, where it went on stderr.
    assert r.stdout.splitlines()[0] == "new tariff table from 2026-11-01"
    assert f"  file          {path}" in r.stdout.splitlines()
    assert ["ZD12", "113.90", "13.67", "100.23", "0.00", "113.90"] in [line.split() for line in r.stdout.splitlines()]
    assert r.stderr.splitlines()[-1] == f"wrote {path}"
    assert "note: patient share as in bundled 2019-01-01.json: 12 % for adults, 0 % below 18" in r.stderr


def test_sessions_are_priced_with_the_new_table_from_its_date(run, isolated_config, tmp_path):
    assert add(run, "--valid-from", "2026-11-01", "--source", "CNS letter",
               *prices("91.12", "113.90", "56.95", "56.95")).exit_code == 0
    rows = tmp_path / "s.csv"
    rows.write_text("certificate_number,matricule,session_date,act_code\n"
                    "T-1,1974091186700,2026-10-31,ZD11\nT-1,1974091186700,2026-11-01,ZD12\n"
                    "T-1,1974091186700,2026-11-02,ZD13\n", "utf-8")
    out = tmp_path / "out"
    out.mkdir()
    r = run("build-invoice", str(rows), "--provider", PROVIDER, "--created", CREATED, "-o", str(out))
    assert r.exit_code == 0, r.stderr
    assert "NOM05" not in r.stderr      # the newest table is current
    [built] = out.glob("*.xml")
    text = built.read_text("utf-8")
    assert [line.strip() for line in text.splitlines() if "<MontantBrut>" in line] == [
        "<MontantBrut>88.89</MontantBrut>", "<MontantBrut>113.90</MontantBrut>", "<MontantBrut>56.95</MontantBrut>"]
    v = run("validate", str(built))
    assert v.exit_code == 0 and "NOM05" not in v.stderr, v.stderr


def test_add_a_key_letter_with_coefficients_rounds_half_up(run, isolated_config):
    r = add(run, "--valid-from", "2027-01-01", "--source", "RGD of 2026 (official)", "--key-letter", "11.1125",
            *coefficients("8", "10", "5", "5"), "--json")
    assert r.exit_code == 0, r.stderr
    shown = json.loads(r.stdout)
    assert shown["written"] is True and shown["path"] == str(tables_dir(isolated_config) / "2027-01-01.json")
    # 8 x 11.1125 = 88.90; 10 x = 111.125 -> 111.13 (half up); 5 x = 55.5625 -> 55.56
    assert {act: p["gross"] for act, p in shown["table"]["acts"].items()} == {
        "ZD11": "88.90", "ZD12": "111.13", "ZD13": "55.56", "ZD21": "55.56"}
    written = json.loads(Path(shown["path"]).read_text("utf-8"))
    assert written["key_letter"] == {"value": "11.1125"}
    assert written["coefficients"] == {"ZD11": "8", "ZD12": "10", "ZD13": "5", "ZD21": "5"}
    assert "inferred" not in written
    # The coefficients are those the bundled table infers: said, not refused.
    assert "note: the coefficients are those bundled 2019-01-01.json marks as inferred" in r.stderr


def test_a_key_letter_alone_takes_official_coefficients_over(run, isolated_config):
    assert add(run, "--valid-from", "2026-01-01", "--source", "official", "--key-letter", "6",
               *coefficients("16", "20", "10", "10"), "--accept-change").exit_code == 0
    r = add(run, "--valid-from", "2027-01-01", "--source", "CNS letter: key letter 6.15", "--key-letter", "6.15", "--json")
    assert r.exit_code == 0, r.stderr
    table = json.loads(r.stdout)["table"]
    assert table["coefficients"] == {"ZD11": "16", "ZD12": "20", "ZD13": "10", "ZD21": "10"}
    assert table["acts"]["ZD11"]["gross"] == "98.40" and table["acts"]["ZD13"]["gross"] == "61.50"


def test_a_key_letter_alone_never_takes_inferred_coefficients(run, isolated_config):
    r = add(run, "--valid-from", "2026-11-01", "--source", "CNS letter", "--key-letter", "11.52")
    assert r.exit_code == 3
    assert r.stdout == ""
    assert ("the coefficients of bundled 2019-01-01.json are inferred, not official, and an official key-letter value "
            "with them gives wrong prices") in r.stderr
    assert files_in(tables_dir(isolated_config)) == []
    # Unless the new figures are inferred too: then they are marked so.
    r = add(run, "--valid-from", "2026-11-01", "--source", "derived from the prices of a colleague's site",
            "--key-letter", "11.52", "--inferred")
    assert r.exit_code == 0, r.stderr
    written = json.loads((tables_dir(isolated_config) / "2026-11-01.json").read_text("utf-8"))
    assert written["inferred"] == ["key_letter", "coefficients"]
    assert written["coefficients"] == {"ZD11": "8", "ZD12": "10", "ZD13": "5", "ZD21": "5"}
    assert "  inferred      key_letter, coefficients (not read from an official text)" in r.stdout.splitlines()


def test_a_key_letter_after_a_table_of_prices_needs_coefficients(run, isolated_config):
    assert add(run, "--valid-from", "2026-01-01", "--source", "letter", *prices("90", "112", "56", "56")).exit_code == 0
    r = add(run, "--valid-from", "2027-01-01", "--source", "letter", "--key-letter", "11.52")
    assert r.exit_code == 3 and "2026-01-01.json gives prices, not coefficients" in r.stderr


def test_every_problem_of_the_figures_is_said_at_once_and_nothing_is_written(run, isolated_config):
    r = add(run, "--valid-from", "2026-11-01", "--source", "letter",
            "--price", "ZD11=0", "--price", "ZD12=abc", "--price", "ZD31=1", "--price", "ZD13=56.955",
            "--price", "ZD99=-1")
    assert r.exit_code == 3
    assert r.stdout == ""
    for part in ("--price ZD11 '0' is not positive", "--price ZD12 'abc' is not a number",
                 "--price ZD31: not an act of the nomenclature", "--price ZD13 '56.955' has more than 2 decimals",
                 "--price: no value for ZD21", "nothing was written"):
        assert part in r.stderr, part
    assert files_in(tables_dir(isolated_config)) == []


@pytest.mark.parametrize("args,message", [
    (["--key-letter", "0", *coefficients("8", "10", "5", "5")], "--key-letter '0' is not positive"),
    (["--key-letter", "11.5", *coefficients("8", "10", "5", "-5")], "--coefficient ZD21 '-5' is not a number"),
    (["--key-letter", "11.5", *coefficients("8", "10", "5")], "--coefficient: no value for ZD21"),
    (["--key-letter", "11.5", *coefficients("8", "10", "5", "0")], "--coefficient ZD21 '0' is not positive"),
])
def test_bad_key_letter_or_coefficients_are_refused(run, isolated_config, args, message):
    r = add(run, "--valid-from", "2026-11-01", "--source", "letter", *args)
    assert r.exit_code == 3 and message in r.stderr, r.stderr
    assert files_in(tables_dir(isolated_config)) == []


@pytest.mark.parametrize("args,message", [
    (["--source", "x", *prices("1", "1", "1", "1")], "Missing option '--valid-from'"),
    (["--valid-from", "2026-11-01", *prices("1", "1", "1", "1")], "Missing option '--source'"),
    (["--valid-from", "2026-11-01", "--source", "  ", *prices("1", "1", "1", "1")], "--source is empty"),
    (["--valid-from", "2026-11-31", "--source", "x", *prices("1", "1", "1", "1")], "not a YYYY-MM-DD date"),
    (["--valid-from", "2026-W44-7", "--source", "x", *prices("1", "1", "1", "1")], "not a YYYY-MM-DD date"),
    (["--valid-from", "2026-11-01", "--source", "x"], "no figures"),
    (["--valid-from", "2026-11-01", "--source", "x", "--price", "ZD11"], "--price ZD11: not ACT=VALUE"),
    (["--valid-from", "2026-11-01", "--source", "x", "--price", "ZD11=1", "--price", "zd11=2"], "ZD11 is given twice"),
    (["--valid-from", "2026-11-01", "--source", "x", *prices("1", "1", "1", "1"), "--key-letter", "11"],
     "--price with --key-letter or --coefficient"),
    (["--valid-from", "2026-11-01", "--source", "x", *coefficients("8", "10", "5", "5")], "--coefficient without --key-letter"),
])
def test_options_that_cannot_be_read_are_exit_2(run, isolated_config, args, message):
    r = add(run, *args)
    assert r.exit_code == 2, r.stderr
    assert message in r.stderr
    assert r.stdout == "" and files_in(tables_dir(isolated_config)) == []


def test_a_table_for_the_same_date_is_never_replaced(run, isolated_config):
    r = add(run, "--valid-from", "2019-01-01", "--source", "x", *prices("90", "112", "56", "56"))
    assert r.exit_code == 2 and "a tariff table starting 2019-01-01 exists already: bundled 2019-01-01.json" in r.stderr
    assert add(run, "--valid-from", "2026-11-01", "--source", "first", *prices("90", "112", "56", "56")).exit_code == 0
    before = (tables_dir(isolated_config) / "2026-11-01.json").read_bytes()
    r = add(run, "--valid-from", "2026-11-01", "--source", "second", *prices("91", "113", "57", "57"))
    assert r.exit_code == 2 and "a tariff table starting 2026-11-01 exists already" in r.stderr
    assert (tables_dir(isolated_config) / "2026-11-01.json").read_bytes() == before


def test_a_file_of_that_name_is_never_overwritten(run, isolated_config):
    folder = tables_dir(isolated_config)
    folder.mkdir()
    (folder / "2027-01-01.json").write_text(json.dumps({
        "valid_from": "2028-01-01", "source": "named by hand", "prices": {a: "60" for a in ALL_ACTS},
        "patient_share": {"adult_percent": "12", "minor_percent": "0", "minor_below_age": 18}}), "utf-8")
    before = (folder / "2027-01-01.json").read_bytes()
    r = add(run, "--valid-from", "2027-01-01", "--source", "x", *prices("90", "112", "56", "56"))
    assert r.exit_code == 2 and "2027-01-01.json exists already; cnsx never overwrites a file" in r.stderr
    assert (folder / "2027-01-01.json").read_bytes() == before and files_in(folder) == ["2027-01-01.json"]


@pytest.mark.parametrize("new,accepted", [
    ("125.00", True), ("125.01", False), ("124.99", True),    # 25 % more, just over, just under
    ("75.00", True), ("74.99", False), ("75.01", True),       # 25 % less, just over, just under
])
def test_a_price_that_moves_by_more_than_25_percent_is_refused(run, isolated_config, new, accepted):
    assert add(run, "--valid-from", "2026-01-01", "--source", "letter", *prices("100", "100", "100", "100"),
               "--accept-change").exit_code == 0
    r = add(run, "--valid-from", "2026-11-01", "--source", "letter", *prices("100", "100", new, "100"))
    assert (r.exit_code == 0) is accepted, r.stderr
    if not accepted:
        assert r.exit_code == 3
        assert "prices would move by more than 25 % from " in r.stderr and "2026-01-01.json: ZD13 100.00 → " in r.stderr
        assert f"ZD13 100.00 → {new} EUR ({'+' if float(new) > 100 else '-'}25 %)" in r.stderr
        assert "--accept-change" in r.stderr
        assert files_in(tables_dir(isolated_config)) == ["2026-01-01.json"]
        assert add(run, "--valid-from", "2026-11-01", "--source", "letter", *prices("100", "100", new, "100"),
                   "--accept-change").exit_code == 0


def test_an_official_key_letter_with_the_inferred_coefficients_of_double_scale_is_caught(run, isolated_config):
    """The issue's case: the official key letter of coefficients 16/20/10 (about 5.56) entered
    with the bundled 8/10/5 halves every price."""
    r = add(run, "--valid-from", "2026-11-01", "--source", "CNS letter", "--key-letter", "5.7", *coefficients("8", "10", "5", "5"))
    assert r.exit_code == 3
    assert ("prices would move by more than 25 % from bundled 2019-01-01.json: ZD11 88.89 → 45.60 EUR (-49 %), "
            "ZD12 111.11 → 57.00 EUR (-49 %), ZD13 55.55 → 28.50 EUR (-49 %), ZD21 55.55 → 28.50 EUR (-49 %)") in r.stderr
    assert files_in(tables_dir(isolated_config)) == []


def test_dry_run_checks_and_shows_but_writes_nothing(run, isolated_config):
    r = add(run, "--valid-from", "2026-11-01", "--source", "letter", *prices("90", "112", "56", "56"), "--dry-run")
    assert r.exit_code == 0, r.stderr
    assert r.stdout.startswith("new tariff table from 2026-11-01\n")
    assert r.stderr.splitlines()[-1] == f"dry run: nothing written ({tables_dir(isolated_config) / '2026-11-01.json'})"
    assert files_in(tables_dir(isolated_config)) == []
    assert add(run, "--valid-from", "2026-11-01", "--source", "letter", *prices("0", "112", "56", "56"),
               "--dry-run").exit_code == 3


def test_a_table_before_every_other_takes_the_first_tables_patient_share(run, isolated_config):
    r = add(run, "--valid-from", "2018-01-01", "--source", "older prices", *prices("20", "30", "10", "10"), "--json")
    assert r.exit_code == 0, r.stderr     # no table before it: no price to compare with
    table = json.loads(r.stdout)["table"]
    assert table["valid_until"] == "2018-12-31"
    assert table["patient_share"] == {"adult_percent": "12", "minor_percent": "0", "minor_below_age": 18}
    assert json.loads(run("tariffs", "--date", "2018-06-01", "--json").stdout)["table"]["acts"]["ZD11"]["gross"] == "20.00"


def test_a_table_that_is_itself_old_says_builds_still_warn(run, isolated_config):
    r = add(run, "--valid-from", "2020-01-01", "--source", "letter of 2019", *prices("88.89", "111.11", "55.55", "55.55"))
    assert r.exit_code == 0
    assert "note: the newest table starts 2020-01-01: on " in r.stderr and "builds and validate still warn (NOM05)" in r.stderr


def test_quiet_prints_the_table_and_notes_only(run, isolated_config):
    r = run("-q", "tariffs", "add", "--valid-from", "2026-11-01", "--source", "letter", *prices("90", "112", "56", "56"))
    assert r.exit_code == 0
    assert r.stdout.startswith("new tariff table")
    assert "wrote" not in r.stderr
