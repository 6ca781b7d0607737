"""Audio in every format the speech pipeline reads, generated here (soundfile, PyAV): WAV
8/16/24-bit, float and mu-law, FLAC, OGG Opus and Vorbis, WebM Opus, MP3; mono and stereo; odd
sample rates."""

from __future__ import annotations

import io
from collections.abc import Callable
from functools import cache

import av
import numpy as np
import soundfile

TONE_HZ = 440.0
SECONDS = 1.5


def tone(rate: int, channels: int, seconds: float = SECONDS) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    wave = 0.5 * np.sin(2 * np.pi * TONE_HZ * t)
    # Stereo: the second channel at half level, so a downmix is 0.375 peak, not a copy of one.
    return np.stack([wave, wave * 0.5][:channels], axis=1).astype(np.float32)


def with_soundfile(samples: np.ndarray, rate: int, fmt: str, subtype: str) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def with_pyav(samples: np.ndarray, rate: int, container: str, codec: str) -> bytes:
    """What a browser's MediaRecorder makes: Opus in WebM (no duration in the header)."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container) as media:
        stream = media.add_stream(codec, rate=rate)
        stream.layout = "stereo" if samples.shape[1] == 2 else "mono"
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples.T, dtype=np.float32),
                                           format="fltp", layout=stream.layout.name)
        frame.rate = rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            media.mux(packet)
    return buffer.getvalue()


# name -> (writer, rate, channels, format or container, subtype or codec, what sniffing says)
FORMATS = {
    "wav-u8-8k-mono": (with_soundfile, 8000, 1, "WAV", "PCM_U8", "wav"),
    "wav-16-44k1-stereo": (with_soundfile, 44100, 2, "WAV", "PCM_16", "wav"),
    "wav-24-22k05-mono": (with_soundfile, 22050, 1, "WAV", "PCM_24", "wav"),
    "wav-float-11k025-stereo": (with_soundfile, 11025, 2, "WAV", "FLOAT", "wav"),
    "wav-mulaw-8k-mono": (with_soundfile, 8000, 1, "WAV", "ULAW", "wav"),
    "flac-16-96k-stereo": (with_soundfile, 96000, 2, "FLAC", "PCM_16", "flac"),
    "flac-24-16k-mono": (with_soundfile, 16000, 1, "FLAC", "PCM_24", "flac"),
    "ogg-opus-48k-mono": (with_soundfile, 48000, 1, "OGG", "OPUS", "ogg"),
    "ogg-vorbis-32k-stereo": (with_soundfile, 32000, 2, "OGG", "VORBIS", "ogg"),
    "webm-opus-48k-stereo": (with_pyav, 48000, 2, "webm", "libopus", "webm"),
    "webm-opus-48k-mono": (with_pyav, 48000, 1, "webm", "libopus", "webm"),
    "mp3-44k1-stereo": (with_soundfile, 44100, 2, "MP3", "MPEG_LAYER_III", "mp3"),
    "mp3-22k05-mono": (with_soundfile, 22050, 1, "MP3", "MPEG_LAYER_III", "mp3"),
}


def encode(name: str, signal: Callable[[int, int], np.ndarray]) -> bytes:
    """`signal(rate, channels)` written in the format called `name`."""
    writer, rate, channels, fmt, subtype, _ = FORMATS[name]
    return writer(signal(rate, channels), rate, fmt, subtype)


def container_of(name: str) -> str:
    return FORMATS[name][5]


@cache
def encoded(name: str) -> bytes:
    return encode(name, tone)
