"""Model weights on this machine (`chartlight models`): which checkpoint each pipeline uses and
where it is, fetching gated checkpoints from the Hugging Face Hub, and checking that a copy is
whole and loads. The engines only ever read what is here; only `pull` uses the network.

Hub access goes through huggingface_hub: HF_ENDPOINT picks the Hub, HF_HUB_CACHE / HF_HOME the
cache, and the token comes from where huggingface_hub looks (HF_TOKEN, `hf auth login`'s token
file). With HF_HUB_OFFLINE=1 `pull` refuses before any connection; `list` and `verify` never
connect.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plugin.errors import ChartlightError

_TRUE = {"1", "on", "yes", "true"}
# safetensors dtype names and their sizes in bytes (the format's header spec).
_DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2,
                "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}
# A header larger than this is not a real one (the format caps it at 100 MB).
_MAX_HEADER = 100_000_000


class ModelStoreError(ChartlightError):
    """Fetching or finding model weights failed; the message says what to do."""


@dataclass(frozen=True)
class ModelSpec:
    """A model chartlight runs: its name on the command line, the setting that chooses the
    checkpoint, the checkpoint used by default, the pipelines that need it and its config class."""

    key: str
    setting: str
    default: str
    pipelines: tuple[str, ...]
    config_class: str


MODELS = (
    ModelSpec("medasr", "medasr_model", "google/medasr", ("speech",), "LasrCTCConfig"),
    ModelSpec("medgemma", "medgemma_model", "google/medgemma-1.5-4b-it",
              ("documents", "imaging", "pathology"), "Gemma3Config"),
)


@dataclass(frozen=True)
class ModelStatus:
    spec: ModelSpec
    reference: str  # what the setting names: a Hugging Face id or a folder
    folder: Path | None  # None: not on this machine
    revision: str  # the Hub commit of a cached snapshot, "local folder", or "" when absent
    checksum: str  # "" when absent
    size_bytes: int
    problem: str = ""  # why it is not usable here, for people to read


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class VerifyReport:
    spec: ModelSpec
    folder: Path
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def spec_of(name: str) -> ModelSpec | None:
    return next((spec for spec in MODELS if spec.key == name), None)


def is_hub_id(reference: str) -> bool:
    """A Hugging Face id is exactly "owner/name" and not an existing path."""
    return (reference.count("/") == 1 and not reference.startswith((".", "/", "~"))
            and not Path(reference).expanduser().exists())


def locate(reference: str, *, revision: str | None = None, cache_dir: str | None = None) -> Path | None:
    """The folder holding `reference` on this machine (a folder as given, or a complete
    snapshot in the Hugging Face cache), else None. Never connects."""
    return _find(reference, revision, cache_dir)[0]


def _find(reference: str, revision: str | None, cache_dir: str | None) -> tuple[Path | None, str]:
    """The folder, or None and why it is not here."""
    if not is_hub_id(reference):
        folder = Path(reference).expanduser()
        return (folder, "") if folder.is_dir() else (None, "no such folder")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import IncompleteSnapshotError

    try:
        return Path(snapshot_download(reference, revision=revision, cache_dir=cache_dir,
                                      local_files_only=True)), ""
    except IncompleteSnapshotError:  # the cached file list names files that never arrived
        return None, "an earlier pull did not finish"
    except Exception:  # noqa: BLE001 -- not cached, or an unusable cache: not here either way
        return None, "not in the Hugging Face cache"


def status(spec: ModelSpec, reference: str, *, cache_dir: str | None = None) -> ModelStatus:
    folder, why = _find(reference, None, cache_dir)
    if folder is None:
        if is_hub_id(reference):
            why += f" (chartlight models pull {spec.key})"
        return ModelStatus(spec, reference, None, "", "", 0, problem=why)
    files = _files(folder)
    problem = "" if (folder / "config.json").is_file() and _weight_files(folder) else \
        "config.json or the weights are missing"
    revision = folder.name if folder.parent.name == "snapshots" else "local folder"
    return ModelStatus(spec, reference, folder, revision, checksum(folder),
                       sum(p.stat().st_size for p in files), problem=problem)


def describe(found: ModelStatus) -> dict[str, Any]:
    """A status as JSON-ready values (`chartlight models list --json`)."""
    return {"model": found.spec.key, "setting": found.spec.setting, "reference": found.reference,
            "pipelines": list(found.spec.pipelines),
            "folder": str(found.folder) if found.folder else None,
            "revision": found.revision, "checksum": found.checksum, "size_bytes": found.size_bytes,
            "problem": found.problem}

def checksum(folder: Path) -> str:
    """sha256 over every file's path and sha256. In a Hub snapshot the Hub's own sha256 of each
    LFS file is its blob's name (`verify` checks the bytes against it), so only the small files
    are read; a plain folder's files are all read."""
    digest = hashlib.sha256()
    for path in _files(folder):
        digest.update(f"{path.relative_to(folder)}\t{_sha256_of(path)}\n".encode())
    return "sha256:" + digest.hexdigest()


