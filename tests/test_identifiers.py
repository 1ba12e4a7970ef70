"""Identifiers: matricule (C1 Luhn, C2 Verhoeff over the first 11 digits), provider, prescriber.

The check digits are recomputed here with an independent implementation (the Verhoeff
permutation rows are derived from the first row, so a typo in a copied table cannot creep in),
so that a wrong table in the code cannot agree with itself.
"""

from __future__ import annotations

from datetime import date

import pytest

from conftest import VALID_MATRICULES
from cns_exchange.domain.identifiers import (
    age_on,
    birth_date,
    check_matricule,
    check_prescriber,
    check_provider,
    is_valid_matricule,
    normalise_prescriber,
)

# --- an independent Luhn and Verhoeff ------------------------------------------------------

_D = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9), (1, 2, 3, 4, 0, 6, 7, 8, 9, 5), (2, 3, 4, 0, 1, 7, 8, 9, 5, 6),
    (3, 4, 0, 1, 2, 8, 9, 5, 6, 7), (4, 0, 1, 2, 3, 9, 5, 6, 7, 8), (5, 9, 8, 7, 6, 0, 4, 3, 2, 1),
    (6, 5, 9, 8, 7, 1, 0, 4, 3, 2), (7, 6, 5, 9, 8, 2, 1, 0, 4, 3), (8, 7, 6, 5, 9, 3, 2, 1, 0, 4),
    (9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
)
_P1 = (1, 5, 7, 6, 2, 8, 3, 0, 9, 4)
_P = [tuple(range(10))]
for _ in range(7):  # row i is the first permutation applied i times
    _P.append(tuple(_P1[x] for x in _P[-1]))
_INV = tuple(row.index(0) for row in _D)


def verhoeff_digit(payload: str) -> str:
    check = 0
    for i, ch in enumerate(reversed(payload)):
        check = _D[check][_P[(i + 1) % 8][int(ch)]]
    return str(_INV[check])


