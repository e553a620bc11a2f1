"""Which legs a client has, from its arguments and the environment.

Explicit arguments beat environment variables, so code that sets a key is
never overridden by a stray variable on the machine.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_POSTHOG_HOST = "https://us.i.posthog.com"
POSTHOG_KEY_PREFIX = "phc_"
#: What PostHog's personal API keys start with: the usual mix-up for a project key.
PERSONAL_KEY_PREFIX = "phx_"

POSTHOG_KEY_VARIABLES = ("POSTHOG_API_KEY", "POSTHOG_PROJECT_API_KEY")
POSTHOG_HOST_VARIABLE = "POSTHOG_HOST"
SEGMENT_KEY_VARIABLE = "SEGMENT_WRITE_KEY"

NO_KEY_MESSAGE = (
    "analytics_posthog has no key to send with: set posthog_api_key (or the "
    "POSTHOG_API_KEY / POSTHOG_PROJECT_API_KEY environment variable) to send to "
    "PostHog, and/or write_key (or the SEGMENT_WRITE_KEY environment variable) "
    "to also send to Segment."
)
POSTHOG_MISSING_MESSAGE = (
    "analytics_posthog: only a Segment write_key is configured, so calls go to "
    "Segment alone. Set posthog_api_key (or POSTHOG_API_KEY) to send them to PostHog."
)


@dataclass(frozen=True)
class Keys:
    posthog_api_key: str | None
    posthog_host: str
    segment_write_key: str | None

    @property
    def any(self) -> bool:
        return bool(self.posthog_api_key or self.segment_write_key)


def resolve_keys(
    write_key: str | None,
    posthog_api_key: str | None,
    posthog_host: str | None,
    environ: Mapping[str, str] = os.environ,
) -> Keys:
    """Resolve keys: a ``phc_`` write key is a PostHog project key, not Segment's."""
    write_key = write_key or environ.get(SEGMENT_KEY_VARIABLE) or None
    if isinstance(write_key, str) and write_key.startswith(POSTHOG_KEY_PREFIX):
        posthog_api_key = posthog_api_key or write_key
        write_key = None
    if not posthog_api_key:
        posthog_api_key = next(
            (environ[name] for name in POSTHOG_KEY_VARIABLES if environ.get(name)), None
        )
    return Keys(
        posthog_api_key=posthog_api_key,
        posthog_host=posthog_host or environ.get(POSTHOG_HOST_VARIABLE) or DEFAULT_POSTHOG_HOST,
        segment_write_key=write_key,
    )


def check_hosts(posthog_host: str, segment_host: str | None) -> None:
    """Refuse, as Segment's client refuses a bad setting (``AssertionError``),
    a host that is not an http(s) URL: every delivery to it would fail, and
    ``flush()`` would wait out the retries."""
    for name, value in (("posthog_host", posthog_host), ("host", segment_host)):
        if value is None:
            continue
        parts = urllib.parse.urlsplit(value) if isinstance(value, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
            raise AssertionError(
                "%s must be an http(s) URL, such as https://us.i.posthog.com; got: %r"
                % (name, value)
            )


def key_warning(posthog_api_key: str | None) -> str | None:
    """What is wrong with a PostHog key that is not a project key, without the key itself."""
    if not posthog_api_key or posthog_api_key.startswith(POSTHOG_KEY_PREFIX):
        return None
    what = (
        "a personal API key (it starts with %s)" % PERSONAL_KEY_PREFIX
        if posthog_api_key.startswith(PERSONAL_KEY_PREFIX)
        else "not a project API key (those start with %s)" % POSTHOG_KEY_PREFIX
    )
    return (
        "analytics_posthog: the PostHog key given is %s; events need the project API key "
        "(%s..., in PostHog's Project settings)" % (what, POSTHOG_KEY_PREFIX)
    )
