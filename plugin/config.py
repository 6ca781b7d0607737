"""Settings: defaults, then an optional TOML file, then CHARTLIGHT_* environment variables.

Each setting has one name used in three places: the dataclass field `fhir_base_url`, the TOML key
`fhir_base_url` and the environment variable `CHARTLIGHT_FHIR_BASE_URL`. docs/configuration.md lists
them all. Settings are validated once, here, into a frozen object.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints
from urllib.parse import urlsplit

from plugin.budget import DEFAULT_JOB_MEMORY_BYTES
from plugin.errors import ConfigError
from plugin.scopes import parse_scope

ENV_PREFIX = "CHARTLIGHT_"
CONFIG_FILE_ENV = "CHARTLIGHT_CONFIG"
# JWS algorithms a CDS client may sign with. CDS Hooks forbids `none` and symmetric (HMAC) ones.
ASYMMETRIC_JWT_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
                                       "ES256", "ES384", "ES512"})
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
# SMART confidential asymmetric clients sign their token-endpoint assertions with one of these.
SMART_CLIENT_ALGORITHMS = frozenset({"RS384", "ES384"})
SMART_CLIENT_AUTH = frozenset({"public", "private_key_jwt"})
# Torch devices and dtypes the engines accept, and the attention implementations transformers
# 5.x registers (transformers.modeling_utils.ALL_ATTENTION_FUNCTIONS, plus its built-in eager).
_DEVICE = re.compile(r"cpu|cuda(:[0-9]+)?|mps")
MODEL_DTYPES = ("float32", "bfloat16", "float16")
ATTENTION_IMPLEMENTATIONS = ("eager", "sdpa", "flex_attention", "flash_attention_2", "flash_attention_3",
                             "flash_attention_4")
SMART_DEFAULT_SCOPES = (
    "openid fhirUser online_access patient/Patient.r patient/Encounter.rs patient/DocumentReference.crus "
    "patient/DiagnosticReport.crus patient/Media.rs patient/ImagingStudy.rs patient/Observation.crus "
    "patient/Provenance.crs user/Endpoint.r user/Binary.r user/Device.crus"
    # The chart the summary and "ask the chart" read (docs/chart-summary.md).
    " patient/Condition.rs patient/AllergyIntolerance.rs patient/MedicationRequest.rs"
    " patient/MedicationStatement.rs"
)


@dataclass(frozen=True)
class TrustedEhr:
    """An EHR allowed to call the CDS Hooks service: the `iss` of its JWTs, the JWK Set its keys
    are in, further JWK Set URLs it may name in a JWT's `jku` header, and the FHIR servers
    (`fhirServer` of a hook request) the service may use its access tokens on."""

    iss: str
    jwks_url: str
    jku: tuple[str, ...] = ()
    fhir_servers: tuple[str, ...] = ()
    name: str = ""

    @property
    def jwks_urls(self) -> tuple[str, ...]:
        return (self.jwks_url, *self.jku)

    @property
    def label(self) -> str:
        return self.name or self.iss

    def allows_fhir_server(self, url: str) -> bool:
        return url.rstrip("/") in {s.rstrip("/") for s in self.fhir_servers}


@dataclass(frozen=True)
class BackendService:
    """SMART Backend Services credentials for one FHIR server: the client id the EHR registered
    the service under, the private key (PEM, RSA for RS384 or P-384 for ES384) it signs its
    `private_key_jwt` assertions with, and the `system/` scopes it asks for. `token_endpoint` ""
    = read from `{fhir_server}/.well-known/smart-configuration`; `kid` "" = the key's RFC 7638
    thumbprint; `alg` "" = from the key's type."""

    fhir_server: str
    client_id: str
    private_key_path: str
    scopes: str
    name: str = ""
    token_endpoint: str = ""
    kid: str = ""
    alg: str = ""

    @property
    def label(self) -> str:
        return self.name or self.fhir_server


@dataclass(frozen=True)
class SmartEhr:
    """An EHR the SMART app may be launched from: its FHIR base (`iss`), the client id it
    registered us under, how we authenticate at its token endpoint, and the scopes we ask for.
    `fhir_bases` lists further FHIR bases the same registration serves (tenants, versions): exact
    bases, or a prefix ending in "/*" that matches whole path segments below it."""

    name: str
    iss: str
    client_id: str
    client_auth: str = "public"
    alg: str = "RS384"  # private_key_jwt only
    scopes: str = SMART_DEFAULT_SCOPES
    fhir_bases: tuple[str, ...] = ()

    def matches(self, iss: str) -> bool:
        """Whether a launch's `iss` is one of this EHR's FHIR bases. An `iss` that is not a plain
        http(s) URL (dot-segments, raw or encoded; a query, fragment or user info; backslashes,
        encoded slashes, empty segments) matches nothing, so a pattern cannot be walked out of."""
        wanted = plain_fhir_base(iss)
        if wanted is None:
            return False
        for base in (self.iss, *self.fhir_bases):
            if base.endswith("/*"):
                prefix = plain_fhir_base(base[:-2])
                if prefix is not None and wanted.startswith(prefix + "/"):
                    return True
            elif plain_fhir_base(base) == wanted:
                return True
        return False


