"""The chart digest: a patient's FHIR record as numbered, cited lines, built without I/O.

Each line says one thing the chart holds (an active problem, a medication, an allergy, the latest
value of a vital sign or lab with its trend, a recent report or document) and carries the
`ResourceType/id/_history/v` of every resource it was read from. chartlight's own AI results
(meta.security AIAST) are marked as such, with their review status, so a summary never passes
a preliminary model output off as a clinician's. Lines are trimmed to a token budget: the
problem list, medications and allergies first, then abnormal and recent results, then the rest
by date.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from fhir_mappers.systems import CS_DOCUMENT_KIND, V3_OBSERVATION_VALUE

Resource = dict[str, Any]
AIAST_SYSTEM = V3_OBSERVATION_VALUE
# Our own written kinds that are never chart content: a summary does not summarise summaries.
EXCLUDED_KINDS = frozenset({"patient-summary", "chart-answer"})
# Sections in the order a problem-oriented reader wants them, with how strongly each is kept.
SECTIONS = ("problem", "allergy", "medication", "vital", "lab", "report", "document")
_PRIORITY = {"problem": 3, "allergy": 3, "medication": 3, "vital": 2, "lab": 2, "report": 1,
             "document": 1}
TREND_POINTS = 3  # earlier values shown beside the latest
_TEXT_CAP = 240  # a report conclusion or document description longer than this is cut
_ACTIVE_MEDS = frozenset({"active", "on-hold", "intended", "unknown"})
_INACTIVE_CONDITIONS = frozenset({"inactive", "remission", "resolved"})


@dataclass(frozen=True)
class DigestLine:
    """One fact of the chart: `refs` are the versioned references it was read from (the latest
    first), `when` the clinical date it describes, `abnormal` whether the chart flagged it."""

    section: str
    text: str
    refs: tuple[str, ...]
    when: date | None = None
    abnormal: bool = False
    own_ai: bool = False


@dataclass(frozen=True)
class NumberedLine:
    id: str  # "L3": what the model cites
    line: DigestLine

    def render(self) -> str:
        return f"{self.id} [{', '.join(self.line.refs)}] {self.line.text}"


@dataclass(frozen=True)
class Digest:
    """The lines kept (numbered in section order), how many tokens they take, and what was cut."""

    lines: tuple[NumberedLine, ...]
    tokens: int
    budget: int
    counter: str  # the tokenizer that measured it
    total_lines: int
    total_tokens: int  # before trimming
    fingerprint: str  # changes whenever any resource read changes version
    last_updated: str  # the newest meta.lastUpdated read: later changes mean a stale summary

    @property
    def text(self) -> str:
        return render(self.lines)

    def by_id(self) -> dict[str, NumberedLine]:
        return {n.id: n for n in self.lines}


def render(lines: Iterable[NumberedLine]) -> str:
    return "".join(n.render() + "\n" for n in lines)


def versioned(resource: Resource) -> str:
    version = (resource.get("meta") or {}).get("versionId") or "1"
    return f"{resource['resourceType']}/{resource['id']}/_history/{version}"


def chart_fingerprint(resources: Iterable[Resource]) -> str:
    """A hash of every resource's versioned reference: same chart, same fingerprint."""
    refs = sorted(versioned(r) for r in resources if not is_excluded(r))
    return hashlib.sha256("\n".join(refs).encode()).hexdigest()[:32]


def last_updated(resources: Iterable[Resource]) -> str:
    """The latest meta.lastUpdated of the chart's resources (instants compared as written: the
    server writes them all in one format), "" when none carries one."""
    stamps = [str((r.get("meta") or {}).get("lastUpdated") or "") for r in resources if not is_excluded(r)]
    return max(stamps, default="")


def is_excluded(resource: Resource) -> bool:
    if resource.get("resourceType") != "DocumentReference":
        return False  # only our own documents are left out (Encounter.type, for one, is a list)
    concept = resource.get("type")
    codings = concept.get("coding") or [] if isinstance(concept, dict) else []
    return any(c.get("system") == CS_DOCUMENT_KIND and c.get("code") in EXCLUDED_KINDS for c in codings)


def digest_lines(resources: Iterable[Resource]) -> list[DigestLine]:
    """Every line the chart gives, unsorted and untrimmed. Pure."""
    by_type: dict[str, list[Resource]] = {}
    for resource in resources:
        if not is_excluded(resource):
            by_type.setdefault(resource.get("resourceType", ""), []).append(resource)
    lines: list[DigestLine] = []
    lines += [x for r in by_type.get("Condition", []) if (x := _condition(r))]
    lines += [x for r in by_type.get("AllergyIntolerance", []) if (x := _allergy(r))]
    for kind in ("MedicationRequest", "MedicationStatement"):
        lines += [x for r in by_type.get(kind, []) if (x := _medication(r))]
    lines += _observation_lines(by_type.get("Observation", []))
    lines += [_report(r) for r in by_type.get("DiagnosticReport", [])]
    lines += [_document(r) for r in by_type.get("DocumentReference", [])]
    return lines


