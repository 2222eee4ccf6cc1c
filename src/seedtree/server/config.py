"""The server's one frozen config (the CLI builds it from `seedtree serve`'s options)."""

from __future__ import annotations

from dataclasses import dataclass, field

from seedtree.decoding.params import SpecConfig
from seedtree.engine.methods import get_method
from seedtree.engine.step import MAX_RUNNING
from seedtree.errors import SeedtreeError
from seedtree.validate import check_int, check_real

DEFAULT_COMPLETION_TOKENS = 16  # /v1/completions without max_tokens (OpenAI's default)
DEFAULT_MAX_BODY_MB = 8.0  # a request body larger than this is refused (413) before parsing


@dataclass(frozen=True)
class ServerConfig:
    """`model`: the name /v1/models lists and requests must name. `method`: the one step-engine
    method every request runs with (`spec`: its draft settings). `api_key`: when set, /v1 routes
    want `Authorization: Bearer <api_key>`. `max_queued`: choices waiting for a running slot at
    most (beyond `max_running` decoding together); more are refused with 429. `max_model_len`:
    prompt + completion tokens per choice at most (None: the model's context). `drain_s`: on
    SIGTERM, seconds in-flight requests get to finish before they are failed (meanwhile the
    server answers /health and new requests with 503). `max_body_mb`: a larger request body is
    refused with 413 before it is parsed."""

    model: str
    method: str = "seed-batched"
    spec: SpecConfig = field(default_factory=SpecConfig)
    api_key: str | None = None
    max_queued: int = 256
    max_running: int = MAX_RUNNING
    max_model_len: int | None = None
    drain_s: float = 30.0
    cache_mb: float = 1024.0  # the server's own prefix cache
    max_body_mb: float = DEFAULT_MAX_BODY_MB

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model.strip():
            raise SeedtreeError("the served model name is empty: pass --served-model-name NAME")
        m = get_method(self.method)
        if m.schedule not in ("serial", "batched"):
            raise SeedtreeError(
                f"method '{self.method}' does not run on the step engine: use seed-batched, "
                "batched-ar, batched-ar-cached, sd or mcsd"
            )
        if not isinstance(self.spec, SpecConfig):
            raise SeedtreeError("spec must be a SpecConfig")
        if self.api_key is not None and (not isinstance(self.api_key, str) or not self.api_key):
            raise SeedtreeError("--api-key is empty: give a key or leave the option out")
        check_int("max_queued", self.max_queued, 0)
        check_int("max_running", self.max_running, 1)
        if self.max_model_len is not None:
            check_int("max_model_len", self.max_model_len, 2)
        check_real("drain_s", self.drain_s)
        check_real("cache_mb", self.cache_mb)
        if self.drain_s < 0 or self.cache_mb < 0:
            raise SeedtreeError("drain_s and cache_mb must be >= 0")
        check_real("--max-body-mb", self.max_body_mb)
        if not 0 < self.max_body_mb <= 1024:
            raise SeedtreeError(f"--max-body-mb must be in (0, 1024], got {self.max_body_mb}")
