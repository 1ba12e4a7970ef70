"""cnsx sandbox: the CNS simulated on a local drop box (docs/sandbox.md)."""

from __future__ import annotations

from pathlib import Path

import click

from cns_exchange.cli.context import Context, pass_context
from cns_exchange.errors import ExitCode, UsageError
from cns_exchange.i18n import _, ngettext


@click.command("sandbox", help=_("""Simulate the CNS on a local drop box: answer every deposited file (docs/sandbox.md).

    Each XML file put into the upload folder gets an acknowledgement, then answers (request
    file) or a payment statement (billing file), in the download folder, under the CNS's
    file names. Deterministic, and each file is answered once. Runs until SIGINT or SIGTERM
    (exit 0), or with --once answers what is there and exits.
    """))
@click.option("--root", metavar="DIR", help=_("The drop-box folder (default: the profile's file:// remote)."))
@click.option("--upload-dir", metavar="DIR",
              help=_("Folder the practice deposits into, relative to the root (default: the profile's upload_dir, else upload)."))
@click.option("--download-dir", metavar="DIR",
              help=_("Folder the answers go to, relative to the root (default: the profile's download_dir, else download)."))
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help=_("Numbering block of certificates and payment references."))
@click.option("--once", is_flag=True, help=_("Answer what is there, then exit."))
@click.option("--interval", type=click.FloatRange(min=0.1), default=5.0, show_default=True, metavar="SECONDS",
              help=_("Time between two looks at the upload folder."))
@click.option("--state", metavar="FILE", help=_("The sandbox's state (default: ROOT/.sandbox-state.json)."))
@click.option("--now", metavar="DATETIME",
              help=_("Fixed reception time (default: $SOURCE_DATE_EPOCH, else each file's header time + 5 min)."))
@pass_context
def sandbox_cmd(ctx: Context, root, upload_dir, download_dir, seed, once, interval, state, now):
    import signal
    import threading

    from cns_exchange import console
    from cns_exchange.clock import fixed_time
    from cns_exchange.transport.sandbox import STATE_NAME, Sandbox

    clock = fixed_time(now, "--now", "e.g. 2026-12-01T09:00:00+01:00")
    settings = ctx.settings
    if root is None:
        remote = settings.remote_url()
        if remote.scheme != "file":
            raise UsageError(_("the profile's remote is {remote}, not a local folder").format(remote=remote),
                             _("pass --root DIR (e.g. the folder the test SFTP server serves)"))
        root = remote.path
    base = Path(root)
    if not base.is_dir():
        raise UsageError(_("--root {root}: no such folder").format(root=root), _("create it first"))
    folders = []
    for option, value in (("--upload-dir", upload_dir or str(settings.upload_dir or "upload")),
                          ("--download-dir", download_dir or str(settings.download_dir or "download"))):
        folder = (base / value).resolve()
        if not folder.is_relative_to(base.resolve()):  # the sandbox only ever writes under its root
            raise UsageError(_("{option} {value}: outside the root {root}").format(option=option, value=value, root=root),
                             _("give a folder inside the root"))
        folders.append(folder)
    sandbox = Sandbox(folders[0], folders[1],
                      Path(state) if state else base / STATE_NAME, ctx.validator(),
                      seed=seed, now=clock, default_provider=settings.provider)

    def report(result) -> None:
        for name in result.recovered:
            console.print_line(_("published {name}, left pending by an interrupted run").format(name=name))
        for d in result.deposits:
            if d.note:
                console.print_line(_("{name}: not answered: {reason}").format(name=d.name, reason=d.note), style="yellow")
                continue
            if ctx.quiet:
                continue
            outputs = ", ".join(d.outputs)
            if not d.accepted:
                line = _("{name}: rejected → {outputs}").format(name=d.name, outputs=outputs)
            elif d.kind == "request":
                line = _("{name}: accepted → {outputs} ({certificates}, {refusals})").format(
                    name=d.name, outputs=outputs,
                    certificates=ngettext("{n} certificate", "{n} certificates", d.certificates).format(n=d.certificates),
                    refusals=ngettext("{n} refusal", "{n} refusals", d.refusals).format(n=d.refusals))
            elif d.kind == "billing":
                line = _("{name}: accepted → {outputs} ({paid}, {disputed})").format(
                    name=d.name, outputs=outputs,
                    paid=ngettext("{n} session paid", "{n} sessions paid", d.paid).format(n=d.paid),
                    disputed=ngettext("{n} disputed", "{n} disputed", d.disputed).format(n=d.disputed))
            else:
                line = _("{name}: accepted → {outputs}").format(name=d.name, outputs=outputs)
            console.print_line(line)

    if once:
        report(sandbox.run_once())
        return ExitCode.OK
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()  # the file being answered is finished first
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C interrupts at once

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        sandbox.serve(interval, stop, report)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return ExitCode.OK
