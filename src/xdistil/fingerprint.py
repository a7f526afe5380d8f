"""Stable content fingerprints, so a cache or run folder is never reused for other inputs."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable


def fingerprint(*parts: object) -> str:
    """sha256 (first 16 hex digits) of JSON-serialised parts."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(json.dumps(part, sort_keys=True, default=str).encode("utf-8"))
        digest.update(b"\x00")
    return digest.hexdigest()[:16]


def texts_fingerprint(texts: Iterable[str | list[str]]) -> str:
    """sha256 (first 16 hex digits) of the texts (or word lists, for tagging) in order."""
    digest = hashlib.sha256()
    for text in texts:
        digest.update((text if isinstance(text, str) else "\x1f".join(text)).encode("utf-8"))
        digest.update(b"\x00")
    return digest.hexdigest()[:16]
