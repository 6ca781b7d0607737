"""Which input versions the FHIR record already holds chartlight results of, and from which
pipeline: the record's own answer to "was this analysed?", whatever a job store says (a fresh job
database, a second instance or another worker's database all read the same record). Pure.

A result names its input by `derivedFrom` (or chartlight's derived-from extension, or
`context.related`), without a version; the Provenance of the write that created or last changed it
names the input at its exact version (`entity.what` = "DocumentReference/7/_history/2") and the
pipeline in its activity text (docs/fhir-profile.md). Together they say which version of which
input a result is about. Results of an older version say nothing about the current one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from fhir_mappers import activity_pipeline

Resource = dict[str, Any]
# The resource types chartlight writes results as (Device and Provenance are not results).
RESULT_TYPES = ("Observation", "DiagnosticReport", "DocumentReference")


@dataclass(frozen=True)
class ResultOnRecord:
    """One chartlight result as the record holds it."""

    reference: str  # "Observation/5"
    source: str  # the analysed input, "DocumentReference/7"; "" when the result does not say
    signed: bool  # a clinician decided: approved or edited (the CDS scan counts a rejection too)
    awaiting: bool  # still preliminary


@dataclass(frozen=True)
class Recorded:
    """chartlight's results on the record for one input version."""

    results: int
    signed: int  # decided by a clinician (approved, edited; rejected where the caller counts it)
    awaiting: int  # still preliminary
    pipelines: frozenset[str] = frozenset()  # named by the writes' Provenances

    @property
    def text(self) -> str:
        parts = [f"{self.results} result(s) on the record"]
        if self.signed:
            parts.append(f"{self.signed} signed")
        if self.awaiting:
            parts.append(f"{self.awaiting} awaiting review")
        return ", ".join(parts)


def analysed_versions(results: Iterable[ResultOnRecord],
                      provenances: Iterable[Resource]) -> dict[tuple[str, str], Recorded]:
    """(input reference, version) -> what is recorded for it, for each input version that the
    record holds results of. `provenances` are the Provenances targeting those results."""
    writes_by_target: dict[str, list[tuple[set[str], str]]] = {}
    for provenance in provenances:
        sources = {str(e.get("what", {}).get("reference", "")) for e in provenance.get("entity", [])
                   if e.get("role") in ("source", "derivation")}
        pipeline = activity_pipeline(provenance)
        for target in provenance.get("target", []):
            reference = str(target.get("reference", "")).split("/_history/")[0]
            writes_by_target.setdefault(_local(reference), []).append((sources, pipeline))
    tallies: dict[tuple[str, str], list[int]] = {}
    pipelines: dict[tuple[str, str], set[str]] = {}
    for result in results:
        if not result.source:
            continue
        seen: set[tuple[str, str]] = set()  # a result counts once per input version
        for sources, pipeline in writes_by_target.get(_local(result.reference), ()):
            for versioned in sources:
                reference, _, version = versioned.partition("/_history/")
                if _local(reference) != result.source or not version:
                    continue
                key = (result.source, version)
                if pipeline:
                    pipelines.setdefault(key, set()).add(pipeline)
                if key in seen:
                    continue
                seen.add(key)
                tally = tallies.setdefault(key, [0, 0, 0])
                tally[0] += 1
                tally[1] += result.signed
                tally[2] += result.awaiting
    return {key: Recorded(results, signed, awaiting, frozenset(pipelines.get(key, ())))
            for key, (results, signed, awaiting) in tallies.items()}


def analysed_by(recorded: Mapping[tuple[str, str], Recorded], pipeline: str,
                source: Resource) -> bool:
    """Whether the record holds results of `pipeline` for `source` (a FHIR resource) at its
    current version. The pipeline's version is not compared, as a job's key leaves it out too:
    a new prompt or model version updates results when an input is analysed again, it does not
    by itself queue every input of every patient again."""
    reference = f"{source.get('resourceType')}/{source.get('id')}"
    version = str((source.get("meta") or {}).get("versionId") or "")
    found = recorded.get((reference, version))
    return found is not None and pipeline in found.pipelines


def _local(reference: str) -> str:
    """"Observation/5" from an absolute or relative reference."""
    parts = reference.rstrip("/").split("/")
    return "/".join(parts[-2:]) if len(parts) >= 2 else reference