def luhn_digit(payload: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(payload)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def matricule(birth: str, serial: str = "123") -> str:
    """A matricule with correct check digits for any 8-digit birth part, even an impossible one."""
    base = birth + serial
    return base + luhn_digit(base) + verhoeff_digit(base)


def codes(value: str) -> list[str]:
    return [code for code, _ in check_matricule(value)]


def test_independent_check_digits_agree_with_domain_examples():
    # Guards this module's own implementation: it must accept every example of domain.md.
    for m in VALID_MATRICULES:
        assert luhn_digit(m[:11]) == m[11] and verhoeff_digit(m[:11]) == m[12], m


# --- matricules ----------------------------------------------------------------------------

@pytest.mark.parametrize("value", VALID_MATRICULES)
def test_valid_matricules_pass(value):
    assert check_matricule(value) == ()
    assert is_valid_matricule(value)


WRONG_PUBLIC = [(m, m[:12] + verhoeff_digit(m[:12])) for m in VALID_MATRICULES if verhoeff_digit(m[:12]) != m[12]]


def test_there_are_wrong_public_variants_to_test():
    assert len(WRONG_PUBLIC) >= 4


@pytest.mark.parametrize("good,wrong", WRONG_PUBLIC, ids=[g for g, _ in WRONG_PUBLIC])
def test_verhoeff_over_12_digits_is_refused(good, wrong):
    assert codes(wrong) == ["MAT03"]
    assert not is_valid_matricule(wrong)


@pytest.mark.parametrize("value", VALID_MATRICULES)
def test_changed_c1_fails_mat02(value):
    changed = value[:11] + str((int(value[11]) + 1) % 10) + value[12]
    assert codes(changed) == ["MAT02"]
    assert not is_valid_matricule(changed)


@pytest.mark.parametrize("value", VALID_MATRICULES)
def test_changed_c2_fails_mat03(value):
    changed = value[:12] + str((int(value[12]) + 1) % 10)
    assert codes(changed) == ["MAT03"]


def test_changed_serial_digit_is_caught():
    value = VALID_MATRICULES[2]
    changed = value[:10] + str((int(value[10]) + 1) % 10) + value[11:]
    assert codes(changed)
    assert not is_valid_matricule(changed)


@pytest.mark.parametrize("value", [
    VALID_MATRICULES[0][:12],            # 12 digits
    VALID_MATRICULES[0] + "0",           # 14 digits
    "0" + VALID_MATRICULES[0][1:],       # leading 0
    "197409118670X",                     # not a digit
    "1974 091186700",                    # a blank inside
    "",
])
def test_wrong_shape_is_mat01(value):
    assert codes(value) == ["MAT01"]
    assert not is_valid_matricule(value)


def test_eleven_digits_is_mat05():
    assert codes("19740911867") == ["MAT05"]
    assert not is_valid_matricule("19740911867")


@pytest.mark.parametrize("birth", ["19800230", "19810229", "19800031", "19801301", "19800100", "19800432"])
def test_impossible_birth_date_is_only_a_warning(birth):
    value = matricule(birth)
    assert codes(value) == ["MAT04"]
    assert is_valid_matricule(value)


def test_real_leap_day_is_fine():
    assert check_matricule(matricule("19800229")) == ()


# --- birth date and age --------------------------------------------------------------------

@pytest.mark.parametrize("birth,expected", [
    ("19800230", date(1980, 2, 29)),     # leap year: last day of February
    ("19810230", date(1981, 2, 28)),
    ("19800031", date(1980, 1, 31)),     # month 00 -> January
    ("19801301", date(1980, 12, 1)),     # month 13 -> December
    ("19800100", date(1980, 1, 1)),      # day 00 -> 1st
    ("19800432", date(1980, 4, 30)),     # past the month's end -> its last day
    ("19740911", date(1974, 9, 11)),
])
def test_birth_date_clamps_into_the_year(birth, expected):
    assert birth_date(matricule(birth)) == expected


def test_birth_date_of_domain_examples():
    assert birth_date("1893120105732") == date(1893, 12, 1)
    assert birth_date("2015123101725") == date(2015, 12, 31)


def test_age_around_a_birthday():
    m = matricule("20080615")
    assert age_on(m, date(2026, 6, 14)) == 17
    assert age_on(m, date(2026, 6, 15)) == 18
    assert age_on(m, date(2026, 6, 16)) == 18
    assert age_on(m, date(2027, 6, 14)) == 18
    assert age_on(m, date(2008, 6, 15)) == 0


def test_age_around_new_year():
    m = "2015123101725"  # born 2015-12-31
    assert age_on(m, date(2026, 12, 30)) == 10
    assert age_on(m, date(2026, 12, 31)) == 11
    assert age_on(m, date(2027, 1, 1)) == 11


# --- provider and prescriber codes ---------------------------------------------------------

@pytest.mark.parametrize("value", ["123456", "1234567", "12345678", "100000", "99999999"])
def test_provider_codes_of_6_to_8_digits(value):
    assert check_provider(value) == ()


@pytest.mark.parametrize("value", ["12345", "123456789", "012345", "0123456", "01234567", "12345a", "", " 123456", "123 456"])
def test_bad_provider_codes(value):
    assert [code for code, _ in check_provider(value)] == ["PRV01"]


@pytest.mark.parametrize("raw,expected", [("123456-78", "12345678"), ("12345678", "12345678"),
                                          ("123456 78", "12345678"), ("345678", "345678")])
def test_prescriber_normalisation(raw, expected):
    assert normalise_prescriber(raw) == expected
    assert check_prescriber(normalise_prescriber(raw)) == ()


@pytest.mark.parametrize("value", ["12345", "123456789", "1234-5", "ABCDEF", ""])
def test_bad_prescriber_codes(value):
    assert [code for code, _ in check_prescriber(normalise_prescriber(value))] == ["PRS01"]
