"""Settings: defaults, then an optional TOML file, then CHARTLIGHT_* environment variables.

Each setting has one name used in three places: the dataclass field `fhir_base_url`, the TOML key
`fhir_base_url` and the environment variable `CHARTLIGHT_FHIR_BASE_URL`. docs/configuration.md lists
them all. Settings are validated once, here, into a frozen object.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints
from urllib.parse import urlsplit

from plugin.errors import ConfigError

ENV_PREFIX = "CHARTLIGHT_"
CONFIG_FILE_ENV = "CHARTLIGHT_CONFIG"


@dataclass(frozen=True)
class Settings:
    # The FHIR server the service and CLI talk to, and an optional static token for the CLI.
    fhir_base_url: str = "http://127.0.0.1:8080/fhir"
    fhir_token: str | None = field(default=None, repr=False)
    fhir_timeout_s: float = 30.0
    fhir_max_retries: int = 3
    fhir_retry_backoff_s: float = 0.5
    # Largest response body (attachment, Binary, Bundle) read from any server.
    max_response_bytes: int = 64 * 1024 * 1024
    # Hosts other than the FHIR server that attachments may be fetched from. The access token is
    # never sent to them.
    attachment_allowed_hosts: tuple[str, ...] = ()
    # Analysis jobs: where they are kept (any SQLAlchemy URL), how many run at once, and how long
    # a running job may go without a heartbeat before another process takes it over.
    database_url: str = "sqlite:///.chartlight/jobs.db"
    job_workers: int = 2
    job_lease_s: float = 60.0
    # The web service.
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 2
    secret_key: str | None = field(default=None, repr=False)
    log_level: str = "INFO"
    # The local HAPI FHIR sandbox (tests and demo).
    sandbox_port: int = 8080
    sandbox_heap_mb: int = 1536
    sandbox_persistent: bool = False

    def __post_init__(self) -> None:
        _check_http_url("fhir_base_url", self.fhir_base_url)
        for name in ("fhir_timeout_s", "max_response_bytes", "port", "sandbox_port", "workers",
                     "job_workers", "job_lease_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)!r}")
        if self.fhir_max_retries < 0:
            raise ConfigError("fhir_max_retries must be 0 or more")
        if self.log_level.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ConfigError(f"log_level must be DEBUG, INFO, WARNING or ERROR, not {self.log_level!r}")


def load_settings(
    config_file: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Build Settings from defaults, the TOML file, the environment, then explicit overrides."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    path = config_file or environ.get(CONFIG_FILE_ENV)
    if path:
        values.update(_read_toml(Path(path)))
    values.update(_read_environ(environ))
    values.update(overrides)
    return _coerce(values, source="settings")


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    unknown = set(data) - _field_names()
    if unknown:
        raise ConfigError(f"config file {path}: unknown setting(s) {', '.join(sorted(unknown))}")
    return data


def _read_environ(environ: Mapping[str, str]) -> dict[str, str]:
    names = _field_names()
    found = {}
    for key, value in environ.items():
        if key.startswith(ENV_PREFIX) and key != CONFIG_FILE_ENV:
            name = key[len(ENV_PREFIX) :].lower()
            if name not in names:
                raise ConfigError(f"unknown environment setting {key}")
            found[name] = value
    return found


def _coerce(values: dict[str, Any], *, source: str) -> Settings:
    hints = get_type_hints(Settings)
    converted = {}
    for name, raw in values.items():
        if name not in hints:
            raise ConfigError(f"{source}: unknown setting {name}")
        converted[name] = _convert(name, raw, hints[name])
    return Settings(**converted)


def _convert(name: str, raw: Any, hint: Any) -> Any:
    text = hint if isinstance(hint, str) else repr(hint)
    try:
        if hint is bool:
            if isinstance(raw, bool):
                return raw
            lowered = str(raw).strip().lower()
            if lowered in {"1", "true", "yes", "on"}:
                return True
            if lowered in {"0", "false", "no", "off"}:
                return False
            raise ValueError("expected true or false")
        if hint is int:
            return int(raw)
        if hint is float:
            return float(raw)
        if "tuple" in text:
            items = raw if isinstance(raw, list | tuple) else str(raw).split(",")
            return tuple(str(item).strip() for item in items if str(item).strip())
        if raw is None or (isinstance(raw, str) and raw == "" and "None" in text):
            return None
        return str(raw)
    except ValueError as exc:
        raise ConfigError(f"setting {name}: invalid value {raw!r} ({exc})") from None


def _field_names() -> set[str]:
    return {f.name for f in dataclasses.fields(Settings)}


def _check_http_url(name: str, value: str) -> None:
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ConfigError(f"{name} must be an http(s) URL, got {value!r}")
