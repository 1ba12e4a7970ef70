"""cnsx build-request and cnsx build-invoice: the practice's rows -> a checked, validated document."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from cns_exchange.cli.context import Context, pass_context, treatment_history
from cns_exchange.cli.output import billed, options
from cns_exchange.errors import InputError, UsageError
from cns_exchange.i18n import _, ngettext

build_options = options(
    click.argument("input", metavar="INPUT"),
    click.option("--input-format", type=click.Choice(["csv", "json", "ndjson"]), help=_("Input format (default: from the extension; '-' is sniffed).")),
    click.option("--encoding", metavar="NAME", help=_("Text encoding of the input (default: the config's encoding, else detected: UTF-8, else Windows-1252).")),
    click.option("--strict", is_flag=True, help=_("Refuse columns cnsx does not use (IN002) instead of ignoring them with a warning (IN017).")),
    click.option("-o", "--output", metavar="PATH", help=_("Output file, or a folder to get the conventional name (default: stdout).")),
    click.option("--provider", metavar="CODE", help=_("The practice's CNS provider code (default: from the config).")),
    click.option("--sequence", type=click.IntRange(1, 999999), help=_("File sequence number (default: next free one in the output folder, else 1).")),
    click.option("--schema-version", metavar="VERSION", help=_("Schema version to write (default: the one in force on the creation date).")),
    click.option("--created", metavar="DATETIME", help=_("Creation time written in the header (default: now, or $SOURCE_DATE_EPOCH).")),
)


def _open_input(name: str):
    """Open an input path, or stdin for '-' (only then: never implicitly): (stream, name
    shown, the folder relative paths in the rows start from)."""
    if name == "-":
        from cns_exchange.rows.records import peekable

        return peekable(sys.stdin.buffer), "<stdin>", Path.cwd()
    path = Path(name)
    try:
        stream = open(path, "rb")
    except OSError as exc:
        raise InputError(_("{file}: cannot open ({error})").format(file=name, error=exc.strerror), _("check the path")) from None
    return stream, name, path.resolve().parent


def _destination(output: str | None):
    """Where the document goes: stdout, a new file, or a folder (its conventional name)."""
    from cns_exchange.billing.build import Destination
    from cns_exchange.fsutil import new_output

    if output is None or output == "-":
        return Destination(stream=sys.stdout.buffer)
    return Destination(path=new_output("-o", output, into_folder=True))


def _reading(ctx: Context, encoding: str | None, strict: bool):
    """How to read the input: --encoding, else the config's encoding (exit 4 if unknown), else
    detected; the config's [columns]; --strict."""
    from cns_exchange.errors import ConfigError
    from cns_exchange.rows.records import Reading, canonical_encoding

    configured = ctx.settings.encoding
    if encoding is None and configured and configured != "detect":
        try:
            canonical_encoding(configured)
        except UsageError as exc:
            raise ConfigError(_("encoding in the config: {error}").format(error=exc.message),
                              _("e.g. encoding = \"cp1252\", or leave it out to detect")) from None
        encoding = configured
    return Reading(encoding, ctx.settings.columns or {}, strict)


def _report_build(ctx: Context, result, what: str) -> None:
    from cns_exchange import console

    if result.warnings:
        console.print_issues(result.warnings)
    if ctx.quiet:
        return
    where = str(result.path) if result.path else "stdout"
    console.print_line(_("{what} → {where} (sha256 {sha256}…)").format(what=what, where=where, sha256=result.sha256[:12]))


@click.command("build-request", help=_("""Build a request file for certificates of coverage from INPUT (CSV, JSON or NDJSON; '-' = stdin).

    Columns: request_ref, matricule, last_name, first_name, prescriber_code, prescription_date,
    pathology_codes (';'-separated), treatment (initial|extension), prescription_pdf (path,
    relative to INPUT's folder; with --convert-images also JPEG/PNG scans, several joined by
    ';'); optional requested_acts (e.g. ZD11:1;ZD12:1;ZD13:4).
    """))
@build_options
@click.option("--convert-images", is_flag=True,
              help=_("Turn JPEG/PNG prescription scans into a PDF (lossless; 'a.jpg;b.jpg' makes one PDF of two pages). Needs -o."))
