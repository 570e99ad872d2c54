"""Operator console sessions: a signed, expiring token in an HttpOnly, SameSite=Strict cookie.

Nothing is kept on the server, so every replica and worker accepts a session another one issued,
as long as they share the signing secret (`FINVERSE_CONSOLE_SESSION_SECRET`, or one derived from
the API key). A token carries a random session id and a fingerprint of the admin key it was issued
for; it is refused once older than the session lifetime or once the API key has changed.

Logout deletes the cookie in the browser. A copy of the token taken before logout stays valid until
it expires (at most the session lifetime): to end every session at once, rotate the secret or the
API key. The cookie is HttpOnly, so no script in the page can read it.

An API call authenticated by the cookie must also carry the session's CSRF token in `X-CSRF-Token`
(the console puts it in a `<meta>` tag of every page). A page on another origin can make the browser
send the cookie (same-site requests, or an origin CORS allows), but it cannot read the token, and the
custom header cannot pass a CORS preflight.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

COOKIE_NAME = "finverse_console"
CSRF_HEADER = "X-CSRF-Token"
_SALT = "finverse-console-session"


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    id: str
    issued_at: datetime
    expires_at: datetime
    csrf_token: str


class ConsoleSessions:
    def __init__(
        self, api_key: str, secret: str | None, lifetime_seconds: int, *, secure_cookie: bool
    ) -> None:
        """`secure_cookie`: send the cookie over HTTPS only (always, not just on HTTPS requests:
        behind a TLS-terminating proxy the service itself sees plain HTTP)."""
        if lifetime_seconds < 1:
            raise ValueError("lifetime_seconds must be >= 1")
        key = (secret or _derive(api_key.encode(), b"console-session-secret")).encode()
        self._serializer = URLSafeTimedSerializer(key, salt=_SALT)
        self._csrf_key = _derive(key, b"csrf").encode()
        self._admin_key_fingerprint = _derive(key, b"admin-key:" + api_key.encode())[:32]
        self.lifetime = timedelta(seconds=lifetime_seconds)
        self.secure_cookie = secure_cookie

    def issue(self) -> tuple[str, ConsoleSession]:
        """A new session and its cookie value."""
        session_id = secrets.token_urlsafe(18)
        token = self._serializer.dumps({"sid": session_id, "key": self._admin_key_fingerprint})
        issued_at = datetime.now(UTC).replace(microsecond=0)
        return token, self._session(session_id, issued_at)

    def verify(self, token: str | None) -> ConsoleSession | None:
        """The session a cookie value stands for, or None: unsigned, tampered, expired, or issued
        for another API key."""
        if not token:
            return None
        try:
            payload, signed_at = self._serializer.loads(
                token, max_age=int(self.lifetime.total_seconds()), return_timestamp=True
            )
        except (SignatureExpired, BadSignature):
            return None
        if not isinstance(payload, dict) or not isinstance(payload.get("sid"), str):
            return None
        if not hmac.compare_digest(str(payload.get("key")), self._admin_key_fingerprint):
            return None
        return self._session(payload["sid"], signed_at)

    def csrf_matches(self, session: ConsoleSession, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(
            presented.encode(), session.csrf_token.encode()
        )

    def _session(self, session_id: str, issued_at: datetime) -> ConsoleSession:
        csrf = hmac.new(self._csrf_key, session_id.encode(), hashlib.sha256).hexdigest()
        return ConsoleSession(session_id, issued_at, issued_at + self.lifetime, csrf)


def _derive(key: bytes, purpose: bytes) -> str:
    return hmac.new(key, purpose, hashlib.sha256).hexdigest()
