"""Finding the prior study a longitudinal comparison reads against: among the patient's
ImagingStudy resources, the newest one that started before the current study and shows the same
modality and body part. Pure: the caller fetches the studies.

Modality is compared on ImagingStudy.modality and series[].modality (CR and DX count as one: both
are projection radiographs); body part on series[].bodySite (code, else display). A study that
names no body part, or has no start time, is never taken as comparable: better no comparison
than one against the wrong anatomy.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

# Modalities that image the same way, so a prior of one compares with a current of another.
_SAME_KIND = {"DX": "CR"}


def find_prior_study(current: dict[str, Any], studies: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The newest study in `studies` comparable with `current` and started before it."""
    started = study_started(current)
    modalities, sites = study_modalities(current), study_body_sites(current)
    if started is None or not modalities or not sites:
        return None
    candidates = []
    for study in studies:
        if study.get("id") == current.get("id") or _uids(study) & _uids(current):
            continue
        when = study_started(study)
        if when is None or _comparable_time(when, started) >= _comparable_time(started, started):
            continue
        if study_modalities(study) & modalities and study_body_sites(study) & sites:
            candidates.append((_comparable_time(when, started), study))
    if not candidates:
        return None
    return max(candidates, key=lambda pair: pair[0])[1]


def study_started(study: dict[str, Any]) -> datetime | None:
    value = study.get("started")
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def study_modalities(study: dict[str, Any]) -> set[str]:
    codes = [c.get("code") for c in study.get("modality", []) if isinstance(c, dict)]
    codes += [(s.get("modality") or {}).get("code") for s in study.get("series", [])
              if isinstance(s, dict)]
    return {_SAME_KIND.get(c.upper(), c.upper()) for c in codes if isinstance(c, str) and c}


def study_body_sites(study: dict[str, Any]) -> set[str]:
    sites: set[str] = set()
    for series in study.get("series", []):
        site = series.get("bodySite") if isinstance(series, dict) else None
        if not isinstance(site, dict):
            continue
        if site.get("code"):
            sites.add(f"{site.get('system', '')}|{site['code']}")
        elif site.get("display"):
            sites.add(" ".join(str(site["display"]).lower().split()))
    return sites


def _uids(study: dict[str, Any]) -> set[str]:
    return {str(i.get("value")) for i in study.get("identifier", [])
            if isinstance(i, dict) and i.get("system") == "urn:dicom:uid" and i.get("value")}


def _comparable_time(when: datetime, reference: datetime) -> float:
    # A date without a zone is read in the zone of the study it is compared with.
    if when.tzinfo is None and reference.tzinfo is not None:
        when = when.replace(tzinfo=reference.tzinfo)
    elif when.tzinfo is not None and reference.tzinfo is None:
        when = when.replace(tzinfo=None)
    return when.timestamp()


def is_slide_only(study: dict[str, Any]) -> bool:
    """Whether every series of the study (or, with none listed, every modality) is SM: whole-slide
    microscopy, which the pathology pipeline reads."""
    series = [s for s in study.get("series", []) if isinstance(s, dict)]
    codes = ([(s.get("modality") or {}).get("code") for s in series] if series else
             [c.get("code") for c in study.get("modality", []) if isinstance(c, dict)])
    return bool(codes) and all(isinstance(c, str) and c.upper() == "SM" for c in codes)
