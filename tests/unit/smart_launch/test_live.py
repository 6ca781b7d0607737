"""The spool of live dictations (smart_launch.live): pieces in order and counted once, each
recording its session's, FHIR server's and patient's only, bounded in duration, memory, count and
idle time, stopped once; and its audio read back as the batch pipeline reads the stored WAV."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from plugin.errors import InputError
from plugin.pipelines.speech.audio import decode_audio
from plugin.sandbox.synthetic import espeak_wav
from smart_launch.live import LiveLimits, LiveRecordings, LiveRefused, Owner, pcm_to_float, wav_bytes

OWNER = Owner("session-1", "https://ehr.example/fhir", "Patient/p1")
RID = "rec-0001-abcd"
LIMITS = LiveLimits(max_duration_s=60.0, memory_bytes=64 * 1024 * 1024, idle_s=30.0, max_recordings=3)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def spool(tmp_path: Path, limits: LiveLimits = LIMITS, clock: Clock | None = None) -> LiveRecordings:
    return LiveRecordings(tmp_path / "live", limits, clock=clock or Clock())


def pcm(n: int, value: int = 1000) -> bytes:
    return np.full(n, value, dtype="<i2").tobytes()


def test_pieces_are_taken_in_order_and_a_repeated_piece_counts_once(tmp_path: Path) -> None:
    live = spool(tmp_path)
    assert len(live.append(OWNER, RID, 0, pcm(100)).samples) == 100
    assert len(live.append(OWNER, RID, 1, pcm(50)).samples) == 150
    assert len(live.append(OWNER, RID, 1, pcm(50)).samples) == 150  # the same piece again
    with pytest.raises(LiveRefused) as gap:
        live.append(OWNER, RID, 3, pcm(10))
    assert gap.value.status == 409 and "before piece 2" in str(gap.value)
    with pytest.raises(LiveRefused) as unknown:
        live.append(OWNER, "never-started", 1, pcm(10))
    assert unknown.value.status == 404
    with pytest.raises(InputError, match="not whole 16-bit samples"):
        live.append(OWNER, RID, 2, b"\x00\x01\x02")
    with pytest.raises(InputError, match="recording id"):
        live.append(OWNER, "../../etc", 0, pcm(10))


def test_a_recording_is_its_sessions_servers_and_patients_only(tmp_path: Path) -> None:
    live = spool(tmp_path)
    live.append(OWNER, RID, 0, pcm(100))
    other_session = Owner("session-2", OWNER.fhir_base, OWNER.patient)
    other_patient = Owner(OWNER.session_id, OWNER.fhir_base, "Patient/p2")
    other_server = Owner(OWNER.session_id, "https://other-ehr.example/fhir", OWNER.patient)
    for owner in (other_session, other_patient, other_server):
        with pytest.raises(LiveRefused) as refused:
            live.append(owner, RID, 1, pcm(10))
        assert refused.value.status == 404
    # Another session with the same recording id opens a recording of its own.
    assert len(live.append(other_session, RID, 0, pcm(7)).samples) == 7
    assert len(live.append(OWNER, RID, 1, pcm(10)).samples) == 110


def test_duration_memory_and_count_limits(tmp_path: Path) -> None:
    live = spool(tmp_path, LiveLimits(max_duration_s=1.0, memory_bytes=64 * 1024 * 1024, idle_s=30.0,
                                      max_recordings=2))
    live.append(OWNER, "rec-a-000", 0, pcm(16_000))
    with pytest.raises(InputError, match="over the 1 s limit"):
        live.append(OWNER, "rec-a-000", 1, pcm(1))
    live.append(OWNER, "rec-b-000", 0, pcm(10))
    with pytest.raises(LiveRefused) as full:
        live.append(OWNER, "rec-c-000", 0, pcm(10))
    assert full.value.status == 503 and "2 live dictations are open" in str(full.value)

    small = spool(tmp_path / "small", LiveLimits(max_duration_s=60.0, memory_bytes=6 * 1000, idle_s=30.0,
                                                 max_recordings=2))
    small.append(OWNER, RID, 0, pcm(1000))  # 1000 samples x 6 bytes: exactly the budget
    with pytest.raises(InputError, match="memory budget"):
        small.append(OWNER, RID, 1, pcm(1))


def test_idle_and_overlong_recordings_are_dropped_with_their_audio(tmp_path: Path) -> None:
    clock = Clock()
    live = spool(tmp_path, clock=clock)
    live.append(OWNER, "rec-idle-0", 0, pcm(10))
    live.append(OWNER, "rec-busy-0", 0, pcm(10))
    clock.now += 20
    live.append(OWNER, "rec-busy-0", 1, pcm(10))
    clock.now += 15  # idle one: 35 s without audio (limit 30); busy one: 15 s
    assert live.sweep() == 1
    with pytest.raises(LiveRefused):
        live.append(OWNER, "rec-idle-0", 1, pcm(10))
    # Audio keeps coming, but no recording lives longer than the longest one plus the idle limit.
    for clock.now in (1045.0, 1070.0):
        live.append(OWNER, "rec-busy-0", live_pieces(live, "rec-busy-0"), pcm(1))
    clock.now = 1000.0 + LIMITS.max_duration_s + LIMITS.idle_s + 1  # 21 s since its last audio
    assert live.sweep() == 1
    assert [p for p in (tmp_path / "live").iterdir() if p.is_dir()] == []


def live_pieces(live: LiveRecordings, recording_id: str) -> int:
    import json

    folder = live.folder / live._key(OWNER, recording_id)
    return int(json.loads((folder / "meta.json").read_text())["pieces"])


def test_a_stop_is_done_once_and_a_retry_gets_its_answer(tmp_path: Path) -> None:
    live = spool(tmp_path)
    live.append(OWNER, RID, 0, pcm(100, 5))
    calls: list[tuple[str, int, bytes]] = []

    def failing(key: str, samples: np.ndarray, wav: bytes) -> dict[str, Any]:
        raise InputError("live dictation", "the EHR is away")

    with pytest.raises(InputError):
        live.stop(OWNER, RID, failing)

    def finish(key: str, samples: np.ndarray, wav: bytes) -> dict[str, Any]:
        calls.append((key, len(samples), wav))
        return {"source": "DocumentReference/9", "text": "t"}

    first = live.stop(OWNER, RID, finish)  # the failed stop kept nothing: this one runs
    again = live.stop(OWNER, RID, finish)
    assert first == again == {"source": "DocumentReference/9", "text": "t"}
    assert len(calls) == 1 and calls[0][1] == 100 and calls[0][2] == wav_bytes(pcm(100, 5))
    assert not (live.folder / calls[0][0] / "audio.pcm").exists()  # the audio is gone
    with pytest.raises(LiveRefused) as late:
        live.append(OWNER, RID, 1, pcm(10))
    assert late.value.status == 409


def test_the_spooled_audio_reads_as_the_batch_pipeline_reads_the_stored_wav() -> None:
    # espeak-ng's speech, as 16 kHz 16-bit PCM (the page's format), both ways.
    speech = decode_audio(espeak_wav("no pleural effusion"), source="t", max_duration_s=60).samples
    data = (np.clip(speech, -1, 32767 / 32768) * 32768).round().astype("<i2").tobytes()
    stored = decode_audio(wav_bytes(data), source="t", max_duration_s=60)
    assert stored.container == "wav" and stored.source_rate == 16_000
    assert np.array_equal(pcm_to_float(data), stored.samples)


def test_the_live_settings_reach_the_spool(tmp_path: Path) -> None:
    from plugin.app import create_app
    from plugin.config import Settings
    from plugin.errors import ConfigError
    from smart_launch.views.context import live_recordings_of

    settings = Settings(database_url=f"sqlite:///{tmp_path}/jobs.db",
                        smart_signing_key_path=str(tmp_path / "k"),
                        speech_live_dir=str(tmp_path / "spool"), speech_live_idle_s=5.0,
                        speech_live_max_recordings=1, speech_max_duration_s=2.0, job_memory_bytes=10**6)
    live = live_recordings_of(create_app(settings))
    assert live.limits == LiveLimits(max_duration_s=2.0, memory_bytes=10**6, idle_s=5.0, max_recordings=1)
    live.append(OWNER, RID, 0, pcm(10))
    assert [p.parent for p in (tmp_path / "spool").glob("*/audio.pcm")] != []
    with pytest.raises(LiveRefused, match="1 live dictations are open"):
        live.append(OWNER, "rec-second", 0, pcm(10))
    for bad in ({"speech_live_idle_s": 0.0}, {"speech_live_max_recordings": 0}):
        with pytest.raises(ConfigError, match="speech_live_idle_s and speech_live_max_recordings"):
            Settings(**bad)  # type: ignore[arg-type]
