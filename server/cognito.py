"""Cognito JWT verification at the WebSocket handshake, to aws-jwt-verify's standard.

- RS256 only: ``alg: none``, HS256 (including the "HMAC keyed with the public
  key" confusion) and every other algorithm are refused before any key is used.
- The key is chosen by ``kid`` from the pool's JWKS, cached per container and
  re-fetched once it is an hour old, so a key the pool retires stops being
  accepted within the hour even in a container that lives for days. An unknown
  ``kid`` triggers one refetch (keys rotate); if the refetch does not know it
  either, further unknown ``kid`` refetches wait in a penalty box so a stream of
  garbage tokens cannot hammer Cognito.
- ``iss`` must equal the pool's issuer exactly; ``token_use`` must be an
  accepted one; ID tokens must carry an accepted ``aud`` (a string, or a list
  of strings one of which is accepted, as RFC 7519 and aws-jwt-verify allow),
  access tokens an accepted ``client_id`` (a string); ``exp`` is required,
  ``nbf`` honoured, both with a small leeway. A claim of the wrong JSON type is
  a refused token (401), never a server error.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from jose import JWTError, jwk, jwt
from jose.backends.base import Key
from jose.exceptions import JOSEError

from contract.log import get_logger
from server.config import AuthConfig

ALGORITHM = "RS256"

JWKS_MAX_AGE_SECONDS = 3600.0
"""How long fetched keys are trusted before the next handshake re-fetches them.

Short enough that a key the pool retires stops verifying soon after it is
dropped, long enough that a busy container fetches once an hour, not per
handshake (Cognito rotates keys rarely)."""

log = get_logger("cognito")


class TokenError(Exception):
    """The token is not acceptable; the handshake is refused with 401."""


class JwksUnavailableError(Exception):
    """The JWKS could not be fetched: a server-side failure, not the client's fault."""


@dataclass(frozen=True)
class Identity:
    """The verified caller."""

    user_id: str
    """The token's ``sub``."""
    username: str
    email: str | None
    groups: tuple[str, ...]
    token_use: str
    client_id: str
    expires_at: int
    """The token's ``exp`` (epoch seconds)."""


def fetch_jwks(url: str, timeout: float = 5.0) -> Mapping[str, Any]:
    """GET a JWKS document; ``JwksUnavailableError`` on any network or format failure."""
    import requests  # noqa: PLC0415 - only needed on a cache miss; keeps cold start lean

    try:
        reply = requests.get(url, timeout=timeout)
        reply.raise_for_status()
        document = reply.json()
    except (requests.RequestException, ValueError) as exc:
        raise JwksUnavailableError(f"could not fetch JWKS from {url}: {exc}") from exc
    if not isinstance(document, Mapping) or not isinstance(document.get("keys"), list):
        raise JwksUnavailableError(f"JWKS at {url} has no 'keys' list")
    return document


class JwksCache:
    """Public keys of one user pool, by ``kid``, refreshed hourly; unknown ``kid``s have a penalty box.

    Keys older than ``max_age_seconds`` are re-fetched by the next lookup. If that
    scheduled refresh fails, the keys already held keep serving (Cognito being
    briefly unreachable must not refuse every handshake) and the refresh is
    retried no sooner than ``penalty_seconds`` later, so a down endpoint is not
    hit on every request either.
    """

    def __init__(
        self,
        url: str,
        penalty_seconds: float = 10.0,
        fetch: Callable[[str], Mapping[str, Any]] = fetch_jwks,
        clock: Callable[[], float] = time.monotonic,
        max_age_seconds: float = JWKS_MAX_AGE_SECONDS,
    ) -> None:
        self._url = url
        self._penalty_seconds = penalty_seconds
        self._max_age_seconds = max_age_seconds
        self._fetch = fetch
        self._clock = clock
        self._keys: dict[str, Key] = {}
        self._refresh_at = float("-inf")
        """When the held keys are due for a refetch (minus infinity: none fetched yet)."""
        self._penalty_until: float | None = None
        self._lock = threading.Lock()
        self.fetches = 0
        """How many times the JWKS was fetched (observable, for tests and metrics)."""

    def key_for(self, kid: str) -> Key:
        """The verification key for ``kid``; ``TokenError`` if the pool has none.

        Raises:
            TokenError: the pool's keys have no ``kid`` (or an unknown ``kid`` is in the penalty box).
            JwksUnavailableError: the keys could not be fetched and none are held.
        """
        key = self._keys.get(kid)
        if key is not None and self._clock() < self._refresh_at:
            return key
        with self._lock:
            now = self._clock()
            refreshed = False
            if now >= self._refresh_at:  # due (or never fetched): another thread may have just done it
                refreshed = self._refresh(now)
            key = self._keys.get(kid)
            if key is not None:
                return key
            if not refreshed:
                # Keys rotate: an unknown kid earns one refetch, then the penalty box.
                if self._penalty_until is not None and now < self._penalty_until:
                    raise TokenError("token signed with an unknown key")
                self._refresh(now)
                key = self._keys.get(kid)
                if key is not None:
                    return key
            self._penalty_until = now + self._penalty_seconds
            raise TokenError("token signed with an unknown key")

    def _refresh(self, now: float) -> bool:
        """Fetch the keys (caller holds the lock); False when a failed fetch left the held keys in place."""
        try:
            document = self._fetch(self._url)
        except JwksUnavailableError:
            if not self._keys:
                raise  # nothing to fall back on: the handshake is a server error, retried by the client
            log.warning("JWKS refresh failed; the held keys serve until the next attempt", exc_info=True)
            self._refresh_at = now + self._penalty_seconds
            return False
        self._keys = self._load(document)
        self.fetches += 1
        self._refresh_at = now + self._max_age_seconds
        return True

    @staticmethod
    def _load(document: Mapping[str, Any]) -> dict[str, Key]:
        keys: dict[str, Key] = {}
        for entry in document.get("keys", []):
            if not isinstance(entry, Mapping) or not isinstance(entry.get("kid"), str):
                continue
            # Only RSA signing keys for RS256 can verify our tokens; anything else
            # in the set is skipped so it can never be selected by a crafted header.
            if entry.get("kty") != "RSA" or entry.get("alg", ALGORITHM) != ALGORITHM:
                continue
            if entry.get("use", "sig") != "sig":
                continue
            try:
                keys[entry["kid"]] = jwk.construct(dict(entry), algorithm=ALGORITHM)
            except (JOSEError, ValueError, TypeError, KeyError):
                continue  # one malformed key must not take the pool's other keys down with it
        return keys


