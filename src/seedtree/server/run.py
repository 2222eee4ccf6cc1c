"""`serve(llm, config, host, port)`: the app on uvicorn, until SIGTERM or Ctrl-C.

On SIGTERM (or SIGINT) the server stops admitting at once (new requests: 503 with Retry-After,
/health: 503), uvicorn stops accepting connections and waits up to `config.drain_s` for
in-flight responses; then the engine loop fails whatever is left and its thread exits.
"""

from __future__ import annotations

import uvicorn

from seedtree.engine import run_off_main_thread
from seedtree.server.app import create_app
from seedtree.server.config import ServerConfig

__all__ = ["build_server", "run_off_main_thread", "serve"]


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, engine_loop) -> None:
        super().__init__(config)
        self.engine_loop = engine_loop

    def handle_exit(self, sig, frame) -> None:
        self.engine_loop.stop_admitting()
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
        timeout_graceful_shutdown=max(1, int(config.drain_s)),
        access_log=False,
    )
    return _Server(uv, app.state.engine_loop)


def serve(llm, config: ServerConfig, host: str = "127.0.0.1", port: int = 8000) -> None:
    build_server(llm, config, host, port).run()
