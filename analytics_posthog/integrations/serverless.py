"""Serverless handlers: ``@flush_after`` delivers a handler's calls before it returns.

AWS Lambda, Cloud Functions and Cloud Run jobs may freeze or stop the process
as soon as the handler returns, with the calls it made still queued: a frozen
process sends nothing, and one that is stopped never runs its exit handlers.
``flush_after`` flushes both legs (the client's ``flush()``: everything queued
has been sent, or given up on after the client's retries and counted) when
the handler returns and when it raises, so the invocation's own events are
delivered within it. Its cost per invocation is in
``benchmarks/serverless.py`` and ``docs/beyond-the-request.md``.

    from analytics_posthog.integrations.serverless import flush_after

    @flush_after
    def handler(event, context): ...

    @flush_after(client=my_client)
    async def handler(event, context): ...

An async handler is flushed on a worker thread, so the event loop keeps
running while the legs deliver.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar, overload

import analytics_posthog
from analytics_posthog.client import Client

Handler = TypeVar("Handler", bound=Callable[..., Any])


@overload
def flush_after(handler: Handler) -> Handler: ...


@overload
def flush_after(*, client: Client | None = None) -> Callable[[Handler], Handler]: ...


def flush_after(
    handler: Handler | None = None, *, client: Client | None = None
) -> Handler | Callable[[Handler], Handler]:
    """Decorate ``handler`` (sync or async) so ``client`` (default: the module's
    default client) has delivered everything before the handler's result or
    exception reaches the platform."""
    if handler is None:
        return functools.partial(_wrap, client=client)  # type: ignore[return-value]
    return _wrap(handler, client)


def _wrap(handler: Handler, client: Client | None) -> Handler:
    def flush() -> None:
        target = client if client is not None else analytics_posthog.default_client
        if target is not None:
            target.flush()

    if inspect.iscoroutinefunction(handler):

        @functools.wraps(handler)
        async def async_handler(*args: Any, **kwargs: Any) -> Any:
            try:
                return await handler(*args, **kwargs)
            finally:
                await asyncio.to_thread(flush)

        return async_handler  # type: ignore[return-value]

    @functools.wraps(handler)
    def sync_handler(*args: Any, **kwargs: Any) -> Any:
        try:
            return handler(*args, **kwargs)
        finally:
            flush()

    return sync_handler  # type: ignore[return-value]
