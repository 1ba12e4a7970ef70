"""Treatment rules: session order and counts per certificate, one consultation per patient per
day, one certificate per patient, prescription age, and the cross-request rules."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from conftest import VALID_MATRICULES
from cns_exchange.domain.nomenclature import load_codes
from cns_exchange.domain.treatment import RequestRules, SessionRules, check_prescription_age

A, B, C = VALID_MATRICULES[2], VALID_MATRICULES[3], VALID_MATRICULES[4]
START = date(2026, 3, 2)


@pytest.fixture
def rules():
    return SessionRules(load_codes())


def run_sessions(rules, sessions):
    """Feed (certificate, matricule, act) or (certificate, matricule, act, day) one per day; return codes per session."""
    out = []
    for i, session in enumerate(sessions):
        cert, matricule, act, *rest = session
        day = rest[0] if rest else START + timedelta(days=i)
        out.append([code for code, _ in rules.check(cert, matricule, day, act)])
    return out


def test_complete_initial_treatment_in_order(rules):
    acts = ["ZD11", "ZD12", "ZD13", "ZD13", "ZD13", "ZD13"]
    assert run_sessions(rules, [("T1", A, act) for act in acts]) == [[]] * 6


def test_complete_extension(rules):
    assert run_sessions(rules, [("T2", A, "ZD21")] * 4) == [[]] * 4


def test_follow_ups_alone_are_in_order(rules):
    # A file may bill the later sessions of a certificate whose first ones were billed before.
    assert run_sessions(rules, [("T1", A, "ZD13"), ("T1", A, "ZD13")]) == [[], []]


@pytest.mark.parametrize("acts,expected", [
    (["ZD12", "ZD11"], [[], ["TRT01"]]),
    (["ZD11", "ZD13", "ZD12"], [[], [], ["TRT01"]]),
    (["ZD13", "ZD11"], [[], ["TRT01"]]),
    (["ZD11", "ZD12", "ZD13", "ZD12"], [[], [], [], ["TRT01", "TRT02"]]),
])
def test_order_zd11_zd12_zd13(rules, acts, expected):
    got = run_sessions(rules, [("T1", A, act) for act in acts])
    assert [sorted(codes) for codes in got] == [sorted(codes) for codes in expected]


def test_order_is_checked_after_an_out_of_order_session(rules):
    # After a ZD13, a late ZD12 is out of order; a further ZD13 is in order again.
    got = run_sessions(rules, [("T1", A, "ZD11"), ("T1", A, "ZD13"), ("T1", A, "ZD12"), ("T1", A, "ZD13")])
    assert got == [[], [], ["TRT01"], []]


@pytest.mark.parametrize("acts,over", [
    (["ZD11", "ZD11"], 1),
    (["ZD11", "ZD12", "ZD12"], 2),
    (["ZD11", "ZD12", "ZD13", "ZD13", "ZD13", "ZD13", "ZD13"], 6),
    (["ZD21"] * 5, 4),
])
def test_counts_per_certificate(rules, acts, over):
    got = run_sessions(rules, [("T1", A, act) for act in acts])
    assert got[over] == ["TRT02"]
    assert all(codes == [] for codes in got[:over])


def test_counts_are_per_certificate(rules):
    got = run_sessions(rules, [("T1", A, "ZD21")] * 4 + [("T2", B, "ZD21")] * 4)
    assert got == [[]] * 8


@pytest.mark.parametrize("first,second", [("ZD11", "ZD21"), ("ZD13", "ZD21"), ("ZD21", "ZD11"), ("ZD21", "ZD13")])
def test_initial_and_extension_acts_do_not_mix(rules, first, second):
    got = run_sessions(rules, [("T1", A, first), ("T1", A, second)])
    assert got[0] == [] and "TRT03" in got[1]


def test_one_consultation_per_patient_per_day_across_certificates(rules):
    day = date(2026, 5, 4)
    got = run_sessions(rules, [("T1", A, "ZD11", day), ("T2", A, "ZD11", day)])
    assert got == [[], ["TRT05"]]


def test_same_day_same_certificate(rules):
    day = date(2026, 5, 4)
    got = run_sessions(rules, [("T1", A, "ZD11", day), ("T1", A, "ZD12", day)])
    assert got == [[], ["TRT05"]]


def test_two_patients_on_one_day_are_fine(rules):
    day = date(2026, 5, 4)
    assert run_sessions(rules, [("T1", A, "ZD11", day), ("T2", B, "ZD11", day), ("T3", C, "ZD21", day)]) == [[], [], []]


def test_same_patient_on_consecutive_days_is_fine(rules):
    assert run_sessions(rules, [("T1", A, "ZD11", date(2026, 5, 4)), ("T1", A, "ZD12", date(2026, 5, 5))]) == [[], []]


def test_one_certificate_for_two_patients(rules):
    got = run_sessions(rules, [("T1", A, "ZD11"), ("T1", B, "ZD12")])
    assert got == [[], ["TRT09"]]


def test_problem_messages_name_what_is_wrong(rules):
    rules.check("T1", A, START, "ZD11")
    [(code, message)] = rules.check("T1", B, START + timedelta(days=1), "ZD12")
    assert code == "TRT09" and "T1" in message
    [(code, message)] = rules.check("T2", A, START, "ZD11")
    assert code == "TRT05" and str(START) in message


def test_extension_after_the_initial_treatment_is_fine(rules):
    acts = ["ZD11", "ZD12", "ZD13", "ZD13", "ZD13", "ZD13"]
    sessions = [("T1", A, act) for act in acts] + [("T2", A, "ZD21")] * 4
    assert run_sessions(rules, sessions) == [[]] * 10


def test_extension_of_one_patient_and_initial_treatment_of_another(rules):
    got = run_sessions(rules, [("T2", B, "ZD21", date(2026, 5, 4)), ("T1", A, "ZD11", date(2026, 5, 11))])
    assert got == [[], []]


# --- prescription age ----------------------------------------------------------------------

def test_prescription_90_days_old_is_accepted():
    assert check_prescription_age(date(2026, 1, 1), date(2026, 1, 1) + timedelta(days=90), 90) == []


def test_prescription_91_days_old_is_refused():
    problems = check_prescription_age(date(2026, 1, 1), date(2026, 1, 1) + timedelta(days=91), 90)
    assert [code for code, _ in problems] == ["TRT06"]


def test_prescription_of_today_is_accepted():
    assert check_prescription_age(date(2026, 11, 20), date(2026, 11, 20), 90) == []


def test_prescription_in_the_future_is_refused():
    problems = check_prescription_age(date(2026, 11, 21), date(2026, 11, 20), 90)
    assert [code for code, _ in problems] == ["TRT07"]


def test_bundled_limit_is_90_days():
    assert load_codes().prescription_max_age_days == 90


# --- cross-request rules -------------------------------------------------------------------

@pytest.fixture
def requests():
    return RequestRules(load_codes())


def test_extension_in_the_same_file_as_its_initial_treatment(requests):
    assert requests.check(A, ["D12"], "initial", date(2026, 1, 10)) == []
    assert [c for c, _ in requests.check(A, ["D12"], "extension", date(2026, 2, 10))] == ["TRT04"]


def test_initial_after_its_extension_in_the_same_file(requests):
    assert requests.check(A, ["D12"], "extension", date(2026, 2, 10)) == []
    assert [c for c, _ in requests.check(A, ["D12"], "initial", date(2026, 1, 10))] == ["TRT04"]


def test_extension_alone_is_fine(requests):
    assert requests.check(A, ["D12"], "extension", date(2026, 2, 10)) == []


def test_extension_for_another_pathology_or_patient_is_fine(requests):
    assert requests.check(A, ["D12"], "initial", date(2026, 1, 10)) == []
    assert requests.check(A, ["D04"], "extension", date(2026, 1, 10)) == []
    assert requests.check(B, ["D12"], "extension", date(2026, 1, 10)) == []


def test_two_initial_treatments_for_one_pathology(requests):
    assert requests.check(A, ["D08"], "initial", date(2024, 1, 10)) == []
    assert [c for c, _ in requests.check(A, ["D08"], "initial", date(2026, 1, 10))] == ["TRT08"]


def test_two_initial_treatments_more_than_3_years_apart(requests):
    assert requests.check(A, ["D08"], "initial", date(2020, 1, 10)) == []
    assert requests.check(A, ["D08"], "initial", date(2023, 6, 10)) == []


def test_initial_treatments_for_different_pathologies_or_patients(requests):
    assert requests.check(A, ["D08"], "initial", date(2026, 1, 10)) == []
    assert requests.check(A, ["D12"], "initial", date(2026, 1, 10)) == []
    assert requests.check(B, ["D08"], "initial", date(2026, 1, 10)) == []


def test_each_pathology_of_a_request_is_checked(requests):
    assert requests.check(A, ["D08"], "initial", date(2026, 1, 10)) == []
    assert [c for c, _ in requests.check(A, ["D12", "D08"], "initial", date(2026, 2, 10))] == ["TRT08"]
