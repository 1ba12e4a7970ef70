"""tariffs: the tariff table in force on a date, and a checked new table for the practice.

``cnsx tariffs`` shows what :func:`in_force` and :func:`all_tables` return: plain data (the
JSON of ``--json``), each table with its file, its dates, its source, which figures are
inferred, and the price of every act for an adult and a minor. ``cnsx tariffs add`` writes
what :func:`add_table` drafts: a table of prices per act, or a key-letter value with
coefficients, checked by the one reader of tables (``nomenclature.parse_table``) before it is
written, atomically and 0600, into the config folder's ``nomenclature/``. Never over a table
or a file: a table for the same date is refused.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Sequence

from cns_exchange import clock
from cns_exchange.errors import InputError, UsageError
from cns_exchange.i18n import _, join
from cns_exchange.domain.model import amount, money
from cns_exchange.domain.nomenclature import (CENT, CURRENT_FOR_MONTHS, Codes, Nomenclature, NoTariffError, TariffTable,
                                       parse_table)

#: A new table whose price of an act moves by more than this from the table before it is
#: refused unless asked for: an index step is 2.5 %, a wrong coefficient or a price in cents
#: is a factor. cnsx's own choice.
LARGEST_CHANGE = Decimal("0.25")

_NUMBER = re.compile(r"[0-9]+(?:[.,][0-9]+)?")


def describe(nomenclature: Nomenclature, table: TariffTable) -> dict:
    """Return a table as data: file, dates (``valid_until`` None while no later table starts),
    source, inferred figures, key letter and coefficients or prices, patient share, and the
    price of each act (gross; patient and CNS shares for an adult and a minor), in euros."""
    later = [t.valid_from for t in nomenclature.tables if t.valid_from > table.valid_from]
    acts = {}
    for act in sorted(table.prices or table.coefficients):
        gross = table.gross_cents(act)
        shares = {}
        for who, minor in (("adult", False), ("minor", True)):
            share = table.share_cents(gross, minor)
            shares[who] = {"patient_share": amount(share), "cns_share": amount(gross - share)}
        acts[act] = {"gross": amount(gross), **shares}
    return {
        "file": table.path,
        "valid_from": table.valid_from.isoformat(),
        "valid_until": (min(later) - timedelta(days=1)).isoformat() if later else None,
        "source": table.source,
        "inferred": list(table.inferred),
        "key_letter": None if table.key_letter_value is None else str(table.key_letter_value),
        "coefficients": None if table.prices is not None else {a: str(c) for a, c in sorted(table.coefficients.items())},
        "prices": None if table.prices is None else {a: str(p) for a, p in sorted(table.prices.items())},
        "patient_share": {"adult_percent": str(table.adult_percent), "minor_percent": str(table.minor_percent),
                          "minor_below_age": table.minor_below_age},
        "acts": acts,
    }


def _currency(nomenclature: Nomenclature, day: date) -> dict:
    """The newest table, the last day it is taken as current, and whether ``day`` is after it
    (the rule of NOM05, nomenclature.Nomenclature.current_until)."""
    newest = nomenclature.tables[-1] if nomenclature.tables else None
    until = nomenclature.current_until()
    return {"newest": None if newest is None else {"file": newest.path, "valid_from": newest.valid_from.isoformat()},
            "current_until": None if until is None else until.isoformat(),
            "out_of_date": until is not None and day > until,
            "current_for_months": CURRENT_FOR_MONTHS}


def in_force(nomenclature: Nomenclature, day: date) -> dict:
    """Return the table in force on ``day`` (:func:`describe`) with the newest table and
    whether it may be out of date on ``day``. Raises UsageError for a day before every table."""
    try:
        table = nomenclature.table_on(day)
    except NoTariffError:
        first = nomenclature.tables[0].valid_from if nomenclature.tables else None
        message = _("no tariff table is in force on {day} (the first starts {first})") if first else \
            _("no tariff table is in force on {day}")
        raise UsageError(message.format(day=day, first=first),
                         _("give a later --date, or add a table starting earlier (cnsx tariffs add)")) from None
    return {"date": day.isoformat(), "table": describe(nomenclature, table), **_currency(nomenclature, day)}


def all_tables(nomenclature: Nomenclature, day: date) -> dict:
    """Return every table, oldest first (:func:`describe`), with the newest table and whether
    it may be out of date on ``day``."""
    return {"date": day.isoformat(), "tables": [describe(nomenclature, t) for t in nomenclature.tables],
            **_currency(nomenclature, day)}


# --- a new table ------------------------------------------------------------------------------

@dataclass
class NewTable:
    """What :func:`add_table` wrote (or, with ``dry_run``, would write)."""

    path: Path
    text: str
    table: dict                     # describe() of the new table, among the others
    written: bool
    notes: list[str] = field(default_factory=list)   # things to check, said once each


def _assignments(values: Sequence[str], option: str) -> dict[str, str]:
    """``ACT=VALUE`` options as {ACT: VALUE}; UsageError for another form or an act twice."""
    found: dict[str, str] = {}
    for text in values:
        act, sep, value = text.partition("=")
        act, value = act.strip().upper(), value.strip()
        if not sep or not act or not value:
            raise UsageError(_("{option} {text}: not ACT=VALUE").format(option=option, text=text),
                             _("e.g. {option} ZD11=88.89").format(option=option))
        if act in found:
            raise UsageError(_("{option} {text}: {act} is given twice").format(option=option, text=text, act=act),
                             _("give each act once"))
        found[act] = value
    return found


def _positive(text: str, what: str, problems: list[str], to_the_cent: bool = False) -> Decimal | None:
    """A positive decimal (``.`` or ``,`` before the decimals), with ``to_the_cent`` at most 2
    decimals (a price in euros); None and a problem otherwise."""
    if not _NUMBER.fullmatch(text):
        problems.append(_("{what} '{text}' is not a number (write e.g. 88.89)").format(what=what, text=text))
        return None
    value = Decimal(text.replace(",", "."))
    if value <= 0:
        problems.append(_("{what} '{text}' is not positive").format(what=what, text=text))
        return None
    if to_the_cent and value != value.quantize(CENT):
        problems.append(_("{what} '{text}' has more than 2 decimals: a price is in euros, to the cent").format(what=what, text=text))
        return None
    return value.quantize(CENT) if to_the_cent else value


def _per_act(given: dict[str, str], codes: Codes, option: str, problems: list[str], to_the_cent: bool) -> dict[str, Decimal]:
    values = {}
    for act, text in given.items():
        if act not in codes.acts:
            problems.append(_("{option} {act}: not an act of the nomenclature ({acts})")
                            .format(option=option, act=act, acts=", ".join(codes.acts)))
            continue
        value = _positive(text, f"{option} {act}", problems, to_the_cent)
        if value is not None:
            values[act] = value
    missing = [act for act in codes.acts if act not in given]
    if missing:
        problems.append(_("{option}: no value for {acts} (every act needs one)").format(option=option, acts=", ".join(missing)))
    return values


def add_table(nomenclature: Nomenclature, codes: Codes, folder: Path, valid_from: str, source: str,
              prices: Sequence[str] = (), key_letter: str | None = None, coefficients: Sequence[str] = (),
              inferred: bool = False, accept_change: bool = False, dry_run: bool = False,
              today: date | None = None) -> NewTable:
    """Check a new tariff table and write it to ``folder/VALID_FROM.json`` (0600, atomically).

    The table gives ``prices`` (``ACT=EUR`` for every act) or a ``key_letter`` value with
    ``coefficients`` (``ACT=N`` for every act; none: those of the table in force the day
    before, unless it marks them inferred). The patient share is that of the table before
    (the first table for a date before every table). ``inferred`` marks the figures as not
    read from an official text. Returns what was written; with ``dry_run`` nothing is.

    Raises UsageError for options that cannot be read, a table or a file already there for
    that date; InputError for a table that would be wrong (an unknown or missing act, an
    amount that is not positive, inferred coefficients taken over, a price that moves by
    more than :data:`LARGEST_CHANGE` from the table before, unless ``accept_change``).
    """
    start = clock.day("--valid-from", valid_from)
    if not source.strip():
        raise UsageError(_("--source is empty"),
                         _("say where the figures come from: the CNS letter or the regulation, with its date"))
    if prices and (key_letter is not None or coefficients):
        raise UsageError(_("--price with --key-letter or --coefficient: a table gives prices, or a key letter and coefficients"),
                         _("give one of the two"))
    if coefficients and key_letter is None:
        raise UsageError(_("--coefficient without --key-letter"), _("give the key-letter value the coefficients multiply"))
    if not prices and key_letter is None:
        raise UsageError(_("no figures: give --price ACT=EUR for every act, or --key-letter EUR (with --coefficient ACT=N)"),
                         _("see docs/cli.md, cnsx tariffs add"))
    for table in nomenclature.tables:
        if table.valid_from == start:
            raise UsageError(_("a tariff table starting {start} exists already: {file}").format(start=start, file=table.path),
                             _("a table is never replaced: give the new one its own --valid-from date"))
    target = folder / f"{start.isoformat()}.json"
    if target.exists() or target.is_symlink():
        raise UsageError(_("{file} exists already; cnsx never overwrites a file").format(file=target),
                         _("remove it, or give another --valid-from"))
    price_options = _assignments(prices, "--price")
    coefficient_options = _assignments(coefficients, "--coefficient")

    before = _table_before(nomenclature, start)
    problems: list[str] = []
    notes: list[str] = []
    raw: dict = {"valid_from": start.isoformat(), "source": source.strip()}
    if price_options:
        values = _per_act(price_options, codes, "--price", problems, to_the_cent=True)
        figures = {"prices": {act: str(values[act]) for act in codes.acts if act in values}}
        marked = ["prices"]
    else:
        value = _positive(key_letter, "--key-letter", problems)
        if coefficient_options:
            factors = _per_act(coefficient_options, codes, "--coefficient", problems, to_the_cent=False)
            if before is not None and before.prices is None and "coefficients" in before.inferred and not inferred \
                    and factors == {a: before.coefficients[a] for a in factors}:
                notes.append(_("the coefficients are those {file} marks as inferred: if the key-letter value is "
                               "official, make sure the coefficients are the official ones too").format(file=before.path))
        else:
            factors = _coefficients_before(before, inferred, problems)
        figures = {"key_letter": {"value": str(value) if value is not None else key_letter},
                   "coefficients": {act: str(factors[act]) for act in codes.acts if act in factors}}
        marked = ["key_letter", "coefficients"]
    if problems:
        raise InputError(_("the tariff table is refused: {problems}; nothing was written").format(problems=join("; ", problems)),
                         _("fix the values and run the command again"))
    if inferred:
        raw["inferred"] = marked
    raw.update(figures)
    share_from = before or nomenclature.tables[0]
    raw["patient_share"] = {"adult_percent": str(share_from.adult_percent), "minor_percent": str(share_from.minor_percent),
                            "minor_below_age": share_from.minor_below_age}
    text = json.dumps(raw, ensure_ascii=False, indent=2) + "\n"
    new = parse_table(text, str(target), codes.acts)   # the one reader of tables: what is written loads
    if before is not None and not accept_change:
        _check_change(before, new, codes, problems)
        if problems:
            raise InputError(_("the tariff table is refused: {problems}; nothing was written").format(problems=join("; ", problems)),
                             _("check the figures (a key-letter value with coefficients of another scale, or a mistyped "
                               "price, gives such a change); pass --accept-change if they are right"))
    notes.append(_("patient share as in {file}: {adult} % for adults, {minor} % below {age}").format(
        file=share_from.path, adult=share_from.adult_percent, minor=share_from.minor_percent, age=share_from.minor_below_age))
    together = Nomenclature([*nomenclature.tables, new])
    until = together.current_until()
    if today is not None and until is not None and today > until:
        notes.append(_("the newest table starts {start}: on {today} it is more than {months} months old, "
                       "so builds and validate still warn (NOM05)").format(
            start=together.tables[-1].valid_from, today=today, months=CURRENT_FOR_MONTHS))
    result = NewTable(target, text, describe(together, new), written=False, notes=notes)
    if not dry_run:
        _write(target, text)
        result.written = True
    return result


def _table_before(nomenclature: Nomenclature, start: date) -> TariffTable | None:
    """The table in force the day before ``start`` (None before every table)."""
    try:
        return nomenclature.table_on(start - timedelta(days=1))
    except NoTariffError:
        return None


def _coefficients_before(before: TariffTable | None, inferred: bool, problems: list[str]) -> dict[str, Decimal]:
    """The coefficients of the table before, for a new key-letter value: only official ones
    (or inferred ones for a table marked inferred itself)."""
    if before is None or before.prices is not None:
        what = _("no table before it") if before is None else \
            _("{file} gives prices, not coefficients").format(file=before.path)
        problems.append(_("--key-letter without --coefficient: {what}; give --coefficient ACT=N for every act").format(what=what))
        return {}
    if "coefficients" in before.inferred and not inferred:
        problems.append(_("--key-letter without --coefficient: the coefficients of {file} are inferred, not "
                          "official, and an official key-letter value with them gives wrong prices; give the official "
                          "coefficients (--coefficient ACT=N for every act), or the prices (--price ACT=EUR)")
                        .format(file=before.path))
        return {}
    return dict(before.coefficients)


def _check_change(before: TariffTable, new: TariffTable, codes: Codes, problems: list[str]) -> None:
    moves = []
    for act in codes.acts:
        old, now = before.gross_cents(act), new.gross_cents(act)
        change = (Decimal(now) - old) / old
        if abs(change) > LARGEST_CHANGE:
            moves.append(_("{act} {old} → {new} EUR ({change} %)").format(
                act=act, old=money(old), new=money(now), change=f"{change * 100:+.0f}"))
    if moves:
        problems.append(_("prices would move by more than {percent} % from {file}: {moves}").format(
            percent=f"{LARGEST_CHANGE * 100:.0f}", file=before.path, moves=join(", ", moves)))


def _write(target: Path, text: str) -> None:
    """Write ``text`` to ``target``, a new file: temp file, fsync, link, fsync the folder."""
    from cns_exchange.fsutil import private_dir, write_atomic

    private_dir(target.parent)
    try:
        write_atomic(target, text.encode("utf-8"), overwrite=False)
    except FileExistsError:
        raise UsageError(_("{file} exists already; cnsx never overwrites a file").format(file=target),
                         _("remove it, or give another --valid-from")) from None
