"""cnsx import: documents into the practice database, or (--no-db) read back as rows."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from cns_exchange.cli.context import Context, pass_context
from cns_exchange.cli.output import JsonLines, format_options
from cns_exchange.errors import ExitCode, UsageError
from cns_exchange.i18n import _, join


class _Rows:
    """Writes what import read, in the format asked for: a JSON object per file (--json),
    a JSON line per row (--ndjson), CSV rows of one document kind (--csv), or nothing."""

    def __init__(self, fmt: str | None) -> None:
        self.fmt = fmt
        self.lines = JsonLines()
        self.csv = None
        self.csv_kind = None

    def write(self, result, doc) -> None:
        from cns_exchange.documents.schemas import kind_word
        from cns_exchange.store.importing import ROW_COLUMNS, rows_of

        if self.fmt == "json":
            self.lines.write({"file": str(doc.path), "kind": doc.kind, "sha256": doc.sha256, "status": result.status,
                              "rows": list(rows_of(doc)) if not doc.fatal else []})
        elif self.fmt == "ndjson":
            for row in rows_of(doc):
                self.lines.write({"file": str(doc.path), "kind": doc.kind, **row})
        elif self.fmt == "csv" and not doc.fatal:
            if self.csv_kind not in (None, doc.kind):
                raise UsageError(_("--csv prints one document kind per run: {name} is {kind}, not {expected}").format(
                                     name=doc.name, kind=kind_word(doc.kind), expected=kind_word(self.csv_kind)),
                                 _("import the kinds separately, or use --ndjson"))
            if self.csv is None:
                from cns_exchange.rows.csvout import CsvWriter

                self.csv_kind = doc.kind
                self.csv = CsvWriter(sys.stdout, ROW_COLUMNS[doc.kind])
                self.csv.writeheader()
            self.csv.writedicts(rows_of(doc))


def _one_kind(paths: list[Path], validator) -> None:
    """--csv of several files: told before anything is imported, not at the first file of another kind."""
    from cns_exchange.documents.schemas import kind_word

    kinds: dict[str, str] = {}
    for path in paths:
        schema_set, kind, _unused, _issues = validator.detect(str(path))
        if schema_set is not None:
            kinds.setdefault(kind, path.name)
    if len(kinds) > 1:
        raise UsageError(_("--csv prints one document kind per run: {kinds}").format(
                             kinds=join(", ", (_("{name} is {kind}").format(name=n, kind=kind_word(k)) for k, n in kinds.items()))),
                         _("import the kinds separately, or use --ndjson"))


def _report(ctx: Context, result) -> bool:
    """Print what a human needs to know of one file's import; False if it could not be read."""
    from cns_exchange import console
    from cns_exchange.documents.schemas import kind_word

    console.print_issues(result.warnings)
    if result.status == "unreadable":
        if not result.moved_to:
            line = _("{name}: not imported, cannot be read")
        elif result.moved:
            line = _("{name}: not imported, cannot be read; moved to {path} (see .why.txt)")
        else:
            line = _("{name}: not imported, cannot be read; a copy kept in {path} (see .why.txt)")
        console.print_line(line.format(name=result.name, path=result.moved_to), style="red")
    elif result.status == "already-imported":
        console.print_line(_("{name}: already imported, nothing changed").format(name=result.name))
    elif result.status == "imported" and ctx.verbose:
        console.print_line(_("{name}: imported ({kind})").format(name=result.name, kind=kind_word(result.kind)))
    for note in result.notices:
        console.print_line(_("note: {name}: {note}").format(name=result.name, note=note), style="yellow")
    for note in result.unmatched:
        console.print_line(_("note: {note}").format(note=note), style="yellow")
    return result.status != "unreadable"


@click.command("import", help=_("""Import documents into the practice database and match them with what they answer.

    FILE... are documents; '-' reads the NDJSON lines `cnsx fetch` prints (or one document);
    with no FILE the inbox is imported. Return files are read leniently: deviations are
    warnings with their line, unreadable files go to the errors folder with a reason.
    `--no-db --csv` turns any document into rows (requests and billing files: the columns
    build-request / build-invoice read).
    """))
@click.argument("files", nargs=-1, metavar="[FILE...]")
@click.option("--db", "db", metavar="PATH", help=_("The practice database (default: the profile's database)."))
@click.option("--no-db", is_flag=True, help=_("Only read: print the rows, touch no database, move no file."))
@format_options(json=_("Print what was read as a JSON object per file."), ndjson=_("Print one JSON line per row."),
                csv=_("Print rows as CSV (one document kind per run)."))
@click.option("--wait", type=click.FloatRange(min=0), default=0, metavar="SECONDS", help=_("Wait for another run's lock."))
@pass_context
def import_cmd(ctx: Context, files, db, no_db, fmt, wait):
    import tempfile

    from cns_exchange import console
    from cns_exchange.store import database, importing, inbox
    from cns_exchange.store.lock import run_lock

    settings = ctx.settings
    scratch = tempfile.TemporaryDirectory(prefix="cnsx-import-") if no_db else None
    try:
        paths = inbox.import_sources(files, sys.stdin.buffer if "-" in files else None, settings,
                                     Path(scratch.name) if scratch is not None else None)
        validator = ctx.validator()
        if fmt == "csv" and len(paths) > 1:
            _one_kind(paths, validator)
        rows = _Rows(fmt)
        read = True
        if no_db:
            for path in paths:
                result, doc = importing.import_path(None, path, validator, None, None, move=False)
                rows.write(result, doc)
                read &= _report(ctx, result)
            return ExitCode.OK if read else ExitCode.INVALID
    finally:
        if scratch is not None:
            scratch.cleanup()
    if not paths:
        return ExitCode.OK  # nothing to do: not even the lock (another run holding it is no error here)
    db_path = ctx.database_path(db)
    inbox_dir = settings.local_dir("inbox").resolve()
    with run_lock(db_path, wait):
        conn = database.connect(db_path)
        try:
            for path in paths:
                move = path.resolve().parent == inbox_dir
                if not files and not path.exists():
                    # Listed in the inbox before the lock was ours: another run took it since.
                    console.print_line(_("{name}: no longer in the inbox (imported by another run)").format(name=path.name))
                    continue
                result, doc = importing.import_path(conn, path, validator, settings.local_dir("archive"),
                                                    settings.local_dir("errors"), move)
                rows.write(result, doc)
                read &= _report(ctx, result)
        finally:
            conn.close()
    return ExitCode.OK if read else ExitCode.INVALID
