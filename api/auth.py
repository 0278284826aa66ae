"""API keys: read from the environment once, kept only as SHA-256 digests, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac

from pydantic import SecretStr


class ApiKeys:
    def __init__(self, raw: SecretStr) -> None:
        keys = [k.strip() for k in raw.get_secret_value().split(",") if k.strip()]
        self._digests = [hashlib.sha256(k.encode()).digest() for k in keys]

    def __bool__(self) -> bool:
        return bool(self._digests)

    def check(self, presented: str) -> bool:
        digest = hashlib.sha256(presented.encode()).digest()
        ok = False
        for known in self._digests:  # no early exit: time does not depend on which key matched
            ok |= hmac.compare_digest(digest, known)
        return ok
