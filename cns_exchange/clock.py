"""Dates and times given to cnsx: the date and date-time options, and the time cnsx writes into
what it makes when it is not asked for on the command line: ``$SOURCE_DATE_EPOCH`` (reproducible
builds, https://reproducible-builds.org/specs/source-date-epoch/), read here for every command
that honours it."""

from __future__ import annotations

import os
from datetime import date, datetime, timezone

from cns_exchange.errors import UsageError
from cns_exchange.i18n import _

#: 9999-12-31T23:59:59Z: the last second a date-time of Python (and of xs:dateTime as cnsx
#: writes it, four-digit years) can hold.
LAST_SECOND = 253402300799


def from_epoch(value: str) -> datetime:
    """``value`` ($SOURCE_DATE_EPOCH: whole seconds since 1970-01-01T00:00:00Z) as an aware
    UTC date-time. Raises UsageError for anything else, or a number of seconds before 1970 or
    after the year 9999 (which Python's clock turns into an overflow, not a date)."""
    try:
        seconds = int(value)
    except ValueError:
        raise UsageError(_("SOURCE_DATE_EPOCH '{value}' is not a number of seconds").format(value=value),
                         _("unset it or fix it")) from None
    if not 0 <= seconds <= LAST_SECOND:
        raise UsageError(_("SOURCE_DATE_EPOCH '{value}' is out of range: seconds since 1970 up to {last} "
                           "(the end of the year 9999)").format(value=value, last=LAST_SECOND), _("unset it or fix it"))
    return datetime.fromtimestamp(seconds, timezone.utc)


def fixed_time(value: str | None, option: str, example: str) -> datetime | None:
    """The time a command is told to use: ``value`` (the date-time ``option``, ISO 8601; without
    a zone it is local time), else ``$SOURCE_DATE_EPOCH``, else None (the command's own clock).
    Whole seconds, as cnsx writes them. Raises UsageError naming ``option`` (with ``example``
    as the hint) for a value that is not a date-time, or for a bad ``$SOURCE_DATE_EPOCH``."""
    if value:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise UsageError(_("{option} '{value}' is not an ISO 8601 date-time").format(option=option, value=value),
                             example) from None
        return (moment if moment.tzinfo else moment.astimezone()).replace(microsecond=0)
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch:
        return from_epoch(epoch)
    return None


def creation_time(value: str | None) -> datetime:
    """The creation time of what a command makes: ``--created`` (``value``), else
    ``$SOURCE_DATE_EPOCH``, else now (local time, whole seconds). UsageError as :func:`fixed_time`."""
    return (fixed_time(value, "--created", _("e.g. 2026-11-26T09:30:00+01:00"))
            or datetime.now().astimezone().replace(microsecond=0))


def day(option: str, value: str) -> date:
    """The date given to ``option`` as YYYY-MM-DD. Raises UsageError naming the option for
    anything else (``date.fromisoformat`` would also take '20261101' and week dates such as
    '2026-W44-7', which no one means on a command line)."""
    try:
        parsed = date.fromisoformat(value)
        if parsed.isoformat() != value:
            raise ValueError
    except ValueError:
        raise UsageError(_("{option} '{value}' is not a YYYY-MM-DD date").format(option=option, value=value),
                         _("e.g. {option} 2026-11-01").format(option=option)) from None
    return parsed
