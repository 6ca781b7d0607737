"""Live dictation's recordings in progress: the 16 kHz mono 16-bit PCM a page streams while the
clinician speaks, spooled on disk per recording so that every web worker process of this machine
sees the same audio (gunicorn sends one recording's requests to any of them).

A recording is named by the SMART session and the page's random recording id, and remembers the
FHIR server and patient it was started for; a request from another session, server or patient
never reaches it. Bounded: audio duration (speech_max_duration_s), the memory one decode of it
holds (job_memory_bytes), recordings open at once (speech_live_max_recordings), and time: one
that gets no audio for speech_live_idle_s, or lives longer than its longest possible recording
plus that, is dropped with its audio. Pieces carry a sequence number, so a piece sent twice (a
retried request) is counted once; a stop is done once, and a retried stop gets the first one's
answer without writing anything again.

Each process keeps its own incremental decoder per recording (plugin.pipelines.speech.streaming);
a process that did not see the earlier pieces decodes them from the spooled audio."""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import re
import shutil
import threading
import time
import wave
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from plugin.errors import InputError

SAMPLE_RATE = 16_000
BYTES_PER_SAMPLE = 2  # 16-bit PCM, as the page sends it and the WAV keeps it
# What one decode of a recording holds per sample: the PCM read back and its float32 copy.
DECODE_BYTES_PER_SAMPLE = BYTES_PER_SAMPLE + 4
RECORDING_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")
NAME = "live dictation"
T = TypeVar("T")


