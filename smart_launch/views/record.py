"""Where an input's analysis stands according to the record itself: chartlight's results on the
FHIR server for the input's current version, whatever this instance's job store says (a fresh job
database, a second instance or another worker's database all see the same record). Pure.

A result names its input by `derivedFrom` (or chartlight's derived-from extension), without a
version; the Provenance of the write that created it names the input at its exact version
(`entity.what` = "DocumentReference/7/_history/2", docs/fhir-profile.md). Together they say which
version of which input a result is about. Results of an older version say nothing about the
current one."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .results import ReviewItem, source_of

Resource = dict[str, Any]
SIGNED_STATES = frozenset({"approved", "edited"})


@dataclass(frozen=True)
class Recorded:
    """chartlight's results on the record for one input version."""

    results: int
    signed: int  # approved or edited by a clinician (final / amended)
    awaiting: int  # still preliminary

    @property
    def text(self) -> str:
        parts = [f"{self.results} result(s) on the record"]
        if self.signed:
            parts.append(f"{self.signed} signed")
        if self.awaiting:
            parts.append(f"{self.awaiting} awaiting review")
        return ", ".join(parts)


def analysed_versions(items: Iterable[ReviewItem],
                      provenances: Iterable[Resource]) -> dict[tuple[str, str], Recorded]:
    """(input reference, version) -> what is recorded for it, for each input version that the
    record holds results of. `provenances` are the Provenances targeting those results."""
    versions_by_target: dict[str, set[str]] = {}
    for provenance in provenances:
        sources = [str(e.get("what", {}).get("reference", "")) for e in provenance.get("entity", [])
                   if e.get("role") in ("source", "derivation")]
        for target in provenance.get("target", []):
            reference = str(target.get("reference", "")).split("/_history/")[0]
            versions_by_target.setdefault(_local(reference), set()).update(sources)
    counts: dict[tuple[str, str], list[int]] = {}
    for item in items:
        source = source_of(item)
        if not source:
            continue
        for versioned in versions_by_target.get(_local(item.reference), ()):
            reference, _, version = versioned.partition("/_history/")
            if _local(reference) == source and version:
                tally = counts.setdefault((source, version), [0, 0, 0])
                tally[0] += 1
                tally[1] += item.state in SIGNED_STATES
                tally[2] += item.state == "awaiting review"
    return {key: Recorded(*tally) for key, tally in counts.items()}


def _local(reference: str) -> str:
    """"Observation/5" from an absolute or relative reference."""
    parts = reference.rstrip("/").split("/")
    return "/".join(parts[-2:]) if len(parts) >= 2 else reference
