"""Where an input's analysis stands according to the record itself, for the app's input list:
the app's review items read through plugin.jobs.on_record (shared with the CDS source scanner, which
leaves inputs already analysed on the record alone). Pure."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from plugin.jobs.on_record import Recorded, ResultOnRecord
from plugin.jobs.on_record import analysed_versions as analysed_on_record

from .results import ReviewItem, source_of

Resource = dict[str, Any]
SIGNED_STATES = frozenset({"approved", "edited"})


def analysed_versions(items: Iterable[ReviewItem],
                      provenances: Iterable[Resource]) -> dict[tuple[str, str], Recorded]:
    """(input reference, version) -> what is recorded for it, for each input version that the
    record holds results of. `provenances` are the Provenances targeting those results."""
    return analysed_on_record((ResultOnRecord(item.reference, source_of(item), item.state in SIGNED_STATES,
                                              item.state == "awaiting review") for item in items),
                              provenances)