class LiveRefused(Exception):
    """The request cannot be taken now: `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class LiveLimits:
    max_duration_s: float
    memory_bytes: int
    idle_s: float
    max_recordings: int


@dataclass(frozen=True)
class Owner:
    """Who a recording belongs to: the SMART session, its FHIR server and the patient."""

    session_id: str
    fhir_base: str
    patient: str


@dataclass(frozen=True)
class Piece:
    """The recording after a piece was taken: its key and all its audio so far."""

    key: str
    samples: np.ndarray  # float32 in [-1, 1), as decode_audio reads the same 16-bit WAV


class LiveRecordings:
    """The spool of recordings in progress under `folder` (one per machine)."""

    def __init__(self, folder: Path, limits: LiveLimits, *, clock: Callable[[], float] = time.time) -> None:
        self.folder = folder
        self.limits = limits
        self.clock = clock
        self._decoders: dict[str, tuple[Any, threading.Lock]] = {}
        self._decoders_lock = threading.Lock()

    # ---- audio in ----------------------------------------------------------------------------

    def append(self, owner: Owner, recording_id: str, seq: int, pcm: bytes) -> Piece:
        """Add piece number `seq` (0, 1, ...) of 16-bit little-endian PCM to the recording,
        opening it with piece 0. A piece already taken is not added again."""
        key = self._key(owner, recording_id)
        if len(pcm) % BYTES_PER_SAMPLE:
            raise InputError(NAME, f"piece {seq} is {len(pcm)} bytes: not whole 16-bit samples")
        self.sweep()
        folder = self.folder / key
        if seq == 0 and not folder.exists():
            self._open(folder, owner)
        with self._locked(folder):
            meta = self._meta(folder, owner)
            if meta.get("stopped"):
                raise LiveRefused(409, "this recording has been stopped")
            taken = int(meta["pieces"])
            if seq > taken or seq < 0:
                raise LiveRefused(409, f"piece {seq} arrived before piece {taken}: send them in order")
            audio = folder / "audio.pcm"
            if seq == taken:
                samples = (audio.stat().st_size + len(pcm)) // BYTES_PER_SAMPLE
                self._check_size(samples)
                with audio.open("ab") as f:
                    f.write(pcm)
                meta["pieces"] = taken + 1
                meta["active"] = self.clock()
                _write_json(folder / "meta.json", meta)
            data = audio.read_bytes()
        return Piece(key, pcm_to_float(data))

    def _open(self, folder: Path, owner: Owner) -> None:
        with self._locked(self.folder):
            if folder.exists():
                return
            open_now = sum(1 for p in self.folder.iterdir() if p.is_dir())
            if open_now >= self.limits.max_recordings:
                raise LiveRefused(503, f"{open_now} live dictations are open on this server, its "
                                       "limit: try again in a moment, or record and upload")
            folder.mkdir(mode=0o700)
            (folder / "audio.pcm").touch(mode=0o600)
            now = self.clock()
            _write_json(folder / "meta.json", {"fhir_base": owner.fhir_base, "patient": owner.patient,
                                                "created": now, "active": now, "pieces": 0})

    def _check_size(self, samples: int) -> None:
        limits = self.limits
        if samples > limits.max_duration_s * SAMPLE_RATE:
            raise InputError(NAME, f"the recording is over the {limits.max_duration_s:.0f} s limit")
        if samples * DECODE_BYTES_PER_SAMPLE > limits.memory_bytes:
            raise InputError(NAME, f"{samples / SAMPLE_RATE:.0f} s of audio would need more than "
                                   f"the {limits.memory_bytes}-byte memory budget to decode")

    # ---- stop --------------------------------------------------------------------------------

    def stop(self, owner: Owner, recording_id: str,
             finish: Callable[[str, np.ndarray, bytes], dict[str, Any]]) -> dict[str, Any]:
        """Run `finish(key, samples, wav)` once for the recording and keep its answer (until
        the recording expires), which a retried stop gets instead of a second run. The audio
        is deleted once finished. Nothing is kept when `finish` raises: the stop may be retried."""
        key = self._key(owner, recording_id)
        folder = self.folder / key
        self.sweep()
        with self._locked(folder):
            meta = self._meta(folder, owner)
            if meta.get("stopped"):
                answer: dict[str, Any] = json.loads((folder / "answer.json").read_text())
                return answer
            data = (folder / "audio.pcm").read_bytes()
            if not data:
                raise InputError(NAME, "no audio was received")
            answer = finish(key, pcm_to_float(data), wav_bytes(data))
            _write_json(folder / "answer.json", answer)
            meta.update(stopped=True, active=self.clock())
            _write_json(folder / "meta.json", meta)
            (folder / "audio.pcm").unlink()
        self.forget(key)
        return answer

    # ---- decoders, expiry --------------------------------------------------------------------

    @contextmanager
    def decoder(self, key: str, make: Callable[[], T]) -> Iterator[T]:
        """This process's decoder for the recording, held for one update at a time."""
        with self._decoders_lock:
            if key not in self._decoders:
                self._decoders[key] = (make(), threading.Lock())
            decoder, lock = self._decoders[key]
        with lock:
            yield decoder

    def forget(self, key: str) -> None:
        with self._decoders_lock:
            self._decoders.pop(key, None)

    def sweep(self) -> int:
        """Drop recordings that are idle too long or older than any recording can be."""
        if not self.folder.exists():
            return 0
        now, limits, dropped = self.clock(), self.limits, 0
        for folder in [p for p in self.folder.iterdir() if p.is_dir()]:
            try:
                meta = json.loads((folder / "meta.json").read_text())
            except (OSError, ValueError):
                meta = {"created": 0.0, "active": 0.0}  # half-made or damaged: nothing to keep
            idle = now - float(meta["active"]) > limits.idle_s
            too_old = now - float(meta["created"]) > limits.max_duration_s + limits.idle_s
            if idle or too_old:
                shutil.rmtree(folder, ignore_errors=True)
                self.forget(folder.name)
                dropped += 1
        return dropped

    # ---- internals ---------------------------------------------------------------------------

    def _key(self, owner: Owner, recording_id: str) -> str:
        if not RECORDING_ID.fullmatch(recording_id):
            raise InputError(NAME, "the recording id must be 8 to 64 letters, digits, - or _")
        # The session id is a secret's hash already; the folder name is a hash of it again.
        return hashlib.sha256(f"{owner.session_id}\0{recording_id}".encode()).hexdigest()[:40]

    def _meta(self, folder: Path, owner: Owner) -> dict[str, Any]:
        try:
            meta: dict[str, Any] = json.loads((folder / "meta.json").read_text())
        except FileNotFoundError:
            raise LiveRefused(404, "no such live recording (it is being opened or was dropped)") from None
        if (meta["fhir_base"], meta["patient"]) != (owner.fhir_base, owner.patient):
            raise LiveRefused(404, "no such live recording for this patient")
        return meta

    @contextmanager
    def _locked(self, folder: Path) -> Iterator[None]:
        """Across the processes and threads of this machine (flock on a file in `folder`)."""
        if folder == self.folder:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        elif not folder.is_dir():
            raise LiveRefused(404, "no such live recording (it was never started, or was dropped "
                                   f"after {self.limits.idle_s:.0f} s without audio)")
        fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock


def pcm_to_float(data: bytes) -> np.ndarray:
    """16-bit PCM -> float32, scaled as libsndfile reads a 16-bit WAV (x / 32768), so the samples
    are those the batch pipeline decodes from the stored recording."""
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / np.float32(32768.0)


def wav_bytes(pcm: bytes) -> bytes:
    """The recording as a 16 kHz mono 16-bit WAV file (what is stored and transcribed)."""
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(BYTES_PER_SAMPLE)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes(pcm)
    return out.getvalue()


def _write_json(path: Path, value: dict[str, Any]) -> None:
    partial = path.with_suffix(".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(value, f)
    partial.replace(path)
