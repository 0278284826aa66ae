"""API keys: read from the environment once, kept only as SHA-256 digests, compared in constant time.

`RISKSTREAM_GATEWAY__API_KEYS` is comma-separated; an entry `name:key` names its key (the name is who acts
on a review case: `[A-Za-z0-9][A-Za-z0-9._@-]{0,63}`), a bare `key` is named `key-<first 8 hex digits of its
SHA-256>`, a name that says which key without revealing it.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from pydantic import SecretStr

from pipeline.pan import contains_pan

KEY_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")


def _name_and_key(entry: str) -> tuple[str | None, str]:
    name, sep, key = entry.partition(":")
    if sep and key.strip() and KEY_NAME_PATTERN.fullmatch(name.strip()):
        if contains_pan(name):
            raise ValueError("an API key name must not look like a card number")
        return name.strip(), key.strip()
    return None, entry


class ApiKeys:
    def __init__(self, raw: SecretStr) -> None:
        entries = [_name_and_key(k.strip()) for k in raw.get_secret_value().split(",") if k.strip()]
        self._keys: list[tuple[bytes, str]] = []
        for name, key in entries:
            digest = hashlib.sha256(key.encode()).digest()
            self._keys.append((digest, name or f"key-{digest.hex()[:8]}"))

    def __bool__(self) -> bool:
        return bool(self._keys)

    def names(self) -> frozenset[str]:
        """Every key's name: who may hold a console session."""
        return frozenset(name for _, name in self._keys)

    def identify(self, presented: str) -> str | None:
        """The name of the key presented, or None when it is none of ours."""
        digest = hashlib.sha256(presented.encode()).digest()
        found: str | None = None
        for known, name in self._keys:  # no early exit: time does not depend on which key matched
            if hmac.compare_digest(digest, known):
                found = name
        return found

    def check(self, presented: str) -> bool:
        return self.identify(presented) is not None
