"""A disk cache for rendered corpus files, keyed by a hash of the generator's own code and the
producers' versions: editing a layout makes new files, and nothing stale is ever read.

The folder is $CHARTLIGHT_CORPUS_CACHE, or chartlight-lab-corpus under the system's temp folder.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from functools import cache
from importlib import metadata
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_NOT_GENERATOR = frozenset({"__init__.py", "scoring.py"})  # editing these changes no file


@cache
def generator_key() -> str:
    digest = hashlib.sha256()
    for path in sorted(_PACKAGE.glob("*.py")):
        if path.name in _NOT_GENERATOR:
            continue
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    for package in ("reportlab", "fpdf2", "pillow", "pypdfium2", "playwright"):
        digest.update(f"{package}=={metadata.version(package)}".encode())
    return digest.hexdigest()[:16]


def cache_dir() -> Path:
    base = os.environ.get("CHARTLIGHT_CORPUS_CACHE") or os.path.join(
        tempfile.gettempdir(), "chartlight-lab-corpus")
    folder = Path(base) / generator_key()
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def cached_path(name: str) -> Path:
    return cache_dir() / name.replace("/", "__")


def store(name: str, data: bytes) -> None:
    path = cached_path(name)
    # Another test process may render the same file at the same time: write, then rename.
    partial = path.with_name(f"{path.name}.{os.getpid()}.part")
    partial.write_bytes(data)
    os.replace(partial, path)


def cached(name: str, make: Callable[[], bytes]) -> bytes:
    path = cached_path(name)
    if path.exists():
        return path.read_bytes()
    data = make()
    store(name, data)
    return data
