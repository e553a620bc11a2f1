"""``analytics-posthog doctor``: is this machine configured to deliver, and if not, why.

It also lists each reach inside posthog and Segment (``_patches.register``): active, or
not and why, as a ``Client`` in this process would find them.

Reads keys exactly as the library does (``config.resolve_keys``), so what it
says is what ``Client()`` would do; it checks each host answers over HTTP
and, with ``--send``, delivers one test event per leg through the library's
own legs (posthog's and Segment's clients), so a rejected key shows up with
the status the service gave.
"""

from __future__ import annotations

import io
import json
import os
import socket
import ssl
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, TextIO
from urllib.parse import urlsplit

import posthog

from analytics_posthog._delivery import posthog_leg, segment_leg
from analytics_posthog._delivery.legs import Leg as DeliveryLeg
from analytics_posthog._keys import (
    DEFAULT_POSTHOG_HOST,
    PERSONAL_KEY_PREFIX,
    POSTHOG_HOST_VARIABLE,
    POSTHOG_KEY_PREFIX,
    POSTHOG_KEY_VARIABLES,
    SEGMENT_KEY_VARIABLE,
    check_hosts,
    key_warning,
    resolve_keys,
)
from analytics_posthog._message import build as message
from analytics_posthog._patches import posthog as posthog_internals
from analytics_posthog._patches import register as reaches
from analytics_posthog._patches import segment as segment_internals
from analytics_posthog.settings import Settings

SEGMENT_DEFAULT_HOST = "https://api.segment.io"
TEST_EVENT = "analytics_posthog doctor test"
TEST_USER = "analytics_posthog doctor"


@dataclass
class LegCheck:
    """One leg as the doctor checks it: which key and host it would use, and where each came from."""

    name: str
    key: str
    key_source: str
    host: str
    host_source: str


def mask(key: str) -> str:
    """Enough of a key to recognise it (first 4, last 2), never enough to use it."""
    if len(key) <= 8:
        return "*" * len(key)
    return "%s…%s" % (key[:4], key[-2:])


def run(
    posthog_api_key: str | None = None,
    posthog_host: str | None = None,
    write_key: str | None = None,
    host: str | None = None,
    send: bool = False,
    timeout: float = 5.0,
    out: TextIO = sys.stdout,
    verbose: bool = False,
    as_json: bool = False,
) -> int:
    """Print the diagnosis; 0 when every configured leg works, 1 otherwise.

    ``verbose`` lists each internal patch; ``as_json`` prints one JSON object
    instead of the text (the text, the legs' checks, the patches and the
    verdict), for scripts."""
    if as_json:
        text = io.StringIO()
        checks: dict[str, Any] = {}
        code = _diagnose(
            posthog_api_key, posthog_host, write_key, host, send, timeout, text, True, checks
        )
        report = {
            "ok": code == 0,
            "legs": checks,
            "patches": reaches.as_json(),
            "text": text.getvalue().splitlines(),
        }
        out.write(json.dumps(report, indent=2) + "\n")
        return code
    return _diagnose(
        posthog_api_key, posthog_host, write_key, host, send, timeout, out, verbose, {}
    )


def _diagnose(
    posthog_api_key: str | None,
    posthog_host: str | None,
    write_key: str | None,
    host: str | None,
    send: bool,
    timeout: float,
    out: TextIO,
    verbose: bool,
    checks: dict[str, Any],
) -> int:
    """``run``'s text, written to ``out``; each leg's findings also into ``checks``."""
    environ = os.environ
    keys = resolve_keys(write_key, posthog_api_key, posthog_host, environ)
    legs: list[LegCheck] = []
    problems = 0
    try:
        check_hosts(keys.posthog_host, host)
    except AssertionError as error:
        out.write("FIX: %s\n" % error)
        problems += 1

    if keys.posthog_api_key:
        leg = LegCheck(
            "PostHog",
            keys.posthog_api_key,
            _posthog_key_source(keys.posthog_api_key, posthog_api_key, write_key, environ),
            keys.posthog_host,
            "--posthog-host"
            if posthog_host
            else POSTHOG_HOST_VARIABLE
            if environ.get(POSTHOG_HOST_VARIABLE)
            else "default",
        )
        legs.append(leg)
        out.write(
            "PostHog: on (key %s from %s), host %s (%s)\n"
            % (mask(leg.key), leg.key_source, leg.host, leg.host_source)
        )
        warning = key_warning(leg.key)
        if warning:
            out.write("FIX: %s.\n" % warning.replace("analytics_posthog: ", "", 1))
            problems += leg.key.startswith(PERSONAL_KEY_PREFIX)
    else:
        out.write(
            "PostHog: off (no %s, and no --posthog-api-key)\n" % " / ".join(POSTHOG_KEY_VARIABLES)
        )
    if keys.segment_write_key:
        segment_host = host or SEGMENT_DEFAULT_HOST
        leg = LegCheck(
            "Segment",
            keys.segment_write_key,
            "--write-key" if write_key else SEGMENT_KEY_VARIABLE,
            segment_host,
            "--host" if host else "default",
        )
        legs.append(leg)
        out.write(
            "Segment: on, dual-write (write key %s from %s), host %s (%s)\n"
            % (mask(leg.key), leg.key_source, leg.host, leg.host_source)
        )
    elif (write_key or environ.get(SEGMENT_KEY_VARIABLE) or "").startswith(POSTHOG_KEY_PREFIX):
        out.write(
            "Segment: off (the write key starts with %s, so it is a PostHog project key, used for PostHog)\n"
            % POSTHOG_KEY_PREFIX
        )
    else:
        out.write("Segment: off (no %s, and no --write-key)\n" % SEGMENT_KEY_VARIABLE)

    posthog_internals.probe()
    segment_internals.probe()
    out.write(("\n".join(reaches.report()) if verbose else reaches.summary()) + "\n")
    if not legs:
        out.write(
            "FIX: nothing would be sent. Set POSTHOG_API_KEY to your PostHog project key (phc_..., in "
            "Project settings), and SEGMENT_WRITE_KEY too while you dual-write.\n"
        )
        return 1
    if (
        keys.posthog_api_key
        and keys.posthog_host == DEFAULT_POSTHOG_HOST
        and not posthog_host
        and not environ.get(POSTHOG_HOST_VARIABLE)
    ):
        out.write(
            "note: PostHog host is the US cloud; an EU project needs POSTHOG_HOST=https://eu.i.posthog.com\n"
        )

    for leg in legs:
        error = reachable(leg.host, timeout)
        found = checks[leg.name] = {
            "key": mask(leg.key),
            "key_source": leg.key_source,
            "host": leg.host,
            "host_source": leg.host_source,
            "reachable": error is None,
            "problem": error,
        }
        if error:
            problems += 1
            out.write(
                "%s host %s: unreachable: %s\nFIX: check the host setting and this machine's network/proxy.\n"
                % (leg.name, leg.host, error)
            )
            continue
        out.write("%s host %s: reachable\n" % (leg.name, leg.host))
        if send:
            verdict = send_test_event(leg, timeout)
            found["accepted"] = verdict is None
            if verdict is not None:
                found["problem"] = verdict
            if verdict is None:
                out.write("%s: test event %r accepted\n" % (leg.name, TEST_EVENT))
            else:
                problems += 1
                out.write("%s: test event NOT accepted: %s\n" % (leg.name, verdict))
    if not send:
        out.write(
            "(add --send to deliver one test event per leg and check the keys are accepted)\n"
        )
    out.write(
        "OK: everything configured works.\n"
        if not problems
        else "%d problem(s) found.\n" % problems
    )
    return 0 if not problems else 1


