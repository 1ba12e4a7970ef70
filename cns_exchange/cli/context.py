"""What every command shares: the global options, the settings and tables loaded once, the
practice database and the CNS server as the options and the profile name them; and the help
of every command in the user's language.

**The help.** A command's help is written in its decorator, ``@click.command("name", help=_('''...'''))``,
an option's as ``help=_("...")`` (one line: click removes a help's indentation, and the
catalogue is looked up with the text click keeps). click formats help with the texts it was
given, at the moment it shows them; cnsx shows them translated by giving every command a
context (:class:`HelpContext`) whose :meth:`~HelpContext.get_help` lays the page out with
click's public pieces (usage pieces, parameters' help records and extras, the formatter) and
passes each text through :func:`~cns_exchange.i18n.tr`. The root group gives this context to
each command it registers (:func:`translated`), so a command module needs nothing more than
``_()`` around its texts.

The language is the one messages use (:mod:`cns_exchange.i18n`): the config's ``language``
when the config can be read (the ``--config`` file for ``cnsx --config F CMD --help``,
``$CNSX_CONFIG`` or the default config for ``cnsx --help``; a config that cannot be read
leaves the help in the environment's language rather than hiding it), else the environment's.
click's own words in the page (Usage, Options, Commands, "Show this message and exit.") are
cnsx's messages here too; click's usage errors ("No such option") stay click's, in English.
"""

from __future__ import annotations

import inspect
import sys
from contextlib import contextmanager
from pathlib import Path

import click

from cns_exchange.errors import InputError, UsageError
from cns_exchange.i18n import _, tr


class Context:
    """Options shared by every command, and lazily loaded settings and tables."""

    def __init__(self, config: str | None, profile: str | None, debug: bool, quiet: bool, verbose: bool = False) -> None:
        self.config_path = config
        self.profile = profile
        self.debug = debug
        self.quiet = quiet
        self.verbose = verbose and not quiet
        self._settings = None
        self._tables = None

    @property
    def show_progress(self) -> bool:
        """Progress bars only for a person watching a terminal."""
        return not self.quiet and sys.stderr.isatty()

    @property
    def settings(self):
        if self._settings is None:
            from cns_exchange.config import load_settings

            self._settings = load_settings(self.config_path, self.profile)
        return self._settings

    def tables(self):
        """Return (codes, nomenclature, schema registry) for this run, loaded on first use and
        then kept: a command and its validator share one load (the files do not change during
        a run)."""
        if self._tables is None:
            from cns_exchange.domain.nomenclature import load_codes, load_nomenclature
            from cns_exchange.documents.schemas import SchemaRegistry

            self._tables = (load_codes(), load_nomenclature(self.settings.nomenclature_dirs),
                            SchemaRegistry(self.settings.schema_dirs))
        return self._tables

    def validator(self, max_size: int | None = None):
        from cns_exchange.validation.validate import Validator

        codes, nomenclature, registry = self.tables()
        return Validator(registry, codes, nomenclature, max_size or self.settings.max_xml_bytes)

    def database_path(self, db: str | None) -> Path:
        """The practice database's path: ``--db``, else the profile's."""
        return Path(db).expanduser() if db else self.settings.database_path()

    def existing_database(self, db: str | None) -> Path:
        """:meth:`database_path`, for a command that reads the database: InputError if there is none yet."""
        path = self.database_path(db)
        if not path.exists():
            raise InputError(_("{file}: no practice database yet").format(file=path),
                             _("run cnsx import (or upload/fetch) first, or pass --db"))
        return path

    def practice_database(self, db: str | None):
        """A connection to the practice database to check against: ``--db`` (which must
        exist), else the profile's if it exists; None if there is none."""
        path = self.database_path(db)
        if db and not path.exists():
            raise InputError(_("--db {file}: no such database").format(file=db), _("check the path"))
        if not path.exists():
            return None
        from cns_exchange.store import database

        return database.connect(path)

    def transport(self):
        """Return (settings, remote, connect) for the selected profile: ``connect()`` opens
        the transport (asking for a secret on the terminal if the profile says so)."""
        from cns_exchange.transport import open_transport

        settings = self.settings
        remote = settings.remote_url()
        return settings, remote, lambda: open_transport(settings, prompt_secret)

    def on_retry(self):
        """A transport's retry callback: with -v, say that a retry is coming."""
        from cns_exchange import console

        def report(exc, attempt, delay):
            if self.verbose:  # a retry that then succeeds needs no human
                console.print_line(_("retry {attempt} in {delay} s: {error}").format(attempt=attempt, delay=f"{delay:.0f}",
                                                                                     error=exc.message))
        return report


pass_context = click.make_pass_decorator(Context)


def treatment_history(conn):
    """The treatments granted before, from the practice database (None: none to check against)."""
    if conn is None:
        return None
    from cns_exchange.store.database import TreatmentHistory

    return TreatmentHistory(conn)


def prompt_secret(what: str) -> str:
    """Ask for a secret on the terminal (never echoed); refused without a terminal."""
    if not sys.stdin.isatty():
        raise UsageError(_("{what}: a prompt needs a terminal").format(what=what),
                         _("under cron use env or keyring as the secret's source"))
    return click.prompt(tr(what), hide_input=True, err=True)


