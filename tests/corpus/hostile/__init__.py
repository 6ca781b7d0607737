"""Hostile and broken inputs, one module per kind of file (pdf, images, audio, dicom).

Each module exposes `CASES: tuple[HostileInput, ...]`. A case's bytes are made when asked for
(`make()`), in memory, so nothing binary is committed. The integration test and
bench/hostile_inputs.py store each case on the HAPI sandbox and run the real pipeline on it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Pipeline = Literal["documents", "speech", "imaging"]
Outcome = Literal["fails", "succeeds", "either"]


@dataclass(frozen=True)
class HostileInput:
    name: str  # unique, short, used as the test id and the attachment title
    pipeline: Pipeline
    content_type: str
    make: Callable[[], bytes]
    expect: Outcome = "fails"
    # Words the job's error must contain (lower case), besides naming the input.
    reason: str = ""
