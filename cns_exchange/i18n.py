"""Messages in the user's language, English or French, from the standard gettext catalogues.

Texts are written in English in the code, and stay English as data: in ``--json`` reports,
CSV, the database, ``str(exc)``. ``_()`` marks a text for the catalogue and returns it as a
:class:`Msg`, an English ``str`` that remembers its template and the values put into it;
``tr()`` gives the text in the user's language, and is called where text meets a person (the
console module, the help). Translating after the values are put in is what lets one message
be English in a JSON report and French on the terminal.

Write placeholders by name, and fill them with ``.format()`` on what ``_()`` returns::

    raise InputError(_("{file}: line {line}: not a date").format(file=name, line=n))

never an f-string inside ``_()`` (the catalogue holds the template, not one filled-in text).

Numbers and days go into a message as values, not as text: a :class:`~decimal.Decimal` (an
amount: ``domain.model.money(cents)``) and a :class:`~datetime.date` are written the English
way in the English text ('622.20', '2026-11-01', as in --json), and the French way where
``tr()`` shows them in French ('622,20', '01/11/2026'). A value that must stay as typed (an
option's argument, a command to copy, a figure quoted from a file) goes in as ``str``.

The language: the config's ``language`` (:func:`choose`, called by ``load_settings``), else
the environment as gettext reads it (``LANGUAGE``, then ``LC_ALL``, ``LC_MESSAGES``, ``LANG``;
``C`` and ``POSIX`` are English); English when neither names a language cnsx has.
Catalogues: ``locale/<lang>/LC_MESSAGES/cnsx.po`` (the source) and its compiled ``.mo``
(``python scripts/i18n.py compile``; a test keeps the two in step); ``click.po`` beside it
holds click's own messages (:func:`click_speaks`).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import gettext

DOMAIN = "cnsx"
#: click's own messages (its usage errors, prompts), translated by cnsx: click marks them with
#: the standard library's ``gettext.gettext``, which reads the process's default domain.
CLICK_DOMAIN = "click"
LOCALE_DIR = Path(__file__).parent / "locale"
#: The languages cnsx speaks; English is the code's own, with no catalogue.
LANGUAGES = ("en", "fr")
#: Where gettext looks for the language, in its order.
_ENVIRONMENT = ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")

_chosen: str | None = None


def choose(language: str | None) -> None:
    """Speak ``language`` (one of :data:`LANGUAGES`) from now on; None: the environment's."""
    global _chosen
    _check(language)
    _chosen = language


def _check(language: str | None) -> None:
    if language is not None and language not in LANGUAGES:
        raise ValueError(f"language {language!r} is not one of {', '.join(LANGUAGES)}")


def language() -> str:
    """The language messages are shown in now: 'en' or 'fr'."""
    return _language_of(_translations())


def _language_of(catalogue: "gettext.NullTranslations") -> str:
    return catalogue.info().get("language", "en") or "en"


def _translations() -> "gettext.NullTranslations":
    return _load(_chosen, tuple(os.environ.get(name, "") for name in _ENVIRONMENT))


@lru_cache(maxsize=16)
def _load(chosen: str | None, environment: tuple[str, ...]) -> "gettext.NullTranslations":
    """The catalogue for the config's choice, else for the environment (the key of the cache:
    a test or a long run may change it). A missing catalogue is English, never an error."""
    import gettext

    languages = [chosen] if chosen else None  # None: gettext reads the environment itself
    return gettext.translation(DOMAIN, LOCALE_DIR, languages=languages, fallback=True)


@contextmanager
def click_speaks():
    """While the command line runs, click's own messages ("Error: No such option", "Try 'cnsx
    -h' for help.", a bad value of an option) come from cnsx's ``click.po``: click looks them up
    with gettext's public functions in the process's default domain, which this names, and
    gives back after. Their language is the environment's, as gettext reads it (click parses
    the command line before the config is read)."""
    import gettext

    previous = gettext.textdomain()
    gettext.bindtextdomain(CLICK_DOMAIN, str(LOCALE_DIR))
    gettext.textdomain(CLICK_DOMAIN)
    try:
        yield
    finally:
        gettext.textdomain(previous)


