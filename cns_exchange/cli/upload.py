"""cnsx upload: validated documents (and the prescriptions a request names) to the CNS, once."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from cns_exchange.cli.context import Context, pass_context
from cns_exchange.cli.output import JsonLines, summary
from cns_exchange.errors import InputError, UsageError
from cns_exchange.i18n import _, join, ngettext


def _documents(files: tuple[str, ...], name: str | None, settings) -> tuple[list[Path], Path | None]:
    """The files to send, and the copy of the document read from stdin ('-', with --name)
    kept in the outbox (None if none)."""
    from cns_exchange.transport import unsafe_name_reason
    from cns_exchange.transport.upload import receive

    if "-" in files:
        if files != ("-",) or not name:
            raise UsageError(_("'-' uploads one document read from stdin and needs --name"),
                             _("e.g. --name 123456_FAC_20261126_000001.xml"))
        if unsafe_name_reason(name):
            raise UsageError(_("--name {name}: {reason}").format(name=name, reason=unsafe_name_reason(name)),
                             _("give a plain file name"))
        spool = receive(sys.stdin.buffer, settings.local_dir("outbox"), name, settings.max_xml_bytes)
        return [spool], spool
    paths = []
    for f in files:
        path = Path(f)
        if not path.is_file():
            raise InputError(_("{file}: no such file").format(file=f), _("check the path"))
        paths.append(path)
    return paths, None


@click.command("upload", help=_("""Send documents (and the prescription PDFs a request names) to the CNS.

    Each file is validated first; an invalid one is exit 3 and nothing is sent. Files go up
    under a temporary name, are checked, then renamed; an existing remote file is never
    replaced. Every upload is recorded in the database's ledger: content already sent is not
    sent again. Ends with a summary ("2 sent, 31 already sent"); -v names each file.
    """))
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@click.option("--name", metavar="NAME", help=_("Remote name of the document read from '-' (stdin)."))
@click.option("--force", is_flag=True, help=_("Resend content already sent, under a new sequence number."))
@click.option("--wait", type=click.FloatRange(min=0), default=0, metavar="SECONDS", help=_("Wait for another run's lock."))
@click.option("--json", "as_json", is_flag=True, help=_("Print one JSON line per file on stdout."))
@click.option("--move-sent", "move_sent", metavar="DIR",
              help=_("Move each file recorded sent (a request's PDFs with it) into DIR, never over a file."))
@pass_context
def upload_cmd(ctx: Context, files, name, force, wait, as_json, move_sent):
    from cns_exchange import console
    from cns_exchange.store import database, importing
    from cns_exchange.store.lock import run_lock
    from cns_exchange.transport import upload as sending

    settings, remote, connect = ctx.transport()
    paths, spool = _documents(files, name, settings)
    validator = ctx.validator()
    # Every document is validated before anything is done (the lock, the database, a
    # renumbered copy): a broken one is exit 3 with its issues, whatever else is going on.
    try:
        planned = sending.plan(paths, validator)
    except InputError:
        if spool is not None:  # refused: not kept in the outbox, where a later run would take it
            spool.unlink(missing_ok=True)
        raise
    lines = JsonLines(flush=True, ascii=True) if as_json else None
    counts = {"sent": 0, "already-sent": 0, "recovered": 0}
    db_path = settings.database_path()
    with run_lock(db_path, wait):
        conn = database.connect(db_path)
        try:
            if force:
                renamed = sending.renumber_sent(paths, conn, str(remote), settings.local_dir("outbox"))
                if renamed != paths:  # what is sent is the renumbered copies: validated in their turn
                    planned = sending.plan(renamed, validator)
            uploader = sending.Uploader(conn, settings.profile or "default", str(remote), str(settings.upload_dir),
                                        connect, int(settings.retries), float(settings.backoff), ctx.on_retry())
            try:
                for item in planned:
                    with console.progress(item.size, item.name, ctx.show_progress) as advance:
                        outcome = uploader.send(item, progress=advance)
                    if item.kind in sending.SENDABLE:
                        # What was sent is evidence, and what the returns will be matched with.
                        recorded, _unused = importing.import_path(conn, item.path, validator, settings.local_dir("archive"), None,
                                                            move=False)
                        for note in recorded.notices:  # e.g. sessions billed before: counted once
                            console.print_line(_("note: {file}: {note}").format(file=item.path.name, note=note), style="yellow")
                    if lines is not None:
                        lines.write(outcome.as_dict())
                    counts[outcome.status] += 1
                    _say_sent(ctx, item, outcome, f"{remote}/{settings.upload_dir}")
            finally:
                uploader.close()
        finally:
            conn.close()
        # Only once every file is recorded sent: a request's PDFs stay beside it until it is.
        moved, kept = sending.move_all_sent(planned, Path(move_sent)) if move_sent else (0, [])
    for path in kept:
        console.print_warning(_("{file}: sent, but {other} is another file; left where it is")
                              .format(file=path, other=Path(move_sent) / path.name), _("rename one of them"))
    done = [ngettext("{n} sent", "{n} sent", counts["sent"]).format(n=counts["sent"])]
    if counts["recovered"]:
        done.append(ngettext("{n} recovered", "{n} recovered", counts["recovered"]).format(n=counts["recovered"]))
    if counts["already-sent"]:
        done.append(ngettext("{n} already sent (--force resends)", "{n} already sent (--force resends)",
                             counts["already-sent"]).format(n=counts["already-sent"]))
    if move_sent:
        done.append(ngettext("{n} moved to {folder}", "{n} moved to {folder}", moved).format(n=moved, folder=move_sent))
    summary(ctx, join(", ", done))


def _say_sent(ctx: Context, item, outcome, where: str) -> None:
    """With -v, say where a file went (or that it was sent before)."""
    if not ctx.verbose:
        return
    from cns_exchange import console

    if outcome.status == "already-sent":
        console.print_line(_("{file}: already sent as {name}, not sent again (--force resends)")
                           .format(file=item.path.name, name=outcome.name))
    elif outcome.status == "recovered":
        console.print_line(_("{file} → {where}/{name} (found complete on the server)")
                           .format(file=item.path.name, where=where, name=outcome.name))
    else:
        console.print_line(_("{file} → {where}/{name}").format(file=item.path.name, where=where, name=outcome.name))
