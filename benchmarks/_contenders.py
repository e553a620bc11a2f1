"""The four contenders, the two payloads, and how each contender makes one call."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

USER_ID = "user-4f1c2a9e"

# -- payloads ------------------------------------------------------------------

SMALL_EVENT = "Button Clicked"
SMALL_PROPERTIES: dict[str, Any] = {"button": "checkout", "plan": "pro"}


def _order() -> dict[str, Any]:
    products = [
        {
            "product_id": "sku-%05d" % (1000 + i * 37),
            "category": ("Games", "Books", "Apparel", "Home")[i % 4],
            "name": "Product number %d" % i,
            "brand": "Acme",
            "price": round(9.99 + i * 3.5, 2),
            "quantity": 1 + i % 3,
            "position": i + 1,
        }
        for i in range(10)
    ]
    return {
        "checkout_id": "fksdjfsdjfisjf9sdfjsd9f",
        "order_id": "50314b8e9bcf000000000000",
        "affiliation": "Google Store",
        "total": 233.92,
        "subtotal": 221.45,
        "revenue": 220.0,
        "shipping": 6.0,
        "tax": 6.47,
        "discount": 2.5,
        "coupon": "hasbros",
        "currency": "USD",
        "products": products,
    }


BIG_EVENT = "Order Completed"
BIG_PROPERTIES = _order()
BIG_CONTEXT: dict[str, Any] = {
    "ip": "203.0.113.42",
    "userAgent": (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 "
        "(KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
    ),
    "page": {
        "url": "https://shop.example.com/checkout/complete?order=50314b8e9bcf",
        "path": "/checkout/complete",
        "referrer": "https://shop.example.com/checkout/payment",
        "title": "Thank you for your order",
    },
    "locale": "en-US",
    "library": {"name": "analytics-python", "version": "2.4.0"},
    "campaign": {
        "name": "spring_sale",
        "source": "newsletter",
        "medium": "email",
        "term": "games",
        "content": "hero-banner",
    },
}
# What the posthog contender sends instead of a context: PostHog's own property names.
BIG_POSTHOG_PROPERTIES: dict[str, Any] = dict(
    BIG_PROPERTIES,
    **{
        "$ip": BIG_CONTEXT["ip"],
        "$raw_user_agent": BIG_CONTEXT["userAgent"],
        "$current_url": BIG_CONTEXT["page"]["url"],
        "$pathname": BIG_CONTEXT["page"]["path"],
        "$referrer": BIG_CONTEXT["page"]["referrer"],
        "title": BIG_CONTEXT["page"]["title"],
        "$locale": BIG_CONTEXT["locale"],
        "utm_campaign": "spring_sale",
        "utm_source": "newsletter",
        "utm_medium": "email",
        "utm_term": "games",
        "utm_content": "hero-banner",
    },
)


def payload_size(payload: str) -> int:
    """Bytes of the Segment-shaped payload as JSON (for the README)."""
    if payload == "small":
        return len(json.dumps({"event": SMALL_EVENT, "properties": SMALL_PROPERTIES}))
    return len(
        json.dumps({"event": BIG_EVENT, "properties": BIG_PROPERTIES, "context": BIG_CONTEXT})
    )


PAYLOADS = ("small", "2kb")


# -- contenders ------------------------------------------------------------------


@dataclass(frozen=True)
class Contender:
    name: str
    #: (posthog events, segment messages) the server receives per call.
    per_call: tuple[int, int]
    make: Callable[..., Any]
    caller: Callable[[Any, str], Callable[[], Any]]


def _segment_client(url: str, **kw: Any) -> Any:
    from segment.analytics import Client

    return Client("wk", host=url, **kw)


def _posthog_client(url: str, **kw: Any) -> Any:
    """posthog as its users run it: analytics_posthog speeds up some of
    posthog's functions process-wide (``posthog_speedups``), so undo that for
    this contender (the next ``ours`` client puts them back)."""
    import posthog

    from analytics_posthog._patches import posthog as posthog_internals

    posthog_internals.restore_speedups()
    return posthog.Client("phc_x", host=url, **kw)


def _ours_client(url: str, **kw: Any) -> Any:
    import analytics_posthog

    return analytics_posthog.Client(posthog_api_key="phc_x", posthog_host=url, **kw)


def _ours_dual_client(url: str, **kw: Any) -> Any:
    import analytics_posthog

    return analytics_posthog.Client("wk", host=url, posthog_api_key="phc_x", posthog_host=url, **kw)


def _spool_dir() -> str:
    """A fresh spool directory for one spooled contender (left for the OS to clear)."""
    import tempfile

    return tempfile.mkdtemp(prefix="analytics-posthog-bench-spool-")


def _ours_spool_client(url: str, **kw: Any) -> Any:
    return _ours_client(url, spool_dir=_spool_dir(), **kw)


def _ours_dual_spool_client(url: str, **kw: Any) -> Any:
    return _ours_dual_client(url, spool_dir=_spool_dir(), **kw)


def _track_caller(client: Any, payload: str) -> Callable[[], Any]:
    track = client.track
    if payload == "small":
        return lambda: track(USER_ID, SMALL_EVENT, SMALL_PROPERTIES)
    return lambda: track(USER_ID, BIG_EVENT, BIG_PROPERTIES, BIG_CONTEXT)


def _capture_caller(client: Any, payload: str) -> Callable[[], Any]:
    capture = client.capture
    if payload == "small":
        return lambda: capture(SMALL_EVENT, distinct_id=USER_ID, properties=SMALL_PROPERTIES)
    return lambda: capture(BIG_EVENT, distinct_id=USER_ID, properties=BIG_POSTHOG_PROPERTIES)


CONTENDERS = (
    Contender("segment", (0, 1), _segment_client, _track_caller),
    Contender("posthog", (1, 0), _posthog_client, _capture_caller),
    Contender("ours", (1, 0), _ours_client, _track_caller),
    Contender("ours-dual", (1, 1), _ours_dual_client, _track_caller),
    Contender("ours-spool", (1, 0), _ours_spool_client, _track_caller),
    Contender("ours-dual-spool", (1, 1), _ours_dual_spool_client, _track_caller),
)
BY_NAME = {c.name: c for c in CONTENDERS}


def call_with_timeout(fn: Callable[[], Any], timeout: float) -> bool:
    """Run ``fn`` (flush/shutdown) on a daemon thread; ``False`` if it is still
    running after ``timeout`` seconds (it is left behind, never waited on again)."""
    done = threading.Event()
    errors = []

    def run() -> None:
        try:
            fn()
        except Exception as error:  # reported, never fatal to the run
            errors.append(error)
        finally:
            done.set()

    threading.Thread(target=run, name="bench-flush", daemon=True).start()
    ok = done.wait(timeout)
    if errors:
        raise errors[0]
    return ok