@click.option("--db", "db", metavar="PATH", help=_("Practice database whose earlier treatments the requests are checked against (default: the profile's, if it exists)."))
@pass_context
def build_request_cmd(ctx: Context, input, input_format, encoding, strict, output, provider, sequence, schema_version,
                      created, convert_images, db):
    from cns_exchange.billing import build
    from cns_exchange.clock import creation_time
    from cns_exchange.pdf.prescriptions import PrescriptionFiles
    from cns_exchange.rows import records

    created_at = creation_time(created)
    destination = _destination(output)
    if convert_images and destination.path is None:
        raise UsageError(_("--convert-images needs -o FOLDER or -o FILE: the converted PDFs are written beside the request file"),
                         _("e.g. -o outbox/"))
    codes, nomenclature, registry = ctx.tables()
    header, name = build.resolve_header(registry, provider or ctx.settings.provider, created_at, schema_version,
                                        sequence, destination, "request")
    stream, source_name, base_dir = _open_input(input)
    conn = ctx.practice_database(db)
    try:
        with PrescriptionFiles(ctx.settings.max_pdf_bytes, convert_images) as prescriptions, stream:
            fmt = records.detect_format(input, stream, input_format)
            result = build.build_requests(stream, source_name, fmt, codes, base_dir, header, name, destination,
                                          ctx.validator(), _reading(ctx, encoding, strict), prescriptions,
                                          treatment_history(conn))
    finally:
        if conn is not None:
            conn.close()
    _report_build(ctx, result, ngettext("{n} request", "{n} requests", result.items).format(n=result.items))


@click.command("build-invoice", help=_("""Build a billing file (fee notes, third-party payment) from INPUT (CSV, JSON or NDJSON; '-' = stdin).

    Columns: certificate_number, matricule, session_date, act_code; optional executing_provider
    (default: the billing provider), last_name, first_name, prescription_date (default: the
    certificate's request in the database). One fee note per certificate; each session is priced
    with the tariff table in force on its date, the patient share by the age on the prescription date.
    """))
@build_options
@click.option("--db", "db", metavar="PATH", help=_("Practice database whose certificates the sessions are checked against."))
@click.option("--no-certificate-check", is_flag=True, help=_("Do not check sessions against the imported certificates."))
@click.option("--rebill", metavar="REASON", help=_("Bill again sessions billed already (CRT06), for this reason (kept in the database)."))
@pass_context
def build_invoice_cmd(ctx: Context, input, input_format, encoding, strict, output, provider, sequence, schema_version,
                      created, db, no_certificate_check, rebill):
    from cns_exchange.billing import build
    from cns_exchange.clock import creation_time
    from cns_exchange.rows import records

    created_at = creation_time(created)
    destination = _destination(output)
    codes, nomenclature, registry = ctx.tables()
    provider = provider or ctx.settings.provider
    header, name = build.resolve_header(registry, provider, created_at, schema_version, sequence, destination, "billing")
    book = None
    if rebill is not None and not rebill.strip():
        raise UsageError(_("--rebill needs a reason"), _("e.g. --rebill 'CNS letter of 2026-12-01: file lost'"))
    conn = ctx.practice_database(db)
    if conn is not None:
        from cns_exchange.store.database import has_certificates

        # Sessions billed already are always looked for; certificates once some are imported.
        certificates = not no_certificate_check and (bool(db) or has_certificates(conn))
        book = build.CertificateBook(conn, certificates, rebill.strip() if rebill else None)
    elif rebill is not None:
        raise UsageError(_("--rebill: there is no practice database to say what was billed"), _("pass --db PATH"))
    stream, source_name, _unused = _open_input(input)
    try:
        with stream:
            fmt = records.detect_format(input, stream, input_format)
            result = build.build_billing(stream, source_name, fmt, codes, nomenclature, header, name, destination,
                                         ctx.validator(), _reading(ctx, encoding, strict), book)
    finally:
        if conn is not None:
            conn.close()
    _report_build(ctx, result, billed(result.items, result.sessions, result.gross, result.cns))

