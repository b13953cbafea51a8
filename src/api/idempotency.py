"""``Idempotency-Key`` on every POST and PATCH (the IETF httpapi draft, as Stripe applies it).

- The first request with a key runs; the key, its caller (the credential that sent
  it) and a fingerprint of the request are recorded in the same transaction as the
  command's events, and the answer is kept for ``idempotency_ttl_hours``.
- A repeat with the same key and the same request replays the first answer (status
  and body, ``position`` included) with ``Idempotent-Replayed: true`` and writes nothing.
- The same key with a different request answers 422; a repeat while the first is
  still running answers 409 with ``Retry-After``.
- An answer of 401, 403 or 429, any answer with ``Retry-After`` (a concurrent change, a
  view not caught up) and any 5xx is not kept: nothing ran, or the outcome is unknown,
  and the client retries with the same key (which is then safe).
"""

from __future__ import annotations

import json

from fastapi.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rightsledger.api import problems
from rightsledger.domain.ledger import CommandSlot, current_command
from rightsledger.storage.idempotency import Claim, IdempotencyStore, caller_of, fingerprint

HEADER = "Idempotency-Key"
_METHODS = frozenset({"POST", "PATCH"})
_NOT_KEPT = frozenset({401, 403, 429})
MAX_KEY_LENGTH = 255


def valid_key(value: str) -> bool:
    return 0 < len(value) <= MAX_KEY_LENGTH and all(32 < ord(c) < 127 for c in value)


class IdempotencyKeys:
    """ASGI middleware applying the rules above to POST and PATCH requests with the header."""

    def __init__(self, app: ASGIApp, store: IdempotencyStore) -> None:
        self.app = app
        self.store = store

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _METHODS:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", []))
        raw_key = headers.get(b"idempotency-key")
        if raw_key is None:
            await self.app(scope, receive, send)
            return
        key = raw_key.decode("latin-1")
        if not valid_key(key):
            await self._problem(
                scope,
                send,
                422,
                "Invalid Idempotency-Key",
                f"an {HEADER} is 1 to {MAX_KEY_LENGTH} printable ASCII characters without spaces",
                "idempotency-key-invalid",
            )
            return
        body = await _read_body(receive)
        authorization = headers.get(b"authorization")
        caller = caller_of(authorization.decode("latin-1") if authorization else None)
        request_print = fingerprint(
            scope["method"], scope["path"], scope.get("query_string", b"").decode("latin-1"), body
        )
        claim: Claim = await run_in_threadpool(self.store.claim, caller, key, request_print)
        if claim.mismatch:
            await self._problem(
                scope,
                send,
                422,
                "Idempotency-Key reused",
                f"this {HEADER} was already used with a different request; use a new key for "
                "a new request",
                "idempotency-key-reused",
            )
            return
        if claim.in_progress:
            await self._problem(
                scope,
                send,
                409,
                "Request in progress",
                f"a request with this {HEADER} is still being processed; retry after "
                f"{claim.retry_after} s to get its answer",
                "idempotency-key-in-use",
                headers={"Retry-After": str(claim.retry_after)},
            )
            return
        if claim.replay is not None:
            stored = claim.replay
            await _send(
                send,
                stored.status,
                stored.body,
                [
                    (b"content-type", stored.content_type.encode()),
                    (b"idempotent-replayed", b"true"),
                ],
            )
            return
        assert claim.tag is not None
        tag = claim.tag
        slot = CommandSlot(tag)
        replayed = False

        async def replay_body() -> Message:
            nonlocal replayed
            if replayed:
                return {"type": "http.disconnect"}
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        start: Message | None = None
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        token = current_command.set(slot)
        try:
            await self.app(scope, replay_body, capture)
        except BaseException:
            await run_in_threadpool(self.store.release, tag)
            raise
        finally:
            current_command.reset(token)
        assert start is not None
        status = int(start["status"])
        content = b"".join(chunks)
        response_headers = list(start.get("headers", []))
        transient = any(name.lower() == b"retry-after" for name, _ in response_headers)
        if status < 500 and status not in _NOT_KEPT and not transient:
            content_type = dict(response_headers).get(b"content-type", b"application/json")
            await run_in_threadpool(
                self.store.answer, tag, status, content_type.decode("latin-1"), content
            )
        else:
            await run_in_threadpool(self.store.release, tag)
        await send({**start, "headers": response_headers})
        await send({"type": "http.response.body", "body": content, "more_body": False})

    async def _problem(
        self,
        scope: Scope,
        send: Send,
        status: int,
        title: str,
        detail: str,
        slug: str,
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        body = {
            "type": f"/problems/{slug}",
            "title": title,
            "status": status,
            "detail": detail,
            "instance": scope.get("path"),
        }
        extra = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
        await _send(
            send,
            status,
            json.dumps(body).encode(),
            [(b"content-type", problems.PROBLEM_JSON.encode()), *extra],
        )


async def _read_body(receive: Receive) -> bytes:
    parts: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.request":
            parts.append(message.get("body", b""))
            if not message.get("more_body", False):
                return b"".join(parts)
        elif message["type"] == "http.disconnect":
            return b"".join(parts)


async def _send(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    all_headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": all_headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
