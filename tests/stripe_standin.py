"""A Stripe stand-in on loopback: the real stripe-python SDK sends real HTTP
requests here (settings.STRIPE_API_BASE). It implements what Lathe calls —
customers, products, prices, meters, meter events (identifier unique, as
Stripe enforces), meter event summaries, checkout and portal sessions,
subscriptions — with Stripe's idempotency-key replay, and answers in the
shapes of Stripe's own example objects (tests/fixtures/stripe/objects.json,
MIT, from stripe/openapi). Faults can be injected: a slow answer (the client
times out after Stripe stored the event), a 500."""
from __future__ import annotations

import copy
import itertools
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

OBJECTS = json.loads((Path(__file__).parent / "fixtures" / "stripe" / "objects.json").read_text())["resources"]


def example(resource: str, **changes) -> dict:
    """Stripe's example object for `resource`, with `changes` applied."""
    obj = copy.deepcopy(OBJECTS[resource])
    obj.update(changes)
    return obj


def decode_form(body: str) -> dict:
    """Stripe's form encoding (a[b][0][c]=v) back into nested dicts and lists."""
    root: dict = {}
    for key, value in parse_qsl(body, keep_blank_values=True):
        parts = re.findall(r"[^\[\]]+", key)
        node = root
        for part, following in zip(parts, parts[1:]):
            node = node.setdefault(part, {})
        node[parts[-1]] = value

    def listify(node):
        if isinstance(node, dict):
            node = {k: listify(v) for k, v in node.items()}
            if node and all(k.isdigit() for k in node):
                return [node[k] for k in sorted(node, key=int)]
        return node

    return listify(root)


class StripeState:
    def __init__(self):
        self.lock = threading.Lock()
        self.ids = itertools.count(1)
        self.customers, self.products, self.prices, self.meters, self.subscriptions = {}, {}, {}, {}, {}
        self.meter_events: dict[str, dict] = {}  # identifier -> event
        self.idempotent: dict[str, tuple[int, dict]] = {}
        self.requests: list[tuple[str, str, dict]] = []
        self.slow_meter_events = 0  # the next N meter-event answers come too late for the client
        self.slow_seconds = 2.0
        self.fail_meter_events = 0  # the next N meter events are answered 500 before anything is stored

    def new_id(self, prefix: str) -> str:
        return f"{prefix}_standin{next(self.ids)}"

    def meter_total(self, customer: str, event_name: str | None = None) -> int:
        return sum(int(e["payload"]["value"]) for e in self.meter_events.values()
                   if e["payload"]["stripe_customer_id"] == customer and (event_name is None or e["event_name"] == event_name))


def _error(status: int, message: str, code: str | None = None) -> tuple[int, dict]:
    return status, {"error": {"type": "invalid_request_error", "message": message, "code": code}}


