"""Errors of the SMART app's launch and session side.

    SmartError
    ├── LaunchError       the launch or callback cannot go on (bad iss, state, EHR answer): 400
    ├── TokenError        the EHR's token endpoint refused us (exchange or refresh): 400 / 401
    └── NotLaunched       no valid session for this request: 401 "launch the app from your EHR"

Messages name what went wrong and never carry a token, a code or patient data.
"""

from __future__ import annotations

from plugin.errors import ChartlightError


class SmartError(ChartlightError):
    status = 400


class LaunchError(SmartError):
    status = 400


class TokenError(SmartError):
    status = 400

    def __init__(self, message: str, *, error: str = "") -> None:
        super().__init__(message)
        self.error = error  # the OAuth error code (invalid_grant, invalid_client, ...)


class NotLaunched(SmartError):
    status = 401