def _overlap(ehr: SmartEhr, other: SmartEhr) -> bool:
    """Whether a base of `other` (or a base below one of its prefixes) is one `ehr` matches."""
    for base in (other.iss, *other.fhir_bases):
        probe = base[:-2] + "/x" if base.endswith("/*") else base
        if ehr.matches(probe):
            return True
    return False


def plain_fhir_base(url: str) -> str | None:
    """`url` with scheme and host lower-cased and no trailing slash, or None when it is not a
    plain http(s) base URL (see SmartEhr.matches)."""
    # The one URL rule of plugin.fhir.urls first: dot-segments encoded more than once (a proxy
    # or server that decodes twice), whitespace, control characters. Imported here: plugin.fhir
    # loads requests, which `chartlight --help` must not pay for.
    from plugin.fhir.urls import UnsafeUrl, normalise_url
    try:
        normalise_url(url.strip())
    except UnsafeUrl:
        return None
    parts = urlsplit(url.strip())
    if parts.scheme.lower() not in {"http", "https"} or not parts.hostname or parts.username is not None \
            or parts.password is not None or parts.query or parts.fragment or "#" in url or "?" in url:
        return None
    path = parts.path.rstrip("/")
    segments = path.split("/")[1:] if path else []
    lowered = path.lower()
    if "\\" in path or "%2f" in lowered or "%5c" in lowered or "%2e" in lowered \
            or any(s in ("", ".", "..") for s in segments):
        return None
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}{path}"


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
    threads: int = 4  # per gunicorn worker: hooks that must fetch from FHIR wait on I/O
    secret_key: str | None = field(default=None, repr=False)
    log_level: str = "INFO"
    # The local HAPI FHIR sandbox (tests and demo).
    sandbox_port: int = 8080
    sandbox_heap_mb: int = 1536
    sandbox_persistent: bool = False
    # The sandbox EHR (SMART authorization server + FHIR proxy in front of the HAPI sandbox).
    sandbox_ehr_port: int = 9090
    # The local Orthanc PACS sandbox (DICOMweb at http://127.0.0.1:<pacs_port>/dicom-web).
    pacs_port: int = 8042
    # Imaging (docs/pacs.md): DICOMweb base URL prefixes that may receive the FHIR bearer token
    # (other endpoints are called without it), slices per volume, and size limits.
    imaging_trusted_endpoints: tuple[str, ...] = ()
    imaging_allowed_endpoints: tuple[str, ...] = ()
    imaging_max_slices: int = 85
    imaging_max_instance_bytes: int = 64 * 1024 * 1024
    imaging_max_study_bytes: int = 1024 * 1024 * 1024
    # MedGemma (docs/imaging.md): "local" runs it with transformers (medgemma_model: a Hugging Face
    # id in the local cache, or a folder); "remote" calls an OpenAI-compatible chat endpoint
    # (vLLM, Vertex AI Model Garden) at medgemma_remote_url serving medgemma_remote_model.
    medgemma_engine: str = "local"
    medgemma_model: str = "google/medgemma-1.5-4b-it"
    medgemma_remote_url: str | None = None
    medgemma_remote_model: str = "google/medgemma-1.5-4b-it"
    medgemma_remote_api_key: str | None = field(default=None, repr=False)
    medgemma_remote_timeout_s: float = 300.0
    # CDS Hooks service (docs/cds-hooks.md). EHRs whose signed JWTs are accepted: a TOML array of
    # tables, or JSON in the environment.
    cds_trusted_ehrs: tuple[TrustedEhr, ...] = ()
    # The service's public base URL as EHRs call it (JWT `aud` is checked against it); unset: the
    # URL of the request itself.
    cds_public_base_url: str | None = None
    # Browser origins allowed to call the service (CORS); "*" allows any.
    cds_allowed_origins: tuple[str, ...] = ()
    # SMART launch URL of the chartlight app that cards link to; unset: <base>/smart/launch.
    cds_app_launch_url: str | None = None
    cds_jwt_algorithms: tuple[str, ...] = ("ES384", "RS384", "RS256")
    cds_clock_skew_s: float = 60.0
    cds_max_token_lifetime_s: float = 900.0
    # Where used JWT ids are remembered: "database" (shared by every worker process, in
    # database_url) or "memory" (per process).
    cds_replay_cache: str = "database"
    cds_jwks_cache_s: float = 300.0
    cds_jwks_refetch_interval_s: float = 30.0
    cds_jwks_timeout_s: float = 5.0
    cds_jwks_max_bytes: int = 64 * 1024
    cds_max_request_bytes: int = 16 * 1024 * 1024
    # FHIR reads a hook makes itself (prefetch the EHR left out) must be quick.
    cds_fhir_timeout_s: float = 5.0
    # How often per patient a hook looks for inputs not analysed yet, and how long it waits for
    # that look before answering without it.
    cds_source_check_interval_s: float = 300.0
    cds_source_check_wait_s: float = 0.25
    # SMART on FHIR app (docs/smart-app.md). EHRs it may be launched from: a TOML array of
    # tables, or JSON in the environment.
    smart_ehrs: tuple[SmartEhr, ...] = ()
    # Private keys (PEM) for private_key_jwt; created on first start when absent.
    smart_signing_key_path: str = ".chartlight/smart-signing-keys.pem"
    # Origins allowed to frame the app (CSP frame-ancestors); unset: the configured EHRs' origins.
    smart_frame_ancestors: tuple[str, ...] = ()
    # The app's public base URL (redirect_uri is <base>/smart/callback); unset: the request's URL.
    smart_public_base_url: str | None = None
    smart_state_ttl_s: float = 600.0
    smart_session_ttl_s: float = 8 * 3600.0
    smart_discovery_cache_s: float = 3600.0
    smart_http_timeout_s: float = 10.0
    # Jobs (docs/writeback.md): how long transient failures (FHIR server or model endpoint away)
    # are retried, the longest wait between two tries, and each pipeline's wall-clock limit.
    job_retry_horizon_s: float = 1800.0
    job_retry_max_delay_s: float = 120.0
    job_timeout_documents_s: float = 3600.0
    job_timeout_speech_s: float = 1800.0
    job_timeout_imaging_s: float = 3600.0
    # The SMART scopes the service's own credentials (fhir_token) were granted, when known: what
    # jobs of the CLI and of CDS hooks may write (docs/writeback.md, degrading). Unset: the FHIR
    # server decides, and a refused Observation write is retried as a document.
    fhir_token_scopes: tuple[str, ...] = ()
    # The sandbox and the demo (docs/sandbox.md, docs/quickstart.md): where sandbox servers keep
    # pid files, logs and databases ("" = $XDG_STATE_HOME/chartlight); and tiny random-weight
    # test models in place of MedGemma and MedASR, stored in test_models_dir ("" =
    # $XDG_CACHE_HOME/chartlight/test-models), allowed only against a sandbox FHIR server.
    sandbox_state_dir: str = ""
    test_models: bool = False
    test_models_dir: str = ""
    # Budgets (docs/security.md): pages one FHIR search may follow, what one job may hold in
    # memory for decoded/inflated input, charged before anything is decoded (documents: pages,
    # images, pdfium bitmaps; speech: samples; imaging: inflated DICOM, pixels and copies), and
    # the longest dictation transcribed.
    fhir_max_pages: int = 200
    job_memory_bytes: int = DEFAULT_JOB_MEMORY_BYTES
    speech_max_duration_s: float = 3600.0
    # Engines (docs/configuration.md "Model engines", docs/speech.md, docs/imaging.md). MedASR:
    # the checkpoint (HF id in the local cache, or a folder), an optional KenLM model for beam
    # search with its weight (alpha) and per-word bonus (beta), int8 on CPU, chunks per forward
    # pass, window and context lengths, device ("" = CUDA when present, else CPU) and torch
    # threads (0 = torch's default). MedGemma local: device and dtype ("" = the best the machine
    # has), attention implementation ("" = transformers' default) and a ceiling on answer length.
    medasr_model: str = "google/medasr"
    medasr_lm_path: str = ""
    medasr_lm_alpha: float = 0.5
    medasr_lm_beta: float = 1.5
    medasr_quantize: bool = True
    medasr_batch_size: int = 4
    medasr_chunk_s: float = 20.0
    medasr_stride_s: float = 2.0
    medasr_device: str = ""
    medasr_threads: int = 0
    medgemma_device: str = ""
    medgemma_dtype: str = ""
    medgemma_attention: str = ""
    medgemma_max_new_tokens: int = 8192
    # SMART Backend Services (docs/security.md "Service credentials per EHR"): per FHIR server, the
    # client that background jobs without a clinician's session (CDS hooks, the CLI) authenticate
    # as; a TOML array of tables, or JSON in the environment. A server with none gets fhir_token
    # when it is fhir_base_url, else no token. Service tokens are replaced this many seconds
    # before they expire.
    backend_services: tuple[BackendService, ...] = ()
    backend_token_refresh_ahead_s: float = 60.0
    # Prometheus metrics (docs/configuration.md "Metrics"): /metrics on the web tier and a
    # worker's metrics port answer only clients in these networks (CIDR), and with metrics_token
    # set only requests carrying it as a bearer token; a worker's port listens on
    # metrics_worker_host.
    metrics_allowed_networks: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    metrics_token: str | None = field(default=None, repr=False)
    metrics_worker_host: str = "127.0.0.1"
    # SMART sessions (docs/smart-app.md): how long one process may hold a session's refresh
    # lease (the other processes wait for its new token); a crashed holder's lease ends after it.
    smart_refresh_lease_s: float = 30.0
    # Chart summary and "ask the chart" (docs/chart-summary.md): the digest's token budget, the
    # longest answer asked of MedGemma, the time limit of one summary job, and the tokenizer the
    # budget is measured with ("" = medgemma_model's, when its files are on this machine).
    summary_token_budget: int = 6000
    summary_max_new_tokens: int = 1024
    job_timeout_summary_s: float = 900.0
    summary_tokenizer: str = ""
    # Live dictation in the SMART app (docs/speech.md "Live dictation"): on or off (off: the app
    # records, then uploads, and the web tier never loads MedASR); where recordings in progress
    # are spooled, shared by the web workers of one machine ("" = .chartlight/live-dictation);
    # how long one may go without audio before it is dropped; how many may be open at once.
    speech_live: bool = True
    speech_live_dir: str = ""
    speech_live_idle_s: float = 60.0
    speech_live_max_recordings: int = 16
    # Job dispatch (docs/deploy.md). The Celery broker, a redis:// URL (None: embedded, no broker:
    # `chartlight serve` starts one local worker process that takes jobs from the job table); how
    # long the broker waits for a delivered message's acknowledgement before it hands the
    # message to another worker (longer than the longest job time limit, or a slow job would run
    # twice at once); after how long a queued job no worker has taken is published again (its
    # message may have been lost with the broker); `chartlight worker`'s processes per machine.
    job_broker_url: str | None = field(default=None, repr=False)  # may hold a password
    job_visibility_timeout_s: float = 7200.0
    job_republish_after_s: float = 60.0
    worker_concurrency: int = 1
    # Imaging results back into the PACS as DICOM SR (docs/pacs.md "Results back into the PACS"):
    # off by default; sent only to DICOMweb base URL prefixes in imaging_dicom_write_endpoints (a
    # write allow-list apart from the read lists); UIDs derived under dicom_uid_root ("" = the
    # UUID-derived 2.25 form; an organisation sets its own registered root, at most 40 characters).
    imaging_write_back_dicom: bool = False
    imaging_dicom_write_endpoints: tuple[str, ...] = ()
    dicom_uid_root: str = ""
    # MedASR's runtime (docs/speech.md "Runtimes", bench/speech.py): "torch" runs transformers;
    # "onnxruntime" runs the model exported once to ONNX (CPU only; int8 when medasr_quantize,
    # threads from medasr_threads), the export cached in medasr_onnx_cache_dir ("" =
    # $XDG_CACHE_HOME/chartlight/medasr-onnx) under the model, its revision and the options;
    # "auto": ONNX Runtime when MedASR runs on the CPU, PyTorch on a GPU.
    medasr_runtime: str = "auto"
    medasr_onnx_cache_dir: str = ""
    # Whole-slide pathology (docs/pathology.md): patches are cut at the pyramid level whose µm per
    # pixel is closest to pathology_target_um_per_px, pathology_patches of them, each
    # pathology_patch_px square (MedGemma's processor takes 896 x 896); a slide whose base level
    # has more than pathology_max_base_pixels pixels is refused from its metadata alone; one
    # slide may fetch at most pathology_max_frames_fetched frames (tiles), checked before fetching.
    pathology_target_um_per_px: float = 0.5
    pathology_patches: int = 16
    pathology_patch_px: int = 896
    pathology_max_base_pixels: int = 8_000_000_000
    pathology_max_frames_fetched: int = 512

    def __post_init__(self) -> None:
        _check_http_url("fhir_base_url", self.fhir_base_url)
        for name in ("fhir_timeout_s", "max_response_bytes", "port", "sandbox_port", "workers", "threads",
                     "job_workers", "job_lease_s", "job_retry_horizon_s", "job_retry_max_delay_s",
                     "job_timeout_documents_s", "job_timeout_speech_s", "job_timeout_imaging_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)!r}")
        if self.fhir_max_retries < 0:
            raise ConfigError("fhir_max_retries must be 0 or more")
        if self.log_level.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ConfigError(f"log_level must be DEBUG, INFO, WARNING or ERROR, not {self.log_level!r}")
        self._check_cds()
        self._check_imaging()
        self._check_medgemma()
        self._check_smart()
        self._check_token_scopes()
        self._check_test_models()
        self._check_budgets()
        self._check_engines()
        self._check_medasr_runtime()
        self._check_dicom_write()
        self._check_dispatch()
        self._check_pathology()
        if self.speech_live_idle_s <= 0 or self.speech_live_max_recordings <= 0:
            raise ConfigError("speech_live_idle_s and speech_live_max_recordings must be positive")
        for name in ("summary_token_budget", "summary_max_new_tokens", "job_timeout_summary_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)!r}")
        self._check_backend_services()
        self._check_metrics()
        if self.smart_refresh_lease_s <= self.smart_http_timeout_s:
            raise ConfigError(f"smart_refresh_lease_s ({self.smart_refresh_lease_s:g}) must exceed "
                              f"smart_http_timeout_s ({self.smart_http_timeout_s:g}): a refresh must end "
                              "within its lease")

    def _check_metrics(self) -> None:
        import ipaddress
        for cidr in self.metrics_allowed_networks:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ConfigError(f"metrics_allowed_networks: {cidr!r} is not an IP network (CIDR, e.g. "
                                  "10.0.0.0/8 or ::1/128)") from None
        if self.metrics_token is not None and len(self.metrics_token) < 16:
            raise ConfigError("metrics_token must be at least 16 characters (or unset)")

    def _check_backend_services(self) -> None:
        if self.backend_token_refresh_ahead_s < 0:
            raise ConfigError("backend_token_refresh_ahead_s must be 0 or more")
        servers = [plain_fhir_base(s.fhir_server) or s.fhir_server for s in self.backend_services]
        if len(set(servers)) != len(servers):
            raise ConfigError("backend_services: each fhir_server may appear once")
        for service in self.backend_services:
            where = f"backend_services ({service.label})"
            if plain_fhir_base(service.fhir_server) is None:
                raise ConfigError(f"{where}: fhir_server {service.fhir_server!r} is not a plain http(s) "
                                  "FHIR base URL")
            if not service.client_id.strip() or not service.private_key_path.strip():
                raise ConfigError(f"{where}: client_id and private_key_path must not be empty")
            if service.token_endpoint:
                _check_key_url(f"{where} token_endpoint", service.token_endpoint)
            if service.alg and service.alg not in SMART_CLIENT_ALGORITHMS:
                raise ConfigError(f"{where}: alg must be RS384 or ES384 (or empty: from the key), "
                                  f"not {service.alg!r}")
            scopes = service.scopes.split()
            wrong = [s for s in scopes if (scope := parse_scope(s)) is None or scope.context != "system"]
            if not scopes or wrong:
                raise ConfigError(f"{where}: scopes must be SMART system/ scopes (system/<Type|*>.<cruds>), "
                                  f"not {' '.join(wrong) or 'empty'}")

    def _check_dispatch(self) -> None:
        for name in ("job_republish_after_s", "worker_concurrency"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)!r}")
        scheme = urlsplit(self.job_broker_url).scheme if self.job_broker_url is not None else "redis"
        if scheme not in {"redis", "rediss"}:
            raise ConfigError("job_broker_url must be a redis:// or rediss:// URL (the Celery broker), "
                              f"not a {scheme or 'scheme-less'} URL")
        longest = max(self.job_timeout_documents_s, self.job_timeout_speech_s, self.job_timeout_imaging_s,
                      self.job_timeout_summary_s)
        if self.job_visibility_timeout_s <= longest:
            raise ConfigError(f"job_visibility_timeout_s ({self.job_visibility_timeout_s:g} s) must be "
                              f"longer than the longest job time limit ({longest:g} s, job_timeout_*_s): the "
                              "broker would hand a job still running to a second worker")

    def _check_dicom_write(self) -> None:
        from plugin.dicom_uids import UidRootError, check_uid_root

        for url in self.imaging_dicom_write_endpoints:
            _check_http_url("imaging_dicom_write_endpoints", url)
        try:
            check_uid_root(self.dicom_uid_root)
        except UidRootError as exc:
            raise ConfigError(str(exc)) from None

    def _check_engines(self) -> None:
        for name in ("medasr_batch_size", "medasr_chunk_s", "medgemma_max_new_tokens"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)!r}")
        for name in ("medasr_stride_s", "medasr_threads"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be 0 or more, got {getattr(self, name)!r}")
        if self.medasr_chunk_s <= 2 * self.medasr_stride_s:
            raise ConfigError(f"medasr_chunk_s ({self.medasr_chunk_s}) must exceed twice medasr_stride_s "
                              f"({self.medasr_stride_s}): each window keeps the part between its strides")
        for name in ("medasr_model", "medgemma_model"):
            if not getattr(self, name).strip():
                raise ConfigError(f"{name} must name a Hugging Face id or a folder")
        for name in ("medasr_device", "medgemma_device"):
            value = getattr(self, name)
            if value and not _DEVICE.fullmatch(value):
                raise ConfigError(f"{name} must be cpu, cuda, cuda:N or mps (or empty for the best one "
                                  f"here), not {value!r}")
        if self.medgemma_dtype and self.medgemma_dtype not in MODEL_DTYPES:
            raise ConfigError(f"medgemma_dtype must be one of {', '.join(MODEL_DTYPES)} (or empty for "
                              f"the best one here), not {self.medgemma_dtype!r}")
        if self.medgemma_attention and self.medgemma_attention not in ATTENTION_IMPLEMENTATIONS:
            raise ConfigError(f"medgemma_attention must be one of {', '.join(ATTENTION_IMPLEMENTATIONS)} "
                              f"(or empty for transformers' default), not {self.medgemma_attention!r}")
        if self.medasr_lm_path and not Path(self.medasr_lm_path).expanduser().is_file():
            raise ConfigError(f"medasr_lm_path {self.medasr_lm_path!r} is not a file (a KenLM ARPA or "
                              "binary model)")

    def _check_medasr_runtime(self) -> None:
        if self.medasr_runtime not in {"auto", "torch", "onnxruntime"}:
            raise ConfigError(f"medasr_runtime must be auto, torch or onnxruntime, not "
                              f"{self.medasr_runtime!r}")
        if self.medasr_runtime == "onnxruntime" and self.medasr_device not in {"", "cpu"}:
            raise ConfigError(f"medasr_runtime onnxruntime runs on the CPU: medasr_device "
                              f"{self.medasr_device!r} needs medasr_runtime = \"torch\"")

    def _check_token_scopes(self) -> None:
        unknown = [scope for scope in self.fhir_token_scopes if parse_scope(scope) is None]
        if unknown:
            raise ConfigError(f"fhir_token_scopes: {', '.join(repr(s) for s in unknown[:5])} is not a SMART "
                              "resource scope (patient|user|system/<Type|*>.<cruds letters> or .read/.write)")

    def _check_budgets(self) -> None:
        for name in ("fhir_max_pages", "job_memory_bytes", "speech_max_duration_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)!r}")

    def _check_smart(self) -> None:
        for name in ("smart_state_ttl_s", "smart_session_ttl_s", "smart_http_timeout_s", "sandbox_ehr_port"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)!r}")
        if self.smart_discovery_cache_s < 0:
            raise ConfigError("smart_discovery_cache_s must be 0 or more")
        if self.smart_public_base_url is not None:
            _check_http_url("smart_public_base_url", self.smart_public_base_url)
        names = [ehr.name for ehr in self.smart_ehrs]
        issuers = [ehr.iss.rstrip("/") for ehr in self.smart_ehrs]
        if len(set(names)) != len(names) or len(set(issuers)) != len(issuers):
            raise ConfigError("smart_ehrs: each name and each iss may appear once")
        for ehr in self.smart_ehrs:
            where = f"smart_ehrs ({ehr.name or ehr.iss})"
            if not ehr.name.strip() or not ehr.client_id.strip():
                raise ConfigError(f"{where}: name and client_id must not be empty")
            _check_key_url(f"{where} iss", ehr.iss)
            if ehr.client_auth not in SMART_CLIENT_AUTH:
                raise ConfigError(f"{where}: client_auth must be public or private_key_jwt, "
                                  f"not {ehr.client_auth!r}")
            if ehr.alg not in SMART_CLIENT_ALGORITHMS:
                raise ConfigError(f"{where}: alg must be RS384 or ES384, not {ehr.alg!r}")
            if not ehr.scopes.split():
                raise ConfigError(f"{where}: scopes must not be empty")
            for base in ehr.fhir_bases:
                pattern = base[:-2] if base.endswith("/*") else base
                _check_key_url(f"{where} fhir_bases", pattern)
                if plain_fhir_base(pattern) is None or "*" in pattern:
                    raise ConfigError(f"{where} fhir_bases: {base!r} is not a plain FHIR base URL (or one "
                                      "ending in /* for every base below it)")
        for n, ehr in enumerate(self.smart_ehrs):
            for other in self.smart_ehrs[n + 1:]:
                if _overlap(ehr, other) or _overlap(other, ehr):
                    raise ConfigError(f"smart_ehrs: {ehr.name!r} and {other.name!r} both cover a FHIR base; "
                                      "a launch's iss must name one EHR")

    def _check_test_models(self) -> None:
        """Random-weight output may reach only servers on this machine (the sandbox); the jobs
        check each server's CapabilityStatement too (plugin.engines.test_models)."""
        if not self.test_models:
            return
        servers = {"fhir_base_url": self.fhir_base_url,
                   **{f"smart_ehrs ({e.name}) iss": e.iss for e in self.smart_ehrs},
                   **{f"smart_ehrs ({e.name}) fhir_bases": b for e in self.smart_ehrs for b in e.fhir_bases},
                   **{f"cds_trusted_ehrs ({e.label}) fhir_servers": u
                      for e in self.cds_trusted_ehrs for u in e.fhir_servers},
                   **{f"backend_services ({s.label}) fhir_server": s.fhir_server
                      for s in self.backend_services}}
        for name, url in servers.items():
            if urlsplit(url).hostname not in _LOOPBACK_HOSTS:
                raise ConfigError(f"test_models: {name} {url} is not a sandbox on this machine; "
                                  "random-weight test models write only to a local sandbox")

    def _check_medgemma(self) -> None:
        if self.medgemma_engine not in {"local", "remote"}:
            raise ConfigError(f"medgemma_engine must be local or remote, not {self.medgemma_engine!r}")
        if self.medgemma_remote_timeout_s <= 0:
            raise ConfigError("medgemma_remote_timeout_s must be positive")
        if self.medgemma_remote_url is not None:
            _check_http_url("medgemma_remote_url", self.medgemma_remote_url)
        if self.medgemma_engine == "remote":
            if self.medgemma_remote_url is None:
                raise ConfigError("medgemma_engine is remote: set medgemma_remote_url")
            if not self.medgemma_remote_model.strip():
                raise ConfigError("medgemma_engine is remote: set medgemma_remote_model")

    def _check_pathology(self) -> None:
        for name in ("pathology_target_um_per_px", "pathology_patches", "pathology_max_base_pixels",
                     "pathology_max_frames_fetched"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)!r}")
        if not 64 <= self.pathology_patch_px <= 4096:
            raise ConfigError(f"pathology_patch_px must be 64 to 4096, got {self.pathology_patch_px!r}")

    def _check_imaging(self) -> None:
        for name in ("pacs_port", "imaging_max_slices", "imaging_max_instance_bytes",
                     "imaging_max_study_bytes"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)!r}")
        for url in self.imaging_trusted_endpoints:
            _check_http_url("imaging_trusted_endpoints", url)
        for url in self.imaging_allowed_endpoints:
            _check_http_url("imaging_allowed_endpoints", url)

    def _check_cds(self) -> None:
        for name in ("cds_max_token_lifetime_s", "cds_jwks_cache_s", "cds_jwks_timeout_s",
                     "cds_jwks_max_bytes", "cds_max_request_bytes", "cds_fhir_timeout_s",
                     "cds_source_check_interval_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)!r}")
        for name in ("cds_clock_skew_s", "cds_jwks_refetch_interval_s", "cds_source_check_wait_s"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be 0 or more")
        if self.cds_replay_cache not in {"database", "memory"}:
            raise ConfigError(f"cds_replay_cache must be database or memory, not {self.cds_replay_cache!r}")
        refused = set(self.cds_jwt_algorithms) - ASYMMETRIC_JWT_ALGORITHMS
        if refused or not self.cds_jwt_algorithms:
            raise ConfigError(f"cds_jwt_algorithms: {', '.join(sorted(refused)) or 'none given'}: only "
                              f"asymmetric JWS algorithms ({', '.join(sorted(ASYMMETRIC_JWT_ALGORITHMS))})")
        for optional_url in ("cds_public_base_url", "cds_app_launch_url"):
            if getattr(self, optional_url) is not None:
                _check_http_url(optional_url, getattr(self, optional_url))
        issuers = [ehr.iss for ehr in self.cds_trusted_ehrs]
        if len(set(issuers)) != len(issuers):
            raise ConfigError("cds_trusted_ehrs: each iss may appear once")
        for ehr in self.cds_trusted_ehrs:
            if not ehr.iss.strip():
                raise ConfigError("cds_trusted_ehrs: iss must not be empty")
            for url in ehr.jwks_urls:
                _check_key_url(f"cds_trusted_ehrs ({ehr.iss}) JWK Set URL", url)
            for url in ehr.fhir_servers:
                _check_http_url(f"cds_trusted_ehrs ({ehr.iss}) fhir_servers", url)


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
        if "TrustedEhr" in text:
            return _trusted_ehrs(name, raw)
        if "SmartEhr" in text:
            return _smart_ehrs(raw)
        if "BackendService" in text:
            return _backend_services(raw)
        if "tuple" in text:
            items = raw if isinstance(raw, list | tuple) else str(raw).split(",")
            return tuple(str(item).strip() for item in items if str(item).strip())
        if raw is None or (isinstance(raw, str) and raw == "" and "None" in text):
            return None
        return str(raw)
    except ValueError as exc:
        raise ConfigError(f"setting {name}: invalid value {raw!r} ({exc})") from None


def _tables(raw: Any, kind: type, what: str, keys: str) -> list[Any]:
    """The entries of a TOML array of tables, or of the same as JSON (the environment's form):
    instances of `kind` as they are, tables checked for keys `kind` does not have."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw) if raw.strip() else []
        except ValueError as exc:
            raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(raw, list | tuple):
        raise ValueError(f"expected a list of tables with {keys}")
    known = {f.name for f in dataclasses.fields(kind)}
    entries = []
    for entry in raw:
        if not isinstance(entry, kind | dict):
            raise ValueError(f"each {what} is a table")
        unknown = set(entry) - known if isinstance(entry, dict) else set()
        if unknown:
            raise ValueError(f"unknown key(s) {', '.join(sorted(unknown))}")
        entries.append(entry)
    return entries


def _trusted_ehrs(name: str, raw: Any) -> tuple[TrustedEhr, ...]:
    ehrs = []
    for entry in _tables(raw, TrustedEhr, "trusted EHR", "iss, jwks_url, jku, fhir_servers, name"):
        if isinstance(entry, TrustedEhr):
            ehrs.append(entry)
            continue
        if not entry.get("iss") or not entry.get("jwks_url"):
            raise ValueError("each trusted EHR needs iss and jwks_url")
        lists = {key: tuple(str(v).strip() for v in entry.get(key, ()) if str(v).strip())
                 for key in ("jku", "fhir_servers")}
        ehrs.append(TrustedEhr(iss=str(entry["iss"]), jwks_url=str(entry["jwks_url"]),
                               name=str(entry.get("name", "")), **lists))
    return tuple(ehrs)


def _smart_ehrs(raw: Any) -> tuple[SmartEhr, ...]:
    """`scopes` may be a string or a list of scopes."""
    ehrs = []
    for entry in _tables(raw, SmartEhr, "SMART EHR",
                         "name, iss, client_id, client_auth, alg, scopes, fhir_bases"):
        if isinstance(entry, SmartEhr):
            ehrs.append(entry)
            continue
        missing = {"name", "iss", "client_id"} - {k for k, v in entry.items() if v}
        if missing:
            raise ValueError(f"each SMART EHR needs {', '.join(sorted(missing))}")
        values: dict[str, Any] = {key: str(value) for key, value in entry.items()
                                  if key not in ("scopes", "fhir_bases")}
        if "fhir_bases" in entry:
            bases = entry["fhir_bases"]
            values["fhir_bases"] = tuple(str(b).strip() for b in (bases if isinstance(bases, list) else
                                                                  str(bases).split(",")) if str(b).strip())
        if "scopes" in entry:
            scopes = entry["scopes"]
            values["scopes"] = " ".join(str(s) for s in scopes) if isinstance(scopes, list) else str(scopes)
        ehrs.append(SmartEhr(**values))
    return tuple(ehrs)


def _backend_services(raw: Any) -> tuple[BackendService, ...]:
    """`scopes` may be a string or a list of scopes."""
    services = []
    for entry in _tables(raw, BackendService, "backend service",
                         "fhir_server, client_id, private_key_path, scopes, name, token_endpoint, kid, alg"):
        if isinstance(entry, BackendService):
            services.append(entry)
            continue
        required = {"fhir_server", "client_id", "private_key_path", "scopes"}
        missing = required - {k for k, v in entry.items() if v}
        if missing:
            raise ValueError(f"each backend service needs {', '.join(sorted(missing))}")
        values = {key: " ".join(str(s) for s in value) if key == "scopes" and isinstance(value, list)
                  else str(value) for key, value in entry.items()}
        services.append(BackendService(**values))
    return tuple(services)


def _check_key_url(name: str, value: str) -> None:
    """Keys travel over https; plain http only to this machine (tests, local development)."""
    parts = urlsplit(value)
    if not (parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in _LOOPBACK_HOSTS)) \
            or not parts.netloc:
        raise ConfigError(f"{name} must be an https URL (http only on loopback), got {value!r}")


def _field_names() -> set[str]:
    return {f.name for f in dataclasses.fields(Settings)}


def _check_http_url(name: str, value: str) -> None:
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ConfigError(f"{name} must be an http(s) URL, got {value!r}")
