"""`seedtree serve`: an OpenAI-compatible HTTP server on the step engine, in this process or
as Ray Serve replicas. FastAPI and uvicorn (the server extra) and Ray are imported only when
the command runs."""

from __future__ import annotations

from seedtree.cli.common import load_llm, model_settings, parse_k_config, ray_config_of
from seedtree.errors import SeedtreeError


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
        )

    ray_config = ray_config_of(args)
    if ray_config is not None:  # each replica loads its pair (and checks --max-model-len)
        from seedtree.distributed.ray_serve import serve_on_ray

        models = model_settings(args)
        serve_on_ray(models, config(models.label()), ray_config, args.host, args.port)
        return 0
    llm = load_llm(args, own_thread=True)  # the engine thread is then the only torch thread
    if args.max_model_len is not None and args.max_model_len > llm.models.max_context:
        raise SeedtreeError(
            f"--max-model-len {args.max_model_len} exceeds the model's "
            f"{llm.models.max_context}-token context: give at most that"
        )
    serve(llm, config(llm.models.name), args.host, args.port)
    return 0
