"""The requesting gateway's HTTP exchange with a remote's enrollment endpoint.

Bounded on every side the remote controls: the connection goes to an address the
policy checked (no DNS rebinding between check and connect), no redirects, no
proxies from the environment, no content encoding, at most ``max_bytes`` read
(streamed, so a 1 GB answer costs 64 KiB), at most ``ANSWER_SECONDS`` per
exchange. Answers are classified: transient (unreachable, 429, 503, other 5xx
but 502) may be retried; anything else is definitive.
"""

from __future__ import annotations

import asyncio
import http
import re
import ssl
from dataclasses import dataclass
from typing import Any

import httpx

from federation.errors import FederationError
from federation.remote_answers import (
    PreflightAnswer,
    RedeemAnswer,
    RemoteAnswerRejected,
    json_object,
    one_line,
    read_preflight,
    read_redeem,
)
from federation.remote_url import AddressPolicy, IPAddress, RemoteTarget, resolve_target

ANSWER_SECONDS = 40.0
_RETRY_AFTER_MAX = 60
_DIGITS = re.compile(r"[0-9]{1,12}")


class RemoteUnavailable(FederationError):
    """The remote could not be reached or answered 429/503/5xx: worth retrying."""

    kind = "RemoteUnavailable"
    status = 504
    retryable = True

    def __init__(
        self, message: str, *, retry_after: int | None = None, cause: str | None = None
    ) -> None:
        super().__init__(message, cause=cause)
        self.retry_after = retry_after


class EnrollmentRefused(FederationError):
    """The remote answered definitively no (a 4xx, a 502, a redirect)."""

    kind = "EnrollmentRefused"
    status = 502


class RemoteAnswerTooLarge(RemoteAnswerRejected):
    kind = "RemoteAnswerTooLarge"


@dataclass(frozen=True)
class _Answer:
    status: int
    headers: httpx.Headers
    body: bytes


def remote_client(ca_bundle: str = "") -> httpx.AsyncClient:
    """TLS verified (against ``ca_bundle`` alone when given), no redirects, no proxies."""
    verify: ssl.SSLContext | bool = True
    if ca_bundle:
        verify = ssl.create_default_context(cafile=ca_bundle)
    return httpx.AsyncClient(
        verify=verify,
        follow_redirects=False,
        trust_env=False,
        timeout=httpx.Timeout(30, connect=5),
    )


class RemoteGateway:
    """The remote's two enrollment calls, over ``client``, under ``policy``."""

    def __init__(self, client: httpx.AsyncClient, policy: AddressPolicy, max_bytes: int) -> None:
        self._client = client
        self._policy = policy
        self._max_bytes = max_bytes

    async def preflight(self, target: RemoteTarget) -> PreflightAnswer:
        """GET the enrollment URL: what the token is for, without consuming it."""
        answer = await self._exchange("GET", target, None)
        return read_preflight(self._accepted(target, answer, "preflight"), self._policy)

    async def redeem(self, target: RemoteTarget, csr_pem: str) -> RedeemAnswer:
        """POST the CSR: the certificate, or a refusal."""
        answer = await self._exchange("POST", target, {"csrPem": csr_pem})
        return read_redeem(self._accepted(target, answer, "redeem"), self._policy)

    async def _exchange(
        self, method: str, target: RemoteTarget, body: dict[str, str] | None
    ) -> _Answer:
        try:
            addresses = await resolve_target(target, self._policy)
        except (OSError, TimeoutError) as exc:
            raise RemoteUnavailable(
                f"remote {target.host} unreachable: its name does not resolve", cause=str(exc)
            ) from None
        failure: Exception | None = None
        for address in addresses:
            try:
                async with asyncio.timeout(ANSWER_SECONDS):
                    return await self._send(method, target, address, body)
            except httpx.ConnectError as exc:
                failure = exc  # the next address of the name may answer
            except (httpx.HTTPError, TimeoutError) as exc:
                failure = exc
                break
        raise RemoteUnavailable(
            f"remote {target.host} unreachable: {type(failure).__name__}", cause=str(failure)
        )

    async def _send(
        self, method: str, target: RemoteTarget, address: IPAddress, body: dict[str, str] | None
    ) -> _Answer:
        literal = f"[{address}]" if address.version == 6 else str(address)
        path = target.url.removeprefix(target.base_url)
        extensions: dict[str, Any] = {}
        if target.scheme == "https" and target.literal_ip is None:
            extensions["sni_hostname"] = target.hostname  # and the name TLS verifies
        request = self._client.build_request(
            method,
            f"{target.scheme}://{literal}:{target.port}{path}",
            json=body,
            headers={
                "Host": target.host,
                "Accept": "application/json",
                "Accept-Encoding": "identity",
            },
            extensions=extensions,
        )
        response = await self._client.send(request, stream=True)
        try:
            content = await read_capped(response, self._max_bytes)
        finally:
            await response.aclose()
        return _Answer(response.status_code, response.headers, content)

    def _accepted(self, target: RemoteTarget, answer: _Answer, what: str) -> dict[str, Any]:
        """A 2xx as a JSON object; a transient or definitive refusal otherwise."""
        status = answer.status
        if 200 <= status < 300:
            return json_object(answer.body, what)
        reason = f"remote answered {status}: {_detail(answer)}"
        if status in (429, 503) or (status >= 500 and status != 502):
            raise RemoteUnavailable(reason, retry_after=_retry_after(answer.headers))
        raise EnrollmentRefused(reason)


async def read_capped(response: httpx.Response, max_bytes: int) -> bytes:
    """A streamed answer's body, refused (``RemoteAnswerTooLarge``) past ``max_bytes``."""
    too_large = RemoteAnswerTooLarge(f"remote answer too large (more than {max_bytes} bytes)")
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise RemoteAnswerRejected("remote answer is compressed; only identity is accepted")
    length = response.headers.get("content-length", "").strip()
    if _DIGITS.fullmatch(length) and int(length) > max_bytes:
        raise too_large
    content = bytearray()
    async for chunk in response.aiter_raw():
        content += chunk
        if len(content) > max_bytes:
            raise too_large
    return bytes(content)


def _detail(answer: _Answer) -> str:
    try:
        detail = one_line(json_object(answer.body, "error").get("detail"))
    except RemoteAnswerRejected:
        detail = ""
    if detail:
        return detail
    try:
        return http.HTTPStatus(answer.status).phrase
    except ValueError:
        return "no reason given"


def _retry_after(headers: httpx.Headers) -> int | None:
    value = headers.get("retry-after", "").strip()
    return min(int(value), _RETRY_AFTER_MAX) if _DIGITS.fullmatch(value) else None
