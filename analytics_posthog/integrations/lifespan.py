"""ASGI lifespan: deliver what is queued when the server shuts down.

Exit handlers are not enough under ASGI servers: uvicorn shuts down
gracefully and then re-raises SIGTERM, so the process dies by the signal and
``atexit`` never runs. The lifespan protocol's shutdown is the one moment such
a server reliably gives the app, so the ASGI hook delivers there, before it
lets ``lifespan.shutdown.complete`` through.

Many apps do not speak lifespan: Django's ASGI app raises for it, plain apps
return or raise. The server then treats lifespan as unsupported and never
announces shutdown, so when the app raises or returns before answering, the
hook answers the protocol itself.

The library installs no signal handler: signals belong to the server and the
app, and a library that takes SIGTERM over changes how the process stops.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from analytics_posthog import integrations

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger("analytics_posthog")

_SHUTDOWN_ANSWERS = frozenset({"lifespan.shutdown.complete", "lifespan.shutdown.failed"})


async def lifespan(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """Run the app's lifespan, delivering before shutdown completes; answer it for an app that does not."""
    received: list[str] = []
    answered: set[str] = set()

    async def app_receive() -> Message:
        message = await receive()
        received.append(message["type"])
        return message

    async def app_send(message: Message) -> None:
        if message["type"] in _SHUTDOWN_ANSWERS:
            await deliver()
        answered.add(message["type"])
        await send(message)

    try:
        await app(scope, app_receive, app_send)
    except Exception:
        if answered:
            # The app speaks lifespan and failed in it: the server decides what that means.
            if "lifespan.shutdown" in received and not answered & _SHUTDOWN_ANSWERS:
                await deliver()
            raise
        log.info(
            "analytics_posthog: the app does not handle ASGI lifespan (it raised); the hook answers it, to deliver at shutdown"
        )
        log.debug("analytics_posthog: the app's lifespan error", exc_info=True)
    if answered:
        return
    await _answer("lifespan.startup" in received, receive, send)


async def _answer(started: bool, receive: Receive, send: Send) -> None:
    """The server's side of lifespan for an app that does not speak it: start at once, deliver at shutdown."""
    if not started:
        await receive()
    await send({"type": "lifespan.startup.complete"})
    while (await receive())["type"] != "lifespan.shutdown":
        pass
    await deliver()
    await send({"type": "lifespan.shutdown.complete"})


async def deliver() -> None:
    """Deliver off the event loop (the flush blocks), bounded by ``exit_timeout``."""
    try:
        await asyncio.to_thread(integrations.deliver_at_shutdown)
    except Exception:
        log.exception("analytics_posthog: delivering at shutdown failed")
