"""Hostile and broken dictation audio for the speech pipeline, made here with soundfile, PyAV or
byte by byte: hours of compressed silence, headers declaring no channels, a thousand channels or
absurd sample rates, samples that are not numbers, truncated and mislabelled files."""

from __future__ import annotations

import io
import struct
from functools import cache

import numpy as np
import soundfile

from plugin.sandbox.synthetic import espeak_wav
from tests.corpus.hostile import HostileInput
from tests.support.audio_formats import tone, with_pyav, with_soundfile

SPEECH = "speech"
DICTATION = "no pleural effusion period the right lower lobe nodule is stable period"


def wav(samples: np.ndarray, rate: int, subtype: str = "PCM_16") -> bytes:
    return with_soundfile(samples.reshape(len(samples), -1), rate, "WAV", subtype)


def wav_header(*, channels: int, rate: int, bits: int = 16, data: bytes = b"",
               declared_data: int | None = None) -> bytes:
    """A PCM WAV written field by field, so the header may say what no encoder would."""
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * block, block, bits)
    size = len(data) if declared_data is None else declared_data
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", size)
    return b"RIFF" + struct.pack("<I", min(len(body) + size, 0xFFFFFFFF)) + body + data


def float_wav_of(value: float) -> bytes:
    """A float WAV: one second of tone, then a second of `value` (NaN or infinity)."""
    samples = np.concatenate([tone(16_000, 1, 1.0)[:, 0], np.full(16_000, value, np.float32)])
    return wav(samples, 16_000, "FLOAT")


