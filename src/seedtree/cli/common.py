"""What the commands share: Ctrl-C during start-up, the method names, the models an invocation
loads, the library's configs built from parsed options (sampling, tree search, `--k-config`),
the `--backend openai` endpoint, the `--ray` config and the "same tree as ar" verdict. It reads
a parsed namespace and knows nothing of how the parser is built."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading

from seedtree.errors import SeedtreeError


@contextlib.contextmanager
def exit_on_interrupt():
    """Start-up (imports, model loading): a Ctrl-C exits at once with "interrupted" and status
    130, as one during decoding does. Nothing is written yet, and a KeyboardInterrupt raised
    inside an import would leave modules half-imported and surface as another error."""

    def interrupted(signum, frame):
        print("interrupted", file=sys.stderr, flush=True)
        os._exit(130)

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


# every command module takes the method names from here, so torch loads under this guard
with exit_on_interrupt():  # torch and transformers load here
    from seedtree.engine import METHODS, REGISTRY  # noqa: F401 (METHODS: parser, bench-many)

DEFAULT_CONCURRENCY = 8  # `run --concurrency`: the best P measured (BENCHMARKS.md section 7)
STEP_METHODS = [m.name for m in REGISTRY.values() if m.schedule in ("serial", "batched")]


def parse_k_config(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(k) for k in text.split(",")) if text.strip() else ()
    except ValueError:
        raise SeedtreeError(
            f"--k-config '{text}' is not a list of integers: write it like 2,1,1"
        ) from None


def model_settings(args):
    with exit_on_interrupt():  # transformers may load here
        from seedtree.llm import ModelSettings

    return ModelSettings(
        args.pair,
        draft=args.draft,
        target=args.target,
        dtype=args.dtype,
        draft_dtype=args.draft_dtype,
        device=args.device,
    )


def load_llm(args, progress: bool = True):
    """The `LLM` of the model options (loaded on a short-lived thread: `LLM` does so, so that
    its engine's thread is the process's one torch thread)."""
    with exit_on_interrupt():
        return model_settings(args).load(progress)


def task_examples(task, args) -> list:
    """All of `task`'s problems (bundled, or `--data`), `--start` checked against them; read
    before the models load, so a bad file or index costs nothing."""
    examples = task.load(args.data)
    if args.start >= len(examples):
        raise SeedtreeError(
            f"--start {args.start} is out of range: {task.name} has {len(examples)} problems"
        )
    return examples


def sampling_configs(args) -> tuple:
    """`generate`'s SamplingParams and SpecConfig."""
    from seedtree.decoding import SamplingParams, SpecConfig

    params = SamplingParams(
        temperature=args.temperature,
        top_p=args.top_p,
        max_new_tokens=args.max_new_tokens,
        stop=tuple(args.stop),
        seed=args.seed,
        sampling=args.sampling,
    )
    return params, SpecConfig(
        gamma=args.gamma,
        k_config=parse_k_config(args.k_config),
        replacement=args.with_replacement,
        adaptive=not args.fixed_gamma,
        tree_mass=args.tree_mass,
        lookup=args.lookup,
        dedup=args.dedup,
        policy=args.policy,
    )


