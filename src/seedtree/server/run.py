"""`serve(llm, config, host, port)`: the app on uvicorn, until SIGTERM or Ctrl-C.

On SIGTERM (or SIGINT) the server stops admitting at once (new requests: 503 with Retry-After,
/health: 503), uvicorn stops accepting connections and waits up to `config.drain_s` for
in-flight responses; then the engine loop fails whatever is left and its thread exits.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import uvicorn

from seedtree.server.app import create_app
from seedtree.server.config import ServerConfig

T = TypeVar("T")


def run_off_main_thread(work: Callable[[], T]) -> T:
    """`work()` (loading the models, a benchmark's in-process trees) on a short-lived thread, so
    that no long-lived thread but the engine's ever runs torch ops.

    Why: torch's intra-op parallelism is OpenMP, and each thread that runs torch ops gets its own
    OpenMP team. A step is hundreds of small parallel regions, fast only while the team's workers
    spin-wait between them; once libgomp manages more threads than there are CPUs (a second
    team, even idle) it throttles spinning and the workers sleep between regions. Loading on the
    main thread left such a team behind, and the engine thread ran every call 35-40% slower
    (BENCHMARKS.md section 5). A thread's team goes when the thread exits."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="seedtree-torch") as pool:
        return pool.submit(work).result()  # the thread exits as the pool shuts down


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
