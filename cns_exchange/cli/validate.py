"""cnsx validate: any CNS document against its XSD and the business rules."""

from __future__ import annotations

import sys

import click

from cns_exchange.cli.context import Context, pass_context, treatment_history
from cns_exchange.cli.output import write_json
from cns_exchange.errors import ExitCode, UsageError
from cns_exchange.i18n import _, ngettext


@click.command("validate", help=_("""Validate CNS documents (any of the five kinds, any installed schema version).

    Detects each file's kind and version, checks it against its XSD and the business rules,
    and reports every issue with its code, line and XPath. A request file on disk must have
    its prescription PDFs beside it, matching their SHA-256. '-' reads stdin. Exit 3 if any
    file has an error.
    """))
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@click.option("--json", "as_json", is_flag=True, help=_("Print the reports as JSON on stdout."))
@click.option("--max-size", type=click.IntRange(min=1), metavar="BYTES", help=_("Refuse documents larger than this (default: max_xml_bytes, 512 MiB)."))
@click.option("--no-attachments", is_flag=True, help=_("Do not look for a request file's prescription PDFs beside it."))
@click.option("--db", "db", metavar="PATH", help=_("Also check requests against the earlier treatments in this practice database."))
@pass_context
def validate_cmd(ctx: Context, files, as_json, max_size, no_attachments, db):
    from cns_exchange import console
    from cns_exchange.documents.schemas import kind_word

    if files.count("-") > 1:
        raise UsageError(_("'-' (stdin) can be given only once"), _("pass the other documents as paths"))
    validator = ctx.validator(max_size)
    conn = ctx.practice_database(db) if db else None
    validator.history = treatment_history(conn)
    reports = []
    try:
        for name in files:
            report = validator.validate(name, stream=sys.stdin.buffer if name == "-" else None,
                                        attachments=not no_attachments)
            reports.append(report)
            console.print_issues(report.issues)
            if not ctx.quiet:
                what = (_("{kind} v{version}, {items}").format(
                            kind=kind_word(report.kind), version=report.version or "?",
                            items=ngettext("{n} item", "{n} items", report.items).format(n=report.items))
                        if report.kind else _("unknown document"))
                verdict = _("{file}: valid ({what})") if report.ok else _("{file}: INVALID ({what})")
                console.print_line(verdict.format(file=report.name, what=what), style="green" if report.ok else "red")
    finally:
        if conn is not None:
            conn.close()
    if as_json:
        write_json([r.as_dict() for r in reports])
    return ExitCode.INVALID if any(not r.ok for r in reports) else ExitCode.OK
