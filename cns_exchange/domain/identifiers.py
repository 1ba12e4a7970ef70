"""Identifiers of the exchange: matricule, provider and prescriber codes.

Each ``check_*`` function returns a list of ``(issue code, message)`` pairs, empty when the
value is good; the caller adds the location. Check digits use python-stdnum's ``luhn`` and
``verhoeff`` (well-tested tables) rather than hand-written ones.
"""

from __future__ import annotations

import calendar
import re
from datetime import date
from functools import lru_cache

from stdnum import luhn, verhoeff

from cns_exchange.i18n import _

#: A rule's finding: (issue code, message).
Problem = tuple[str, str]

MATRICULE_FORM = re.compile(r"[1-9][0-9]{12}\Z")  # 13 digits, the first 1-9 (the check digits apart)
_DIGITS_11 = re.compile(r"[0-9]{11}\Z")
_PROVIDER = re.compile(r"[1-9][0-9]{5,7}\Z")
_PRESCRIBER = re.compile(r"[0-9]{6,8}\Z")


@lru_cache(maxsize=65536)
def check_matricule(value: str) -> tuple[Problem, ...]:
    """Check a 13-digit matricule: C1 = Luhn and C2 = Verhoeff, both over the first 11 digits.

    Returns the problems found (a tuple, cached: billing files repeat patients). An impossible
    calendar date is only a warning (MAT04).
    """
    if _DIGITS_11.match(value):
        return (("MAT05", _("'{value}' is an old 11-digit matricule, not accepted in exchange files").format(value=value)),)
    if not MATRICULE_FORM.match(value):
        return (("MAT01", _("'{value}' is not 13 digits starting with 1-9").format(value=_mask(value))),)
    base = value[:11]
    problems: list[Problem] = []
    if luhn.calc_check_digit(base) != value[11]:
        problems.append(("MAT02", _("matricule check digit C1 (Luhn over the first 11 digits) is wrong")))
    if verhoeff.calc_check_digit(base) != value[12]:
        problems.append(("MAT03", _("matricule check digit C2 (Verhoeff over the first 11 digits) is wrong")))
    if not problems and not _is_calendar_date(value):
        problems.append(("MAT04", _("matricule birth date {date} is not a calendar date")
                         .format(date=f"{value[:4]}-{value[4:6]}-{value[6:8]}")))
    return tuple(problems)


def is_valid_matricule(value: str) -> bool:
    """Return True if ``value`` is an acceptable matricule (warnings allowed)."""
    return all(code == "MAT04" for code, _message in check_matricule(value))


def _is_calendar_date(value: str) -> bool:
    year, month, day = int(value[:4]), int(value[4:6]), int(value[6:8])
    return 1 <= month <= 12 and 1 <= day <= calendar.monthrange(year, month)[1]


@lru_cache(maxsize=65536)
def birth_date(matricule: str) -> date:
    """Return the birth date encoded in a matricule.

    An impossible date (MAT04) is clamped into its year: month 00 becomes 01 and over 12
    becomes 12, day 00 becomes 01 and a day past the month's end becomes its last day.
    """
    year, month, day = int(matricule[:4]), int(matricule[4:6]), int(matricule[6:8])
    month = min(max(month, 1), 12)
    day = min(max(day, 1), calendar.monthrange(year, month)[1])
    return date(year, month, day)


def age_on(matricule: str, on: date) -> int:
    """Return the patient's age in whole years on a date."""
    return years_between(birth_date(matricule), on)


def years_between(born: date, on: date) -> int:
    """Return the age in whole years on ``on`` of someone born on ``born``."""
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def anniversary(day: date, years: int) -> date:
    """The day ``years`` years after ``day`` (1 March for a 29 February in a year without
    one): someone born on ``day`` is ``years`` old from then on (:func:`years_between`), and
    a period of ``years`` years from ``day`` ends the day before."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return date(day.year + years, 3, 1)


def check_provider(value: str) -> tuple[Problem, ...]:
    """Check a CNS provider code: 6 to 8 digits, no check digit published."""
    if _PROVIDER.match(value):
        return ()
    return (("PRV01", _("'{value}' is not a provider code of 6 to 8 digits").format(value=value)),)


def normalise_prescriber(value: str) -> str:
    """Return a prescriber code without the '-' often printed on prescriptions (123456-78)."""
    return value.replace("-", "").replace(" ", "")


def check_prescriber(value: str) -> tuple[Problem, ...]:
    """Check a prescriber code after :func:`normalise_prescriber`: 6 to 8 digits."""
    if _PRESCRIBER.match(value):
        return ()
    return (("PRS01", _("'{value}' is not a prescriber code of 6 to 8 digits").format(value=value)),)


def show_matricule(matricule: str, masked: bool) -> str:
    """Return the matricule in full, or masked but for its last 4 digits ('•••••••••6700'):
    how every document and report shows one when asked to mask it."""
    return "•" * (len(matricule) - 4) + matricule[-4:] if masked else matricule


def _mask(value: str) -> str:
    """Shorten a wrong matricule in messages: enough to find the row, not the whole number."""
    return value if len(value) <= 4 else value[:4] + "…"


def checked_iban(value: str) -> str | None:
    """``value`` as an IBAN printed in groups of four (``LU28 0019 4006 4475 0000``), or None
    when it is not a valid IBAN (country, length, check digits: python-stdnum's ``iban``)."""
    from stdnum import iban
    from stdnum.exceptions import ValidationError

    try:
        return iban.format(iban.validate(value))
    except ValidationError:
        return None