class Handler(BaseHTTPRequestHandler):
    state: StripeState

    def log_message(self, *args):
        return

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Request-Id", f"req_{time.time_ns()}")
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        url = urlsplit(self.path)
        self._dispatch("GET", url.path, decode_form(url.query))

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode()
        params = json.loads(body) if self.headers.get("Content-Type", "").startswith("application/json") else decode_form(body)
        self._dispatch("POST", urlsplit(self.path).path, params)

    def _dispatch(self, method: str, path: str, params: dict) -> None:
        state = self.state
        key = self.headers.get("Idempotency-Key") if method == "POST" else None
        with state.lock:
            state.requests.append((method, path, params))
            if key and key in state.idempotent:  # Stripe replays the first answer for a reused key
                status, body = state.idempotent[key]
                replay = True
            else:
                replay = False
                status, body = self._handle(method, path, params)
                if key and status < 500:
                    state.idempotent[key] = (status, body)
        slow = (not replay and path == "/v1/billing/meter_events" and status == 200 and state.slow_meter_events > 0)
        if slow:
            state.slow_meter_events -= 1
            time.sleep(state.slow_seconds)  # stored, but the client gives up before the answer
        try:
            self._send(status, body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _handle(self, method: str, path: str, params: dict) -> tuple[int, dict]:
        s = self.state
        if method == "POST" and path == "/v1/customers":
            customer = example("customer", id=s.new_id("cus"), name=params.get("name"), email=params.get("email"),
                               metadata=params.get("metadata", {}))
            s.customers[customer["id"]] = customer
            return 200, customer
        if method == "POST" and path == "/v1/checkout/sessions":
            session_id = s.new_id("cs")
            return 200, example("checkout.session", id=session_id, customer=params.get("customer"), mode="subscription",
                                url=f"https://checkout.stripe.test/c/pay/{session_id}",
                                client_reference_id=params.get("client_reference_id"), metadata=params.get("metadata", {}))
        if method == "POST" and path == "/v1/billing_portal/sessions":
            return 200, example("billing_portal.session", id=s.new_id("bps"), customer=params.get("customer"),
                                url=f"https://billing.stripe.test/p/session/{s.new_id('x')}")
        match = re.fullmatch(r"/v1/products(?:/([^/]+))?", path)
        if match:
            product_id = match.group(1)
            if method == "GET":
                if product_id not in s.products:
                    return _error(404, f"No such product: '{product_id}'", "resource_missing")
                return 200, s.products[product_id]
            if product_id:
                if product_id not in s.products:
                    return _error(404, f"No such product: '{product_id}'", "resource_missing")
                s.products[product_id].update({k: v == "true" if v in ("true", "false") else v for k, v in params.items()})
                return 200, s.products[product_id]
            new_id = params.get("id") or s.new_id("prod")
            if new_id in s.products:
                return _error(400, f"Product already exists: {new_id}", "resource_already_exists")
            s.products[new_id] = example("product", id=new_id, name=params.get("name"), metadata=params.get("metadata", {}))
            return 200, s.products[new_id]
        if path == "/v1/prices":
            if method == "GET":
                keys = params.get("lookup_keys") or []
                found = [p for p in s.prices.values() if p.get("lookup_key") in keys]
                return 200, {"object": "list", "data": found, "has_more": False, "url": "/v1/prices"}
            if any(p.get("lookup_key") == params.get("lookup_key") for p in s.prices.values()):
                return _error(400, "A price with this lookup_key already exists.")
            recurring = params.get("recurring", {})
            price = example("price", id=s.new_id("price"), product=params.get("product"), currency=params.get("currency"),
                            lookup_key=params.get("lookup_key"), unit_amount=int(params["unit_amount"]) if "unit_amount" in params else None,
                            billing_scheme=params.get("billing_scheme", "per_unit"), tiers_mode=params.get("tiers_mode"),
                            recurring={"interval": recurring.get("interval"), "interval_count": 1, "meter": recurring.get("meter"),
                                       "usage_type": recurring.get("usage_type"), "trial_period_days": None})
            price["tiers"] = params.get("tiers")
            s.prices[price["id"]] = price
            return 200, price
        if path == "/v1/billing/meters":
            if method == "GET":
                return 200, {"object": "list", "data": list(s.meters.values()), "has_more": False, "url": "/v1/billing/meters"}
            meter = example("billing.meter", id=s.new_id("mtr"), event_name=params["event_name"],
                            display_name=params.get("display_name"))
            s.meters[meter["id"]] = meter
            return 200, meter
        match = re.fullmatch(r"/v1/billing/meters/([^/]+)/event_summaries", path)
        if match and method == "GET":
            meter = s.meters.get(match.group(1))
            if meter is None:
                return _error(404, "No such meter", "resource_missing")
            start, end = int(params["start_time"]), int(params["end_time"])
            total = sum(int(e["payload"]["value"]) for e in s.meter_events.values()
                        if e["event_name"] == meter["event_name"] and e["payload"]["stripe_customer_id"] == params["customer"]
                        and start <= e["timestamp"] < end)
            summary = example("billing.meter_event_summary", id=s.new_id("mtrusg"), meter=meter["id"],
                              aggregated_value=total, start_time=start, end_time=end)
            return 200, {"object": "list", "data": [summary], "has_more": False, "url": path}
        if method == "POST" and path == "/v1/billing/meter_events":
            if s.fail_meter_events > 0:
                s.fail_meter_events -= 1
                return 500, {"error": {"type": "api_error", "message": "Something went wrong on Stripe's end."}}
            identifier = params.get("identifier")
            if identifier in s.meter_events:
                return _error(400, f"An event already exists with identifier {identifier}.")
            timestamp = int(params.get("timestamp") or time.time())
            if timestamp < time.time() - 35 * 86400 or timestamp > time.time() + 300:
                return _error(400, "Timestamp must be within the past 35 days and at most 5 minutes in the future.")
            event = example("billing.meter_event", identifier=identifier, event_name=params["event_name"],
                            payload=params["payload"], timestamp=timestamp)
            s.meter_events[identifier] = event
            return 200, event
        match = re.fullmatch(r"/v1/subscriptions/([^/]+)", path)
        if match and method == "GET":
            if match.group(1) not in s.subscriptions:
                return _error(404, "No such subscription", "resource_missing")
            return 200, s.subscriptions[match.group(1)]
        return _error(404, f"Unrecognized request URL ({method}: {path}).")


class StripeStandIn:
    def __init__(self):
        self.state = StripeState()
        handler = type("BoundHandler", (Handler,), {"state": self.state})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def add_subscription(self, *, customer: str, price_ids: list[str], status: str = "active",
                         period: tuple[int, int] | None = None) -> dict:
        now = int(time.time())
        start, end = period or (now - 3600, now + 30 * 86400)
        template = OBJECTS["subscription"]["items"]["data"][0]
        items = [dict(copy.deepcopy(template), id=self.state.new_id("si"), price=dict(copy.deepcopy(template["price"]), id=p),
                      current_period_start=start, current_period_end=end) for p in price_ids]
        subscription = example("subscription", id=self.state.new_id("sub"), customer=customer, status=status,
                               cancel_at_period_end=False, metadata={})
        subscription["items"] = {"object": "list", "data": items, "has_more": False, "url": "/v1/subscription_items"}
        self.state.subscriptions[subscription["id"]] = subscription
        return subscription
