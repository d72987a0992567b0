"""Who is calling the local GraphQL API: a Cognito user (JWT) or an IAM principal (SigV4).

A JWT is verified exactly as the WebSocket API's ``$connect`` verifies it, by
the same :class:`server.cognito.CognitoJwtVerifier` (the handlers' runtime's
instance, so the JWKS cache is shared). A SigV4 signature is recomputed with
botocore's own signer from the local stack's credentials and compared in
constant time, so a request the real AppSync would refuse for its signature is
refused here too.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from botocore.auth import SIGV4_TIMESTAMP, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from emulator.graphql.schema import COGNITO, IAM
from server.cognito import CognitoJwtVerifier, Identity, JwksUnavailableError, TokenError

#: How far a signature's ``X-Amz-Date`` may be from now (SigV4's rule).
MAX_CLOCK_SKEW_SECONDS = 300

_SIGV4 = re.compile(
    r"AWS4-HMAC-SHA256\s+Credential=(?P<key>[^/,\s]+)/(?P<date>\d{8})/(?P<region>[^/,\s]+)/"
    r"(?P<service>[^/,\s]+)/aws4_request,\s*SignedHeaders=(?P<headers>[a-z0-9;._-]+),\s*"
    r"Signature=(?P<signature>[0-9a-f]{64})"
)


class AuthError(Exception):
    """The caller is not authenticated; ``error_type`` and ``status`` are AppSync's."""

    def __init__(self, error_type: str, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.status = status


@dataclass(frozen=True)
class Caller:
    """An authenticated caller and the authorization mode it used."""

    mode: str
    """``AMAZON_COGNITO_USER_POOLS`` or ``AWS_IAM``."""
    identity: Identity | None = None
    """The verified user (Cognito callers)."""
    access_key_id: str | None = None
    """The signing key (IAM callers)."""


@dataclass(frozen=True)
class SignedRequest:
    """What a SigV4 signature covers, as the server received it."""

    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    """Lower-case names."""
    body: bytes


class Authenticator:
    """Authenticates requests against the local stack's user pool and IAM credentials."""

    def __init__(self, verifier: CognitoJwtVerifier, region: str, access_key_id: str, secret_access_key: str):
        self._verifier = verifier
        self._region = region
        self._access_key_id = access_key_id
        self._secret_access_key = secret_access_key

    async def authenticate(self, request: SignedRequest) -> Caller:
        """The caller of ``request`` (its ``authorization`` header decides the mode).

        Raises:
            AuthError: no credentials, a refused token, or a signature that does not match.
        """
        authorization = request.headers.get("authorization", "").strip()
        if not authorization:
            raise AuthError("UnauthorizedException", "Valid authorization header not provided.")
        if authorization.startswith("AWS4-HMAC-SHA256"):
            return self.verify_signature(request)
        token = authorization[7:].strip() if authorization[:7].lower() == "bearer " else authorization
        return await self.verify_token(token)

    async def verify_token(self, token: str) -> Caller:
        """A Cognito caller, verified as ``$connect`` verifies (off the event loop: JWKS may be fetched)."""
        loop = asyncio.get_running_loop()
        try:
            identity = await loop.run_in_executor(None, self._verifier.verify, token)
        except TokenError as exc:
            raise AuthError("UnauthorizedException", str(exc)) from None
        except JwksUnavailableError:
            raise AuthError("InternalFailureException", "user pool keys unavailable", status=500) from None
        return Caller(COGNITO, identity=identity)

    def verify_signature(self, request: SignedRequest, now: datetime | None = None) -> Caller:
        """An IAM caller whose SigV4 signature (service ``appsync``) matches the local credentials."""
        match = _SIGV4.fullmatch(request.headers.get("authorization", "").strip())
        if match is None:
            raise AuthError("IncompleteSignatureException", "Authorization header is not a SigV4 signature.")
        if match["key"] != self._access_key_id:
            raise AuthError(
                "UnrecognizedClientException", "The security token included in the request is invalid."
            )
        if match["service"] != "appsync" or match["region"] != self._region:
            raise AuthError(
                "InvalidSignatureException",
                f"Credential should be scoped to {self._region}/appsync.",
                status=403,
            )
        amz_date = request.headers.get("x-amz-date", "")
        try:
            signed_at = datetime.strptime(amz_date, SIGV4_TIMESTAMP).replace(tzinfo=UTC)
        except ValueError:
            raise AuthError("IncompleteSignatureException", "X-Amz-Date is missing or malformed.") from None
        now = now or datetime.now(UTC)
        if abs((now - signed_at).total_seconds()) > MAX_CLOCK_SKEW_SECONDS or match["date"] != amz_date[:8]:
            raise AuthError("InvalidSignatureException", "Signature expired.", status=403)

        signed_names = match["headers"].split(";")
        if "host" not in signed_names or any(name not in request.headers for name in signed_names):
            raise AuthError("IncompleteSignatureException", "A signed header is missing.", status=403)
        content_hash = request.headers.get("x-amz-content-sha256")
        if content_hash is not None and content_hash != hashlib.sha256(request.body).hexdigest():
            # botocore signs a given content hash as-is: the body must be the one it names.
            raise AuthError("InvalidSignatureException", "The body does not match x-amz-content-sha256.", 403)
        url = f"https://{request.headers['host']}{request.path}" + (
            f"?{request.query}" if request.query else ""
        )
        rebuilt = AWSRequest(
            method=request.method,
            url=url,
            data=request.body,
            headers={name: request.headers[name] for name in signed_names},
        )
        rebuilt.context["timestamp"] = amz_date
        signer = SigV4Auth(Credentials(self._access_key_id, self._secret_access_key), "appsync", self._region)
        expected = signer.signature(
            signer.string_to_sign(rebuilt, signer.canonical_request(rebuilt)), rebuilt
        )
        if not hmac.compare_digest(expected, match["signature"]):
            raise AuthError(
                "InvalidSignatureException",
                "The request signature we calculated does not match the signature you provided.",
                status=403,
            )
        return Caller(IAM, access_key_id=match["key"])
