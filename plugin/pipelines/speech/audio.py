"""Audio bytes -> 16 kHz mono float32: sniff the container, decode, downmix, resample with soxr.

WAV (PCM 8/16/24/32-bit, float, mu-law, A-law), FLAC, OGG (Vorbis, Opus) and MP3 are read by
libsndfile (soundfile); WebM/Matroska (a browser's MediaRecorder), MP4/M4A and AAC by FFmpeg's
libraries through PyAV. The container is recognised from the bytes themselves: a declared
content type is often wrong (audio/wav for a WebM upload) and never trusted alone.

Decoding streams block by block, so the duration limit is enforced before a long or hostile file
(a decompression bomb: hours of silence compress to almost nothing) is ever held in memory. The
container's header is checked first (sample rate, channels, duration) and the samples it promises
are charged to the job's memory budget before a block is decoded; samples that are not numbers
(NaN, infinity in a float WAV) are refused, never passed on to the model.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from plugin.budget import MemoryBudget
from plugin.errors import ConfigError, InputError

SAMPLE_RATE = 16_000
BLOCK_FRAMES = 1 << 16
# Shorter than this gives the model less than one output frame to work on.
MIN_DURATION_S = 0.2
# A peak below -80 dBFS is digital silence: nothing was recorded.
SILENCE_PEAK = 1e-4
# What a recording's header may declare. Below 8 kHz no speech is left; above 192 kHz no recorder
# of speech goes, and resampling an hour of it would hold a worker for minutes.
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 8_000, 192_000
MAX_CHANNELS = 32
BYTES_PER_SAMPLE = 4  # float32, as decoded and as kept

SOUNDFILE_CONTAINERS = {"wav", "flac", "ogg", "mp3", "aiff"}
PYAV_CONTAINERS = {"webm", "mp4", "aac"}


@dataclass(frozen=True)
class DecodedAudio:
    """Mono float32 samples at 16 kHz, and what the recording was before conversion."""

    samples: np.ndarray
    container: str
    source_rate: int
    channels: int

    @property
    def duration_s(self) -> float:
        return len(self.samples) / SAMPLE_RATE


@dataclass(frozen=True)
class _Stream:
    rate: int
    channels: int
    frames: int | None  # None when the container does not say (a MediaRecorder WebM)
    blocks: Iterator[np.ndarray]  # float32, shape (n, channels)


def sniff_container(data: bytes) -> str | None:
    """The audio container named by the first bytes, or None when they are not one we know."""
    head = data[:16]
    if head[:4] in (b"RIFF", b"RIFX", b"RF64") and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "aiff"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:4] == b"OggS":
        return "ogg"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "webm"  # EBML: WebM or Matroska
    if head[4:8] == b"ftyp":
        return "mp4"
    if head[:3] == b"ID3":
        return "mp3"
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        # MPEG audio frame sync; layer bits 00 mean an AAC ADTS stream instead.
        return "aac" if head[1] & 0x06 == 0 else "mp3"
    return None


def decode_audio(data: bytes, *, source: str, max_duration_s: float,
                 budget: MemoryBudget | None = None) -> DecodedAudio:
    """Decode `data` to 16 kHz mono. `source` names the input in errors (InputError). The
    returned samples stay charged to `budget`."""
    budget = budget if budget is not None else MemoryBudget(source)
    if not data:
        raise InputError(source, "the audio is empty (0 bytes)")
    container = sniff_container(data)
    if container is None:
        raise InputError(source, f"not audio in a format we read ({_describe(data)}); expected WAV, "
                                 "FLAC, OGG/Opus, WebM/Opus, MP3 or MP4/AAC")
    stream = _open_soundfile(data, container, source) if container in SOUNDFILE_CONTAINERS \
        else _open_pyav(data, container, source)
    _check_header(stream, source, container)
    if stream.frames is not None and stream.frames > max_duration_s * stream.rate:
        raise InputError(source, f"the recording is {stream.frames / stream.rate:.0f} s long, over the "
                                 f"{max_duration_s:.0f} s limit")
    if stream.frames is not None:  # refused now rather than after minutes of decoding
        budget.check(2 * _kept_bytes(stream.frames, stream.rate),
                     f"{stream.frames / stream.rate:.0f} s of audio at 16 kHz")
    samples = _to_16k_mono(stream, source=source, container=container,
                           max_duration_s=max_duration_s, budget=budget)
    duration = len(samples) / SAMPLE_RATE
    if len(samples) == 0:
        raise InputError(source, f"the {container.upper()} file contains no audio samples")
    if duration < MIN_DURATION_S:
        raise InputError(source, f"the recording is {duration:.2f} s long, too short to transcribe "
                                 f"(at least {MIN_DURATION_S} s)")
    peak = float(np.max(np.abs(samples)))
    if peak < SILENCE_PEAK:
        raise InputError(source, f"the recording is silent (peak level below -80 dBFS over "
                                 f"{duration:.0f} s): nothing to transcribe")
    return DecodedAudio(samples, container, stream.rate, stream.channels)


def _check_header(stream: _Stream, source: str, container: str) -> None:
    """What the header declares, refused before anything is decoded when no recording of speech
    could have it."""
    name = container.upper()
    if not 1 <= stream.channels <= MAX_CHANNELS:
        raise InputError(source, f"the {name} header is invalid: it declares {stream.channels} "
                                 f"channels (1 to {MAX_CHANNELS} are read)")
    if not MIN_SAMPLE_RATE <= stream.rate <= MAX_SAMPLE_RATE:
        raise InputError(source, f"the {name} header declares a sample rate of {stream.rate} Hz; "
                                 f"{MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz are read")


def _kept_bytes(frames: int, rate: int) -> int:
    """What `frames` at `rate` take once resampled to 16 kHz mono float32."""
    return (frames * SAMPLE_RATE // rate + 1) * BYTES_PER_SAMPLE


def _to_16k_mono(stream: _Stream, *, source: str, container: str, max_duration_s: float,
                 budget: MemoryBudget) -> np.ndarray:
    import soxr

    limit = int(max_duration_s * stream.rate)
    resampler = soxr.ResampleStream(stream.rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ") \
        if stream.rate != SAMPLE_RATE else None
    out: list[np.ndarray] = []
    kept = 0  # bytes of `out`, charged to the budget block by block
    seen = 0
    try:
        with budget.held(BLOCK_FRAMES * stream.channels * BYTES_PER_SAMPLE * 2,
                         f"decoding blocks of {stream.channels}-channel audio"):
            for block in stream.blocks:
                seen += len(block)
                if seen > limit:
                    raise InputError(source, f"the recording is longer than the "
                                             f"{max_duration_s:.0f} s limit")
                finite = np.isfinite(block).all(axis=1)
                if not finite.all():
                    at = seen - len(block) + int(np.argmin(finite))
                    raise InputError(source, f"the {container.upper()} audio holds samples that "
                                             f"are not numbers (NaN or infinity) at "
                                             f"{at / stream.rate:.2f} s: the file is corrupt")
                size = _kept_bytes(len(block), stream.rate)
                budget.charge(size, f"{seen / stream.rate:.0f} s of audio at 16 kHz")
                kept += size
                mono = np.ascontiguousarray(block.mean(axis=1, dtype=np.float32))
                out.append(mono if resampler is None else resampler.resample_chunk(mono))
        if resampler is not None:
            out.append(resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True))
        # The blocks and the one array they are joined into exist together for a moment.
        with budget.held(kept, "joining the decoded audio"):
            samples = np.concatenate(out) if out else np.zeros(0, dtype=np.float32)
    except InputError:
        budget.release(kept)
        raise
    except Exception as exc:  # each decoder has its own error types; all mean the same here
        budget.release(kept)
        raise InputError(source, f"the {container.upper()} audio could not be decoded: "
                                 f"{type(exc).__name__}: {exc}") from None
    return np.clip(samples, -1.0, 1.0, out=samples)  # soxr's filter may overshoot by a hair


def _open_soundfile(data: bytes, container: str, source: str) -> _Stream:
    import soundfile

    try:
        sound = soundfile.SoundFile(io.BytesIO(data))
    except (soundfile.LibsndfileError, RuntimeError, ValueError) as exc:
        name = container.upper()
        raise InputError(source, f"truncated or corrupt {name}: the file could not be opened "
                                 f"({_libsndfile_reason(exc, len(data))})") from None
    if sound.samplerate <= 0 or sound.channels <= 0:
        sound.close()
        raise InputError(source, f"the {container.upper()} header is invalid "
                                 f"({sound.samplerate} Hz, {sound.channels} channels)")

    def blocks() -> Iterator[np.ndarray]:
        with sound:
            while True:
                block = sound.read(BLOCK_FRAMES, dtype="float32", always_2d=True)
                if len(block) == 0:
                    return
                yield block

    # libsndfile only estimates the length of an MP3; it is checked again while decoding.
    frames = sound.frames if 0 < sound.frames < 2**62 else None
    return _Stream(sound.samplerate, sound.channels, frames, blocks())


def _open_pyav(data: bytes, container: str, source: str) -> _Stream:
    try:
        import av
    except ImportError:
        raise ConfigError(f"{source}: {container.upper()} audio needs PyAV (the `av` package), "
                          "which is not installed") from None
    try:
        media = av.open(io.BytesIO(data), mode="r")
    except av.FFmpegError as exc:
        raise InputError(source, f"truncated or corrupt {container.upper()}: the file could not be "
                                 f"opened ({exc})") from None
    if not media.streams.audio:
        media.close()
        raise InputError(source, f"the {container.upper()} file has no audio stream")
    stream = media.streams.audio[0]
    rate = stream.codec_context.sample_rate or stream.rate
    channels = stream.codec_context.channels
    if not rate or not channels:
        media.close()
        raise InputError(source, f"the {container.upper()} audio stream declares no sample rate "
                                 "or no channels")
    frames = None
    if stream.duration is not None and stream.time_base is not None:
        frames = int(stream.duration * stream.time_base * rate)

    def blocks() -> Iterator[np.ndarray]:
        with media:
            for frame in media.decode(stream):
                array = frame.to_ndarray()
                if array.dtype.kind == "i":  # integer sample formats: scale to [-1, 1)
                    array = array.astype(np.float32) / float(2 ** (8 * array.itemsize - 1))
                elif array.dtype.kind == "u":  # unsigned 8-bit: centred on 128
                    array = (array.astype(np.float32) - 128.0) / 128.0
                if frame.format.is_planar:
                    yield array.T.astype(np.float32, copy=False)
                else:  # packed: (1, n * channels), interleaved
                    yield array.reshape(-1, channels).astype(np.float32, copy=False)

    return _Stream(int(rate), int(channels), frames, blocks())


def _libsndfile_reason(exc: Exception, size: int) -> str:
    text = str(exc)
    text = text.split(": ", 1)[-1] if "Error opening" in text else text
    if "does not exist" in text:
        # libsndfile's message when no decoder finds a whole frame in an in-memory file: it
        # names a missing file, which would mislead whoever reads the job's error.
        return f"no complete audio frame in its {size} bytes"
    return text


def _describe(data: bytes) -> str:
    """Say what the bytes look like without quoting them (they may hold PHI)."""
    head = data[:512]
    if all(byte >= 0x20 or byte in b"\t\n\r\f" for byte in head):
        return "the content is text"
    return f"unrecognised binary content, {len(data)} bytes"
