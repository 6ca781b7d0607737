"""Decoding every listed format (generated here with soundfile and PyAV) to 16 kHz mono, and the
clear refusal of what is not usable audio."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile

from plugin.errors import InputError
from plugin.pipelines.speech.audio import SAMPLE_RATE, decode_audio, sniff_container
from tests.support.audio_formats import FORMATS, SECONDS, TONE_HZ, container_of, encoded, tone, with_pyav


def dominant_hz(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / SAMPLE_RATE)[np.argmax(spectrum)])


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_every_format_decodes_to_16k_mono_float(name: str) -> None:
    data = encoded(name)
    container = container_of(name)
    assert sniff_container(data) == container
    audio = decode_audio(data, source=f"test {name}", max_duration_s=60)
    assert audio.container == container
    assert audio.samples.dtype == np.float32 and audio.samples.ndim == 1
    assert audio.channels == (2 if "stereo" in name else 1)
    # Same length (lossy codecs may pad a few ms) and the same pitch: properly resampled.
    assert abs(audio.duration_s - SECONDS) < 0.03, audio.duration_s
    assert abs(dominant_hz(audio.samples) - TONE_HZ) < 2.0
    peak = float(np.max(np.abs(audio.samples)))
    expected_peak = 0.375 if "stereo" in name else 0.5  # channels averaged, not summed
    assert abs(peak - expected_peak) < 0.06, peak


def test_resampling_is_band_limited() -> None:
    # 7.5 kHz at 44.1 kHz is near the new Nyquist (8 kHz); 12 kHz is above it and must vanish
    # rather than fold back to 4 kHz, which naive decimation would do.
    rate = 44100
    t = np.arange(rate) / rate
    buffer = io.BytesIO()
    soundfile.write(buffer, (0.4 * np.sin(2 * np.pi * 12000 * t) + 0.1 * np.sin(2 * np.pi * 1000 * t)),
                    rate, format="WAV", subtype="FLOAT")
    audio = decode_audio(buffer.getvalue(), source="tones", max_duration_s=60)
    spectrum = np.abs(np.fft.rfft(audio.samples))
    freqs = np.fft.rfftfreq(len(audio.samples), 1 / SAMPLE_RATE)
    assert abs(freqs[np.argmax(spectrum)] - 1000) < 2
    alias = spectrum[(freqs > 3900) & (freqs < 4100)].max()
    assert alias < spectrum.max() * 1e-3


def silent_flac(seconds: int, rate: int = 8000) -> bytes:
    buffer = io.BytesIO()
    with soundfile.SoundFile(buffer, "w", samplerate=rate, channels=1, format="FLAC",
                             subtype="PCM_16") as sound:
        block = np.zeros(rate * 600, dtype=np.int16)
        for _ in range(seconds // 600):
            sound.write(block)
    return buffer.getvalue()


def wav_bytes(samples: np.ndarray, rate: int = 16000) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


@pytest.mark.parametrize(("data", "reason"), [
    (b"", "empty"),
    (b"Patient says the pain started on Tuesday.\n" * 20, "content is text"),
    (b"\x00\x01\x02\x03" * 100, "unrecognised binary"),
    (wav_bytes(np.zeros(16000, dtype=np.float32) + 0.1)[:30], "could not be opened"),
    (wav_bytes(np.zeros(0, dtype=np.float32)), "no audio samples"),
    (wav_bytes(np.full(800, 0.2, dtype=np.float32)), "too short"),
    (wav_bytes(np.zeros(16000 * 5, dtype=np.float32)), "silent"),
    (b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00" + b"\xff" * 40, "could not be opened"),
    (b"\x1a\x45\xdf\xa3" + b"\x00" * 64, "WEBM"),
    (b"fLaC" + b"\x00" * 200, "FLAC"),
], ids=["empty", "text", "binary", "truncated-wav-header", "zero-length", "too-short", "silence",
        "corrupt-wav-header", "corrupt-webm", "corrupt-flac"])
def test_unusable_audio_is_refused_with_its_reason(data: bytes, reason: str) -> None:
    with pytest.raises(InputError) as caught:
        decode_audio(data, source="Media/42 content", max_duration_s=3600)
    assert caught.value.source == "Media/42 content"
    assert reason in str(caught.value)


def test_three_hours_of_silence_are_refused_from_the_header() -> None:
    data = silent_flac(3 * 3600)
    assert len(data) < 1_000_000  # a decompression bomb: tiny file, hours of audio
    with pytest.raises(InputError, match=r"10800 s long, over the 3600 s limit"):
        decode_audio(data, source="DocumentReference/9 content[0]", max_duration_s=3600)


def test_duration_limit_holds_when_the_header_does_not_say() -> None:
    data = with_pyav(tone(48000, 1, seconds=4.0), 48000, "webm", "libopus")
    with pytest.raises(InputError, match="longer than the 3 s limit"):
        decode_audio(data, source="Media/7 content", max_duration_s=3)
