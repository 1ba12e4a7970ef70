"""The dieticians' nomenclature as dated data: tariff tables, codes and treatment rules.

Bundled tables live in ``cns_exchange/data``; a user adds a newer tariff table by dropping a
JSON file into ``<config folder>/nomenclature/`` (``cnsx tariffs add`` writes a checked one).
Every table is checked on load; a bad one is a :class:`ConfigError` naming the file. Pricing
takes the table in force on the session date and rounds half up to the cent; a date before
every table is an error, never a guess. A table states its prices as coefficients x the
key-letter value, or as a price per act; figures not read from an official text are marked
``inferred``. Tariffs follow the wage index, so the newest table is taken as current for
:data:`CURRENT_FOR_MONTHS` months from its start only (:meth:`Nomenclature.current_until`).
"""

from __future__ import annotations

import bisect
import calendar
import json
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Iterable

from cns_exchange.errors import ConfigError
from cns_exchange.i18n import _
from cns_exchange.domain.identifiers import anniversary

CENT = Decimal("0.01")
#: How long the newest table is taken as current: cnsx's own choice. Health tariffs follow the
#: wage index, which moved at least once a year from 2020 to 2023 (domain.md, Nomenclature).
CURRENT_FOR_MONTHS = 12
#: The figures a table may mark as inferred (not read from an official text).
FIGURES = ("key_letter", "coefficients", "prices")


@dataclass(frozen=True)
class TariffTable:
    """One dated tariff table: key-letter value and coefficient per act (or a price per act),
    patient-share rule, where the figures come from and which of them are inferred."""

    valid_from: date
    key_letter_value: Decimal | None
    coefficients: dict[str, Decimal]
    adult_percent: Decimal
    minor_percent: Decimal
    minor_below_age: int
    source: str
    path: str
    prices: dict[str, Decimal] | None = None   # euros per act: a table of prices, no key letter
    inferred: tuple[str, ...] = ()             # of FIGURES: not read from an official text

    def gross_cents(self, act: str) -> int:
        """Return the act's price in cents: coefficient x key-letter value rounded half up,
        or the table's price."""
        if self.prices is not None:
            return int(self.prices[act] * 100)
        amount = (self.coefficients[act] * self.key_letter_value).quantize(CENT, ROUND_HALF_UP)
        return int(amount * 100)

    def share_cents(self, gross_cents: int, minor: bool) -> int:
        """Return the patient's share of a gross amount in cents, rounded half up."""
        percent = self.minor_percent if minor else self.adult_percent
        share = (Decimal(gross_cents) * percent / 100).quantize(Decimal(1), ROUND_HALF_UP)
        return int(share)


@dataclass(frozen=True)
class Price:
    """A priced session, in cents: gross = patient share + CNS share (part statutaire)."""

    gross: int
    patient_share: int
    cns_share: int


class NoTariffError(LookupError):
    """No tariff table is in force on the date asked for."""


class PrescriptionDateNeeded(LookupError):
    """The patient share of a session depends on the prescription date, which is not known.

    ``birthday`` is the day the patient came of age: after it, and less than the reach of a
    prescription (:attr:`Codes.prescription_reach_years`) before the session, the prescription
    may have been issued on either side of it.
    """

    def __init__(self, birthday: date) -> None:
        super().__init__(birthday)
        self.birthday = birthday


@dataclass
class Codes:
    """Code lists and treatment rules loaded from ``data/codes.json``."""

    pathologies: dict[str, str]
    acts: dict[str, dict]
    treatments: dict[str, dict]
    prescription_max_age_days: int
    initial_treatment_interval_years: int
    extension_window_years: int
    extensions_per_initial: int
    prescription_reach_years: int
    dispute_reasons: dict[str, str]
    refusal_reasons: dict[str, str]

    def treatment_sequence(self, kind: str) -> list[tuple[str, int]]:
        """Return ``[(act, max count), ...]`` in the order the acts must follow."""
        return [(act, int(n)) for act, n in self.treatments[kind]["sequence"]]


