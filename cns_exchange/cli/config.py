"""cnsx config: write the starter configuration."""

from __future__ import annotations

import click

from cns_exchange.cli.context import Context, pass_context
from cns_exchange.i18n import _


@click.group("config", help=_("Write or show the configuration."))
def config_group():
    """The group of the config commands."""


@config_group.command("init", help=_("Write a commented starter config file (0600); never replaces an existing one."))
@click.option("--provider", default="000000", metavar="CODE", help=_("The practice's provider code to write in."))
@pass_context
def config_init_cmd(ctx: Context, provider):
    from cns_exchange import console
    from cns_exchange.config import config_file, write_starter_config

    path = config_file(ctx.config_path)
    write_starter_config(path, provider)
    console.print_line(_("wrote {file}").format(file=path))
