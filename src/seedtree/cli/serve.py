"""`seedtree serve`: an OpenAI-compatible HTTP server on the step engine, in this process or
as Ray Serve replicas. FastAPI and uvicorn (the server extra) and Ray are imported only when
the command runs."""

from __future__ import annotations

from seedtree.cli.common import load_llm, model_settings, parse_k_config, ray_config_of
from seedtree.errors import SeedtreeError


def check_bind(host: str, port: int) -> None:
    """`host:port` can be listened on (the address is this machine's, the port is free), tried
    with a socket that is closed at once: a one-line error instead of uvicorn's after the
    models have loaded."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        raise SeedtreeError(
            f"--host {host} is not an address or a known host name ({exc}): pass an address "
            "of this machine, e.g. 127.0.0.1 or 0.0.0.0"
        ) from None
    family, kind, proto, _, address = infos[0]
    try:
        with socket.socket(family, kind, proto) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            s.bind(address)
    except OSError as exc:
        raise SeedtreeError(
            f"cannot listen on {host}:{port} ({exc.strerror or exc}): pick another --port, stop "
            "what listens there, or pass an address of this machine as --host"
        ) from None


def cmd_serve(args) -> int:
    from seedtree.decoding import SpecConfig

    try:
        from seedtree.server import ServerConfig
        from seedtree.server.run import serve
    except ImportError as exc:
        raise SeedtreeError(
            f"seedtree serve needs the server extra ({exc.name} is missing): "
            'pip install -e ".[server]"'
        ) from None
    if not 0 <= args.port <= 65535:
        raise SeedtreeError(f"--port must be in [0, 65535], got {args.port}")
    check_bind(args.host, args.port)  # before the models load
    spec = SpecConfig(
        gamma=args.gamma,
        k_config=parse_k_config(args.k_config),
        tree_mass=args.tree_mass,
        lookup=args.lookup,
        dedup=args.dedup,
        policy=args.policy,
    )

    def config(model: str) -> ServerConfig:
        return ServerConfig(
            model=args.served_model_name or model,
            method=args.method,
            spec=spec,
            api_key=args.api_key,
            max_queued=args.max_queued,
            max_model_len=args.max_model_len,
            drain_s=args.drain,
            max_body_mb=args.max_body_mb,
        )

    ray_config = ray_config_of(args)
    if ray_config is not None:  # each replica loads its pair (and checks --max-model-len)
        from seedtree.distributed.ray_serve import serve_on_ray

        models = model_settings(args)
        serve_on_ray(models, config(models.label()), ray_config, args.host, args.port)
        return 0
    llm = load_llm(args)  # the engine thread is then the only torch thread
    if args.max_model_len is not None and args.max_model_len > llm.models.max_context:
        raise SeedtreeError(
            f"--max-model-len {args.max_model_len} exceeds the model's "
            f"{llm.models.max_context}-token context: give at most that"
        )
    serve(llm, config(llm.models.name), args.host, args.port)
    return 0
