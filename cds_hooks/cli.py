"""`chartlight feedback report`: what clinicians did with the CDS cards. Registered on the main
CLI (plugin/cli.py) as a group; runs inside the app context like every command."""

from __future__ import annotations

import click
from flask import current_app
from rich.console import Console
from rich.table import Table

from cds_hooks.runtime import runtime_of


@click.group()
def feedback() -> None:
    """Feedback EHRs sent on chartlight's CDS Hooks cards."""


@feedback.command("report")
@click.option("--ehr", "issuer", metavar="ISS", default=None,
              help="Only the feedback of the EHR whose JWTs have this iss (default: every EHR, each apart).")
def feedback_report(issuer: str | None) -> None:
    """Cards accepted and overridden per EHR and service, with the override reasons given and
    their CDS Hooks 3.0 non-adherence categories."""
    report = runtime_of(current_app).feedback.report(issuer=issuer)
    console = Console()
    if not report:
        console.print("no feedback received yet" + (f" from {issuer}" if issuer else ""))
        return
    table = Table(title="CDS Hooks feedback")
    for column in ("EHR (iss)", "service", "cards", "accepted", "overridden", "with comment",
                   "override reasons", "categories"):
        table.add_column(column)
    for row in report:
        reasons = "\n".join(f"{reason}: {count}" for reason, count in row.reasons) or "-"
        categories = "\n".join(f"{category}: {count}" for category, count in row.categories) or "-"
        table.add_row(row.issuer, row.service_id, str(row.cards), str(row.accepted), str(row.overridden),
                      str(row.with_comment), reasons, categories)
    console.print(table)
