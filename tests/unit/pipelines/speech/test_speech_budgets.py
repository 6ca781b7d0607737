"""Speech budgets: the header is checked before decoding (channels, sample rate, duration), the
samples are charged to the job's memory budget, non-finite samples are refused with their
reason, and a truncated file is called truncated, not missing."""

from __future__ import annotations

import pytest

from plugin.budget import MIB, BudgetExceeded, MemoryBudget
from plugin.errors import InputError
from plugin.pipelines.speech import audio as audio_module
from plugin.pipelines.speech.audio import decode_audio
from tests.corpus.hostile.audio import float_wav_of, mp3, opus_silence, wav, wav_header
from tests.support.audio_formats import tone


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_samples_that_are_not_numbers_are_refused(value: float) -> None:
    with pytest.raises(InputError) as raised:
        decode_audio(float_wav_of(value), source="Media/12 content", max_duration_s=60)
    assert str(raised.value).startswith("Media/12 content: the WAV audio holds samples that are "
                                        "not numbers (NaN or infinity) at 1.00 s")


@pytest.mark.parametrize(("data", "reason"), [
    (lambda: wav(tone(384_000, 1, 0.5)[:, 0], 384_000), "a sample rate of 384000 Hz"),
    (lambda: wav(tone(4000, 1, 0.5)[:, 0], 4000), "a sample rate of 4000 Hz"),
    (lambda: wav_header(channels=64, rate=16_000, data=b"\0" * 128 * 100), "declares 64 channels"),
], ids=["384-khz", "4-khz", "64-channels"])
def test_headers_no_dictation_has_are_refused_before_decoding(
        data: object, reason: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("decoding started")

    monkeypatch.setattr(audio_module, "_to_16k_mono", never)
    with pytest.raises(InputError, match=reason):
        decode_audio(data(), source="Media/1 content", max_duration_s=3600)  # type: ignore[operator]


def test_hours_of_opus_silence_are_refused_from_the_header() -> None:
    data = opus_silence(2)
    assert len(data) < 4 * MIB
    with pytest.raises(InputError, match=r"is 70\d\d s long, over the 3600 s limit"):
        decode_audio(data, source="Media/2 content", max_duration_s=3600)


def test_the_samples_are_charged_before_decoding_and_while_decoding() -> None:
    ten_minutes = wav_header(channels=1, rate=8000, data=b"\1\0" * 8000 * 600)
    budget = MemoryBudget("Media/3 content", limit_bytes=32 * MIB)
    with pytest.raises(BudgetExceeded, match="600 s of audio at 16 kHz needs 73.2 MiB"):
        decode_audio(ten_minutes, source="Media/3 content", max_duration_s=3600, budget=budget)
    one_minute = wav(tone(16_000, 1, 60.0)[:, 0], 16_000)
    decoded = decode_audio(one_minute, source="Media/3 content", max_duration_s=3600, budget=budget)
    assert budget.held_bytes == pytest.approx(decoded.samples.nbytes, abs=64 * 1024)


def test_a_truncated_mp3_is_called_truncated_not_missing() -> None:
    with pytest.raises(InputError) as raised:
        decode_audio(mp3()[:300], source="DocumentReference/4 content[1]", max_duration_s=60)
    message = str(raised.value)
    assert message.startswith("DocumentReference/4 content[1]: truncated or corrupt MP3")
    assert "does not exist" not in message
