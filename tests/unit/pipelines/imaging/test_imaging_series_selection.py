"""Series choice, slice order by position (not InstanceNumber), geometry checks and sampling."""

from __future__ import annotations

from dataclasses import replace

import pytest

from plugin.errors import InputError
from plugin.pipelines.imaging.instance_headers import InstanceHeader, header_from_part10
from plugin.pipelines.imaging.series_selection import (
    order_slices,
    plan_projection,
    plan_volume,
    sample_indices,
    study_kind,
)
from tests.support.dicom_builders import (
    CORONAL,
    SAGITTAL,
    SliceSpec,
    axial_specs,
    radiograph_dataset,
    series_files,
)


def headers(specs: list[SliceSpec], series_uid: str = "1.2.3.2", **kwargs: object) -> list[InstanceHeader]:
    return [header_from_part10(f, source="test") for f in series_files(specs, series_uid=series_uid,
                                                                        **kwargs)]  # type: ignore[arg-type]


def test_slices_are_ordered_by_position_head_first_whatever_the_instance_numbers() -> None:
    specs = axial_specs(12, spacing=2.5, shuffle_seed=3)
    shuffled = headers(specs)
    assert [h.instance_number for h in shuffled] != sorted(h.instance_number or 0 for h in shuffled)
    ordered, spacing = order_slices(list(reversed(shuffled)), source="s")
    assert [h.position[2] for h in ordered] == [-2.5 * i for i in range(12)]  # type: ignore[index]
    assert spacing == pytest.approx(2.5)


def test_oblique_positions_are_projected_on_the_normal() -> None:
    # Sagittal slices: the normal is x; the y/z components of the position must not matter.
    specs = [SliceSpec(z=float(x), instance_number=10 - x, orientation=SAGITTAL) for x in (3, 0, 2, 1, 4)]
    ordered, spacing = order_slices(headers(specs), source="s")
    assert [h.instance_number for h in ordered] in ([10, 9, 8, 7, 6], [6, 7, 8, 9, 10])
    assert spacing == pytest.approx(1.0)


def test_mixed_orientations_are_refused() -> None:
    specs = axial_specs(6)
    specs[3] = SliceSpec(z=specs[3].z, instance_number=specs[3].instance_number, orientation=CORONAL)
    with pytest.raises(InputError, match="mixed orientations"):
        order_slices(headers(specs), source="s")


def test_a_gap_in_the_slices_is_refused() -> None:
    specs = [s for i, s in enumerate(axial_specs(10, spacing=2.0)) if i != 5]
    with pytest.raises(InputError, match="non-uniform slice spacing: 4.000 mm"):
        order_slices(headers(specs), source="s")


def test_duplicate_positions_are_refused() -> None:
    specs = axial_specs(6)
    specs.append(SliceSpec(z=specs[2].z, instance_number=99))
    with pytest.raises(InputError, match="same position"):
        order_slices(headers(specs), source="s")


def test_a_volume_needs_five_slices() -> None:
    with pytest.raises(InputError, match="at least 5 slices, this series has 1") as caught:
        plan_volume({"1.2.3.2": headers(axial_specs(1))}, "CT", max_slices=85, source="ImagingStudy/7")
    assert caught.value.source == "ImagingStudy/7 series 1.2.3.2"


def test_the_axial_series_is_chosen_over_a_sagittal_one_and_sampled() -> None:
    sagittal = [SliceSpec(z=float(i), instance_number=i + 1, orientation=SAGITTAL) for i in range(200)]
    series = {"1.2.3.8": headers(sagittal, series_uid="1.2.3.8"),
              "1.2.3.2": headers(axial_specs(120))}
    plan = plan_volume(series, "CT", max_slices=85, source="ImagingStudy/7")
    assert plan.series_uid == "1.2.3.2"
    assert len(plan.sampled) == 85 and plan.sampled[0] == 0 and plan.sampled[-1] == 119
    assert plan.choices["slices_stored"] == 120
    assert "not axial" in plan.choices["series_rejected"]["1.2.3.8"]