class Nomenclature:
    """All tariff tables in force order, with a fast look-up by session date."""

    def __init__(self, tables: Iterable[TariffTable]) -> None:
        self.tables = sorted(tables, key=lambda t: t.valid_from)
        #: How long before a session its prescription can have been issued, at most (codes.json).
        self.reach = load_codes().prescription_reach_years
        self._starts = [t.valid_from.toordinal() for t in self.tables]
        self._price_cache: dict[tuple[int, str, bool], Price] = {}
        self._day_index: dict[date, int] = {}
        self._adult_on: dict[tuple[date, int], date] = {}

    def table_on(self, day: date) -> TariffTable:
        """Return the table in force on ``day``; raise NoTariffError before every table."""
        i = bisect.bisect_right(self._starts, day.toordinal()) - 1
        if i < 0:
            raise NoTariffError(day)
        return self.tables[i]

    def current_until(self) -> date | None:
        """Return the last day the newest table is taken as current: :data:`CURRENT_FOR_MONTHS`
        months after its start (29 February: 28 February). A session dated later may be priced
        with an out-of-date tariff (NOM05). None when there is no table."""
        if not self.tables:
            return None
        return add_months(self.tables[-1].valid_from, CURRENT_FOR_MONTHS)

    def price(self, act: str, day: date, minor: bool) -> Price:
        """Price one session of ``act`` on ``day`` for an adult or a minor patient."""
        i = bisect.bisect_right(self._starts, day.toordinal()) - 1
        if i < 0:
            raise NoTariffError(day)
        key = (i, act, minor)
        price = self._price_cache.get(key)
        if price is None:
            table = self.tables[i]
            gross = table.gross_cents(act)
            share = table.share_cents(gross, minor)
            price = self._price_cache[key] = Price(gross, share, gross - share)
        return price

    def price_for(self, act: str, day: date, born: date, prescribed: date | None = None) -> Price:
        """Price one session of ``act`` on ``day`` for a patient born on ``born``, whose
        prescription was issued on ``prescribed``.

        The table in force on ``day`` gives the price. The patient pays the minors' share when
        the prescription was issued before the birthday of the table's ``minor_below_age``
        (identifiers.anniversary: 1 March for 29 February): the age on the prescription date
        decides, never the age on the session date (CNS: "on the issuance date of the medical
        prescription"). Without ``prescribed`` the share is still certain when the patient is
        under age on ``day`` (a prescription comes before its sessions) or came of age at least
        :attr:`reach` years before it; otherwise this raises PrescriptionDateNeeded. Raises
        NoTariffError before every table. The table and the birthdays are looked up once per
        distinct day and patient.
        """
        i = self._day_index.get(day)
        if i is None:
            i = self._day_index[day] = bisect.bisect_right(self._starts, day.toordinal()) - 1
        if i < 0:
            raise NoTariffError(day)
        age = self.tables[i].minor_below_age
        adult = self._adult_on.get((born, age))
        if adult is None:
            adult = self._adult_on[(born, age)] = anniversary(born, age)
        if prescribed is not None:
            minor = prescribed < adult
        elif day < adult:
            minor = True
        else:
            surely = self._adult_on.get((born, age + self.reach))
            if surely is None:
                surely = self._adult_on[(born, age + self.reach)] = anniversary(born, age + self.reach)
            if day < surely:
                raise PrescriptionDateNeeded(adult)
            minor = False
        price = self._price_cache.get((i, act, minor))
        return price if price is not None else self.price(act, day, minor)


def _decimal(value: object, where: str, field: str, zero_ok: bool = False) -> Decimal:
    try:
        result = Decimal(str(value))
    except InvalidOperation:
        raise ConfigError(_("{where}: {field} '{value}' is not a number").format(where=where, field=field, value=value),
                          _("fix the tariff table")) from None
    if not result.is_finite() or result < 0 or (result == 0 and not zero_ok):
        wrong = _("{where}: {field} '{value}' must be a non-negative number") if zero_ok else \
            _("{where}: {field} '{value}' must be a positive number")
        raise ConfigError(wrong.format(where=where, field=field, value=value), _("fix the tariff table"))
    return result


