"""Analyst sessions of the console: signed cookies, their expiry, the CSRF token each carries, and roles.

A session is a cookie the gateway signs with HMAC-SHA256 (`RISKSTREAM_GATEWAY__SESSION_SECRET`); it holds
the analyst's name (the API key's name), a random CSRF token and an expiry, and nothing secret: the key
itself is never stored. The role is not in the cookie but read from the settings on every request (admins
are the key names in `RISKSTREAM_GATEWAY__ADMIN_KEYS`), and the name must still be one of the configured
keys, so removing a key or an admin takes effect at the gateway's next start whatever cookies are out.

Forms are protected by a synchronizer token: every POST carries the session's CSRF token (hidden field
`csrf_token` or header `X-CSRF-Token`), compared in constant time. The login form, which has no session
yet, gets its own signed short-lived nonce cookie and the same check (no login CSRF).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Final, Literal

import orjson

Role = Literal["analyst", "admin"]

SESSION_COOKIE: Final = "riskstream_console"
LOGIN_COOKIE: Final = "riskstream_console_login"
#: The console's path: cookies are sent to it only.
CONSOLE_PATH: Final = "/console"
#: How long the login form may wait before it is posted.
LOGIN_TTL_SECONDS: Final = 600
CSRF_FIELD: Final = "csrf_token"
CSRF_HEADER: Final = "x-csrf-token"
#: Domain separation: a session value is never valid as a login nonce, nor the reverse.
_SESSION_PURPOSE: Final = b"riskstream-console-session-v1"
_LOGIN_PURPOSE: Final = b"riskstream-console-login-v1"
MIN_SECRET_BYTES: Final = 32


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class AnalystSession:
    """Who is signed in (`name`, the API key's name), until when (epoch seconds), and the form token."""

    name: str
    csrf_token: str
    expires_at: int
    role: Role = "analyst"

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


class Signer:
    """Signs and checks the console's cookies with one secret (HMAC-SHA256, compared in constant time)."""

    def __init__(self, secret: bytes, *, ttl_seconds: int) -> None:
        if len(secret) < MIN_SECRET_BYTES:
            raise ValueError(f"the session secret must be at least {MIN_SECRET_BYTES} bytes")
        self._secret = secret
        self.ttl_seconds = ttl_seconds

    def _mac(self, purpose: bytes, payload: str) -> str:
        return _b64(hmac.new(self._secret, purpose + b"." + payload.encode(), hashlib.sha256).digest())

    def _sign(self, purpose: bytes, document: dict[str, object]) -> str:
        payload = _b64(orjson.dumps(document))
        return f"{payload}.{self._mac(purpose, payload)}"

    def _open(self, purpose: bytes, value: str, now: float) -> dict[str, object] | None:
        payload, _, mac = value.partition(".")
        if not payload or not hmac.compare_digest(mac.encode(), self._mac(purpose, payload).encode()):
            return None
        try:
            document = orjson.loads(_unb64(payload))
        except (ValueError, binascii.Error):
            return None
        if not isinstance(document, dict):
            return None
        expires = document.get("e")
        if not isinstance(expires, int) or expires <= now:
            return None
        return {str(k): v for k, v in document.items()}

    def issue(self, name: str, *, now: float | None = None) -> tuple[str, AnalystSession]:
        """A new session for `name`: the cookie value and what it holds (role still to be looked up)."""
        expires = int(now if now is not None else time.time()) + self.ttl_seconds
        session = AnalystSession(name=name, csrf_token=secrets.token_urlsafe(32), expires_at=expires)
        return self._sign(_SESSION_PURPOSE, {"n": name, "c": session.csrf_token, "e": expires}), session

    def read(self, value: str | None, *, now: float | None = None) -> AnalystSession | None:
        """The session a cookie holds, or None: absent, forged, tampered with or expired."""
        if not value:
            return None
        document = self._open(_SESSION_PURPOSE, value, time.time() if now is None else now)
        if document is None:
            return None
        name, token, expires = document.get("n"), document.get("c"), document.get("e")
        if not isinstance(name, str) or not isinstance(token, str) or not isinstance(expires, int):
            return None
        return AnalystSession(name=name, csrf_token=token, expires_at=expires)

    def login_nonce(self, *, now: float | None = None) -> tuple[str, str]:
        """A nonce for the login form and the signed cookie that vouches for it."""
        nonce = secrets.token_urlsafe(24)
        expires = int(now if now is not None else time.time()) + LOGIN_TTL_SECONDS
        return nonce, self._sign(_LOGIN_PURPOSE, {"n": nonce, "e": expires})

    def check_login_nonce(self, cookie: str | None, presented: str | None, *, now: float | None = None) -> bool:
        """Whether the login form's nonce is the one its cookie vouches for, and still fresh."""
        if not cookie or not presented:
            return False
        document = self._open(_LOGIN_PURPOSE, cookie, time.time() if now is None else now)
        nonce = None if document is None else document.get("n")
        return isinstance(nonce, str) and hmac.compare_digest(nonce.encode(), presented.encode())


def csrf_matches(session: AnalystSession, presented: str | None) -> bool:
    """The form's (or header's) token is the session's: constant-time comparison."""
    return bool(presented) and hmac.compare_digest(session.csrf_token.encode(), (presented or "").encode())


def parse_admin_names(raw: str) -> frozenset[str]:
    """`RISKSTREAM_GATEWAY__ADMIN_KEYS`: comma-separated key names."""
    return frozenset(name.strip() for name in raw.split(",") if name.strip())


def role_of(name: str, admins: frozenset[str]) -> Role:
    return "admin" if name in admins else "analyst"


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a console path only (no open redirect to another site)."""
    if target and target.startswith(CONSOLE_PATH + "/") and not target.startswith("//") and "\\" not in target:
        return target
    return CONSOLE_PATH + "/queue"