class CognitoJwtVerifier:
    """Verifies Cognito ID and access tokens for one user pool."""

    def __init__(self, config: AuthConfig, jwks: JwksCache | None = None) -> None:
        self._config = config
        self.jwks = jwks or JwksCache(config.jwks_url, config.jwks_penalty_seconds)

    def verify(self, token: str) -> Identity:
        """Verify ``token`` and return who it identifies.

        Raises:
            TokenError: the token is malformed, forged, expired or not for us.
            JwksUnavailableError: the pool's keys could not be fetched.
        """
        if not isinstance(token, str) or token.count(".") != 2:
            raise TokenError("token is not a JWT")
        try:
            header = jwt.get_unverified_header(token)
        except JWTError:
            raise TokenError("token header is malformed") from None
        if header.get("alg") != ALGORITHM:
            raise TokenError(f"token algorithm must be {ALGORITHM}")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenError("token header has no kid")
        key = self.jwks.key_for(kid)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                issuer=self._config.issuer,
                options={
                    "verify_aud": False,  # checked below: aud for ID tokens, client_id for access tokens
                    "verify_at_hash": False,  # ID tokens may carry at_hash; we never see the access token
                    "require_exp": True,
                    "require_iss": True,
                    "require_sub": True,
                    "leeway": self._config.leeway_seconds,
                },
            )
        except JWTError as exc:
            raise TokenError(_describe(exc)) from None
        return self._identity(claims)

    def _identity(self, claims: Mapping[str, Any]) -> Identity:
        token_use = claims.get("token_use")
        # isinstance first: a list or object claim is unhashable, and must be a 401, not a 500.
        if not isinstance(token_use, str) or token_use not in self._config.token_uses:
            raise TokenError(f"token_use must be one of {sorted(self._config.token_uses)}")
        if token_use == "id":
            client_id = self._accepted_audience(claims.get("aud"))
        else:
            access_client = claims.get("client_id")
            if not isinstance(access_client, str) or access_client not in self._config.client_ids:
                raise TokenError("token was issued for another app client")
            client_id = access_client
        groups = claims.get("cognito:groups", [])
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            raise TokenError("cognito:groups must be a list of strings")
        sub = str(claims["sub"])
        username = claims.get("cognito:username") or claims.get("username") or sub
        email = claims.get("email")
        return Identity(
            user_id=sub,
            username=str(username),
            email=email if isinstance(email, str) else None,
            groups=tuple(groups),
            token_use=str(token_use),
            client_id=client_id,
            expires_at=int(claims["exp"]),
        )

    def _accepted_audience(self, aud: Any) -> str:
        """The accepted app client an ID token's ``aud`` names.

        RFC 7519 lets ``aud`` be one string or a list of them; like aws-jwt-verify,
        a list is accepted when one of its values is an accepted client id. Any
        other shape (a number, an object, an empty list, a list holding a
        non-string) is refused whatever else it holds.
        """
        audiences = aud if isinstance(aud, list) else [aud]
        if not audiences or not all(isinstance(value, str) for value in audiences):
            raise TokenError("token aud must be a string or a list of strings")
        for value in audiences:
            if value in self._config.client_ids:
                return str(value)
        raise TokenError("token was issued for another app client")


def _describe(exc: JWTError) -> str:
    text = str(exc).lower()
    if "expired" in text:
        return "token has expired"
    if "not yet valid" in text or "nbf" in text:
        return "token is not yet valid"
    if "issuer" in text:
        return "token was issued by another user pool"
    if "signature" in text:
        return "token signature is invalid"
    return "token is invalid"
