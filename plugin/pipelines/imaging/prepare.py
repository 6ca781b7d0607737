"""Make one ImagingStudy ready for the model: find its instances, choose the series and slices
from headers, fetch and decode only those, and preprocess them (see docs/pacs.md).

    find_imaging_studies(client, patient_id)      ImagingStudy resources, newest first
    prepare_study(client, study, options)          -> PreparedStudy, or InputError for bad input
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import requests

from plugin.budget import DEFAULT_JOB_MEMORY_BYTES, MemoryBudget
from plugin.config import Settings
from plugin.errors import InputError
from plugin.fhir import FhirClient
from plugin.pipelines.imaging import orientation, preprocessing
from plugin.pipelines.imaging.comparison import is_slide_only
from plugin.pipelines.imaging.frames import frame_dataset
from plugin.pipelines.imaging.instance_headers import InstanceHeader
from plugin.pipelines.imaging.pixels import DecodedInstance, decode_dataset, decode_instance
from plugin.pipelines.imaging.prepared import PreparedImage, PreparedStudy, StudyKind
from plugin.pipelines.imaging.series_selection import (
    ProjectionPlan,
    VolumePlan,
    plan_projection,
    plan_volume,
    study_kind,
)
from plugin.pipelines.imaging.sources import InstanceSource, SourceLimits, open_source, study_instance_uid
from plugin.results import SourceRef

Progress = Callable[[float, str], None]
Resource = dict[str, Any]
MB = 1024 * 1024


@dataclass(frozen=True)
class ImagingOptions:
    """Limits and choices of image preparation (settings `imaging_*`, docs/configuration.md)."""

    max_slices: int = 85
    # DICOMweb base URL prefixes that may receive the FHIR bearer token; other endpoints get none.
    trusted_endpoints: tuple[str, ...] = ()
    allowed_endpoints: tuple[str, ...] = ()  # contacted without the token (SourceLimits)
    # Foreign hosts that application/dicom attachments may be fetched from (never with the token).
    attachment_allowed_hosts: tuple[str, ...] = ()
    timeout_s: float = 30.0
    max_metadata_bytes: int = 64 * MB
    max_instance_bytes: int = 64 * MB
    max_study_bytes: int = 1024 * MB  # everything read for one study
    max_pixels: int = 100_000_000  # rows x columns x frames x samples of one instance
    max_volume_side: int = 512
    # The side MedGemma's image processor resizes every image to (REFERENCE.md): a larger
    # radiograph is resized to it here, before the engine encodes it, so no more is sent.
    model_image_side: int = preprocessing.MODEL_IMAGE_SIDE
    fetch_workers: int = 4
    # What one study's preparation may hold in memory: fetched files, inflated data sets, decoded
    # pixels and their float copies (setting job_memory_bytes).
    memory_bytes: int = DEFAULT_JOB_MEMORY_BYTES
    session: requests.Session | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if min(self.max_slices, self.fetch_workers, self.max_volume_side, self.memory_bytes,
               self.model_image_side) < 1:
            raise ValueError("max_slices, fetch_workers, max_volume_side, model_image_side and "
                             "memory_bytes must be positive")


def imaging_options(settings: Settings) -> ImagingOptions:
    """ImagingOptions from the service settings."""
    return ImagingOptions(
        max_slices=settings.imaging_max_slices,
        trusted_endpoints=settings.imaging_trusted_endpoints,
        allowed_endpoints=settings.imaging_allowed_endpoints,
        attachment_allowed_hosts=settings.attachment_allowed_hosts,
        timeout_s=settings.fhir_timeout_s,
        max_metadata_bytes=settings.imaging_max_instance_bytes,
        max_instance_bytes=settings.imaging_max_instance_bytes,
        max_study_bytes=settings.imaging_max_study_bytes,
        memory_bytes=settings.job_memory_bytes,
    )


def find_imaging_studies(client: FhirClient, patient_id: str) -> list[Resource]:
    """The patient's ImagingStudy resources, newest `started` first (undated last). A study of
    whole slides only (every series SM) is left out: the pathology pipeline reads those."""
    studies = [s for s in client.search("ImagingStudy", {"patient": patient_id, "_count": 100})
               if not is_slide_only(s)]
    dated = sorted((s for s in studies if s.get("started")), key=lambda s: _parse_time(s["started"]),
                   reverse=True)
    return dated + [s for s in studies if not s.get("started")]


def prepare_study(client: FhirClient, study: Resource, options: ImagingOptions, *,
                  progress: Progress | None = None) -> PreparedStudy:
    """Fetch what the model needs of `study` and preprocess it. Raises InputError naming the study
    (and the series or instance) and the reason when the study cannot be used."""
    report = progress or (lambda _fraction, _text: None)
    where = f"ImagingStudy/{study.get('id', '?')}"
    try:
        return _Preparation(client, study, options, report, where).run()
    except InputError as exc:
        if exc.source.startswith(where):
            raise
        raise InputError(f"{where} {exc.source}", exc.reason) from None


class _Preparation:
    def __init__(self, client: FhirClient, study: Resource, options: ImagingOptions, report: Progress,
                 where: str) -> None:
        self.client, self.study, self.options, self.report, self.where = client, study, options, report, where
        self.budget = MemoryBudget(where, options.memory_bytes)
        # The bytes of the instances used, hashed in prompt order as they arrive (not kept).
        self.digest = hashlib.sha256()
        self.instances_fetched = 0
        self.source: InstanceSource | None = None

    def run(self) -> PreparedStudy:
        version = (self.study.get("meta") or {}).get("versionId")
        if not self.study.get("id") or not version:
            raise InputError(self.where, "the ImagingStudy has no id or meta.versionId")
        limits = SourceLimits(timeout_s=self.options.timeout_s,
                              max_metadata_bytes=self.options.max_metadata_bytes,
                              max_instance_bytes=self.options.max_instance_bytes,
                              trusted_endpoints=self.options.trusted_endpoints,
                              allowed_endpoints=self.options.allowed_endpoints,
                              attachment_allowed_hosts=self.options.attachment_allowed_hosts,
                              session=self.options.session,
                              max_study_bytes=self.options.max_study_bytes, budget=self.budget)
        self.source = open_source(self.client, self.study, limits, where=self.where)
        try:
            return self._prepare(str(version))
        finally:
            self.source.close()

    def _prepare(self, version: str) -> PreparedStudy:
        assert self.source is not None
        self.report(0.02, "reading series metadata")
        series = self.source.series_headers()
        self._check_budget()
        headers = [h for hs in series.values() for h in hs]
        if not headers:
            raise InputError(self.where, "the study has no instances")
        kind, modality = study_kind([h.modality for h in headers], source=self.where)
        self.report(0.1, f"{len(headers)} instance headers read")
        if kind == "projection":
            plan = plan_projection(series, modality, source=self.where)
            images, choices = self._projection(plan)
            used = [plan.instance]
        else:
            volume = plan_volume(series, modality, max_slices=self.options.max_slices,
                                 source=self.where)
            images, choices = self._volume(volume, kind)
            used = [volume.ordered[i] for i in volume.sampled]
        choices["bytes_read"] = self.source.bytes_read
        choices["instances_fetched"] = self.instances_fetched
        choices["instances_stored"] = len(headers)
        choices.update(self.source.describe())
        first = used[0]
        return PreparedStudy(
            source=SourceRef("ImagingStudy", str(self.study["id"]), version, self.digest.hexdigest()),
            study_uid=study_instance_uid(self.study) or first.study_uid,
            kind=kind,
            modality=modality,
            body_part=first.body_part or _body_site(self.study, first.series_uid),
            started=_parse_time(self.study["started"]) if self.study.get("started") else None,
            images=tuple(images),
            choices=choices,
        )

    # ---- volumes ---------------------------------------------------------------------------

    def _volume(self, plan: VolumePlan, kind: StudyKind) -> tuple[list[PreparedImage], dict[str, Any]]:
        chosen = [plan.ordered[i] for i in plan.sampled]
        try:
            reorientation = orientation.from_image_orientation(plan.ordered[0].orientation or ())
        except orientation.ObliqueError as exc:
            raise InputError(f"{self.where} series {plan.series_uid}", str(exc)) from None
        decoded = self._fetch_and_decode(chosen)
        stacks = [self._single_frame(d, h) for d, h in zip(decoded, chosen, strict=True)]
        choices: dict[str, Any] = {"kind": kind, **plan.choices, "orientation": reorientation.record()}
        total = len(chosen)
        if kind == "ct-volume":
            slices = []
            for index, (frame, ds_instance) in enumerate(zip(stacks, decoded, strict=True)):
                itemsize = np.dtype(preprocessing.modality_work_dtype(frame, ds_instance.dataset)).itemsize
                # The HU copy and up to two temporaries of its size.
                with self._holding(frame.size * itemsize * 3, "windowing a CT slice"):
                    hu = preprocessing.modality_values(frame, ds_instance.dataset, compact=True)
                    self.budget.charge(frame.size * 3, "a windowed CT slice")
                    slices.append(preprocessing.ct_rgb(hu))
                    del hu
                self.report(0.8 + 0.2 * (index + 1) / total, f"slices prepared {index + 1}/{total}")
            choices["windows_hu"] = {name: [low, high] for name, low, high in preprocessing.CT_WINDOWS}
            choices["units"] = ("HU (Modality LUT Sequence)" if "ModalityLUTSequence" in decoded[0].dataset
                                else "HU (RescaleSlope/RescaleIntercept)")
        else:
            # The volume's range from each slice's stored extremes: the rescale is linear, so
            # no float copy of the whole volume is kept (85 float64 slices were, before).
            ranges = [preprocessing.modality_range(f, d.dataset)
                      for f, d in zip(stacks, decoded, strict=True)]
            low = min(r[0] for r in ranges)
            high = max(r[1] for r in ranges)
            slices = []
            for index, (frame, ds_instance) in enumerate(zip(stacks, decoded, strict=True)):
                with self._holding(_float_work_bytes(frame), "normalising an MR slice"):
                    value = preprocessing.modality_values(frame, ds_instance.dataset)
                    self.budget.charge(frame.size * 3, "a normalised MR slice")
                    slices.append(preprocessing.mr_gray(value, low, high))
                    del value
                self.report(0.8 + 0.2 * (index + 1) / total, f"slices prepared {index + 1}/{total}")
            choices["normalisation"] = {"method": "min-max over the sampled volume", "min": low, "max": high}
        images = []
        for number, (pixels, header, ordered_index) in enumerate(
                zip(slices, chosen, plan.sampled, strict=True), start=1):
            shown = preprocessing.to_rgb_image(reorientation.apply(pixels))
            image = preprocessing.fit_within(shown, self.options.max_volume_side)
            images.append(PreparedImage(image=image, series_uid=header.series_uid,
                                        instance_uid=header.instance_uid, frame=header.frame or 1,
                                        label=f"SLICE {number}",
                                        original_size=(header.columns, header.rows),
                                        slice_index=ordered_index, reorientation=reorientation))
        if images and images[0].image.size != reorientation.display_size(images[0].original_size):
            choices["resized_to"] = list(images[0].image.size)
        return images, choices

    # ---- projections -----------------------------------------------------------------------

    def _projection(self, plan: ProjectionPlan) -> tuple[list[PreparedImage], dict[str, Any]]:
        header = plan.instance
        decoded = self._fetch_and_decode([header])[0]
        frame = decoded.frames[0]
        where = f"instance {header.instance_uid}"
        if frame.ndim != 2:
            raise InputError(where, "a colour radiograph is not supported (monochrome expected)")
        rows, columns = frame.shape
        ratio = max(rows, columns) / min(rows, columns)
        if ratio > preprocessing.MAX_ASPECT_RATIO:
            raise InputError(where, f"a {columns}x{rows} radiograph is {ratio:.0f} times longer than "
                                    f"wide (more than {preprocessing.MAX_ASPECT_RATIO}): not a "
                                    "radiograph the model can read once padded to a square")
        # The square, its RGB array, the RGB image and its resized copy, charged before any is made.
        side = max(rows, columns)
        resized = min(side, self.options.model_image_side)
        self.budget.charge(side * side * 7 + resized * resized * 3,
                           f"padding a {columns}x{rows} radiograph to {side}x{side}")
        try:
            with self._holding(_float_work_bytes(frame), "scaling the radiograph for display"):
                gray, display = preprocessing.projection_gray(frame, decoded.dataset)
        except ValueError as exc:
            raise InputError(where, str(exc)) from None
        reorientation = orientation.from_patient_orientation(decoded.dataset.get("PatientOrientation"))
        square, padding = preprocessing.pad_to_square(reorientation.apply(gray))
        padded = preprocessing.to_rgb_image(square)
        shown = preprocessing.to_model_side(padded, self.options.model_image_side)
        self.report(1.0, "slices prepared 1/1")
        image = PreparedImage(image=shown, series_uid=header.series_uid,
                              instance_uid=header.instance_uid, frame=1, label="",
                              original_size=(frame.shape[1], frame.shape[0]), padding=padding,
                              reorientation=reorientation)
        choices = {"kind": "projection", **plan.choices, "voi": display.voi,
                   "window": list(display.window) if display.window else None,
                   "inverted": display.inverted, "orientation": reorientation.record(),
                   "padding": list(padding), "padded_size": list(padded.size),
                   "frames_in_instance": decoded.frame_count}
        if shown.size != padded.size:
            choices["resized_to"] = list(shown.size)
        return [image], choices

    # ---- fetching --------------------------------------------------------------------------

    def _fetch_and_decode(self, headers: list[InstanceHeader]) -> list[DecodedInstance]:
        """Fetch and decode the chosen instances (a few at a time), keeping their order. What
        the headers claim is checked against the limits before anything is fetched, and the
        study's byte limit before each fetch."""
        assert self.source is not None
        source, total, done = self.source, len(headers), 0
        claimed = 0
        for header in headers:
            pixels = header.rows * header.columns * (1 if header.frame else max(header.frames, 1))
            if pixels > self.options.max_pixels:
                raise InputError(f"instance {header.instance_uid}", f"{header.rows}x{header.columns}x"
                                 f"{header.frames} pixels exceed the {self.options.max_pixels}-pixel limit")
            claimed += header.rows * header.columns * 2  # one decoded frame, 16 bits, at least
        self.budget.check(claimed, f"decoding {total} instance(s)")

        def work(header: InstanceHeader) -> tuple[bytes, DecodedInstance]:
            self._check_budget()  # the study limit, before this download
            where = f"instance {header.instance_uid}"
            if header.frame is not None:
                return self._fetch_frame(header, where)
            data = source.fetch(header)
            return data, decode_instance(data, source=where, max_pixels=self.options.max_pixels,
                                         budget=self.budget, first_frame_only=True)

        results: list[DecodedInstance] = []
        pool = ThreadPoolExecutor(max_workers=min(self.options.fetch_workers, total))
        try:
            for header, (data, decoded) in zip(headers, pool.map(work, headers), strict=True):
                self.digest.update(data)
                self.instances_fetched += 1
                self._check_budget()
                _check_identity(decoded, header)
                results.append(decoded)
                done += 1
                self.report(0.1 + 0.7 * done / total, f"instances fetched {done}/{total}")
        finally:
            # A bad instance stops the study: the fetches not started yet are not made.
            pool.shutdown(wait=True, cancel_futures=True)
        return results

    def _fetch_frame(self, header: InstanceHeader, where: str) -> tuple[bytes, DecodedInstance]:
        """One frame of an enhanced instance by WADO-RS frame retrieval. Its byte budget: twice
        the native frame (a compressed frame is smaller; a little larger at worst) plus 64 KiB."""
        assert self.source is not None and header.frame is not None
        where = f"{where} frame {header.frame}"
        attributes = dict(header.frame_attributes)
        native = header.rows * header.columns * int(attributes.get("SamplesPerPixel") or 1) * \
            max(int(attributes.get("BitsAllocated") or 16) // 8, 1)
        data, syntax = self.source.fetch_frame(header, 2 * native + 64 * 1024)
        self.budget.charge(len(data), "holding a fetched frame")
        try:
            dataset = frame_dataset(header, data, syntax)
            decoded = decode_dataset(dataset, source=where, max_pixels=self.options.max_pixels,
                                     budget=self.budget)
        finally:
            self.budget.release(len(data))
        return data, decoded

    @contextmanager
    def _holding(self, nbytes: int, what: str) -> Iterator[None]:
        """Charge `nbytes` of working memory for the block, released after it."""
        self.budget.charge(nbytes, what)
        try:
            yield
        finally:
            self.budget.release(nbytes)

    def _single_frame(self, decoded: DecodedInstance, header: InstanceHeader) -> np.ndarray:
        frame = decoded.frames[0]
        if frame.ndim != 2:
            raise InputError(f"instance {header.instance_uid}", "colour slices are not supported in a volume")
        return np.asarray(frame)

    def _check_budget(self) -> None:
        assert self.source is not None
        if self.source.bytes_read > self.options.max_study_bytes:
            raise InputError(self.where, f"more than the {self.options.max_study_bytes}-byte study limit "
                                         "would have to be read")


def _check_identity(decoded: DecodedInstance, header: InstanceHeader) -> None:
    """The file fetched must be the instance the metadata described (same UID and size)."""
    ds = decoded.dataset
    where = f"instance {header.instance_uid}"
    if str(ds.get("SOPInstanceUID", "")) != header.instance_uid:
        raise InputError(where, f"the file fetched is instance {ds.get('SOPInstanceUID', '?')}")
    if (int(ds.Rows), int(ds.Columns)) != (header.rows, header.columns):
        raise InputError(where, "the file fetched does not match its metadata (rows/columns)")


def _float_work_bytes(frame: np.ndarray) -> int:
    """float64 working copies of one frame while it is rescaled and windowed (the rescaled
    values and up to two temporaries at once)."""
    return int(frame.size) * 8 * 3


def _body_site(study: Resource, series_uid: str) -> str:
    for series in study.get("series", []):
        if series.get("uid") == series_uid:
            site = series.get("bodySite") or {}
            return str(site.get("display") or site.get("code") or "")
    return ""


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
