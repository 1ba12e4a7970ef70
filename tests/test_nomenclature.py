"""Tariffs: bundled prices, patient share, dated user tables, bad tables, and the CLI's use of them.

Expected amounts are worked out by hand from domain.md (2021 tariffs 88.89 / 111.11 / 55.55 EUR,
12 % patient share for adults, 0 % under 18), not computed with the code's own formula.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from conftest import CREATED, PROVIDER, make_matricule
from cns_exchange.errors import ConfigError, ExitCode
from cns_exchange.domain.nomenclature import NoTariffError, PrescriptionDateNeeded, load_nomenclature

ADULT = date(1974, 9, 11)
DAY = date(2021, 6, 1)


def table(valid_from: str, key: str = "12.00", coefficients: dict | None = None, adult: str = "12",
          minor: str = "0", below: int = 18, source: str = "test table") -> dict:
    return {
        "valid_from": valid_from,
        "source": source,
        "key_letter": {"name": "ZD", "value": key},
        "coefficients": coefficients if coefficients is not None else {"ZD11": "8", "ZD12": "10", "ZD13": "5", "ZD21": "5"},
        "patient_share": {"adult_percent": adult, "minor_percent": minor, "minor_below_age": below},
    }


def write_table(folder: Path, name: str, content) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(content if isinstance(content, str) else json.dumps(content), "utf-8")
    return path


def prices_table(valid_from: str, prices: dict | None = None, **extra) -> dict:
    raw = table(valid_from)
    del raw["key_letter"], raw["coefficients"]
    raw["prices"] = prices if prices is not None else {"ZD11": "91.12", "ZD12": "113.90", "ZD13": "56.95", "ZD21": "56.95"}
    raw.update(extra)
    return raw


@pytest.fixture(scope="module")
def bundled():
    return load_nomenclature()


# --- bundled table -------------------------------------------------------------------------

@pytest.mark.parametrize("act,gross,share,cns", [
    ("ZD11", 8889, 1067, 7822),     # 12 % of 88.89 = 10.6668
    ("ZD12", 11111, 1333, 9778),    # 12 % of 111.11 = 13.3332
    ("ZD13", 5555, 667, 4888),      # 12 % of 55.55 = 6.666
    ("ZD21", 5555, 667, 4888),
])
def test_bundled_prices_for_adults(bundled, act, gross, share, cns):
    for day in (date(2019, 1, 1), DAY, date(2026, 11, 20)):
        price = bundled.price(act, day, minor=False)
        assert (price.gross, price.patient_share, price.cns_share) == (gross, share, cns)
        assert bundled.price_for(act, day, ADULT) == price


@pytest.mark.parametrize("act,gross", [("ZD11", 8889), ("ZD12", 11111), ("ZD13", 5555), ("ZD21", 5555)])
def test_minors_pay_nothing(bundled, act, gross):
    price = bundled.price(act, DAY, minor=True)
    assert (price.gross, price.patient_share, price.cns_share) == (gross, 0, gross)


@pytest.mark.parametrize("prescribed,share", [
    (date(2026, 6, 14), 0),       # the day before the 18th birthday: the CNS pays everything
    (date(2026, 6, 15), 1067),    # the birthday itself: 12 %
    (date(2026, 6, 16), 1067),    # the day after
])
def test_share_follows_the_age_on_the_prescription_date(bundled, prescribed, share):
    born = date(2008, 6, 15)
    for session in (date(2026, 6, 16), date(2026, 12, 20), date(2029, 6, 14)):
        price = bundled.price_for("ZD11", session, born, prescribed)
        assert (price.patient_share, price.cns_share) == (share, 8889 - share), session


def test_the_issue_14_patient_pays_nothing_on_both_sides_of_the_birthday(bundled):
    born, prescribed = date(2008, 12, 15), date(2026, 12, 1)
    assert [bundled.price_for("ZD12", day, born, prescribed).patient_share
            for day in (date(2026, 12, 10), date(2026, 12, 20))] == [0, 0]


@pytest.mark.parametrize("session,share", [
    (date(2026, 6, 14), 0),        # under 18 on the session date: under 18 on any prescription before it
    (date(2026, 6, 15), None),     # 18 on the session date: the prescription may be from before the birthday
    (date(2029, 6, 14), None),     # the day before the 21st birthday: still within the 3 years a prescription reaches
    (date(2029, 6, 15), 1067),     # 21: 18 on every prescription date that can cover the session
    (date(2029, 6, 16), 1067),
])
def test_without_the_prescription_date_the_share_is_given_only_when_it_is_certain(bundled, session, share):
    born = date(2008, 6, 15)
    assert bundled.reach == 3
    if share is None:
        with pytest.raises(PrescriptionDateNeeded) as raised:
            bundled.price_for("ZD11", session, born)
        assert raised.value.birthday == date(2026, 6, 15)
    else:
        assert bundled.price_for("ZD11", session, born).patient_share == share


def test_before_the_first_table_is_an_error(bundled):
    with pytest.raises(NoTariffError):
        bundled.price("ZD11", date(2018, 12, 31), minor=False)
    with pytest.raises(NoTariffError):
        bundled.price_for("ZD11", date(2018, 12, 31), ADULT)
    with pytest.raises(NoTariffError):
        bundled.table_on(date(2018, 12, 31))


def test_bundled_table_has_a_source(bundled):
    first = bundled.table_on(date(2019, 1, 1))
    assert first.valid_from == date(2019, 1, 1)
    assert first.source.strip()


# --- user tables ---------------------------------------------------------------------------

def test_newer_user_table_applies_from_its_date(tmp_path):
    folder = tmp_path / "nomenclature"
    path = write_table(folder, "2027-01-01.json", table("2027-01-01", key="12.00"))
    nomenclature = load_nomenclature([folder])
    assert nomenclature.price("ZD11", date(2026, 12, 31), False).gross == 8889
    assert nomenclature.price("ZD11", date(2027, 1, 1), False).gross == 9600
    assert nomenclature.price("ZD12", date(2027, 1, 1), False).gross == 12000
    assert nomenclature.price("ZD13", date(2030, 5, 5), False).gross == 6000
    assert nomenclature.price_for("ZD21", date(2027, 1, 1), ADULT).gross == 6000
    assert nomenclature.price_for("ZD21", date(2026, 12, 31), ADULT).gross == 5555
    assert nomenclature.table_on(date(2027, 1, 1)).path == str(path)
    # The bundled table alone is unchanged by the user's folder being read.
    assert load_nomenclature().price("ZD11", date(2027, 1, 1), False).gross == 8889


def test_gross_amount_rounds_half_up(tmp_path):
    folder = tmp_path / "nomenclature"
    write_table(folder, "t.json", table("2027-01-01", key="11.1125"))
    n = load_nomenclature([folder])
    day = date(2027, 2, 1)
    assert n.price("ZD11", day, False).gross == 8890      # 88.9000
    assert n.price("ZD12", day, False).gross == 11113     # 111.125 -> 111.13 (half-even would give 111.12)
    assert n.price("ZD13", day, False).gross == 5556      # 55.5625


def test_patient_share_rounds_half_up(tmp_path):
    folder = tmp_path / "nomenclature"
    write_table(folder, "t.json", table("2027-01-01", key="11.13", adult="10"))
    n = load_nomenclature([folder])
    price = n.price("ZD13", date(2027, 2, 1), False)
    # 5 x 11.13 = 55.65; 10 % = 5.565 -> 5.57 (half-even would give 5.56)
    assert (price.gross, price.patient_share, price.cns_share) == (5565, 557, 5008)
    price = n.price("ZD11", date(2027, 2, 1), False)
    assert (price.gross, price.patient_share) == (8904, 890)


def test_numbers_written_as_json_numbers_are_read_exactly(tmp_path):
    folder = tmp_path / "nomenclature"
    raw = table("2027-01-01")
    raw["key_letter"]["value"] = 11.1125
    raw["coefficients"] = {"ZD11": 8, "ZD12": 10, "ZD13": 5, "ZD21": 5}
    write_table(folder, "t.json", raw)
    assert load_nomenclature([folder]).price("ZD12", date(2027, 1, 1), False).gross == 11113


def test_minor_age_comes_from_the_table(tmp_path):
    folder = tmp_path / "nomenclature"
    write_table(folder, "t.json", table("2027-01-01", below=21, minor="5"))
    n = load_nomenclature([folder])
    born = date(2006, 3, 10)   # 20 on 2027-03-09, 21 on 2027-03-10
    session = date(2027, 4, 1)
    assert n.price_for("ZD13", session, born, date(2027, 3, 9)).patient_share == 300    # 5 % of 60.00
    assert n.price_for("ZD13", session, born, date(2027, 3, 10)).patient_share == 720   # 12 % of 60.00
    with pytest.raises(PrescriptionDateNeeded):    # 21 within the 3 years before the session
        n.price_for("ZD13", session, born)


BASE = table("2027-01-01")


def _without(key: str) -> dict:
    raw = json.loads(json.dumps(BASE))
    del raw[key]
    return raw


def _with(path: list[str], value) -> dict:
    raw = json.loads(json.dumps(BASE))
    target = raw
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return raw


BAD_TABLES = {
    "invalid-json": '{"valid_from": "2027-01-01",',
    "not-an-object": "[1, 2]",
    "missing-source": _without("source"),
    "missing-coefficients": _without("coefficients"),
    "missing-valid-from": _without("valid_from"),
    "missing-key-letter-value": _with(["key_letter"], {"name": "ZD"}),
    "missing-minor-percent": _with(["patient_share"], {"adult_percent": "12", "minor_below_age": 18}),
    "bad-date": _with(["valid_from"], "2027-13-01"),
    "empty-source": _with(["source"], "  "),
    "unknown-act": _with(["coefficients"], {"ZD11": "8", "ZD12": "10", "ZD13": "5", "ZD21": "5", "ZD99": "3"}),
    "missing-act": _with(["coefficients"], {"ZD11": "8", "ZD12": "10", "ZD13": "5"}),
    "negative-key-letter": _with(["key_letter", "value"], "-11.11"),
    "negative-coefficient": _with(["coefficients", "ZD13"], "-5"),
    "negative-percent": _with(["patient_share", "adult_percent"], "-12"),
    "negative-minor-age": _with(["patient_share", "minor_below_age"], -18),
    "not-a-number": _with(["key_letter", "value"], "eleven"),
    "share-over-100": _with(["patient_share", "adult_percent"], "112"),
    # a price per act instead of key letter x coefficients; figures marked inferred
    "prices-and-key-letter": {**prices_table("2027-01-01"), "key_letter": {"value": "11"}},
    "prices-and-coefficients": {**prices_table("2027-01-01"), "coefficients": {"ZD11": "8"}},
    "price-missing-act": prices_table("2027-01-01", {"ZD11": "91.12", "ZD12": "113.90", "ZD13": "56.95"}),
    "price-unknown-act": prices_table("2027-01-01", {"ZD11": "1", "ZD12": "1", "ZD13": "1", "ZD21": "1", "ZD31": "1"}),
    "price-zero": prices_table("2027-01-01", {"ZD11": "0", "ZD12": "113.90", "ZD13": "56.95", "ZD21": "56.95"}),
    "price-negative": prices_table("2027-01-01", {"ZD11": "-91.12", "ZD12": "113.90", "ZD13": "56.95", "ZD21": "56.95"}),
    "price-past-the-cent": prices_table("2027-01-01", {"ZD11": "91.125", "ZD12": "113.90", "ZD13": "56.95", "ZD21": "56.95"}),
    "price-not-a-number": prices_table("2027-01-01", {"ZD11": "91,12", "ZD12": "113.90", "ZD13": "56.95", "ZD21": "56.95"}),
    "prices-not-an-object": prices_table("2027-01-01", ["91.12"]),
    "inferred-unknown-figure": {**table("2027-01-01"), "inferred": ["coefficient"]},
    "inferred-prices-of-a-key-letter-table": {**table("2027-01-01"), "inferred": ["prices"]},
    "inferred-not-a-list": {**table("2027-01-01"), "inferred": "coefficients"},
    "inferred-holds-an-object": {**table("2027-01-01"), "inferred": [{"coefficients": True}]},
}


@pytest.mark.parametrize("name", sorted(BAD_TABLES))
def test_bad_user_table_is_a_config_error_naming_the_file(tmp_path, name):
    folder = tmp_path / "nomenclature"
    path = write_table(folder, f"{name}.json", BAD_TABLES[name])
    with pytest.raises(ConfigError) as caught:
        load_nomenclature([folder])
    assert str(path) in caught.value.message
    assert caught.value.exit_code == ExitCode.CONFIG == 4
    assert caught.value.hint


def test_two_user_tables_on_the_same_day(tmp_path):
    folder = tmp_path / "nomenclature"
    write_table(folder, "a.json", table("2027-01-01"))
    write_table(folder, "b.json", table("2027-01-01", key="13"))
    with pytest.raises(ConfigError) as caught:
        load_nomenclature([folder])
    assert "a.json" in caught.value.message and "b.json" in caught.value.message


def test_user_table_on_the_bundled_date(tmp_path):
    folder = tmp_path / "nomenclature"
    path = write_table(folder, "again.json", table("2019-01-01"))
    with pytest.raises(ConfigError) as caught:
        load_nomenclature([folder])
    assert str(path) in caught.value.message


def test_other_files_and_missing_folder_are_ignored(tmp_path):
    folder = tmp_path / "nomenclature"
    write_table(folder, "README.txt", "not a table")
    assert load_nomenclature([folder, tmp_path / "absent"]).price("ZD11", DAY, False).gross == 8889


# --- through the CLI -----------------------------------------------------------------------

def _seances(xml: bytes) -> dict[tuple[str, str], tuple[str, str, str]]:
    root = etree.fromstring(xml)
    found = {}
    for note in root.iterfind("MemoireHonoraires"):
        for s in note.iterfind("Seance"):
            found[(note.findtext("NumeroTitre"), s.findtext("DateSeance"))] = (
                s.findtext("MontantBrut"), s.findtext("ParticipationPersonnelle"), s.findtext("PartStatutaire"))
    return found


def test_cli_bad_table_exits_4_naming_the_file(run, examples, isolated_config):
    write_table(isolated_config / "nomenclature", "broken-2027.json", BAD_TABLES["missing-act"])
    r = run("build-invoice", str(examples / "sessions.csv"), "--provider", PROVIDER, "--created", CREATED)
    assert r.exit_code == 4, r.stderr
    assert "broken-2027.json" in r.stderr
    assert "Traceback" not in r.stderr
    assert r.stdout == ""


def test_cli_invalid_json_table_exits_4(run, examples, isolated_config):
    write_table(isolated_config / "nomenclature", "garbled.json", "{")
    r = run("build-invoice", str(examples / "sessions.csv"), "--provider", PROVIDER, "--created", CREATED)
    assert r.exit_code == 4, r.stderr
    assert "garbled.json" in r.stderr
    assert "Traceback" not in r.stderr


def test_cli_bundled_amounts(run, examples):
    r = run("build-invoice", str(examples / "sessions.csv"), "--provider", PROVIDER, "--created", CREATED)
    assert r.exit_code == 0, r.stderr
    seances = _seances(r.stdout_bytes)
    assert seances[("TPC-2026-000101", "2026-10-20")] == ("88.89", "10.67", "78.22")
    assert seances[("TPC-2026-000101", "2026-10-27")] == ("111.11", "13.33", "97.78")
    assert seances[("TPC-2026-000101", "2026-11-03")] == ("55.55", "6.67", "48.88")
    assert seances[("TPC-2026-000087", "2026-11-04")] == ("55.55", "0.00", "55.55")  # born 2015: a minor


def test_cli_newer_table_changes_the_billed_amounts(run, examples, isolated_config):
    write_table(isolated_config / "nomenclature", "2026-11-01.json", table("2026-11-01", key="12.00"))
    r = run("build-invoice", str(examples / "sessions.csv"), "--provider", PROVIDER, "--created", CREATED)
    assert r.exit_code == 0, r.stderr
    assert _seances(r.stdout_bytes) == {
        ("TPC-2026-000101", "2026-10-20"): ("88.89", "10.67", "78.22"),    # before 1 Nov: bundled table
        ("TPC-2026-000101", "2026-10-27"): ("111.11", "13.33", "97.78"),
        ("TPC-2026-000101", "2026-11-03"): ("60.00", "7.20", "52.80"),     # from 1 Nov: 5 x 12.00
        ("TPC-2026-000101", "2026-11-10"): ("60.00", "7.20", "52.80"),
        ("TPC-2026-000102", "2026-11-05"): ("96.00", "11.52", "84.48"),
        ("TPC-2026-000102", "2026-11-12"): ("120.00", "14.40", "105.60"),
        ("TPC-2026-000087", "2026-11-04"): ("60.00", "0.00", "60.00"),
        ("TPC-2026-000087", "2026-11-11"): ("60.00", "0.00", "60.00"),
    }
    header = etree.fromstring(r.stdout_bytes).find("EnTete")
    assert header.findtext("TotalMontantBrut") == "656.00"
    assert header.findtext("TotalParticipationPersonnelle") == "64.32"
    assert header.findtext("TotalPartStatutaire") == "591.68"


def test_cli_document_built_with_a_newer_table_validates_with_it(run, examples, isolated_config, tmp_path):
    write_table(isolated_config / "nomenclature", "2026-11-01.json", table("2026-11-01", key="12.00"))
    out = tmp_path / "out"
    out.mkdir()
    r = run("build-invoice", str(examples / "sessions.csv"), "--provider", PROVIDER, "--created", CREATED, "-o", str(out))
    assert r.exit_code == 0, r.stderr
    [built] = out.glob("*.xml")
    v = run("validate", str(built))
    assert v.exit_code == 0, v.stderr
    # Without the newer table the same document is mis-priced.
    (isolated_config / "nomenclature" / "2026-11-01.json").unlink()
    v = run("validate", str(built))
    assert v.exit_code == 3
    assert "NOM02" in v.stderr


def test_cli_patient_turning_18_in_a_v1_file(run, tmp_path):
    """Created 2026-11-20, the file is schema v1, which cannot carry the prescription date: its
    shares are those of the session dates (tests/test_minors.py has the v2 rule)."""
    m = make_matricule(date(2008, 6, 15))
    csv = tmp_path / "sessions.csv"
    csv.write_text("certificate_number;matricule;session_date;act_code\n"
                   f"TPC-1;{m};2026-06-14;ZD11\nTPC-1;{m};2026-06-15;ZD12\n", "utf-8")
    r = run("build-invoice", str(csv), "--provider", PROVIDER, "--created", CREATED)
    assert r.exit_code == 0, r.stderr
    assert _seances(r.stdout_bytes) == {
        ("TPC-1", "2026-06-14"): ("88.89", "0.00", "88.89"),
        ("TPC-1", "2026-06-15"): ("111.11", "13.33", "97.78"),
    }


def test_cli_session_before_every_table(run, tmp_path):
    csv = tmp_path / "sessions.csv"
    csv.write_text("certificate_number;matricule;session_date;act_code\n"
                   "TPC-1;1974091186700;2018-12-31;ZD11\n", "utf-8")
    r = run("build-invoice", str(csv), "--provider", PROVIDER, "--created", CREATED)
    assert r.exit_code == 3
    assert "NOM01" in r.stderr
    assert r.stdout == ""


@settings(max_examples=300, deadline=None)
@given(born=st.dates(date(1990, 1, 1), date(2020, 12, 31)), day=st.dates(date(2019, 1, 1), date(2040, 12, 31)),
       prescribed=st.dates(date(2010, 1, 1), date(2040, 12, 31)))
def test_the_minors_share_ends_on_the_18th_birthday_as_years_between_says(born, day, prescribed):
    """price_for looks the birthday up once per patient; the rule stays identifiers.years_between's
    on the prescription date (29 February birthdays included: drawn often by Hypothesis among
    these dates)."""
    from cns_exchange.domain.identifiers import years_between

    nomenclature = load_nomenclature()
    table = nomenclature.table_on(day)
    minor = years_between(born, prescribed) < table.minor_below_age
    assert nomenclature.price_for("ZD11", day, born, prescribed) == nomenclature.price("ZD11", day, minor)


@settings(max_examples=300, deadline=None)
@given(born=st.dates(date(1990, 1, 1), date(2020, 12, 31)), day=st.dates(date(2019, 1, 1), date(2040, 12, 31)))
def test_without_a_prescription_date_a_share_is_given_only_if_every_possible_date_agrees(born, day):
    """A prescription comes at most 3 years (codes.json) before its session, and not after it:
    the share given without its date is the one of every such date, else none is given."""
    from cns_exchange.domain.identifiers import years_between

    nomenclature = load_nomenclature()
    age = nomenclature.table_on(day).minor_below_age
    earliest = day.replace(year=day.year - 3) if (day.month, day.day) != (2, 29) else date(day.year - 3, 3, 1)
    minors = {years_between(born, on) < age for on in (earliest, day)}
    if len(minors) == 2:
        with pytest.raises(PrescriptionDateNeeded):
            nomenclature.price_for("ZD11", day, born)
    else:
        assert nomenclature.price_for("ZD11", day, born) == nomenclature.price("ZD11", day, minors.pop())


def test_the_minors_share_of_a_29_february_birthday():
    nomenclature = load_nomenclature()
    born, session = date(2008, 2, 29), date(2026, 6, 1)
    assert nomenclature.price_for("ZD11", session, born, date(2026, 2, 28)).patient_share == 0
    assert nomenclature.price_for("ZD11", session, born, date(2026, 3, 1)).patient_share > 0


# --- prices per act, inferred figures --------------------------------------------------------

def test_a_table_of_prices_prices_each_act_as_written(tmp_path):
    folder = tmp_path / "nomenclature"
    write_table(folder, "t.json", prices_table("2027-01-01"))
    n = load_nomenclature([folder])
    day = date(2027, 1, 1)
    assert [n.price(act, day, False).gross for act in ("ZD11", "ZD12", "ZD13", "ZD21")] == [9112, 11390, 5695, 5695]
    price = n.price("ZD12", day, False)
    assert (price.patient_share, price.cns_share) == (1367, 10023)   # 12 % of 113.90 = 13.668
    assert n.price("ZD12", day, True) == type(price)(11390, 0, 11390)
    assert n.table_on(day).key_letter_value is None and n.table_on(day).inferred == ()
    assert n.price("ZD11", date(2026, 12, 31), False).gross == 8889   # the day before: the bundled table


def test_prices_written_as_json_numbers(tmp_path):
    folder = tmp_path / "nomenclature"
    write_table(folder, "t.json", prices_table("2027-01-01", {"ZD11": 91.1, "ZD12": 114, "ZD13": 56.95, "ZD21": 57}))
    n = load_nomenclature([folder])
    assert [n.price(a, date(2027, 1, 1), False).gross for a in ("ZD11", "ZD12", "ZD13", "ZD21")] == [9110, 11400, 5695, 5700]


def test_the_bundled_figures_are_marked_inferred(bundled):
    first = bundled.table_on(date(2019, 1, 1))
    assert first.inferred == ("key_letter", "coefficients")
    assert "inferred" in first.source and "wage index" in first.source


def test_inferred_figures_are_read(tmp_path):
    folder = tmp_path / "nomenclature"
    write_table(folder, "a.json", {**table("2027-01-01"), "inferred": ["coefficients"]})
    write_table(folder, "b.json", prices_table("2028-01-01", inferred=["prices"]))
    n = load_nomenclature([folder])
    assert n.table_on(date(2027, 1, 1)).inferred == ("coefficients",)
    assert n.table_on(date(2028, 1, 1)).inferred == ("prices",)
