"""The demo's test models: stored as marked folders, loaded as test weights wherever configured,
and refused against any FHIR server that is not the chartlight sandbox."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from plugin.config import Settings, SmartEhr
from plugin.engines.test_models import (
    MARKER,
    StoredMedAsr,
    ensure_test_models,
    is_test_model,
    sandbox_only,
    why_not_sandbox,
)
from plugin.errors import ConfigError
from plugin.pipelines.registry import installed_pipelines, medgemma_engine
from plugin.pipelines.speech.audio import decode_audio
from plugin.sandbox.synthetic import DICTATION_TEXT, espeak_wav

SANDBOX = {"resourceType": "CapabilityStatement",
           "implementation": {"description": "chartlight HAPI FHIR sandbox (R4)"}}


def test_only_the_chartlight_sandbox_on_this_machine_is_a_sandbox() -> None:
    assert why_not_sandbox("http://127.0.0.1:8080/fhir", lambda: SANDBOX) is None
    assert why_not_sandbox("http://localhost:9090/fhir", lambda: SANDBOX) is None
    remote = why_not_sandbox("https://ehr.example.org/fhir", lambda: SANDBOX)
    assert remote is not None and "not on this machine" in remote
    other = why_not_sandbox("http://127.0.0.1:8080/fhir",
                            lambda: {"implementation": {"description": "HAPI FHIR"}})
    assert other is not None and "not the chartlight HAPI sandbox" in other

    def unreachable() -> dict[str, Any]:
        raise OSError("connection refused")
    assert "did not say what it is" in (why_not_sandbox("http://127.0.0.1:1/fhir", unreachable) or "")


@dataclass
class _Client:
    base_url: str
    statement: dict[str, Any]

    def capabilities(self) -> dict[str, Any]:
        return self.statement


@dataclass
class _Context:
    client: _Client


def test_a_guarded_pipeline_does_not_run_against_another_server() -> None:
    ran: list[str] = []

    def pipeline(context: Any) -> Any:
        ran.append(context.client.base_url)
        return "result"

    guarded = sandbox_only(pipeline)
    assert guarded(_Context(_Client("http://127.0.0.1:8080/fhir", SANDBOX))) == "result"  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="test models: .* is not on this machine"):
        guarded(_Context(_Client("https://ehr.example.org/fhir", SANDBOX)))  # type: ignore[arg-type]
    assert ran == ["http://127.0.0.1:8080/fhir"]


def test_settings_refuse_test_models_with_a_remote_server() -> None:
    with pytest.raises(ConfigError, match="fhir_base_url https://ehr.example.org/fhir is not a sandbox"):
        Settings(test_models=True, fhir_base_url="https://ehr.example.org/fhir")
    assert Settings(test_models=True, fhir_base_url="http://127.0.0.1:8080/fhir").test_models
    # a further FHIR base of a SMART registration is a server the app writes to as well
    with pytest.raises(ConfigError, match=r"smart_ehrs \(e\) fhir_bases https://ehr.example.org/t/\* is not"):
        Settings(test_models=True, smart_ehrs=(SmartEhr(
            name="e", iss="http://127.0.0.1:9090/fhir", client_id="c", fhir_bases=("https://ehr.example.org/t/*",)),))


def test_stored_test_models_run_and_are_marked_as_test_weights(tmp_path: Path) -> None:
    settings = Settings(test_models=True, test_models_dir=str(tmp_path))
    pipelines = installed_pipelines(settings)
    folders = ensure_test_models(tmp_path)
    assert is_test_model(folders.medgemma) and (folders.medasr / MARKER).is_file()
    assert not pipelines["speech"].unavailable_reason and not pipelines["imaging"].unavailable_reason
    assert "TEST OUTPUT, not clinical" in pipelines["imaging"].engine_note

    engine = medgemma_engine(settings)
    assert engine.model_info().test_weights and engine.generate(["Say something."], max_new_tokens=4) != "x"
    # The folder is a test model wherever it is configured, even without test_models.
    assert medgemma_engine(Settings(medgemma_model=str(folders.medgemma))).model_info().test_weights

    medasr = StoredMedAsr(folders.medasr)
    audio = decode_audio(espeak_wav(DICTATION_TEXT[:80]), source="t", max_duration_s=60).samples
    transcript = medasr.transcribe(audio)
    assert medasr.model_info().test_weights and transcript.frames > 0 and transcript.tokens
