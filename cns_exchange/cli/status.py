"""cnsx status, cnsx certificates and cnsx report-sent: what the practice database says, and
the one mark a person adds to it (a final report sent)."""

from __future__ import annotations

import sys

import click

from cns_exchange.cli.context import Context, pass_context
from cns_exchange.cli.output import format_options, summary, write_json
from cns_exchange.errors import UsageError
from cns_exchange.i18n import _, ngettext, tr


def _check_options(fmt, certificate, patient, pdf_path, year, due) -> None:
    """The combinations of status options that make no sense: UsageError before any work."""
    if certificate == "":   # ("" would be no filter at all: the whole practice's report)
        raise UsageError(_("--certificate: empty"), _("give a certificate number"))
    if certificate and patient:
        raise UsageError(_("--certificate and --patient: one case at a time"), _("give one of them"))
    if year and (certificate or patient):
        raise UsageError(_("--year and --{option}: the IT flat rate is the whole practice's").format(
            option="certificate" if certificate else "patient"), _("leave out --year, or the case"))
    if due and (pdf_path or year or certificate):
        raise UsageError(_("--due: the lines of what needs doing soon, not with --pdf, --year or --certificate"),
                         _("run cnsx status --due on its own (or with --patient, --json, --csv)"))
    if pdf_path == "-" and fmt:
        raise UsageError(_("--pdf - and --{format}: both would go to stdout").format(format=fmt), _("write the PDF to a file"))
    if pdf_path == "-" and sys.stdout.isatty():
        raise UsageError(_("--pdf -: stdout is a terminal, not the place for a PDF"),
                         _("redirect it (> status.pdf) or give a file name"))


@click.command("status", help=_("""Show requests awaiting an answer, certificates used and remaining, billed sessions
    awaiting payment, disputed lines, amounts per month and the final reports due to
    prescribers; with --year, the IT flat rate of that year.

    With --pdf the report is also written as an A4 PDF whose footer and metadata carry the
    SHA-256 of the canonical JSON of the sections it shows; tables are then not printed.
    """))
@click.option("--db", "db", metavar="PATH", help=_("The practice database (default: the profile's database)."))
@format_options(json=_("Print the sections as JSON."), csv=_("Print the sections as CSV (a 'section' column first)."))
@click.option("--certificate", metavar="NUMBER", help=_("Show one certificate."))
@click.option("--patient", metavar="NAME|MATRICULE",
              help=_("Show one patient, with their history: a matricule, or a name (whole words, accents and case ignored)."))
@click.option("--pdf", "pdf_path", metavar="FILE.pdf",
              help=_("Write the report as an A4 PDF (a new file, or '-' for stdout); stdout then gets only --json/--csv."))
@click.option("--matricule", type=click.Choice(["full", "masked"]),
              help=_("Matricules in full, or masked but for their last 4 digits. Default: masked in the PDF, full otherwise."))
@click.option("--year", type=click.IntRange(1900, 9999), metavar="YYYY",
              help=_("Also the IT flat rate of that year: prescriptions with reimbursed services, threshold, amount."))
@click.option("--due", is_flag=True,
              help=_("Only what needs doing soon (certificates expiring or used up, requests unanswered), one line each; "
                     "nothing when there is nothing (for cron)."))
@pass_context
def status_cmd(ctx: Context, db, fmt, certificate, patient, pdf_path, matricule, year, due):
    from datetime import date

    from cns_exchange.fsutil import new_output
    from cns_exchange.store import database
    from cns_exchange.store import status as status_mod

    certificate = certificate.strip() if certificate else certificate
    _check_options(fmt, certificate, patient, pdf_path, year, due)
    target = new_output("--pdf", pdf_path) if pdf_path and pdf_path != "-" else None  # before any work
    db_path = ctx.existing_database(db)
    today = date.today()
    conn = database.connect(db_path)
    try:
        if patient is not None:   # a name or a matricule (as pasted: '1974 0911 867 00 '): one patient, or exit 3
            patient = status_mod.find_patient(conn, patient, mask=matricule != "full")
        if due:
            sections = {"due": status_mod.due(conn, today, patient)}
        else:
            sections = status_mod.status(conn, today, certificate, patient, year)
        providers = status_mod.providers(conn)
    finally:
        conn.close()
    if pdf_path:
        _print_pdf(ctx, sections, providers, today, certificate, patient, matricule != "full", target, pdf_path)
        if not fmt:
            return
    if matricule == "masked":
        sections = status_mod.masked(sections)
    sections = status_mod.as_text(sections)   # amounts (cents) as the tables, JSON and CSV write them
    if fmt == "json":
        write_json(sections)
    elif fmt == "csv":
        from cns_exchange.rows.csvout import CsvWriter

        writer = CsvWriter(sys.stdout)
        for name, rows in sections.items():
            if rows:
                writer.writerow(["section", *rows[0].keys()])
                writer.writerows([name, *r.values()] for r in rows)
    elif due:
        for line in status_mod.due_lines(sections["due"]):   # the lines of --due: on stdout, for cron's mail
            sys.stdout.write(tr(line) + "\n")
    else:
        from cns_exchange import console

        console.print_tables(sections)


