"""What every command shares: the global options, the settings and tables loaded once, the
practice database and the CNS server as the options and the profile name them."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from cns_exchange.errors import InputError, UsageError


class Context:
    """Options shared by every command, and lazily loaded settings and tables."""

    def __init__(self, config: str | None, profile: str | None, debug: bool, quiet: bool, verbose: bool = False) -> None:
        self.config_path = config
        self.profile = profile
        self.debug = debug
        self.quiet = quiet
        self.verbose = verbose and not quiet
        self._settings = None

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
        """Return (codes, nomenclature, schema registry) for this run."""
        from cns_exchange.domain.nomenclature import load_codes, load_nomenclature
        from cns_exchange.documents.schemas import SchemaRegistry

        return (load_codes(), load_nomenclature(self.settings.nomenclature_dirs),
                SchemaRegistry(self.settings.schema_dirs))

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
            raise InputError(f"{path}: no practice database yet", "run cnsx import (or upload/fetch) first, or pass --db")
        return path

    def practice_database(self, db: str | None):
        """A connection to the practice database to check against: ``--db`` (which must
        exist), else the profile's if it exists; None if there is none."""
        path = self.database_path(db)
        if db and not path.exists():
            raise InputError(f"--db {db}: no such database", "check the path")
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
                console.print_line(f"retry {attempt} in {delay:.0f} s: {exc.message}")
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
        raise UsageError(f"{what}: a prompt needs a terminal", "under cron use env or keyring as the secret's source")
    return click.prompt(what, hide_input=True, err=True)
