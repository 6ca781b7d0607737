"""Torch devices for the local engines: a configured device that torch cannot use here is a
setting to fix, reported before a model is loaded rather than as a crash mid-job."""

from __future__ import annotations

from typing import Any

from plugin.errors import ConfigError


def check_device(torch: Any, device: str, *, engine: str) -> None:
    """Raise ConfigError naming `engine` when `device` (cpu, cuda, cuda:N, mps) is not here."""
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"{engine} device {device!r}: torch sees no CUDA GPU on this machine")
    if device == "mps" and not mps_available(torch):
        raise ConfigError(f"{engine} device 'mps': torch sees no Apple GPU on this machine")


def mps_available(torch: Any) -> bool:
    return getattr(torch.backends, "mps", None) is not None and bool(torch.backends.mps.is_available())
