"""The slide pyramid read from series metadata (DICOM JSON written by pydicom from the synthetic
slides of plugin/sandbox/synthetic/slide.py): levels, thumbnail, spacing, sparse frame places, the
slide's context, and each inconsistent geometry refused with the instance named."""

from __future__ import annotations

from dataclasses import replace

import pytest

from plugin.errors import InputError
from plugin.pipelines.pathology.prepare import closest_level
from plugin.pipelines.pathology.pyramid import read_pyramid
from plugin.sandbox.synthetic.slide import Blob, SlideSpec, huge_slide_files, make_slide, series_metadata

SMALL = SlideSpec(columns=4096, rows=3072, tile=256, downsamples=(1, 4), thumbnail_downsample=16,
                  blobs=(Blob(1200, 1100, 700, 600), Blob(3000, 2200, 600, 500)), name="unit")
LIMITS = {"max_base_pixels": 10**10, "max_tile_pixels": 4096 * 4096}


def pyramid_of(spec: SlideSpec, **limits: int):  # type: ignore[no-untyped-def]
    slide = make_slide(spec)
    return slide, read_pyramid(series_metadata(slide.files), where="series S", **{**LIMITS, **limits})


def test_levels_thumbnail_and_spacing_come_from_the_metadata() -> None:
    slide, pyramid = pyramid_of(SMALL)
    assert [(lv.total_columns, lv.total_rows, lv.tile_columns, lv.frames) for lv in pyramid.levels] == [
        (4096, 3072, 256, 16 * 12), (1024, 768, 256, 4 * 3)]
    assert [lv.instance_uid for lv in pyramid.levels] == [slide.level(d).instance_uid for d in (1, 4)]
    (thumb,) = pyramid.thumbnails
    assert (thumb.image_type, thumb.total_columns, thumb.total_rows) == ("THUMBNAIL", 256, 192)
    assert thumb.frames == 1
    assert pyramid.um_per_px(pyramid.base) == pytest.approx(0.25)
    assert pyramid.um_per_px(pyramid.levels[1]) == pytest.approx(1.0)
    assert pyramid.scale(thumb) == (16.0, 16.0)
    assert all(lv.organization == "TILED_FULL" and lv.optical_path == "1" for lv in pyramid.levels)
    assert pyramid.base.photometric == "YBR_FULL_422"


def test_the_slide_context_is_read_from_the_specimen_description() -> None:
    _, pyramid = pyramid_of(SMALL)
    assert pyramid.context.specimen == "Colon, biopsy; S-unit"
    assert pyramid.context.stain == "hematoxylin stain, water soluble eosin stain"
    assert pyramid.context.body_site == "Colon"
    assert pyramid.context.container == "SLIDE-unit"


def test_sparse_levels_place_each_frame_from_its_plane_position() -> None:
    slide, pyramid = pyramid_of(replace(SMALL, organization="TILED_SPARSE",
                                             name="unit-sparse"))
    for level in pyramid.levels:
        made = next(m for m in slide.levels if m.instance_uid == level.instance_uid)
        assert level.organization == "TILED_SPARSE"
        assert level.sparse_tiles == made.tile_positions
        assert 0 < level.frames < level.tiles_across * level.tiles_down  # background tiles left out


def test_a_level_with_fewer_frames_than_tiles_is_refused() -> None:
    slide = make_slide(replace(SMALL, bad="frames", name="unit-frames"))
    with pytest.raises(InputError) as caught:
        read_pyramid(series_metadata(slide.files), where="series S", **LIMITS)
    assert caught.value.source == f"series S instance {slide.level(4).instance_uid}"
    assert caught.value.reason == ("inconsistent geometry: 11 frames, but a 1024 x 768 matrix in 256 x 256 "
                                   "tiles is 4 across x 3 down = 12 tiles (TILED_FULL)")


def test_a_level_whose_spacing_does_not_match_its_size_is_refused() -> None:
    slide = make_slide(replace(SMALL, bad="spacing", name="unit-spacing"))
    with pytest.raises(InputError) as caught:
        read_pyramid(series_metadata(slide.files), where="series S", **LIMITS)
    assert caught.value.source == f"series S instance {slide.level(4).instance_uid}"
    assert caught.value.reason.startswith("inconsistent geometry: pixel spacing 1.5 µm, but the level is "
                                          "1/4 of the base's 4096 columns at 0.25 µm, which makes 1 µm")


def test_a_base_level_over_the_pixel_limit_is_refused_from_the_metadata() -> None:
    spec, files = huge_slide_files("unit-huge")
    with pytest.raises(InputError, match=r"the base level is 100000 x 100000 pixels \(10,000,000,000\), "
                                         r"over the 8,000,000,000-pixel limit \(pathology_max_base_pixels\)"):
        read_pyramid(series_metadata(files), where="series S", max_base_pixels=8_000_000_000,
                     max_tile_pixels=4096 * 4096)
    # The limit is the setting's: the same slide passes a higher one.
    assert read_pyramid(series_metadata(files), where="series S", max_base_pixels=10**10,
                        max_tile_pixels=4096 * 4096).base.total_columns == 100_000


def test_a_tile_over_the_tile_pixel_limit_is_refused() -> None:
    slide = make_slide(SMALL)
    with pytest.raises(InputError, match="a tile of 256 x 256 pixels is over the 10,000-pixel tile limit"):
        read_pyramid(series_metadata(slide.files), where="series S", max_base_pixels=10**10,
                     max_tile_pixels=10_000)


