"""`seedtree serve`: an OpenAI-compatible HTTP server on the step engine.

    loop.py      the engine loop: ONE background thread owns the `StepEngine` (the only thread
                 that touches the models); requests come in through a bounded, thread-safe inbox
                 and their outputs go back to asyncio (`call_soon_threadsafe`)
    protocol.py  the OpenAI request bodies -> frozen `ApiRequest`s (one-line 400s naming the
                 field), and the response / stream-chunk bodies
    app.py       the FastAPI app: /v1/models, /v1/completions, /v1/chat/completions (SSE
                 streams), /health, /metrics; errors in the OpenAI shape
    metrics.py   Prometheus text from the loop's counters
    run.py       uvicorn with a graceful SIGTERM (stop admitting, finish in-flight, exit)

Requests that arrive while others decode join the engine at the next round, so k concurrent
single requests are batched as one n=k request would be. Needs the `server` extra
(`pip install -e ".[server]"`); `import seedtree` never imports this package.
"""

from seedtree.server.config import ServerConfig

__all__ = ["ServerConfig", "create_app", "serve"]


def __getattr__(name: str):
    if name == "create_app":
        from seedtree.server.app import create_app

        return create_app
    if name == "serve":
        from seedtree.server.run import serve

        return serve
    raise AttributeError(name)
