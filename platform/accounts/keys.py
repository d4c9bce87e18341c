"""API key format: `lth_<prefix>_<secret>`.

`prefix` (12 chars) is stored in clear to find the row; `secret` (40 chars, ~238
bits) is only ever stored as part of a SHA-256 digest of the whole key. A high-
entropy key needs no slow password hash. The fixed `lth_` start makes leaked keys
recognisable by secret scanners.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from dataclasses import dataclass

KEY_PREFIX = "lth_"
_ALPHABET = string.ascii_letters + string.digits
PREFIX_LENGTH = 12
SECRET_LENGTH = 40
KEY_PATTERN = re.compile(rf"^lth_([A-Za-z0-9]{{{PREFIX_LENGTH}}})_([A-Za-z0-9]{{{SECRET_LENGTH}}})$")


@dataclass(frozen=True)
class GeneratedKey:
    full_key: str
    prefix: str
    hashed_key: str


def _random(n: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(n))


def hash_key(full_key: str) -> str:
    return hashlib.sha256(full_key.encode()).hexdigest()


def generate_key() -> GeneratedKey:
    prefix, secret = _random(PREFIX_LENGTH), _random(SECRET_LENGTH)
    full_key = f"{KEY_PREFIX}{prefix}_{secret}"
    return GeneratedKey(full_key=full_key, prefix=prefix, hashed_key=hash_key(full_key))


def parse_key(candidate: str) -> str | None:
    """The lookup prefix of a well-formed key, or None."""
    match = KEY_PATTERN.match(candidate)
    return match.group(1) if match else None


def key_matches(candidate: str, hashed_key: str) -> bool:
    return hmac.compare_digest(hash_key(candidate), hashed_key)