#: click's words on a help page, marked so that the catalogue holds them: the help options'
#: texts are click's own (its ``--help`` and ``--version``), looked up as they are.
CLICK_WORDS = (_("Show this message and exit."), _("Show the version and exit."))


class HelpContext(click.Context):
    """A click context whose help page is in the user's language."""

    def get_help(self) -> str:
        _choose_language(self)
        formatter = self.make_formatter()
        write_help(self, formatter)
        return formatter.getvalue().rstrip("\n")


def translated(command: click.Command) -> click.Command:
    """``command`` (and a group's subcommands), showing its help with :class:`HelpContext`.
    Returns ``command``."""
    command.context_class = HelpContext
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            translated(sub)
    return command


def _choose_language(ctx: click.Context) -> None:
    """Read the config's language for the help, when the config can be read; else leave
    the environment's."""
    from cns_exchange.errors import CnsxError

    obj = ctx.find_root().obj
    try:
        if obj is not None:
            obj.settings  # noqa: B018 - loading the settings chooses their language
        else:
            from cns_exchange.config import load_settings

            load_settings()
    except CnsxError:
        pass


def text_of(help_text: str | None) -> str:
    """``help_text`` in the user's language, as a page shows it: without its indentation, cut
    at a form feed (click's mark for "not in the help")."""
    if not help_text:
        return ""
    return inspect.cleandoc(tr(help_text)).partition("\f")[0]


def write_help(ctx: click.Context, formatter: click.HelpFormatter) -> None:
    """Lay out the help page of ``ctx.command`` in ``formatter``: usage, help, arguments,
    options, subcommands, epilog (click's order)."""
    command = ctx.command
    formatter.write_usage(ctx.command_path, " ".join(command.collect_usage_pieces(ctx)),
                          prefix=tr(_("Usage:")) + " ")
    text = text_of(command.help)
    if text:
        formatter.write_paragraph()
        with formatter.indentation():
            formatter.write_text(text)
    params = command.get_params(ctx)
    arguments = [p for p in params if isinstance(p, click.Argument)]
    if any(a.help for a in arguments):
        with _section(formatter, tr(_("Arguments:"))):
            formatter.write_dl([(a.make_metavar(ctx), text_of(a.help)) for a in arguments])
    records = [record for record in (_option_record(ctx, p) for p in params if isinstance(p, click.Option))
               if record is not None]
    if records:
        with _section(formatter, tr(_("Options:"))):
            formatter.write_dl(records)
    if isinstance(command, click.Group):
        _write_commands(ctx, command, formatter)
    if command.epilog:
        formatter.write_paragraph()
        with formatter.indentation():
            formatter.write_text(text_of(command.epilog))


@contextmanager
def _section(formatter: click.HelpFormatter, heading: str):
    """A section of the page under ``heading``, written whole (click's own ``section`` adds
    the colon itself, which French writes after a space)."""
    formatter.write_paragraph()
    formatter.write(f"{'':>{formatter.current_indent}}{heading}\n")
    with formatter.indentation():
        yield


def _option_record(ctx: click.Context, option: click.Option) -> tuple[str, str] | None:
    """The (names, help) row of ``option``, its help and click's extras (default, range,
    required) in the user's language."""
    record = option.get_help_record(ctx)
    if record is None:
        return None
    extra = option.get_help_extra(ctx)
    items = []
    if "envvars" in extra:
        items.append(tr(_("env var: {var}").format(var=", ".join(extra["envvars"]))))
    if "default" in extra:
        items.append(tr(_("default: {default}").format(default=extra["default"])))
    if "range" in extra:
        items.append(extra["range"])
    if "required" in extra:
        items.append(tr(_("required")))
    text = text_of(option.help)
    if items:
        text = f"{text}  [{'; '.join(items)}]" if text else f"[{'; '.join(items)}]"
    return record[0], text


def _write_commands(ctx: click.Context, group: click.Group, formatter: click.HelpFormatter) -> None:
    """The group's subcommands, each with the first sentence of its help."""
    commands = []
    for name in group.list_commands(ctx):
        sub = group.get_command(ctx, name)
        if sub is not None and not sub.hidden:
            commands.append((name, sub))
    if not commands:
        return
    limit = formatter.width - 6 - max(len(name) for name, _unused in commands)
    with _section(formatter, tr(_("Commands:"))):
        formatter.write_dl([(name, short_help(sub, limit)) for name, sub in commands])


def short_help(command: click.Command, limit: int = 45) -> str:
    """The line that lists ``command`` in its group's help, in the user's language: its
    ``short_help``, else its help's first sentence, cut at ``limit`` characters. The texts are
    translated first, then shortened by click itself (``Command.get_short_help_str``, which
    click's own command list uses), on a command that carries the translated texts."""
    shown = click.Command(command.name, help=text_of(command.help) or None,
                          short_help=text_of(command.short_help) or None)
    return shown.get_short_help_str(limit)
