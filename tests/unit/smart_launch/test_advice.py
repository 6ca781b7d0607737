"""What the error page tells a person to do about an EHR's OAuth error (RFC 6749 §4.1.2.1, §5.2)."""

from __future__ import annotations

import pytest

from smart_launch.advice import missing_scopes, next_step

ASKED = "launch openid fhirUser patient/Observation.crus"


@pytest.mark.parametrize(("error", "description", "says"), [
    ("invalid_scope", "", f"grant client app-1 the scopes chartlight asks for ({ASKED})"),
    ("invalid_request", "Invalid redirect_uri", "register the redirect URI https://app.example/smart/callback"),
    ("invalid_grant", "redirect_uri does not match", "register the redirect URI"),
    ("access_denied", "", "Launch again and allow chartlight access"),
    ("invalid_client", "", "registered as a confidential asymmetric client (private_key_jwt)"),
    ("unauthorized_client", "", "allow client app-1 the SMART launch"),
    ("temporarily_unavailable", "", "Wait a moment"),
    ("invalid_grant", "code expired", "Open chartlight again from the patient's chart"),
])
def test_each_error_has_a_next_step_naming_what_to_ask_for(error: str, description: str, says: str) -> None:
    step = next_step(error, description, client_id="app-1", redirect_uri="https://app.example/smart/callback",
                     requested_scopes=ASKED, client_auth="private_key_jwt")
    assert says in step


def test_missing_scopes_leaves_out_the_launch_scopes_ehrs_do_not_echo() -> None:
    assert missing_scopes(ASKED, "openid fhirUser") == ("patient/Observation.crus",)
    assert missing_scopes(ASKED, "openid fhirUser patient/Observation.crus") == ()