def parse_table(text: str, where: str, known_acts: Iterable[str]) -> TariffTable:
    """Parse and check one tariff table (JSON text). Raises ConfigError naming ``where``.

    A table gives ``key_letter`` and ``coefficients``, or ``prices`` (euros per act, to the
    cent), for exactly the known acts; ``inferred`` (optional) lists the figures of
    :data:`FIGURES` that are not read from an official text.
    """
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(_("{where}:{line}: not valid JSON ({error})").format(where=where, line=exc.lineno, error=exc.msg),
                          _("fix the tariff table")) from None
    if not isinstance(raw, dict):
        raise ConfigError(_("{where}: a tariff table is a JSON object").format(where=where), _("see docs/rules.md, Tariffs"))
    by_prices = "prices" in raw
    if by_prices and ("key_letter" in raw or "coefficients" in raw):
        raise ConfigError(_("{where}: a table gives prices, or a key letter and coefficients, not both").format(where=where),
                          _("see docs/rules.md, Tariffs"))
    basis = {"prices"} if by_prices else {"key_letter", "coefficients"}
    missing = ({"valid_from", "source", "patient_share"} | basis) - raw.keys()
    if missing:
        raise ConfigError(_("{where}: missing {keys}").format(where=where, keys=", ".join(sorted(missing))),
                          _("see docs/rules.md, Tariffs"))
    try:
        valid_from = date.fromisoformat(str(raw["valid_from"]))
        if valid_from.isoformat() != str(raw["valid_from"]):  # (fromisoformat also takes week dates)
            raise ValueError
    except ValueError:
        raise ConfigError(_("{where}: valid_from '{value}' is not a YYYY-MM-DD date").format(where=where, value=raw["valid_from"]),
                          _("fix the tariff table")) from None
    if not str(raw["source"]).strip():
        raise ConfigError(_("{where}: source is empty").format(where=where), _("say where the figures come from"))
    try:
        key_value = None if by_prices else _decimal(raw["key_letter"]["value"], where, "key_letter.value")
        share = raw["patient_share"]
        adult = _decimal(share["adult_percent"], where, "patient_share.adult_percent", zero_ok=True)
        minor = _decimal(share["minor_percent"], where, "patient_share.minor_percent", zero_ok=True)
        minor_age = int(share["minor_below_age"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(_("{where}: key_letter or patient_share incomplete ({error})").format(where=where, error=exc),
                          _("see docs/rules.md, Tariffs")) from None
    if minor_age < 0:
        raise ConfigError(_("{where}: patient_share.minor_below_age must not be negative").format(where=where),
                          _("fix the tariff table"))
    if adult > 100 or minor > 100:
        raise ConfigError(_("{where}: a patient share is over 100 %").format(where=where), _("fix the tariff table"))
    per_act = "prices" if by_prices else "coefficients"
    figures = raw[per_act]
    if not isinstance(figures, dict):
        raise ConfigError(_("{where}: {figures} must map act codes to numbers").format(where=where, figures=per_act),
                          _("see docs/rules.md, Tariffs"))
    known = set(known_acts)
    if set(figures) != known:
        raise ConfigError(
            _("{where}: {figures} must cover exactly the acts {acts} (got {given})").format(
                where=where, figures=per_act, acts=", ".join(sorted(known)), given=", ".join(sorted(figures)) or _("none")),
            _("fix the tariff table"),
        )
    values = {act: _decimal(v, where, f"{per_act}.{act}") for act, v in figures.items()}
    if by_prices:
        for act, price in values.items():
            if price != price.quantize(CENT):
                raise ConfigError(_("{where}: prices.{act} '{value}' has more than 2 decimals")
                                  .format(where=where, act=act, value=figures[act]), _("write a price in euros to the cent"))
    inferred = raw.get("inferred", [])
    if not isinstance(inferred, list) or not all(isinstance(f, str) and f in basis for f in inferred):
        raise ConfigError(_("{where}: inferred must be a list of {figures} (got {given})")
                          .format(where=where, figures=", ".join(sorted(basis)), given=repr(inferred)),
                          _("see docs/rules.md, Tariffs"))
    return TariffTable(
        valid_from=valid_from,
        key_letter_value=key_value,
        coefficients={} if by_prices else values,
        adult_percent=adult,
        minor_percent=minor,
        minor_below_age=minor_age,
        source=str(raw["source"]),
        path=where,
        prices=values if by_prices else None,
        inferred=tuple(f for f in FIGURES if f in inferred),
    )


def add_months(day: date, months: int) -> date:
    """Return ``day`` moved by ``months`` calendar months, kept within the month reached
    (31 January + 1 month: 28 or 29 February)."""
    years, month0 = divmod(day.month - 1 + months, 12)
    year, month = day.year + years, month0 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


@lru_cache(maxsize=1)
def load_codes() -> Codes:
    """Return the bundled code lists and treatment rules."""
    raw = json.loads(resources.files("cns_exchange.domain.data").joinpath("codes.json").read_text("utf-8"))
    raw.pop("source", None)
    return Codes(**raw)


def load_nomenclature(user_dirs: Iterable[Path] = ()) -> Nomenclature:
    """Load the bundled tariff tables plus ``*.json`` tables from ``user_dirs``.

    Raises ConfigError for a bad table or two tables starting on the same day.
    """
    acts = load_codes().acts.keys()
    tables: list[TariffTable] = []
    bundled = resources.files("cns_exchange.domain.data").joinpath("nomenclature")
    for entry in sorted(bundled.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".json"):
            # its name: 'bundled 2019-01-01.json' as data (tariffs --json), translated where shown
            tables.append(parse_table(entry.read_text("utf-8"), _("bundled {name}").format(name=entry.name), acts))
    for folder in user_dirs:
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.json")):
            try:
                text = path.read_text("utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(_("{file}: cannot read tariff table ({error})").format(file=path, error=exc),
                                  _("fix the file's permissions or encoding")) from None
            tables.append(parse_table(text, str(path), acts))
    seen: dict[date, str] = {}
    for table in tables:
        if table.valid_from in seen:
            raise ConfigError(
                _("{file}: a tariff table starting {start} already exists ({other})")
                .format(file=table.path, start=table.valid_from, other=seen[table.valid_from]),
                _("give each table its own valid_from date"),
            )
        seen[table.valid_from] = table.path
    return Nomenclature(tables)
