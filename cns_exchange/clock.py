"""The time cnsx writes into what it makes, when it is not asked for on the command line:
``$SOURCE_DATE_EPOCH`` (reproducible builds, https://reproducible-builds.org/specs/source-date-epoch/),
read here for every command that honours it."""

from __future__ import annotations

from datetime import datetime, timezone

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
