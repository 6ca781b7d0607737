"""Which URL a CDS Hooks JWT's `aud` must name, and whether the service may start that way.

The `aud` of an EHR's JWT is the exact URL it called. With `cds_public_base_url` set, that URL
is the configured base plus the path called. Unset, it is built from the request itself, whose
Host header the caller chooses: fine on loopback (tests, local development), not for a service
other hosts reach, where a token minted for another service could be replayed here by sending
that service's Host. So `chartlight serve` bound to a non-loopback address refuses to start
without it while any EHR is trusted (`serving_audience`), and says at start-up which it checks.
"""

from __future__ import annotations

import ipaddress

from plugin.config import Settings
from plugin.errors import ConfigError

LOOPBACK_NAMES = frozenset({"localhost"})


def is_loopback(host: str) -> bool:
    """Whether `host` (a bind address or name) only accepts connections from this machine."""
    host = host.strip().strip("[]")
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # another name: it may resolve to any interface


def serving_audience(settings: Settings) -> str:
    """The start-up line about the `aud` check of `chartlight serve` with these settings.
    Raises ConfigError when the service would be reachable from other hosts, trusts EHRs, and
    has no `cds_public_base_url`."""
    if settings.cds_public_base_url:
        return (f"CDS Hooks: a JWT's aud must be {settings.cds_public_base_url.rstrip('/')}"
                "/cds-services/... (cds_public_base_url)")
    if not settings.cds_trusted_ehrs:
        return "CDS Hooks: no EHR is trusted (cds_trusted_ehrs), so every hook call is refused"
    if not is_loopback(settings.host):
        raise ConfigError(
            f"cds_public_base_url must be set when chartlight serves on {settings.host!r}, an address "
            "other hosts reach: without it a CDS JWT's aud is checked against the Host header the caller "
            "sends. Set it to the service's base URL as EHRs call it, e.g. https://chartlight.example.org")
    return ("CDS Hooks: cds_public_base_url is unset, so a JWT's aud is checked against the URL of "
            f"each request (its Host header); allowed only because the service listens on loopback "
            f"({settings.host})")
