"""Tiny random-weight MedGemma and MedASR as local model folders, for the demo on a sandbox.

`chartlight demo --test-models` (setting test_models) builds them once from the real config
classes (tiny_gemma, tiny_medasr), saves them under test_models_dir, and runs every pipeline on
them. Each folder holds a marker file, so whatever loads it marks its output as test weights
("TEST OUTPUT, not clinical" in FHIR, the CLI, cards and the app). Their output may be written
only to a sandbox: a FHIR server on this machine whose CapabilityStatement is the chartlight
HAPI sandbox's (also behind the sandbox EHR's proxy); `sandbox_only` refuses any other.
"""

from __future__ import annotations

import fcntl
import json
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from plugin.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np

    from plugin.engines.medasr import MedAsrEngine
    from plugin.engines.medgemma import MedGemmaEngine
    from plugin.jobs import JobContext, Pipeline
    from plugin.pipelines.speech.ctc import CtcTranscript
    from plugin.results import ModelInfo, PipelineResult

MARKER = "chartlight-test-model.json"
MEDGEMMA_NAME = "chartlight-test/tiny-medgemma"
MEDASR_NAME = "chartlight-test/tiny-medasr"
TEST_OUTPUT = "TEST OUTPUT, not clinical"
# What the chartlight HAPI sandbox says of itself (hapi_launcher FhirServerConfig.java).
SANDBOX_IMPLEMENTATION = "chartlight HAPI FHIR sandbox"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
_BUILD_LOCK = threading.Lock()


@dataclass(frozen=True)
class StoredTestModels:
    medgemma: Path
    medasr: Path


def ensure_test_models(folder: Path) -> StoredTestModels:
    """The two model folders under `folder`, built (a few seconds, on the CPU) when absent."""
    folders = StoredTestModels(folder / "tiny-medgemma", folder / "tiny-medasr")
    if is_test_model(folders.medgemma) and is_test_model(folders.medasr):
        return folders
    folder.mkdir(parents=True, exist_ok=True)
    # Threads of this process, and other processes (a demo beside a test run), build once.
    with _BUILD_LOCK, open(folder / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not is_test_model(folders.medgemma):
            _build(folders.medgemma, MEDGEMMA_NAME, _save_medgemma)
        if not is_test_model(folders.medasr):
            _build(folders.medasr, MEDASR_NAME, _save_medasr)
    return folders


def is_test_model(folder: str | Path) -> bool:
    """Whether `folder` is a test model this module stored (its marker file is there)."""
    return (Path(folder).expanduser() / MARKER).is_file()


def medgemma_engine(folder: Path) -> MedGemmaEngine:
    from plugin.engines.medgemma import MedGemmaEngine

    return MedGemmaEngine(str(folder), name=MEDGEMMA_NAME, test_weights=True)


class StoredMedAsr:
    """The speech engine shape over the stored tiny MedASR, loaded on the first transcription
    (so a web tier that never transcribes never imports torch)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._engine: MedAsrEngine | None = None
        self._lock = threading.Lock()

    def available(self) -> bool:
        return is_test_model(self.folder)

    def requirements(self) -> str:
        return f"the tiny test MedASR at {self.folder} (chartlight demo --test-models builds it)"

    def model_info(self) -> ModelInfo:
        return self._loaded().model_info()

    def transcribe(self, audio_16k: np.ndarray, *,
                   progress: Callable[[float], None] | None = None) -> CtcTranscript:
        return self._loaded().transcribe(audio_16k, progress=progress)

    def windowed(self) -> MedAsrEngine:
        """The engine whose transcribe() steps live dictation takes one by one."""
        return self._loaded()

    def _loaded(self) -> MedAsrEngine:
        with self._lock:
            if self._engine is None:
                from plugin.engines.medasr import MedAsrEngine

                from .tiny_medasr import load_saved

                self._engine = MedAsrEngine.from_loaded(load_saved(self.folder))
            return self._engine


def sandbox_only(pipeline: Pipeline) -> Pipeline:
    """`pipeline`, refusing to run a job whose FHIR server is not a sandbox (ConfigError: the
    job fails with that message and writes nothing)."""
    checked: dict[str, str | None] = {}

    def run(context: JobContext) -> PipelineResult:
        base = context.client.base_url
        if base not in checked:
            checked[base] = why_not_sandbox(base, lambda: context.client.capabilities())
        if checked[base] is not None:
            raise ConfigError(f"test models: {checked[base]}")
        return pipeline(context)
    return run


def why_not_sandbox(base_url: str, capabilities: Callable[[], dict[str, Any]]) -> str | None:
    """None when `base_url` is a chartlight sandbox, else why it is not one."""
    if urlsplit(base_url).hostname not in LOOPBACK_HOSTS:
        return f"{base_url} is not on this machine, so it is not a sandbox"
    try:
        description = (capabilities().get("implementation") or {}).get("description", "")
    except Exception as exc:  # noqa: BLE001 -- any failure to ask means "not shown to be a sandbox"
        return f"{base_url} did not say what it is ({type(exc).__name__})"
    if not str(description).startswith(SANDBOX_IMPLEMENTATION):
        return f"{base_url} is not the chartlight HAPI sandbox (it says {description!r})"
    return None


def _build(folder: Path, name: str, save: Callable[[Path], None]) -> None:
    """Save into a sibling folder, then rename: a crash never leaves a half-written model."""
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    save(partial)
    (partial / MARKER).write_text(json.dumps({"name": name, "test_weights": True,
                                              "note": f"random weights: {TEST_OUTPUT}"}) + "\n")
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)


def _save_medgemma(folder: Path) -> None:
    from .tiny_gemma import save_tiny_medgemma

    save_tiny_medgemma(folder)


def _save_medasr(folder: Path) -> None:
    from .tiny_medasr import save_tiny_medasr

    save_tiny_medasr(folder)
