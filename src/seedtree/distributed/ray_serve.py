"""`seedtree serve --ray`: the OpenAI-compatible app (`server.create_app`) as N Ray Serve
replicas behind Ray Serve's HTTP proxy.

Each replica builds its own app on its node (`serve.ingress` with a builder function, Ray >=
2.47): its threads and its own pair (`load_replica`, as `seedtree serve` loads one), its own
engine loop, started and stopped by the app's lifespan as under uvicorn. The proxy spreads the
requests over the replicas; within a replica, requests that arrive together are batched by its
step engine as in `seedtree serve`. The answers are the same: at T = 0 (and at T > 0 with a
seed) a replica answers what `LLM.generate` does.
"""

from __future__ import annotations

import contextlib
import re
import signal
import sys
import threading

from seedtree.distributed.cluster import (
    RayConfig,
    check_device,
    check_fits,
    connect,
    first_line,
    import_ray,
    load_replica,
)
from seedtree.errors import SeedtreeError
from seedtree.llm import ModelSettings
from seedtree.server.config import ServerConfig

APP = "seedtree"  # the Serve application's name (and its deployment's)
MIN_RAY = (2, 47)  # serve.ingress(builder): the app is built on each replica
STOP_POLL_S = 0.5


def build_app(models: ModelSettings, config: ServerConfig, threads: int):
    """One replica's app (runs on the replica): its pair and `create_app`'s engine loop."""
    from seedtree.server.app import create_app

    llm, node = load_replica(models, threads)
    context = llm.models.max_context
    if config.max_model_len is not None and config.max_model_len > context:
        raise SeedtreeError(
            f"replica on node {node}: --max-model-len {config.max_model_len} exceeds the "
            f"model's {context}-token context: give at most that"
        )
    return create_app(llm, config)


def deployment(models: ModelSettings, config: ServerConfig, ray_config: RayConfig):
    """The Serve deployment (to `.bind()`): `ray_config.replicas` replicas of `build_app`.
    Each replica admits as many requests as its engine runs and queues (more get the app's
    429), and gets `config.drain_s` to finish them when Serve stops it."""
    from ray import serve

    def builder():
        return build_app(models, config, ray_config.cpus)

    @serve.ingress(builder)
    class SeedtreeServer:
        """A replica of `seedtree serve`: the app `builder` makes, on this replica."""

    return serve.deployment(
        SeedtreeServer,
        name=APP,
        num_replicas=ray_config.replicas,
        ray_actor_options=ray_config.actor_options(),
        max_ongoing_requests=config.max_running + config.max_queued,
        graceful_shutdown_timeout_s=config.drain_s,
    )


def start(
    models: ModelSettings, config: ServerConfig, ray_config: RayConfig, host: str, port: int
) -> str:
    """Deploy the replicas behind Serve's proxy on `host:port` (this process must be connected
    to Ray: `cluster.connect`); returns the server's URL once every replica is up. A replica
    that cannot start (models missing on its node, ...) is one `SeedtreeError` line."""
    ray = import_ray()
    _check_version(ray)
    check_device(models, ray_config)
    check_fits(ray, ray_config)
    from ray import serve

    serve.start(http_options={"host": host, "port": port})
    try:
        serve.run(deployment(models, config, ray_config).bind(), name=APP, route_prefix="/")
    except Exception as exc:  # Serve gave up on the replicas: say why in one line
        messages = f"{exc}\n{_status_messages()}"
        stop()
        raise SeedtreeError(_replica_error(messages, exc)) from None
    return f"http://{host}:{port}"


def stop() -> None:
    """Delete the app; shut Serve down when no other application is left on the cluster."""
    from ray import serve

    with contextlib.suppress(Exception):
        serve.delete(APP)
    with contextlib.suppress(Exception):
        if not serve.status().applications:
            serve.shutdown()


def serve_on_ray(
    models: ModelSettings, config: ServerConfig, ray_config: RayConfig, host: str, port: int
) -> None:
    """`seedtree serve --ray`: connect, deploy, serve until Ctrl-C or SIGTERM, then stop."""
    ray = import_ray()
    connected = connect(ray, ray_config.address)
    try:
        try:
            url = start(models, config, ray_config, host, port)
            print(
                f"seedtree: serving {config.model} on {ray_config.replicas} Ray Serve replicas "
                f"at {url}/v1 (Ctrl-C or SIGTERM stops)",
                file=sys.stderr,
                flush=True,
            )
            _wait_for_stop()
        finally:  # also after a Ctrl-C while the replicas start
            stop()
    finally:
        if connected:
            ray.shutdown()


def _wait_for_stop() -> None:
    """Block until SIGINT or SIGTERM (`ray.init` replaces SIGTERM's handler: take it back)."""
    stopping = threading.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.signal(s, lambda signum, frame: stopping.set()) for s in signals}
    try:
        while not stopping.wait(STOP_POLL_S):
            pass
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _check_version(ray) -> None:
    try:
        version = tuple(int(part) for part in ray.__version__.split(".")[:2])
    except ValueError:
        return  # a development build: assume it is recent
    if version < MIN_RAY:
        raise SeedtreeError(
            f"seedtree serve --ray needs Ray >= {'.'.join(map(str, MIN_RAY))} (this is "
            f'{ray.__version__}): pip install -U "seedtree[ray]"'
        )


def _status_messages() -> str:
    """What Serve says of the application and its deployment (a failed replica's traceback)."""
    from ray import serve

    with contextlib.suppress(Exception):
        app = serve.status().applications[APP]
        return "\n".join([app.message, *(d.message for d in app.deployments.values())])
    return ""


def _replica_error(messages: str, exc: BaseException) -> str:
    """The `SeedtreeError` line a replica raised, found in Serve's `messages`, or Serve's own
    first line."""
    found = re.findall(r"SeedtreeError: (.+)", messages)
    if found:
        return found[-1].strip()
    return (
        f"Ray Serve could not start the replicas ({first_line(exc)}): see `serve status` and "
        "the replica logs"
    )
