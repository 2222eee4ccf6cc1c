"""`serve(llm, config, host, port)`: the app on uvicorn, until SIGTERM or Ctrl-C.

On SIGTERM (or SIGINT) the server drains: it stops admitting at once but keeps listening, so
new requests and /health get 503 (with Retry-After) while in-flight requests get up to
`config.drain_s` to finish. Then the engine loop fails whatever is left, each in the OpenAI
shape (a 503 body; a stream's last event an error, then [DONE]), and uvicorn closes the
listener and gives those last responses `FINISH_S` to go out. A second signal ends the drain
at once.
"""

from __future__ import annotations

import threading

import uvicorn

from seedtree.engine import run_off_main_thread
from seedtree.server.app import create_app
from seedtree.server.config import ServerConfig

__all__ = ["build_server", "run_off_main_thread", "serve"]
FINISH_S = 5  # after the drain: how long uvicorn waits for the responses it still sends


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, engine_loop) -> None:
        super().__init__(config)
        self.engine_loop = engine_loop
        self.draining = False

    def handle_exit(self, sig, frame) -> None:
        """The first signal starts the drain (uvicorn goes on listening: 503s); a second one,
        or the drain's end, makes uvicorn shut down."""
        if self.draining:
            super().handle_exit(sig, frame)
            return
        self.draining = True
        self.engine_loop.stop_admitting()
        threading.Thread(target=self._drain, args=(sig, frame), name="seedtree-drain").start()

    def _drain(self, sig, frame) -> None:
        self.engine_loop.stop()  # waits up to drain_s, then fails what is left (503s)
        super().handle_exit(sig, frame)


def build_server(llm, config: ServerConfig, host: str, port: int, log_level: str = "info"):
    """A uvicorn server for `llm` (not started: `.run()` blocks, `.serve()` is its coroutine;
    port 0 picks a free one, read it from `.servers[0].sockets` once `.started`)."""
    app = create_app(llm, config)
    uv = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        timeout_graceful_shutdown=FINISH_S,
        access_log=False,
    )
    return _Server(uv, app.state.engine_loop)


def serve(llm, config: ServerConfig, host: str = "127.0.0.1", port: int = 8000) -> None:
    build_server(llm, config, host, port).run()