def _ogg_crc(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
            crc &= 0xFFFFFFFF
    return crc


@cache
def _ogg_crc_table() -> tuple[int, ...]:
    return tuple(_ogg_crc(bytes([i])) for i in range(256))


def ogg_crc(data: bytes) -> int:
    table = _ogg_crc_table()
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ table[(crc >> 24) ^ byte]
    return crc


def ogg_pages(data: bytes) -> list[tuple[bytearray, bytes]]:
    """(27-byte header + segment table, body) of each Ogg page."""
    pages, at = [], 0
    while at < len(data):
        segments = data[at + 26]
        header_end = at + 27 + segments
        body_len = sum(data[at + 27:header_end])
        pages.append((bytearray(data[at:header_end]), data[header_end:header_end + body_len]))
        at = header_end + body_len
    return pages


def opus_silence(hours: float) -> bytes:
    """Real Ogg Opus holding `hours` of silence: one minute encoded, its audio pages repeated
    with granule positions and sequence numbers carried on (a few MiB, made in a second)."""
    rate = 8000
    buffer = io.BytesIO()
    with soundfile.SoundFile(buffer, "w", rate, 1, format="OGG", subtype="OPUS") as sound:
        sound.write(np.zeros(rate * 60, np.float32))
    pages = ogg_pages(buffer.getvalue())
    # The last page may trim its final packet (allowed only at the end): it is left out.
    heads, audio = pages[:2], pages[2:-1]
    granules = [struct.unpack("<q", bytes(header[6:14]))[0] for header, _ in audio]
    lengths = [after - before for before, after in zip([0, *granules], granules, strict=False)]
    repeats = max(1, round(hours * 60))
    out = bytearray(b"".join(_sealed(header, body, n) for n, (header, body) in enumerate(heads)))
    granule, sequence = 0, len(heads)
    for repeat in range(repeats):
        for index, (header, body) in enumerate(audio):
            page = bytearray(header)
            granule += lengths[index]
            page[6:14] = struct.pack("<q", granule)
            last = repeat == repeats - 1 and index == len(audio) - 1
            page[5] = (page[5] & ~0x04) | (0x04 if last else 0)  # end of stream flag
            out += _sealed(page, body, sequence)
            sequence += 1
    return bytes(out)


def _sealed(header: bytearray, body: bytes, sequence: int) -> bytes:
    page = bytearray(header)
    page[18:22] = struct.pack("<I", sequence)
    page[22:26] = b"\0\0\0\0"
    page[22:26] = struct.pack("<I", ogg_crc(bytes(page) + body))
    return bytes(page) + body


def flac_silence(hours: float) -> bytes:
    buffer = io.BytesIO()
    with soundfile.SoundFile(buffer, "w", 8000, 1, format="FLAC", subtype="PCM_16") as sound:
        block = np.zeros(8000 * 600, dtype=np.int16)
        for _ in range(round(hours * 6)):
            sound.write(block)
    return buffer.getvalue()


@cache
def dictation_wav() -> bytes:
    return espeak_wav(DICTATION)


def mp3() -> bytes:
    return with_soundfile(tone(22_050, 1, 3.0), 22_050, "MP3", "MPEG_LAYER_III")


CASES: tuple[HostileInput, ...] = (
    HostileInput("opus-3-hours-of-silence", SPEECH, "audio/ogg", lambda: opus_silence(3),
                 reason="over the 3600 s limit"),
    HostileInput("flac-3-hours-of-silence", SPEECH, "audio/flac", lambda: flac_silence(3),
                 reason="over the 3600 s limit"),
    HostileInput("wav-0-channels", SPEECH, "audio/wav",
                 lambda: wav_header(channels=0, rate=16_000, data=b"\0" * 3200), reason="wav"),
    HostileInput("wav-1024-channels", SPEECH, "audio/wav",
                 lambda: wav_header(channels=1024, rate=16_000, data=b"\0" * 2048 * 100),
                 reason="1024 channels"),
    HostileInput("wav-384-khz", SPEECH, "audio/wav",
                 lambda: wav(tone(384_000, 1, 1.0)[:, 0], 384_000), reason="384000 hz"),
    HostileInput("wav-2-khz", SPEECH, "audio/wav",
                 lambda: wav(tone(2000, 1, 1.0)[:, 0] * 0 + 0.3, 2000), reason="2000 hz"),
    HostileInput("wav-header-claims-4-gib", SPEECH, "audio/wav",
                 lambda: wav_header(channels=1, rate=16_000, data=b"\x10\x00" * 16_000,
                                    declared_data=0xFFFFFFF0), expect="either"),
    HostileInput("wav-float-nan", SPEECH, "audio/wav", lambda: float_wav_of(float("nan")),
                 reason="not numbers"),
    HostileInput("wav-float-infinity", SPEECH, "audio/wav", lambda: float_wav_of(float("inf")),
                 reason="not numbers"),
    HostileInput("mp3-truncated", SPEECH, "audio/mpeg", lambda: mp3()[:300],
                 reason="truncated or corrupt mp3"),
    HostileInput("mp3-cut-in-half", SPEECH, "audio/mpeg", lambda: mp3()[: len(mp3()) // 2],
                 expect="either"),
    HostileInput("wav-truncated-header", SPEECH, "audio/wav", lambda: dictation_wav()[:30],
                 reason="truncated or corrupt wav"),
    HostileInput("webm-truncated", SPEECH, "audio/webm",
                 lambda: with_pyav(tone(48_000, 1, 2.0), 48_000, "webm", "libopus")[:60],
                 reason="webm"),
    HostileInput("audio-empty", SPEECH, "audio/wav", lambda: b"", reason="empty"),
    HostileInput("text-declared-wav", SPEECH, "audio/wav",
                 lambda: b"Patient dictation to follow.\n" * 40, reason="content is text"),
    HostileInput("html-declared-mpeg", SPEECH, "audio/mpeg",
                 lambda: b"<!DOCTYPE html><html><body>404 Not Found</body></html>",
                 reason="content is text"),
    HostileInput("pdf-declared-ogg", SPEECH, "audio/ogg",
                 lambda: b"%PDF-1.4\n" + bytes(range(256)) * 4, reason="not audio"),
    HostileInput("wav-digital-silence", SPEECH, "audio/wav",
                 lambda: wav(np.zeros(16_000 * 5, np.float32), 16_000), reason="silent"),
    HostileInput("wav-too-short", SPEECH, "audio/wav",
                 lambda: wav(tone(16_000, 1, 0.05)[:, 0], 16_000), reason="too short"),
    HostileInput("wav-control-dictation", SPEECH, "audio/wav", dictation_wav,
                 expect="either", reason="no speech"),
)
