"""The EHR's style: only known keys with plain values become CSS custom properties, and only a
style on the EHR's own origin is fetched."""

from __future__ import annotations

import pytest

from smart_launch.style import style_allowed, style_properties, style_sheet

# The style document of SMART App Launch 2.2's example, as EHRs and smart-launcher-v2 send it.
SPEC_EXAMPLE = {
    "color_background": "#edeae3", "color_error": "#9e2d2d", "color_highlight": "#69b5ce",
    "color_modal_backdrop": "", "color_success": "#498e49", "color_text": "#303030",
    "dim_border_radius": "6px", "dim_font_size": "13px", "dim_spacing_size": "20px",
    "font_family_body": "Georgia, Times, 'Times New Roman', serif",
    "font_family_heading": "'HelveticaNeue-Light', Helvetica, Arial, 'Lucida Grande', sans-serif",
}


def test_the_specification_example_becomes_custom_properties() -> None:
    assert style_properties(SPEC_EXAMPLE) == {
        "--page-bg": "#edeae3", "--bad": "#9e2d2d", "--accent": "#69b5ce", "--ok": "#498e49",
        "--ink": "#303030", "--radius": "6px", "--font-size": "13px",
        "--font-body": 'Georgia, Times, "Times New Roman", serif',
        "--font-heading": 'HelveticaNeue-Light, Helvetica, Arial, "Lucida Grande", sans-serif',
    }


@pytest.mark.parametrize(("key", "value"), [
    ("color_text", "red; } body { display: none"),
    ("color_text", "#303030;background:url(https://evil.example/x)"),
    ("color_highlight", "expression(alert(1))"),
    ("color_background", "var(--ink)"),
    ("dim_font_size", "13px; }"),
    ("dim_font_size", "calc(100vw)"),
    ("font_family_body", "Georgia; } * { color: red"),
    ("font_family_body", "x'), url(https://evil.example/f"),
    ("font_family_body", "'unbalanced, serif"),
    ("font_family_body", "Georgia\\, serif"),
    ("font_family_heading", "</style><script>alert(1)</script>"),
    ("color_text", 12),
])
def test_anything_but_a_plain_value_is_left_out(key: str, value: object) -> None:
    assert style_properties({key: value}) == {}


def test_a_font_list_ending_in_one_semicolon_is_read_without_it() -> None:
    # smart-launcher-v2 serves its heading font so.
    heading = "'HelveticaNeue-Light', Helvetica, Arial, 'Lucida Grande', sans-serif;"
    assert style_properties({"font_family_heading": heading})["--font-heading"] == \
        'HelveticaNeue-Light, Helvetica, Arial, "Lucida Grande", sans-serif'
    assert style_properties({"font_family_heading": "Arial;;"}) == {}


def test_unknown_keys_are_ignored_and_the_sheet_is_one_root_rule() -> None:
    properties = style_properties({"color_text": "#123", "position": "fixed", "--ink": "#000"})
    assert properties == {"--ink": "#123"}
    assert style_sheet(properties) == ":root {\n  --ink: #123;\n}\n"


@pytest.mark.parametrize(("url", "allowed"), [
    ("https://ehr.example.org/styles/smart.json", True),
    ("https://EHR.example.org/s.json", True),
    ("https://auth.example.org/s.json", True),  # the token endpoint's host
    ("https://ehr.example.org:8443/s.json", False),
    ("http://ehr.example.org/s.json", False),
    ("https://evil.example.org/s.json", False),
    ("https://ehr.example.org@evil.example.org/s.json", False),
    ("https://user@ehr.example.org/s.json", False),
    ("file:///etc/passwd", False),
    ("http://127.0.0.1:9000/s.json", False),  # loopback, but not the EHR's port
])
def test_only_the_ehrs_own_origin_is_fetched(url: str, allowed: bool) -> None:
    ehr = ("https://ehr.example.org/fhir", "https://auth.example.org/oauth2/token")
    assert style_allowed(url, ehr) is allowed
