"""What `run --ray` and `serve --ray` share: where the replicas go and how big they are
(`RayConfig`), connecting to Ray, checks that fail in one line before anything starts, and
`load_replica`, the first thing every replica does on its node.

Ray is imported inside functions only (`import_ray`); this module knows nothing about trees or
HTTP.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from dataclasses import dataclass
from typing import Any

from seedtree.errors import SeedtreeError
from seedtree.llm import LLM, ModelSettings
from seedtree.search.run import MAX_CONCURRENCY
from seedtree.validate import check_int, check_real

MAX_REPLICAS = 64
MAX_CPUS = 256  # per replica
MAX_GPUS = 16  # per replica (fractions share a GPU)
NEED_RAY = '--ray needs Ray: pip install "seedtree[ray]"'
START_RAY = (
    "start a cluster with `ray start --head` and pass its address, or pass --ray local to start "
    "Ray here"
)
PROBE_S = 3.0  # `probe`: how long a HOST:PORT address gets to accept a connection
# the driver's settings a replica gets: where prepared models and the Hugging Face cache are
PASSED_ENV = ("SEEDTREE_HOME", "HF_HOME", "HF_HUB_OFFLINE")


def import_ray():
    """The `ray` module, or the one-line error that says how to install it."""
    try:
        import ray
    except ImportError:
        raise SeedtreeError(NEED_RAY) from None
    return ray


@dataclass(frozen=True)
class RayConfig:
    """`address` as `ray.init` takes it: "auto" (the cluster this machine belongs to: `ray
    start`), "local" (a new Ray instance on this machine, for this command only),
    "ray://HOST:PORT" (Ray Client) or "HOST:PORT" (the head node's GCS). A process already
    connected to Ray (a library caller, the tests) keeps its connection and ignores it.
    `replicas` actors, each with `cpus` CPUs (and as many torch threads) and `gpus` GPUs, each
    building up to `trees` trees at a time on its one engine (a threaded actor, as `seedtree run
    --concurrency` on one machine)."""

    address: str = "auto"
    replicas: int = 1
    cpus: int = 1
    gpus: float = 0.0
    trees: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.address, str) or not self.address.strip():
            raise SeedtreeError(
                "--ray ADDRESS is empty: pass auto, local, ray://HOST:PORT or HOST:PORT"
            )
        check_int("--replicas", self.replicas, 1, MAX_REPLICAS)
        check_int("--cpus-per-replica", self.cpus, 1, MAX_CPUS)
        check_real("--gpus-per-replica", self.gpus)
        check_int("--concurrency", self.trees, 1, MAX_CONCURRENCY)
        if not 0 <= self.gpus <= MAX_GPUS:
            raise SeedtreeError(f"--gpus-per-replica must be in [0, {MAX_GPUS}], got {self.gpus}")

    def actor_options(self) -> dict[str, Any]:
        """Resources of one replica, its trees at a time, and the driver's `PASSED_ENV`
        variables that are set."""
        options: dict[str, Any] = {"num_cpus": self.cpus, "num_gpus": self.gpus}
        if self.trees > 1:  # a threaded actor: its `solve` calls run side by side
            options["max_concurrency"] = self.trees
        env = {name: os.environ[name] for name in PASSED_ENV if os.environ.get(name)}
        if env:
            options["runtime_env"] = {"env_vars": env}
        return options


def check_device(models: ModelSettings, config: RayConfig) -> None:
    """Ray hands each replica its GPUs (as `cuda`): `--device cuda` goes with
    `--gpus-per-replica` > 0 and `--device cpu` with none."""
    if models.device.startswith("cuda:"):
        raise SeedtreeError(
            f"--device {models.device}: with --ray each replica gets its GPUs from Ray: pass "
            "--device cuda"
        )
    if models.device == "cuda" and config.gpus == 0:
        raise SeedtreeError("--device cuda with --ray needs --gpus-per-replica G (e.g. 1)")
    if models.device == "cpu" and config.gpus > 0:
        raise SeedtreeError("--gpus-per-replica needs --device cuda (the replicas run on GPUs)")


def _host_port(address: str) -> tuple[str, int] | None:
    """HOST and PORT of "ray://HOST:PORT" or "HOST:PORT"; None for auto, local and other forms
    (Ray reads those itself)."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def probe(address: str) -> None:
    """Something listens at `address` (a TCP connection within `PROBE_S`): Ray's own attempt
    at an address where nothing answers retries for minutes (GCS) or tens of seconds (Ray
    Client)."""
    where = _host_port(address)
    if where is None:
        return
    try:
        with socket.create_connection(where, timeout=PROBE_S):
            pass
    except OSError as exc:
        raise SeedtreeError(
            f"--ray {address}: nothing answers at {where[0]}:{where[1]} "
            f"({exc.strerror or first_line(exc)}): {START_RAY}"
        ) from None


def connect(ray, address: str) -> bool:
    """Connect this process to Ray at `address`, unless it already is; True when this call
    connected (the caller then disconnects at the end)."""
    if ray.is_initialized():
        return False
    probe(address)
    try:
        ray.init(address=address, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise SeedtreeError(
            f"--ray {address}: cannot connect to Ray ({first_line(exc)}): {START_RAY}"
        ) from None
    return True


def check_fits(ray, config: RayConfig) -> int:
    """How many replicas the cluster's alive nodes hold at once; none is an error, fewer than
    `config.replicas` a warning (the others wait for room)."""
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]

    def room(resources: dict) -> int:
        by_cpu = int(resources.get("CPU", 0) // config.cpus)
        by_gpu = int(resources.get("GPU", 0) // config.gpus) if config.gpus else by_cpu
        return min(by_cpu, by_gpu)

    fits = sum(room(r) for r in nodes)
    want = f"{config.cpus} CPUs" + (f" and {config.gpus:g} GPUs" if config.gpus else "")
    if fits == 0:
        largest = max(nodes, key=lambda r: (r.get("GPU", 0), r.get("CPU", 0)), default={})
        raise SeedtreeError(
            f"a replica needs {want} and no node of the Ray cluster has that (largest: "
            f"{largest.get('CPU', 0):g} CPUs, {largest.get('GPU', 0):g} GPUs): lower "
            "--cpus-per-replica / --gpus-per-replica, or add a node"
        )
    if fits < config.replicas:
        print(
            f"warning: the Ray cluster holds {fits} replicas of {want} at once, not "
            f"{config.replicas}: {fits} work, the others wait for room",
            file=sys.stderr,
        )
    return fits


def node_ip() -> str:
    """This process's node, as Ray names it."""
    import ray

    return ray.util.get_node_ip_address()


def first_line(exc: BaseException) -> str:
    """An exception's first line (at most 200 characters), for a one-line message."""
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def _check_prepared(models: ModelSettings, node: str) -> None:
    """An embedded pair must be prepared on this node already: replicas never prepare one
    (several replicas of a node would build the same cache at once)."""
    if models.draft is not None:
        return  # local folders or Hugging Face ids: the loader says what is missing
    from seedtree.models import get_pair
    from seedtree.models.assemble import cache_state, model_dir

    pair = get_pair(models.label())
    for model in (pair.draft, pair.target):
        if cache_state(model).status == "missing":
            raise SeedtreeError(
                f"replica on node {node}: the models of {pair.name} are not prepared there "
                f"({model_dir(model)} is missing): run `seedtree models prepare --pair "
                f"{pair.name}` on that node, or set SEEDTREE_HOME to shared storage where they "
                "are prepared"
            )


def load_replica(models: ModelSettings, threads: int) -> tuple[LLM, str]:
    """What a replica does first, on its node: `threads` torch threads, then its own pair
    (`ModelSettings.load`, as the CLI loads one). (the LLM, the node's address); a problem is
    one `SeedtreeError` line that names the node."""
    import torch

    torch.set_num_threads(threads)
    node = node_ip()
    try:
        _check_prepared(models, node)
        llm = models.load(progress=False)
    except SeedtreeError as exc:
        text = str(exc)
        raise SeedtreeError(
            text if text.startswith("replica on node") else f"replica on node {node}: {text}"
        ) from None
    return llm, node