def pull(repo_id: str, *, revision: str | None = None, cache_dir: str | None = None,
         endpoint: str | None = None, token: str | None = None,
         progress: bool = True) -> Path:
    """Fetch a checkpoint into the Hugging Face cache and return its snapshot folder. Files
    already there are not fetched again; a download cut off mid-file is resumed with a Range
    request (huggingface_hub retries a cut connection from where it stopped)."""
    if hub_offline():
        raise ModelStoreError(f"cannot pull {repo_id}: HF_HUB_OFFLINE is set, so nothing is fetched "
                              "(unset it, or copy the weights here and point the setting at the folder)")
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )
    from huggingface_hub.utils import disable_progress_bars, enable_progress_bars

    hub = (endpoint or constants.ENDPOINT).rstrip("/")
    page = f"{hub}/{repo_id}"
    if not progress:
        disable_progress_bars()
    try:
        return Path(snapshot_download(repo_id, revision=revision, cache_dir=cache_dir, endpoint=endpoint,
                                      token=token))
    except GatedRepoError as exc:
        status_code = exc.response.status_code if exc.response is not None else 0
        who = ("no Hugging Face token was found (set HF_TOKEN or run `hf auth login`)" if status_code == 401
               else "the token's account has not accepted its terms")
        raise ModelStoreError(f"{repo_id} is gated and {who}: accept the terms at {page} while logged in, "
                              "then pull again") from None
    except RevisionNotFoundError:
        raise ModelStoreError(f"{repo_id} has no revision {revision!r} on {hub}") from None
    except RepositoryNotFoundError:
        raise ModelStoreError(f"{repo_id} was not found on {hub} (or it is private and the token cannot "
                              "see it)") from None
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError) as exc:
        raise ModelStoreError(f"could not fetch {repo_id} from {hub}: {type(exc).__name__}: "
                              f"{_first_line(exc)}") from None
    finally:
        if not progress:
            enable_progress_bars()


def verify(spec: ModelSpec, folder: Path, *, smoke: bool = True) -> VerifyReport:
    """Files complete, safetensors headers consistent (read without loading tensors), the config
    and processor classes load, and, when asked, a one-second smoke run."""
    checks = [_check_files(folder), _check_safetensors(folder), _check_config(spec, folder)]
    if smoke and all(c.ok for c in checks):
        checks.append(_smoke(spec, folder))
    return VerifyReport(spec, folder, tuple(checks))


# ---- checks -----------------------------------------------------------------------------------


def _check_files(folder: Path) -> Check:
    if not (folder / "config.json").is_file():
        return Check("files", False, "config.json is missing")
    weights = _weight_files(folder)
    if not weights:
        return Check("files", False, "no weights (model.safetensors or an index with its shards)")
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        shards = set(json.loads(index.read_text()).get("weight_map", {}).values())
        missing = sorted(s for s in shards if not (folder / s).is_file())
        if missing:
            return Check("files", False, f"shards missing: {', '.join(missing)}")
    bad = []
    for path in _files(folder):
        blob = path.resolve().name
        # Hub blobs are named by their hash: sha256 for LFS files, the git blob id for the rest.
        hashed = {64: _sha256_of_bytes, 40: _git_blob_id}.get(len(blob)) if _hex(blob) else None
        if hashed is not None and hashed(path) != blob:
            bad.append(path.name)
    if bad:
        return Check("files", False, f"content does not match the Hub's hash: {', '.join(bad)}")
    partial = [p.name for p in (folder.parent.parent / "blobs").glob("*.incomplete")] \
        if folder.parent.name == "snapshots" else []
    detail = f"{len(_files(folder))} files" + (f"; an unfinished download left {len(partial)} partial "
                                                 "file(s) in the cache" if partial else "")
    return Check("files", True, detail)