def test_a_series_without_a_volume_level_is_refused() -> None:
    slide = make_slide(SMALL)
    label = series_metadata(slide.files)[-1]  # the THUMBNAIL alone
    with pytest.raises(InputError, match="the series has no VOLUME image of the slide"):
        read_pyramid([label], where="series S", **LIMITS)


def test_label_and_overview_images_are_listed_not_used() -> None:
    slide = make_slide(SMALL)
    items = series_metadata(slide.files)
    label = dict(items[-1])
    label["00080008"] = {"vr": "CS", "Value": ["ORIGINAL", "PRIMARY", "LABEL", "NONE"]}
    label["00080018"] = {"vr": "UI", "Value": ["1.2.3.4"]}
    pyramid = read_pyramid([*items, label], where="series S", **LIMITS)
    assert pyramid.others == ("LABEL 1.2.3.4",)
    assert len(pyramid.levels) == 2 and len(pyramid.thumbnails) == 1


@pytest.mark.parametrize(("tag", "value", "message"), [
    ("00280008", "x", "NumberOfFrames (tag 00280008) is not a whole number: 'x'"),
    ("00480303", "two", "FocalPlanes (tag 00480303) is not a whole number: 'two'"),
    ("00480006", 4096.5, "TotalColumns (tag 00480006) is not a whole number: '4096.5'"),
    ("00280006", 1, "PlanarConfiguration 1 (colour by plane) is not read"),
])
def test_malformed_metadata_numbers_are_refused_naming_the_attribute(tag: str, value: object,
                                                                     message: str) -> None:
    items = series_metadata(make_slide(SMALL).files)
    items[0][tag] = {"vr": "IS", "Value": [value]}
    with pytest.raises(InputError) as caught:
        read_pyramid(items, where="series S", **LIMITS)
    assert message in caught.value.reason


def test_a_sparse_position_that_is_not_a_number_is_refused() -> None:
    items = series_metadata(make_slide(replace(SMALL, organization="TILED_SPARSE")).files)
    position = items[0]["52009230"]["Value"][0]["0048021A"]["Value"][0]  # type: ignore[index]
    position["0048021E"] = {"vr": "SL", "Value": ["a"]}
    with pytest.raises(InputError) as caught:
        read_pyramid(items, where="series S", **LIMITS)
    assert "frame 1's ColumnPositionInTotalImagePixelMatrix is not a whole number: 'a'" in caught.value.reason


def test_a_target_between_two_levels_takes_the_coarser() -> None:
    # A scanner's 4x pyramid: 0.25 (40x) and 1.0 (10x) µm/px. The default 0.5 is exactly between
    # them on a log scale; MedGemma was given slides at about 10x.
    _, pyramid = pyramid_of(SMALL)
    assert [round(pyramid.um_per_px(lv), 3) for lv in pyramid.levels] == [0.25, 1.0]
    assert pyramid.um_per_px(closest_level(pyramid, 0.5)) == pytest.approx(1.0)
    assert pyramid.um_per_px(closest_level(pyramid, 0.4)) == pytest.approx(0.25)
    assert pyramid.um_per_px(closest_level(pyramid, 0.6)) == pytest.approx(1.0)


def test_a_specimen_description_written_by_highdicom_gives_the_stain_and_site() -> None:
    # Another producer's encoding of TID 8001 (highdicom's SpecimenDescription and
    # SpecimenStaining), not our generator's: the reader must find the same context in it.
    import highdicom as hd
    from pydicom.sr.coding import Code

    description = hd.SpecimenDescription(
        specimen_id="S26-1234 A1", specimen_uid="1.2.826.0.1.3680043.99.7.1",
        specimen_short_description="Prostate, core biopsy",
        primary_anatomic_structures=[Code("41216001", "SCT", "Prostate")],
        specimen_preparation_steps=[hd.SpecimenPreparationStep(
            specimen_id="S26-1234 A1",
            processing_procedure=hd.SpecimenStaining(substances=[
                Code("12710003", "SCT", "hematoxylin stain"),
                Code("36879007", "SCT", "water soluble eosin stain")]))])
    items = series_metadata(make_slide(SMALL).files)
    for item in items:
        item["00400560"] = {"vr": "SQ", "Value": [description.to_json_dict()]}
    context = read_pyramid(items, where="series S", **LIMITS).context
    assert context.body_site == "Prostate"
    assert context.stain == "hematoxylin stain, water soluble eosin stain"
    assert context.specimen.startswith("Prostate, core biopsy")


def test_a_single_level_slide_written_by_other_code_is_read() -> None:
    # The tiled instance the SR tests build by hand (tests/support/prepared_slides.py, plain
    # pydicom, native RGB tiles, another author's code): one VOLUME level, no thumbnail.
    from tests.support.prepared_slides import level1_instance

    items = series_metadata((level1_instance("other-producer", patient_id="P-1"),))
    pyramid = read_pyramid(items, where="series S", **LIMITS)
    (level,) = pyramid.levels
    assert (level.total_columns, level.total_rows, level.frames) == (512, 384, 12)
    assert (level.tiles_across, level.tiles_down) == (4, 3) and level.organization == "TILED_FULL"
    assert pyramid.um_per_px(level) == pytest.approx(0.5)
    assert pyramid.context.container == "S26-0042 A1"