def build_digest(resources: list[Resource], *, budget: int, count_tokens: Callable[[str], int],
                 counter: str, today: date) -> Digest:
    """The digest of `resources` within `budget` tokens. Kept first: problems, allergies and
    medications, then flagged results, then by date (newest first); `today` sets recency. Pure."""
    lines = digest_lines(resources)
    costs = [count_tokens(f"L{len(lines)} [{', '.join(x.refs)}] {x.text}\n") for x in lines]
    order = sorted(range(len(lines)), key=lambda i: _rank(lines[i], today))
    kept, used = set(), 0
    for i in order:
        if used + costs[i] > budget:
            continue  # a shorter line further down may still fit
        kept.add(i)
        used += costs[i]
    chosen = sorted(kept, key=lambda i: (SECTIONS.index(lines[i].section),
                                         -(lines[i].when or date.min).toordinal(), lines[i].text))
    numbered = tuple(NumberedLine(f"L{n}", lines[i]) for n, i in enumerate(chosen, start=1))
    return Digest(numbered, count_tokens(render(numbered)) if numbered else 0, budget, counter,
                  len(lines), sum(costs), chart_fingerprint(resources), last_updated(resources))


def _rank(line: DigestLine, today: date) -> tuple[int, int, int, str]:
    age = (today - line.when).days if line.when else 10**6
    return (-_PRIORITY[line.section], 0 if line.abnormal else 1, age, line.text)


# ---- one line per resource -------------------------------------------------------------------


def _condition(r: Resource) -> DigestLine | None:
    status = _code(r.get("clinicalStatus"))
    if status in _INACTIVE_CONDITIONS or _code(r.get("verificationStatus")) in {"refuted",
                                                                               "entered-in-error"}:
        return None
    when = _date(r.get("onsetDateTime") or r.get("recordedDate"))
    since = f", since {when.isoformat()}" if when else ""
    return DigestLine("problem", f"{_label(r)}Problem ({status or 'status not recorded'}): "
                      f"{_concept(r.get('code'))}{since}", (versioned(r),), when, own_ai=_is_ai(r))


def _allergy(r: Resource) -> DigestLine | None:
    if _code(r.get("clinicalStatus")) in {"inactive", "resolved"}:
        return None
    reactions = sorted({_concept(m) for x in r.get("reaction", []) for m in x.get("manifestation", [])})
    reaction = f"; reaction: {', '.join(reactions)}" if reactions else ""
    criticality = f" ({r['criticality']} criticality)" if r.get("criticality") else ""
    return DigestLine("allergy", f"{_label(r)}Allergy{criticality}: {_concept(r.get('code'))}{reaction}",
                      (versioned(r),), _date(r.get("recordedDate")), own_ai=_is_ai(r))


def _medication(r: Resource) -> DigestLine | None:
    status = r.get("status", "")
    if status not in _ACTIVE_MEDS:
        return None
    name = _concept(r.get("medicationCodeableConcept")) if r.get("medicationCodeableConcept") else \
        (r.get("medicationReference") or {}).get("display", "medication not named")
    dosage = r.get("dosageInstruction") or r.get("dosage") or []
    how = f"; {dosage[0]['text']}" if dosage and dosage[0].get("text") else ""
    when = _date(r.get("authoredOn") or r.get("effectiveDateTime")
                 or (r.get("effectivePeriod") or {}).get("start") or r.get("dateAsserted"))
    started = f", from {when.isoformat()}" if when else ""
    kind = "Medication order" if r["resourceType"] == "MedicationRequest" else "Medication taken"
    return DigestLine("medication", f"{_label(r)}{kind} ({status}): {name}{how}{started}",
                      (versioned(r),), when, own_ai=_is_ai(r))


def _observation_lines(observations: list[Resource]) -> list[DigestLine]:
    """One line per test (code): the latest value and up to TREND_POINTS earlier ones."""
    series: dict[str, list[tuple[date, Resource]]] = {}
    for r in observations:
        if r.get("status") in {"cancelled", "entered-in-error"}:
            continue
        when = _date(r.get("effectiveDateTime") or (r.get("effectivePeriod") or {}).get("start")
                     or r.get("issued"))
        if when is None or _value(r) is None:
            continue
        key = _code_key(r.get("code")) + ("|ai" if _is_ai(r) else "")
        series.setdefault(key, []).append((when, r))
    lines = []
    for points in series.values():
        points.sort(key=lambda p: (p[0], p[1]["id"]), reverse=True)
        (when, latest), earlier = points[0], points[1:TREND_POINTS + 1]
        section = "vital" if _category(latest) == "vital-signs" else "lab"
        flag = _code(latest.get("interpretation", [{}])[0]) if latest.get("interpretation") else ""
        text = f"{_concept(latest.get('code'))} {_value(latest)} on {when.isoformat()}"
        if flag:
            text += f" (flagged {flag})"
        if earlier:
            text += "; earlier " + ", ".join(f"{_value(r)} on {d.isoformat()}" for d, r in earlier)
            text += f"; trend {_trend(latest, earlier[0][1])}"
        status = latest.get("status", "")
        label = _label(latest)
        prefix = "Vital sign" if section == "vital" else "Lab"
        lines.append(DigestLine(section, f"{label}{prefix} ({status}): {text}",
                                tuple(versioned(r) for _, r in [points[0], *earlier]), when,
                                abnormal=flag not in ("", "N"), own_ai=_is_ai(latest)))
    return lines


