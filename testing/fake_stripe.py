"""A local HTTP server that answers the few Stripe API calls billing makes, for the real ``stripe`` library.

Stripe's servers are unreachable here and ``localstripe`` has no Billing Meters, so tests point
``STRIPE_API_BASE`` at this server and assert on what the library actually sent. It records every request
(method, path, decoded form parameters, headers), can be told to fail the next N meter-event requests
(after recording them, like a response lost on the way back), and refuses a meter-event identifier it has
already accepted, as Stripe does.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

METER_EVENTS = "/v1/billing/meter_events"


@dataclass
class Recorded:
    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    status: int = 200


@dataclass
class FakeStripe:
    requests: list[Recorded] = field(default_factory=list)
    fail_meter_events: int = 0  # answer the next N meter events with fail_status
    fail_status: int = 500
    accepted_identifiers: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)
    counter: int = 0

    def meter_requests(self) -> list[Recorded]:
        return [r for r in self.requests if r.path == METER_EVENTS]

    def paths(self) -> list[str]:
        return [r.path for r in self.requests]

    def respond(self, method: str, path: str, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        with self.lock:
            self.counter += 1
            n = self.counter
            if path == METER_EVENTS:
                if self.fail_meter_events > 0:
                    self.fail_meter_events -= 1
                    return self.fail_status, _error("api_error", "Something went wrong on Stripe's end.")
                identifier = params.get("identifier", "")
                if identifier in self.accepted_identifiers:
                    return 400, _error(
                        "invalid_request_error",
                        f"An event with identifier {identifier} already exists.",
                        code="resource_already_exists",
                    )
                self.accepted_identifiers.add(identifier)
                return 200, {
                    "object": "billing.meter_event",
                    "created": int(time.time()),
                    "event_name": params.get("event_name"),
                    "identifier": identifier,
                    "livemode": False,
                    "payload": {k[8:-1]: v for k, v in params.items() if k.startswith("payload[")},
                    "timestamp": int(params.get("timestamp") or time.time()),
                }
        if path == "/v1/customers":
            return 200, {"id": f"cus_fake{n}", "object": "customer", "name": params.get("name")}
        if path == "/v1/checkout/sessions":
            return 200, {"id": f"cs_fake{n}", "object": "checkout.session",
                         "url": f"https://checkout.stripe.test/c/cs_fake{n}"}
        if path == "/v1/billing_portal/sessions":
            return 200, {"id": f"bps_fake{n}", "object": "billing_portal.session",
                         "url": f"https://billing.stripe.test/p/bps_fake{n}"}
        return 404, _error("invalid_request_error", f"Unrecognized request URL ({method}: {path}).")


def _error(kind: str, message: str, code: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"type": kind, "message": message}
    if code:
        error["code"] = code
    return {"error": error}


def serve(fake: FakeStripe) -> tuple[ThreadingHTTPServer, str]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode()
            params = dict(parse_qsl(body, keep_blank_values=True))
            status, payload = fake.respond("POST", self.path, params)
            fake.requests.append(Recorded("POST", self.path, params, dict(self.headers), status))
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Request-Id", f"req_fake{fake.counter}")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"
