"""Console session tokens: signed, expiring, bound to the admin key, with a CSRF token per session."""

from __future__ import annotations

import base64
import json

import itsdangerous.timed
import pytest

from finverse_reco.api.sessions import ConsoleSessions

KEY = "the-admin-key"


def sessions(**overrides) -> ConsoleSessions:
    values = {"api_key": KEY, "secret": None, "lifetime_seconds": 600, "secure_cookie": False}
    values.update(overrides)
    return ConsoleSessions(**values)


def test_a_token_stands_for_its_session_until_it_expires(monkeypatch):
    console = sessions()
    token, issued = console.issue()
    verified = console.verify(token)
    assert verified is not None and verified.id == issued.id
    assert verified.csrf_token == issued.csrf_token and len(issued.csrf_token) == 64
    assert (verified.expires_at - verified.issued_at).total_seconds() == 600
    now = itsdangerous.timed.time.time()
    monkeypatch.setattr(itsdangerous.timed.time, "time", lambda: now + 599)
    assert console.verify(token) is not None
    monkeypatch.setattr(itsdangerous.timed.time, "time", lambda: now + 602)
    assert console.verify(token) is None


def test_two_sessions_have_different_ids_and_csrf_tokens():
    console = sessions()
    (_, first), (_, second) = console.issue(), console.issue()
    assert first.id != second.id and first.csrf_token != second.csrf_token
    assert console.csrf_matches(first, first.csrf_token)
    assert not console.csrf_matches(first, second.csrf_token)
    assert not console.csrf_matches(first, None)


@pytest.mark.parametrize(
    "other",
    [
        {"api_key": "a-rotated-key"},  # rotating the key ends sessions...
        {"secret": "s" * 40},  # ...and so does setting or rotating the secret
    ],
)
def test_a_token_is_refused_after_the_key_or_secret_changes(other):
    token, _ = sessions().issue()
    assert sessions().verify(token) is not None  # another replica, same settings
    assert sessions(**other).verify(token) is None


def test_rotating_the_key_ends_sessions_even_with_a_fixed_secret():
    token, _ = sessions(secret="s" * 40).issue()
    assert sessions(secret="s" * 40).verify(token) is not None
    assert sessions(secret="s" * 40, api_key="a-rotated-key").verify(token) is None


@pytest.mark.parametrize("token", [None, "", "garbage", "a.b.c", "eyJzaWQiOiJ4In0.AAAA.BBBB"])
def test_anything_but_a_signed_token_is_no_session(token):
    assert sessions().verify(token) is None


def test_a_payload_swapped_under_a_valid_signature_is_refused():
    console = sessions()
    token, _ = console.issue()
    payload, signature = token.split(".", 1)
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    forged = {**claims, "sid": "chosen-by-an-attacker"}
    encoded = base64.urlsafe_b64encode(json.dumps(forged).encode()).rstrip(b"=").decode()
    assert console.verify(f"{encoded}.{signature}") is None