def _report(r: Resource) -> DigestLine:
    when = _date(r.get("effectiveDateTime") or (r.get("effectivePeriod") or {}).get("start")
                 or r.get("issued"))
    on = f" on {when.isoformat()}" if when else ""
    conclusion = f": {_cut(r['conclusion'])}" if r.get("conclusion") else ""
    return DigestLine("report", f"{_label(r)}Report ({r.get('status', '')}): {_concept(r.get('code'))}"
                      f"{on}{conclusion}", (versioned(r),), when, own_ai=_is_ai(r))


def _document(r: Resource) -> DigestLine:
    when = _date(r.get("date") or (r.get("context") or {}).get("period", {}).get("start"))
    on = f" on {when.isoformat()}" if when else ""
    about = f": {_cut(r['description'])}" if r.get("description") else ""
    status = r.get("docStatus") or r.get("status", "")
    return DigestLine("document", f"{_label(r)}Document ({status}): {_concept(r.get('type'))}{on}{about}",
                      (versioned(r),), when, own_ai=_is_ai(r))


# ---- reading FHIR datatypes ----------------------------------------------------------------


def _is_ai(r: Resource) -> bool:
    return any(s.get("system") == AIAST_SYSTEM and s.get("code") == "AIAST"
               for s in (r.get("meta") or {}).get("security", []))


def _label(r: Resource) -> str:
    """How chartlight's own results are told apart (docs/fhir-profile.md: AIAST)."""
    if not _is_ai(r):
        return ""
    status = r.get("docStatus") or r.get("status", "")
    reviewed = "reviewed" if status in {"final", "amended", "corrected"} else "not reviewed"
    return f"[chartlight AI result, {status or 'status unknown'}, {reviewed}] "


def _concept(concept: Any) -> str:
    if not isinstance(concept, dict):
        return "not named"
    if concept.get("text"):
        return str(concept["text"])
    for c in concept.get("coding", []):
        if c.get("display"):
            return str(c["display"])
    codes = [str(c.get("code")) for c in concept.get("coding", []) if c.get("code")]
    return codes[0] if codes else "not named"


def _code(concept: Any) -> str:
    if not isinstance(concept, dict):
        return ""
    return next((str(c["code"]) for c in concept.get("coding", []) if c.get("code")), "")


def _code_key(concept: Any) -> str:
    codings = (concept or {}).get("coding", []) if isinstance(concept, dict) else []
    for c in codings:
        if c.get("system") == "http://loinc.org" and c.get("code"):
            return "loinc|" + str(c["code"])
    return "text|" + _concept(concept).lower()


def _category(r: Resource) -> str:
    for category in r.get("category", []):
        for c in category.get("coding", []):
            if c.get("code"):
                return str(c["code"])
    return ""


def _quantity(q: Any) -> str | None:
    if not isinstance(q, dict) or q.get("value") is None:
        return None
    unit = q.get("unit") or q.get("code") or ""
    comparator = q.get("comparator", "")
    return f"{comparator}{q['value']} {unit}".strip()


def _value(r: Resource) -> str | None:
    for key in ("valueQuantity",):
        if (text := _quantity(r.get(key))) is not None:
            return text
    if r.get("valueCodeableConcept"):
        return _concept(r["valueCodeableConcept"])
    for key in ("valueString", "valueInteger", "valueBoolean"):
        if r.get(key) is not None:
            return str(r[key])
    parts = [(_concept(c.get("code")), q) for c in r.get("component", [])
             if (q := _quantity(c.get("valueQuantity"))) is not None]
    if not parts:
        return None
    units = {q.split(" ", 1)[1] if " " in q else "" for _, q in parts}
    if len(parts) == 2 and len(units) == 1:  # blood pressure: 128/82 mm[Hg]
        return "/".join(q.split(" ", 1)[0] for _, q in parts) + (f" {units.pop()}" if units else "")
    return "; ".join(f"{name} {q}" for name, q in parts)


def _number(r: Resource) -> float | None:
    q = r.get("valueQuantity") or next((c.get("valueQuantity") for c in r.get("component", [])), None)
    value = (q or {}).get("value")
    return float(value) if isinstance(value, int | float) else None


def _trend(latest: Resource, previous: Resource) -> str:
    now, before = _number(latest), _number(previous)
    if now is None or before is None:
        return "not numeric"
    return "up" if now > before else "down" if now < before else "unchanged"


def _date(value: Any) -> date | None:
    if not isinstance(value, str) or len(value) < 4:
        return None
    try:
        if len(value) == 4:
            return date(int(value), 1, 1)
        if len(value) == 7:
            return date(int(value[:4]), int(value[5:7]), 1)
        return datetime.fromisoformat(value.replace("Z", "+00:00")).date() if "T" in value \
            else date.fromisoformat(value[:10])
    except ValueError:
        return None


def _cut(text: str) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= _TEXT_CAP else flat[:_TEXT_CAP - 1] + "…"
