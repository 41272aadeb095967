"""uvicorn's ``Server``, which ends the realtime sessions before its own shutdown.

    Server(uvicorn.Config(app, host=..., port=...), app.state.realtime, timeout=30).run()

On SIGTERM / SIGINT uvicorn stops taking connections, then closes every WebSocket with 1012 before the app hears of
the shutdown (its lifespan ends last): a session would only see its socket drop. This server first lets
``RealtimeHub.close_all`` end each session (its committed items finish, up to ``timeout`` s; a final ``error``
event; a close), then shuts down as uvicorn does (the HTTP requests in flight finish, the worker stops).
"""
from __future__ import annotations

import uvicorn

from .realtime_route import RealtimeHub


class Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, realtime: RealtimeHub, timeout: float):
        super().__init__(config)
        self.realtime, self.timeout = realtime, timeout

    async def shutdown(self, sockets=None) -> None:
        await self.realtime.close_all(self.timeout)
        await super().shutdown(sockets)


__all__ = ["Server"]