def _print_pdf(ctx: Context, sections, providers, today, certificate, patient, mask: bool, target, shown_as: str) -> None:
    """Write the status report as a PDF to ``target`` (None: stdout), named ``shown_as``."""
    from cns_exchange.clock import creation_time
    from cns_exchange.pdf import printing
    from cns_exchange.domain.identifiers import show_matricule
    from cns_exchange.pdf.report import StatusHeading
    from cns_exchange.store import status as status_mod

    shown = status_mod.masked(sections) if mask else sections
    heading = StatusHeading(providers, today, creation_time(None), status_mod.data_sha256(shown), certificate,
                            show_matricule(patient, mask) if patient else None, ctx.settings.practice)
    pages = printing.print_status(shown, heading, target, sys.stdout.buffer if target is None else None)
    summary(ctx, ngettext("status report, {n} page, data SHA-256 {sha256} → {target}",
                          "status report, {n} pages, data SHA-256 {sha256} → {target}", pages).format(
        n=pages, sha256=heading.data_sha256, target="stdout" if target is None else shown_as))


@click.command("certificates", help=_("""Print the new certificates as CSV for the practice's agenda: request reference,
    patient, matricule, certificate number, validity, sessions authorised, answered on.

    French Excel reads it as it is: ';' between columns, UTF-8 with a BOM.
    """))
@click.option("--since", metavar="YYYY-MM-DD", help=_("Certificates whose answer was imported on or after this day "
                                                      "(default: 7 days ago)."))
@click.option("--db", "db", metavar="PATH", help=_("The practice database (default: the profile's database)."))
@click.option("--matricule", type=click.Choice(["full", "masked"]), default="full", show_default=True,
              help=_("Matricules in full, or masked but for their last 4 digits."))
@pass_context
def certificates_cmd(ctx: Context, since, db, matricule):
    from datetime import date, timedelta

    from cns_exchange.clock import day
    from cns_exchange.domain.identifiers import show_matricule
    from cns_exchange.rows.csvout import CsvWriter, utf8_text
    from cns_exchange.store import database
    from cns_exchange.store import status as status_mod

    first = day("--since", since) if since else date.today() - timedelta(days=7)
    conn = database.connect(ctx.existing_database(db))
    try:
        rows = status_mod.new_certificates(conn, first)
    finally:
        conn.close()
    with utf8_text(sys.stdout.buffer) as text:  # (whatever the locale's encoding: the BOM says UTF-8)
        writer = CsvWriter(text, status_mod.NEW_CERTIFICATE_COLUMNS, french=True)  # (formula cells made harmless)
        writer.writeheader()
        writer.writedicts({**r, "matricule": show_matricule(r["matricule"], matricule == "masked")} for r in rows)


@click.command("report-sent", help=_("""Mark the final dietetic report of CERTIFICATE's treatment as sent to the prescriber:
    `cnsx status` no longer lists it among the reports due. Marking again changes nothing.
    """))
@click.argument("certificate", metavar="CERTIFICATE")
@click.option("--date", "sent_on", metavar="YYYY-MM-DD", help=_("The day the report was sent (default: today)."))
@click.option("--db", "db", metavar="PATH", help=_("The practice database (default: the profile's database)."))
@click.option("--wait", type=click.FloatRange(min=0), default=0, metavar="SECONDS", help=_("Wait for another run's lock."))
@pass_context
def report_sent_cmd(ctx: Context, certificate, sent_on, db, wait):
    from datetime import date, datetime, timezone

    from cns_exchange import console
    from cns_exchange.clock import day
    from cns_exchange.store import convention, database
    from cns_exchange.store.lock import run_lock

    certificate = certificate.strip()
    today = date.today()
    sent = day("--date", sent_on) if sent_on else today
    db_path = ctx.existing_database(db)
    with run_lock(db_path, wait):
        conn = database.connect(db_path)
        try:
            mark = convention.mark_final_report_sent(conn, certificate, sent, today, datetime.now(timezone.utc))
        finally:
            conn.close()
    if mark.already:
        if sent != mark.sent_on:
            console.print_line(_("{certificate}: final report already marked sent on {day}; nothing changed (not {asked})")
                               .format(certificate=certificate, day=mark.sent_on, asked=sent))
        else:
            console.print_line(_("{certificate}: final report already marked sent on {day}; nothing changed")
                               .format(certificate=certificate, day=mark.sent_on))
    else:
        summary(ctx, _("{certificate}: final report marked sent on {day}").format(certificate=certificate, day=mark.sent_on))