def test_without_an_axial_series_a_sagittal_one_is_used_in_its_plane_right_first() -> None:
    # SAGITTAL's normal is -x: z = i places slice i at x = -i, so the highest i is rightmost.
    sagittal = [SliceSpec(z=float(i), instance_number=i + 1, orientation=SAGITTAL) for i in range(6)]
    plan = plan_volume({"1.2.3.8": headers(sagittal)}, "CT", max_slices=85, source="ImagingStudy/7")
    assert plan.plane == "sagittal" and plan.choices["plane"] == "sagittal"
    assert [h.instance_number for h in plan.ordered] == [6, 5, 4, 3, 2, 1]
    assert [h.position[0] for h in plan.ordered] == [-5.0, -4.0, -3.0, -2.0, -1.0, 0.0]  # type: ignore[index]
    assert plan.choices["ordered_by"] == "ImagePositionPatient along the slice normal, right first"
    assert plan.choices["series_reason"].startswith("no axial series: sagittal in its acquired plane")


def test_an_oblique_series_is_an_input_error() -> None:
    tilted = (1.0, 0.0, 0.0, 0.0, 0.6, -0.8)  # normal 53 degrees from z, 37 from y
    specs = [SliceSpec(z=float(i), instance_number=i + 1, orientation=tilted) for i in range(6)]
    with pytest.raises(InputError, match="no CT series in an axial, sagittal or coronal plane .*oblique"):
        plan_volume({"1.2.3.8": headers(specs)}, "CT", max_slices=85, source="ImagingStudy/7")


def test_uniform_sampling_keeps_ends_and_spreads_evenly() -> None:
    assert sample_indices(5, 85) == (0, 1, 2, 3, 4)
    assert sample_indices(12, 5) == (0, 3, 6, 8, 11)  # 0, 2.75, 5.5, 8.25, 11 rounded half up
    picked = sample_indices(400, 85)
    assert len(picked) == 85 and picked[0] == 0 and picked[-1] == 399
    steps = {b - a for a, b in zip(picked, picked[1:], strict=False)}
    assert steps <= {4, 5}
    assert sample_indices(9, 1) == (4,)


def test_study_kind_prefers_volumes_and_names_unsupported_modalities() -> None:
    assert study_kind(["SR", "CT"], source="x") == ("ct-volume", "CT")
    assert study_kind(["MR"], source="x") == ("mr-volume", "MR")
    assert study_kind(["DX"], source="x") == ("projection", "DX")
    with pytest.raises(InputError, match=r"modalities: SR, US"):
        study_kind(["US", "SR"], source="x")


def test_projection_prefers_a_pa_view() -> None:
    import numpy as np

    from plugin.pipelines.imaging.instance_headers import header_from_dataset

    lateral = header_from_dataset(radiograph_dataset(np.zeros((4, 4)), view="LL"), source="t")
    pa = header_from_dataset(radiograph_dataset(np.zeros((4, 4)), view="PA"), source="t")
    plan = plan_projection({"s": [lateral, pa]}, "DX", source="x")
    assert plan.instance.view_position == "PA"


def test_dicom_json_metadata_gives_the_same_header_as_the_file() -> None:
    from pydicom import dcmread
    from pydicom.filebase import DicomBytesIO

    from plugin.pipelines.imaging.instance_headers import header_from_json

    (data,) = series_files([SliceSpec(z=-7.5, instance_number=4, orientation=SAGITTAL)])
    ds = dcmread(DicomBytesIO(data), stop_before_pixels=True)
    ds.NumberOfFrames, ds.ViewPosition = 1, "PA"
    as_json = ds.to_json_dict()
    from_json = header_from_json(as_json, source="m")
    assert from_json == replace(header_from_part10(data, source="f"), view_position="PA")
    assert from_json.position == (7.5, 0.0, 0.0) and from_json.orientation == SAGITTAL  # normal -x
    del as_json["00080018"]
    with pytest.raises(InputError, match="lacks SOPInstanceUID"):
        header_from_json(as_json, source="m")
