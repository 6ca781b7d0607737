"""Errors of the SMART app's launch and session side.

    SmartError
    ├── LaunchError       the launch or callback cannot go on (bad iss, state, EHR answer): 400
    │   └── EhrRefused    the EHR's authorization endpoint sent `error` back to the callback
    ├── TokenError        the EHR's token endpoint refused us, or its id_token is not valid: 400
    └── NotLaunched       no valid session for this request: 401 "launch the app from your EHR"

Messages name what went wrong and never carry a token, a code or patient data. `next_step` says
what a person can do about it (the error page shows it); `ehr_error` / `ehr_description` are the
EHR's own OAuth `error` and `error_description`, kept apart so the page can show (escaped) and the
log can record what the EHR said.
"""

from __future__ import annotations

from plugin.errors import ChartlightError

LAUNCH_AGAIN = "Open chartlight again from the patient's chart in your EHR."


class SmartError(ChartlightError):
    status = 400

    def __init__(self, message: str, *, next_step: str = "", ehr_error: str = "",
                 ehr_description: str = "") -> None:
        super().__init__(message)
        self.next_step = next_step
        self.ehr_error = ehr_error
        self.ehr_description = ehr_description


class LaunchError(SmartError):
    status = 400


class EhrRefused(LaunchError):
    """The EHR answered the authorization request with an OAuth error (RFC 6749 §4.1.2.1)."""


class TokenError(SmartError):
    status = 400

    def __init__(self, message: str, *, error: str = "", description: str = "", next_step: str = "") -> None:
        super().__init__(message, next_step=next_step, ehr_error=error, ehr_description=description)
        self.error = error  # the OAuth error code (invalid_grant, invalid_client, ...)


class NotLaunched(SmartError):
    status = 401

    def __init__(self, message: str, *, next_step: str = LAUNCH_AGAIN) -> None:
        super().__init__(message, next_step=next_step)
