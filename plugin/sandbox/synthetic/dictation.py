"""The demo patient's spoken CT report: its words, synthesised speech (WAV) and the FLAC an EHR stores."""

from __future__ import annotations

import io
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile
import soxr

from plugin.errors import SandboxError

# What the radiologist says, word for word: punctuation and layout are spoken ("period",
# "new paragraph"), numbers as they are read out. It describes the same right lower lobe
# nodule that the CT series and the chest radiographs show.
DICTATION_TEXT = (
    "Exam colon CT chest without contrast period next line "
    "Clinical history colon sixty four year old female with cough and leukocytosis period new paragraph "
    "Findings colon there is a solid nodule in the posterior right lower lobe measuring two point "
    "zero centimeters comma with smooth margins period no other pulmonary nodules period "
    "no pleural effusion or pneumothorax period next line "
    "The heart is normal in size period the thoracic aorta is normal in caliber period "
    "no mediastinal or hilar lymphadenopathy period the visualized liver is unremarkable period "
    "no acute osseous abnormality period new paragraph "
    "Impression colon next line "
    "One period two centimeter right lower lobe nodule comma enlarged compared with the "
    "prior radiograph comma suspicious for malignancy period recommend PET CT period next line "
    "Two period no other acute findings period end of dictation"
)


def espeak_wav(text: str, *, voice: str = "en-us", words_per_minute: int = 150) -> bytes:
    """`text` spoken by espeak-ng: a 16-bit mono WAV (22.05 kHz, espeak's native rate)."""
    binary = shutil.which("espeak-ng")
    if binary is None:
        raise SandboxError(
            "espeak-ng is not installed (Debian package espeak-ng); it is needed to synthesise dictation"
        )
    with tempfile.TemporaryDirectory(prefix="chartlight-speech-") as folder:
        wav = Path(folder) / "speech.wav"
        # Text on stdin, not argv: a long dictation stays clear of argument-length limits.
        completed = subprocess.run(
            [binary, "-v", voice, "-s", str(words_per_minute), "-w", str(wav), "--stdin"],
            input=text.encode("utf-8"),
            capture_output=True,
            check=False,
        )
        if completed.returncode != 0 or not wav.exists():
            stderr = completed.stderr.decode("utf-8", "replace").strip()
            raise SandboxError(f"espeak-ng failed (exit {completed.returncode}): {stderr}")
        return wav.read_bytes()


def to_flac(wav_bytes: bytes, *, sample_rate: int = 44100, channels: int = 2) -> bytes:
    """Re-encode WAV audio as 16-bit FLAC at `sample_rate` with `channels` identical channels."""
    samples, source_rate = soundfile.read(io.BytesIO(wav_bytes), dtype="float32", always_2d=True)
    mono = samples.mean(axis=1)
    if source_rate != sample_rate:
        mono = soxr.resample(mono, source_rate, sample_rate, quality="HQ")
    # The HQ filter can overshoot full scale by a hair; clip rather than wrap in 16-bit.
    frames = np.repeat(np.clip(mono, -1.0, 1.0)[:, None], channels, axis=1)
    buffer = io.BytesIO()
    soundfile.write(buffer, frames, sample_rate, format="FLAC", subtype="PCM_16")
    return buffer.getvalue()
