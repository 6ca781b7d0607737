"""DICOM UIDs chartlight makes for its own instances (the SR of an imaging result): checked
roots and UIDs derived deterministically from what they identify. Kept apart from the SR
builder so that checking the `dicom_uid_root` setting imports no DICOM library."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

UID_ROOT_MAX = 40  # leaves at least 23 digits of hash under a 64-character UID
_UID_ROOT = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")


class UidRootError(ValueError):
    """A `dicom_uid_root` that is not a DICOM UID prefix."""


def check_uid_root(root: str) -> str:
    """`root` unchanged if it is "" (the 2.25 form) or a DICOM UID prefix of at most 40
    characters (digits and dots, no leading zeros in a component, no trailing dot)."""
    if root == "":
        return root
    if len(root) > UID_ROOT_MAX or not _UID_ROOT.match(root):
        raise UidRootError(f"dicom_uid_root {root!r} must be a DICOM UID prefix: numbers without "
                           f"leading zeros joined by dots, at most {UID_ROOT_MAX} characters")
    return root


def derive_uid(root: str, parts: Sequence[str]) -> str:
    """A UID that depends only on `root` and `parts`: the SHA-256 of the parts as a decimal
    number, under `root` (cut to 64 characters) or, with no root, as `2.25.` + a 128-bit number."""
    check_uid_root(root)
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    if not root:
        return "2.25." + str(int.from_bytes(digest[:16], "big"))
    digits = str(int.from_bytes(digest, "big"))[:64 - len(root) - 1]
    return f"{root}.{digits}"