class Msg(str):
    """An English text, as ``str``, that can also be shown in another language: it keeps its
    template (the catalogue's msgid; with its plural and count for :func:`ngettext`) and the
    named values :meth:`format` put into it. Joining it to other text (``+``, an f-string)
    gives a plain ``str``, English only: join messages with a template of their own."""

    msgid: str
    plural: str | None
    n: int | None
    values: dict[str, object]

    def __new__(cls, msgid: str, plural: str | None = None, n: int | None = None,
                values: dict[str, object] | None = None) -> "Msg":
        template = msgid if plural is None or n == 1 else plural
        self = super().__new__(cls, template.format(**values) if values else template)
        self.msgid, self.plural, self.n, self.values = msgid, plural, n, dict(values or {})
        return self

    def format(self, *args: object, **values: object) -> "Msg":  # type: ignore[override]
        """This message with its named placeholders filled in (positional ones are refused:
        a translation may put the values in another order)."""
        if args:
            raise TypeError("messages take named placeholders only: .format(name=value)")
        return Msg(self.msgid, self.plural, self.n, {**self.values, **values})

    def __reduce__(self):
        # Kept whole through pickling (worker processes) and copying (dataclasses.asdict).
        return Msg, (self.msgid, self.plural, self.n, self.values)


def _(msgid: str) -> Msg:
    """Mark ``msgid`` (English, named placeholders) for the catalogue; return it as a Msg."""
    return Msg(msgid)


def ngettext(singular: str, plural: str, n: int) -> Msg:
    """Mark a text with a singular and a plural (each language has its own rule: French
    says '0 fichier', English '0 files'); the count fills no placeholder by itself, so write
    ``ngettext("{n} file", "{n} files", n).format(n=n)``."""
    return Msg(singular, plural, n)


class _Joined(str):
    """Texts joined by a separator (:func:`join`): English as ``str``, each part (and the
    separator) translated by tr; a part that is not text (an amount, a day) is shown as a
    message's value is."""

    parts: tuple[object, ...]
    separator: str

    def __new__(cls, separator: str, parts: tuple[object, ...]) -> "_Joined":
        self = super().__new__(cls, separator.join(f"{part}" for part in parts))
        self.separator, self.parts = separator, parts
        return self

    def __reduce__(self):
        return _Joined, (self.separator, self.parts)


def join(separator: str, parts) -> str:
    """``separator.join(parts)``, whose messages are still shown each in the user's language
    (a plain join would leave them English)."""
    return _Joined(separator, tuple(parts))


def reason(exc: BaseException) -> str:
    """What ``exc`` says, kept translatable: its message when it was raised with one Msg
    (``str(exc)`` would be a plain English copy), else ``str(exc)``."""
    message = getattr(exc, "message", None)   # CnsxError keeps its message
    if isinstance(message, (Msg, _Joined)):
        return message
    if len(exc.args) == 1 and isinstance(exc.args[0], (Msg, _Joined)):
        return exc.args[0]
    return str(exc)


def french_number(value: Decimal) -> str:
    """A decimal number as French writes it, with its own decimals: '1 234,56', '-0,50', '12'
    (a no-break space between thousands: the printed documents' amounts, and the terminal's)."""
    return f"{value:,f}".replace(",", "\u00a0").replace(".", ",")


def french_date(day: date) -> str:
    """A day as French writes it: '20/11/2026'."""
    return f"{day:%d/%m/%Y}"


def _shown(value: object, language: str) -> object:
    """A message's value as ``language`` writes it: an amount (Decimal) and a day (a date,
    not a moment) in French; anything else, and every value in English, as it is."""
    if language == "fr":
        if isinstance(value, Decimal) and value.is_finite():
            return french_number(value)
        if isinstance(value, date) and not isinstance(value, datetime):
            return french_date(value)
    return value


def tr(text: str, language: str | None = None) -> str:
    """``text`` in the user's language: a Msg's template looked up in the catalogue, then
    filled with its values (themselves shown with tr; amounts and days as the language writes
    them); any other text is looked up as it is. Text without a translation, or whose
    translation does not fit its values, stays English. ``language`` (one of
    :data:`LANGUAGES`): that language instead, whatever the user's (the printed documents are
    French in any language)."""
    _check(language)
    catalogue = _translations() if language is None else _load(language, ())
    shown_in = _language_of(catalogue)
    if isinstance(text, _Joined):
        return tr(text.separator, language).join(tr(part, language) if isinstance(part, str) else f"{_shown(part, shown_in)}"
                                                 for part in text.parts)
    if not isinstance(text, Msg):
        return catalogue.gettext(text) if text else text
    if text.plural is None:
        template = catalogue.gettext(text.msgid)
    else:
        template = catalogue.ngettext(text.msgid, text.plural, text.n if text.n is not None else 2)
    if not text.values:
        return template
    values = {k: tr(v, language) if isinstance(v, (Msg, _Joined)) else _shown(v, shown_in) for k, v in text.values.items()}
    try:
        return template.format(**values)
    except (KeyError, IndexError, ValueError):  # a translation that does not fit: the English
        english = text.msgid if text.plural is None or text.n == 1 else text.plural
        return english.format(**values)
