"""The patient summary as a patient-view card. Pure: the newest patient-summary
DocumentReference from the prefetch in, one card out — never a model call (a summary job made
it before; the analysis scan queues a refresh when the chart has changed since,
plugin.pipelines.summary.latest).
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from cds_hooks.cards import TEST_PREFIX, CardContext, card_uuid, summary_line
from cds_hooks.models import Card, Link, Source
from fhir_mappers import TEST_WEIGHTS_DISPLAY
from fhir_mappers.systems import CS_DOCUMENT_KIND

Resource = dict[str, Any]
DETAIL_LIMIT = 6000  # characters of the summary shown in the card; the app shows all of it


def is_summary(resource: Resource) -> bool:
    return resource.get("resourceType") == "DocumentReference" and any(
        c.get("system") == CS_DOCUMENT_KIND and c.get("code") == "patient-summary"
        for c in (resource.get("type") or {}).get("coding", []))


def newest_summary(documents: list[Resource]) -> Resource | None:
    summaries = [d for d in documents if is_summary(d)]
    return max(summaries, key=lambda d: str((d.get("meta") or {}).get("lastUpdated", "")), default=None)


def summary_card(document: Resource, context: CardContext) -> Card:
    """The summary's text (markdown, citations as resource references) with its review state."""
    markdown, details = _contents(document)
    test = any(t.get("code") == "test-weights" for t in (document.get("meta") or {}).get("tag", []))
    kept = len(details.get("sentences", []))
    withheld = len(details.get("withheld", []))
    status = document.get("docStatus", "")
    state = "signed off" if status in ("final", "amended") else "preliminary, awaiting review"
    made = str((document.get("meta") or {}).get("lastUpdated", ""))[:10]
    headline = f"AI patient summary ({state}): {kept} cited statement{'s' if kept != 1 else ''}"
    if made:
        headline += f", updated {made}"
    lines = [f"**{TEST_WEIGHTS_DISPLAY}.**", ""] if test else []
    text = markdown if len(markdown) <= DETAIL_LIMIT else markdown[:DETAIL_LIMIT].rsplit("\n", 1)[0] + "\n…"
    lines.append(text.strip())
    if withheld:
        lines += ["", f"{withheld} statement(s) of the model were withheld: not supported by the chart."]
    reference = f"DocumentReference/{document.get('id', '')}"
    app_context = json.dumps({"patient": context.patient_id, "view": "summary", "results": [reference]},
                             separators=(",", ":"))
    return Card(
        uuid=card_uuid(context, f"summary|{reference}"),
        summary=summary_line((TEST_PREFIX if test else "") + headline),
        detail="\n".join(lines),
        indicator="info",
        source=Source(label="chartlight AI patient summary" + (" (TEST MODEL)" if test else "")),
        links=[Link(label="Open the summary in chartlight", url=context.app_launch_url, type="smart",
                    appContext=app_context)],
    )


def _contents(document: Resource) -> tuple[str, dict[str, Any]]:
    markdown, details = "", {}
    for content in document.get("content", []):
        attachment = content.get("attachment") or {}
        try:
            data = base64.b64decode(attachment.get("data", ""), validate=True)
        except (binascii.Error, ValueError):
            continue
        kind = str(attachment.get("contentType", ""))
        if kind.startswith("text/markdown"):
            markdown = data.decode("utf-8", "replace")
        elif kind.startswith("application/json"):
            try:
                parsed = json.loads(data)
            except ValueError:
                continue
            details = parsed if isinstance(parsed, dict) else {}
    return markdown, details
