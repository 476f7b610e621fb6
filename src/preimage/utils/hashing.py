"""Content hashes that name artifacts: the same data gives the same name on every run and machine."""

from __future__ import annotations

import hashlib
import json


def stable_hash(data) -> str:
    """First 10 hex digits of the SHA-256 of canonical JSON: stable across runs and machines."""
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:10]