def tree_configs(args) -> tuple:
    """The tree commands' SearchConfig, EngineConfig and SpecConfig, checked."""
    from seedtree.decoding import SamplingParams, SpecConfig
    from seedtree.search import EngineConfig, SearchConfig

    SamplingParams(
        temperature=args.temperature, top_p=args.top_p, seed=args.seed, sampling=args.sampling
    )  # validates
    if args.max_new_tokens is not None and args.max_new_tokens < 1:
        raise SeedtreeError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    search = SearchConfig(
        k=args.k,
        b=args.b,
        depth=args.depth,
        algorithm=args.algorithm,
        generation=args.generation,
        evaluation=args.evaluation,
        n_evaluate=args.n_evaluate,
        threshold=args.threshold,
        iterations=args.iterations,
        exploration=args.exploration,
        rollout=args.rollout,
    )
    if search.evaluation == "logprob" and getattr(args, "backend", "local") != "local":
        raise SeedtreeError(
            "--evaluation logprob reads the target's logits: it needs local models, not "
            "--backend openai (use --evaluation value)"
        )
    engine = EngineConfig(
        method=getattr(args, "method", None) or "seed-batched",
        temperature=args.temperature,
        top_p=args.top_p,
        seed=args.seed,
        sampling=args.sampling,
        max_new_tokens=args.max_new_tokens,
    )
    spec = SpecConfig(
        gamma=args.gamma,
        k_config=parse_k_config(args.k_config),
        adaptive=not args.fixed_gamma,
        tree_mass=args.tree_mass,
        lookup=args.lookup,
        dedup=args.dedup,
        policy=args.policy,
    )
    return search, engine, spec


def endpoint_of(args):
    """`--backend openai`'s endpoint, checked (reachable, key, model) and its chat mode settled;
    None for local models. Options of the other backend are one-line errors."""
    from seedtree.search.remote import Endpoint, connect

    remote = {"--base-url": args.base_url, "--model": args.model, "--api-key": args.api_key}
    remote["--chat/--no-chat"] = args.chat
    if args.backend == "local":
        given = [name for name, value in remote.items() if value is not None]
        if given:
            them = "it" if len(given) == 1 else "them"
            raise SeedtreeError(
                f"{', '.join(given)}: only for --backend openai: add that, or drop {them}"
            )
        return None
    if not args.base_url:
        raise SeedtreeError(
            "--backend openai needs --base-url URL: the server's address, e.g. "
            "http://127.0.0.1:8000/v1"
        )
    local = {"--pair": args.pair, "--draft": args.draft, "--target": args.target}
    local["--method"] = getattr(args, "method", None)
    given = [name for name, value in local.items() if value is not None]
    if given:
        them = "it" if len(given) == 1 else "them"
        raise SeedtreeError(
            f"{', '.join(given)}: not with --backend openai, which runs on the server's model "
            f"and method: drop {them}, or use --backend local"
        )
    key = args.api_key or os.environ.get("OPENAI_API_KEY") or None
    endpoint = Endpoint(args.base_url, args.model or "", key, args.chat, args.max_concurrency)
    return connect(endpoint)


def ray_config_of(args):
    """`--ray`'s RayConfig, checked, with Ray importable; None without `--ray` (where the
    replica options are an error)."""
    sizes = {"--replicas": args.replicas, "--cpus-per-replica": args.cpus_per_replica}
    sizes["--gpus-per-replica"] = args.gpus_per_replica
    if args.ray is None:
        given = [name for name, value in sizes.items() if value is not None]
        if given:
            them = "it" if len(given) == 1 else "them"
            raise SeedtreeError(f"{', '.join(given)}: only with --ray: add it, or drop {them}")
        return None
    from seedtree.distributed.cluster import RayConfig, check_device, import_ray

    import_ray()
    config = RayConfig(
        args.ray,
        replicas=1 if args.replicas is None else args.replicas,
        cpus=1 if args.cpus_per_replica is None else args.cpus_per_replica,
        gpus=0.0 if args.gpus_per_replica is None else args.gpus_per_replica,
    )
    check_device(model_settings(args), config)
    return config


def print_agreement(pair, method: str, ar, other, spec) -> str:
    """Print "same tree as ar" with its verdict (and where the trees part); return the verdict."""
    from seedtree.bench.agreement import agreement
    from seedtree.engine.methods import scoring_of

    scoring = scoring_of(method, spec.gamma, spec.k_config)
    found = agreement(pair, method, [([ar], [other])], scoring)
    print(f"\nsame tree as ar (thoughts, values, selection, answer): {found.label()}")
    for d in found.divergences:
        print(f"  {d.describe(pair.tokenizer, method)}")
    return found.verdict
