"""Per-request plumbing as one ASGI middleware: request id, body limit, metrics and the access log.

- Request id: the caller's `X-Request-ID` if it is a short token, else a new one;
  returned in the response header and attached to every log line of the request.
- Body limit: a declared Content-Length over the limit is refused with 413 before
  the body is read; a body streamed without one is cut off at the limit with 413.
- Metrics: latency histogram and request counter by route template (never the raw
  path, so label cardinality stays bounded), and an EMF line for prediction routes.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable

import orjson
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.emf import EmfPublisher
from api.logs import REQUEST_ID
from api.metrics import REQUEST_LATENCY, REQUESTS

REQUEST_ID_HEADER = b"x-request-id"
_SAFE_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,64}$")
PREDICTION_ROUTE_PREFIX = "/v1/predict"
BASKETS_SCORED = "baskets_scored"  # set in the request state by the prediction routes

access_log = logging.getLogger("retail.api.access")


class RequestPlumbing:
    def __init__(self, app: ASGIApp, max_body_bytes: int, emf: EmfPublisher | None = None,
                 drift_score: Callable[[], float | None] = lambda: None):
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.emf = emf
        self.drift_score = drift_score

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = dict(scope["headers"])
        given = headers.get(REQUEST_ID_HEADER, b"")
        request_id = given.decode() if _SAFE_REQUEST_ID.match(given) else uuid.uuid4().hex
        token = REQUEST_ID.set(request_id)
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status, response_started = message["status"], True
                message["headers"] = [*message.get("headers", []), (REQUEST_ID_HEADER, request_id.encode())]
            await send(message)

        try:
            declared = headers.get(b"content-length", b"")
            if declared.isdigit() and int(declared) > self.max_body_bytes:
                await self._too_large(send_with_id)
            else:
                await self.app(scope, self._limited(receive), send_with_id)
        finally:
            self._record(scope, request_id, status, time.perf_counter() - started)
            REQUEST_ID.reset(token)

    def _limited(self, receive: Receive) -> Receive:
        received = 0

        async def receive_within_limit() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise HTTPException(413, self._too_large_text())
            return message

        return receive_within_limit

    def _too_large_text(self) -> str:
        return (f"request body over {self.max_body_bytes} bytes (RETAIL_MAX_BODY_BYTES); "
                "split the baskets over several requests")

    async def _too_large(self, send: Send) -> None:
        body = orjson.dumps({"detail": self._too_large_text()})
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    def _record(self, scope: Scope, request_id: str, status: int, seconds: float) -> None:
        route = scope.get("route")
        template = route.path if route is not None and hasattr(route, "path") else "unmatched"
        method = scope["method"]
        REQUEST_LATENCY.labels(method, template).observe(seconds)
        REQUESTS.labels(method, template, str(status)).inc()
        access_log.info("request", extra={"request_id": request_id, "method": method, "route": template,
                                          "status": status, "duration_ms": round(seconds * 1000, 3)})
        if self.emf is not None and template.startswith(PREDICTION_ROUTE_PREFIX):
            scored = scope.get("state", {}).get(BASKETS_SCORED, 0)
            self.emf.publish(seconds * 1000, status, scored, self.drift_score())