def _posthog_key_source(key: str, argument: str | None, write_key: str | None, environ: Any) -> str:
    if argument:
        return "--posthog-api-key"
    if key == (write_key or environ.get(SEGMENT_KEY_VARIABLE)):
        return (
            "--write-key" if write_key else SEGMENT_KEY_VARIABLE
        ) + ", a %s key counts as PostHog's" % POSTHOG_KEY_PREFIX
    return next(name for name in POSTHOG_KEY_VARIABLES if environ.get(name) == key)


def reachable(url: str, timeout: float) -> str | None:
    """``None`` when the host answers HTTP at all (any status); else what went wrong, in words."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "not an http(s) URL: %r" % url
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="GET"), timeout=timeout):
            return None
    except urllib.error.HTTPError:
        return None
    except urllib.error.URLError as error:
        reason = error.reason
    except OSError as error:
        reason = error
    if isinstance(reason, socket.gaierror):
        return "the name %s does not resolve (DNS): check for a typo" % parts.hostname
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused on %s port %s: nothing listens there" % (
            parts.hostname,
            parts.port or (443 if parts.scheme == "https" else 80),
        )
    if isinstance(reason, (socket.timeout, TimeoutError)):
        return "no answer within %gs (firewall or proxy?)" % timeout
    if isinstance(reason, ssl.SSLError):
        return "TLS failed (%s)" % reason
    return str(reason)


def send_test_event(leg: LegCheck, timeout: float) -> str | None:
    """Deliver one event through the library's leg, without retries; ``None``
    when accepted, else the service's refusal and what to do about it."""
    errors: list[Exception] = []

    def on_error(error: Exception, batch: Any) -> None:
        errors.append(error)

    msg = message.track(TEST_USER, TEST_EVENT, {"source": "analytics-posthog doctor"})
    settings = Settings(
        host=leg.host,
        max_queue_size=10,
        max_retries=0,
        timeout=timeout,
        upload_size=1,
        upload_interval=0.1,
    )
    delivery: DeliveryLeg
    if leg.name == "PostHog":
        client = posthog.Client(
            leg.key, host=leg.host, **settings.posthog_client_arguments(on_error)
        )
        delivery = posthog_leg.PostHogLeg(client, settings.group_type)
    else:
        arguments = settings.segment_client_arguments(on_error)
        # Its PostHog destination off: the test event is for Segment alone.
        delivery = segment_leg.SegmentLeg(
            lambda: segment_leg.SegmentClient(leg.key, **arguments), beside_posthog=True
        )
    delivery.send(msg)
    delivery.flush(timeout * 2)
    delivery.join()
    if not errors:
        return None
    status = getattr(errors[0], "status", None)
    if isinstance(status, int) and status in (401, 403):
        return "the key was refused (HTTP %d). FIX: copy the %s again from %s." % (
            status,
            "project API key (phc_...)" if leg.name == "PostHog" else "write key",
            "PostHog's Project settings"
            if leg.name == "PostHog"
            else "the Segment source's settings",
        )
    if isinstance(status, int) and 400 <= status < 500:
        return "the service answered HTTP %d (%s). FIX: check the key and host." % (
            status,
            errors[0],
        )
    return "%s. FIX: check the host and try again." % (errors[0],)