def _check_safetensors(folder: Path) -> Check:
    tensors = 0
    for path in sorted(folder.glob("*.safetensors")):
        problem, count = _safetensors_problem(path)
        if problem:
            return Check("safetensors headers", False, f"{path.name}: {problem}")
        tensors += count
    return Check("safetensors headers", True, f"{tensors} tensors described, offsets consistent")


def _safetensors_problem(path: Path) -> tuple[str, int]:
    """What is wrong with a safetensors file's header (read alone: 8 bytes of length, then JSON)."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return "shorter than a header", 0
        (length,) = struct.unpack("<Q", head)
        if length > min(_MAX_HEADER, size - 8):
            return f"header length {length} does not fit the {size}-byte file", 0
        try:
            header = json.loads(f.read(length))
        except ValueError:
            return "header is not JSON", 0
    end = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            begin, stop = entry["data_offsets"]
            width = _DTYPE_BYTES[entry["dtype"]] * math.prod(entry["shape"])
        except (KeyError, TypeError, ValueError):
            return f"tensor {name} has no valid dtype, shape and offsets", 0
        if stop - begin != width:
            return f"tensor {name} spans {stop - begin} bytes, its shape and dtype need {width}", 0
        end = max(end, stop)
    if end != size - 8 - length:
        return f"the tensors end at byte {end} of {size - 8 - length} (truncated or padded file)", 0
    return "", len(header) - ("__metadata__" in header)


def _check_config(spec: ModelSpec, folder: Path) -> Check:
    try:
        from transformers import AutoConfig, AutoProcessor

        config = AutoConfig.from_pretrained(folder, local_files_only=True)
        AutoProcessor.from_pretrained(folder, local_files_only=True)
    except Exception as exc:  # noqa: BLE001 -- any failure to load is the finding to report
        return Check("config classes", False, f"{type(exc).__name__}: {_first_line(exc)}")
    found = type(config).__name__
    if found != spec.config_class:
        return Check("config classes", False, f"config is {found}, {spec.key} needs {spec.config_class}")
    return Check("config classes", True, f"{found} and its processor load")


def _smoke(spec: ModelSpec, folder: Path) -> Check:
    started = time.perf_counter()
    try:
        detail = _SMOKE[spec.key](folder)
    except Exception as exc:  # noqa: BLE001 -- a failed smoke run is the finding to report
        return Check("smoke run", False, f"{type(exc).__name__}: {exc}")
    return Check("smoke run", True, f"{detail} in {time.perf_counter() - started:.1f} s (load included)")


def _smoke_medasr(folder: Path) -> str:
    import numpy as np

    from plugin.engines.medasr import MedAsrEngine

    tone = (0.1 * np.sin(2 * np.pi * 440 * np.arange(16_000) / 16_000)).astype(np.float32)
    transcript = MedAsrEngine(str(folder), quantize=False).transcribe(tone)
    return f"1 s of audio -> {transcript.frames} CTC frames"


def _smoke_medgemma(folder: Path) -> str:
    from PIL import Image

    from plugin.engines.medgemma import MedGemmaEngine

    MedGemmaEngine(str(folder)).generate([Image.new("RGB", (64, 64), (128, 128, 128)), "One word."],
                                         max_new_tokens=1)
    return "an image and a prompt -> 1 generated token"


_SMOKE: dict[str, Callable[[Path], str]] = {"medasr": _smoke_medasr, "medgemma": _smoke_medgemma}


# ---- files ------------------------------------------------------------------------------------


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))


def _weight_files(folder: Path) -> list[Path]:
    names = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
    return [folder / n for n in names if (folder / n).is_file()]


def _first_line(exc: Exception) -> str:
    return (str(exc).splitlines() or [""])[0]


def _hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


def _sha256_of(path: Path) -> str:
    blob = path.resolve().name
    return blob if len(blob) == 64 and _hex(blob) else _sha256_of_bytes(path)


def _sha256_of_bytes(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def _git_blob_id(path: Path) -> str:
    digest = hashlib.sha1(b"blob %d\0" % path.stat().st_size, usedforsecurity=False)  # git's id, not security
    with path.open("rb") as f:
        while block := f.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()

