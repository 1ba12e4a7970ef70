"""nightly: the whole night's exchange with the CNS in one run, the job cron starts.

Under one run lock: fetch what is new on the drop box into the inbox, then import the whole
inbox, that is what was just fetched *and* whatever an earlier run left there (an import that
was killed or found the lock held, a fetch whose list of files was lost). A fetch that fails
does not stop the import: the files already in the inbox need no server. One file that cannot
be imported does not stop the others. What happened is returned as data; the command line
says what needs a human.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from cns_exchange.errors import CnsxError, ExitCode
from cns_exchange.transport.fetch import Fetched, Fetcher, FetchReport
from cns_exchange.store.importing import ImportResult, ImportStatus


@dataclass
class ImportFailure:
    """A file of the inbox whose import raised (it stays in the inbox for the next run)."""

    path: Path
    error: CnsxError


@dataclass
class NightReport:
    """What a night did: the fetch (complete, or up to ``fetch_error``), then each file of
    the inbox, in the order imported."""

    fetch: FetchReport = field(default_factory=FetchReport)
    fetch_error: CnsxError | None = None
    imports: list[ImportResult | ImportFailure] = field(default_factory=list)

    @property
    def exit_code(self) -> ExitCode:
        """The code of the first failure: the fetch's; else that of the first file not
        imported (INVALID for a file that cannot be read); else OK."""
        if self.fetch_error is not None:
            return self.fetch_error.exit_code
        for outcome in self.imports:
            if isinstance(outcome, ImportFailure):
                return outcome.error.exit_code
            if outcome.status is ImportStatus.UNREADABLE:
                return ExitCode.INVALID
        return ExitCode.OK

    @property
    def unmatched(self) -> list[str]:
        """What still matches nothing in the database after the last file imported (empty
        when nothing was imported: the night changed nothing to tell)."""
        imported = [r for r in self.imports if isinstance(r, ImportResult) and r.status is ImportStatus.IMPORTED]
        return imported[-1].unmatched if imported else []


def run_night(database: Path, wait: float, make_fetcher: Callable[[sqlite3.Connection], Fetcher], inbox: Path,
              validator, archive_dir: Path, errors_dir: Path,
              on_fetched: Callable[[Fetched], None] | None = None,
              on_imported: Callable[[ImportResult | ImportFailure], None] | None = None) -> NightReport:
    """Fetch, then import every document of ``inbox``, holding the run lock of ``database``
    throughout; return the NightReport.

    ``make_fetcher`` builds the Fetcher on the database connection. ``on_fetched`` and
    ``on_imported`` are called as each file is done. Raises LockedError when another run
    holds the lock past ``wait`` seconds; errors of the fetch and of single files are in the
    report. Imported files leave the inbox for the archive, unreadable ones for ``errors_dir``.
    """
    from cns_exchange.store import database as db
    from cns_exchange.store.importing import import_path, inbox_documents
    from cns_exchange.store.lock import run_lock

    report = NightReport()
    with run_lock(database, wait):
        conn = db.connect(database)
        try:
            fetcher = make_fetcher(conn)
            try:
                fetcher.run(emit=on_fetched, report=report.fetch)
            except CnsxError as exc:  # the server, the network, a full inbox: the inbox is still imported
                report.fetch_error = exc
            finally:
                fetcher.close()
            for path in inbox_documents(inbox):
                outcome: ImportResult | ImportFailure
                try:
                    outcome, _ = import_path(conn, path, validator, archive_dir, errors_dir, move=True)
                except CnsxError as exc:
                    outcome = ImportFailure(path, exc)
                report.imports.append(outcome)
                if on_imported is not None:
                    on_imported(outcome)
        finally:
            conn.close()
    return report
