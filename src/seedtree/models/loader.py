"""Load a draft/target pair: an embedded pair by name, or any two causal LMs transformers can load.

A `ModelPair` is what the decoding engines take: q (draft), p (target), their shared tokenizer,
the vocabulary size both are scored over, the end-of-sequence ids and the context length.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel
from transformers.utils import logging as hf_logging

from seedtree.errors import SeedtreeError
from seedtree.models.assemble import REPAIR, prepare_model
from seedtree.models.registry import DEFAULT_PAIR, get_pair

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float64": torch.float64}
DRAFT_DTYPES = ("int8", *DTYPES)  # "int8": float32 weights, Linear layers int8 (dynamic)


def quantize_int8(model: PreTrainedModel) -> PreTrainedModel:
    """Dynamic int8 quantisation of every Linear layer (weights int8, activations quantised on
    the fly). Used for the draft only: the draft merely proposes tokens, so its precision changes
    the acceptance rate, never the output. On a CPU it makes a draft step ~5x cheaper than float32.
    """
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch marks the qint8 tensor API as deprecated
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


@dataclass
class ModelPair:
    draft: PreTrainedModel  # q
    target: PreTrainedModel  # p
    tokenizer: object  # a transformers tokenizer shared by both
    name: str = "custom"
    eos_token_ids: tuple[int, ...] = field(default=())
    vocab_size: int = 0  # logits are scored over ids [0, vocab_size)
    max_context: int = 0

    def __post_init__(self) -> None:
        self.draft.eval()
        self.target.eval()
        if not self.vocab_size:
            self.vocab_size = min(_logit_size(self.draft), _logit_size(self.target))
        if not self.max_context:
            self.max_context = getattr(self.target.config, "max_position_embeddings", 0) or 4096
        if not self.eos_token_ids:
            self.eos_token_ids = _eos_ids(self.target, self.tokenizer)

    @property
    def dtype(self) -> torch.dtype:
        return self.target.dtype

    @property
    def device(self) -> torch.device:
        return self.target.device

    def to(self, device: str) -> ModelPair:
        """Move both models to `device` ("cpu", "cuda", "cuda:1", ...); returns the pair."""
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise SeedtreeError(f"device '{device}' is not available here: use --device cpu")
        if torch.device(device).type != "cpu" and _is_quantized(self.draft):
            raise SeedtreeError(
                "the int8 draft runs on the CPU only: add --draft-dtype bfloat16 for a GPU"
            )
        self.draft.to(device)
        self.target.to(device)
        return self


def check_device(device: object) -> None:
    """`device` names a torch device seedtree runs on (cpu, cuda, cuda:N) that this machine
    has: checked before anything loads."""
    if not isinstance(device, str):
        raise SeedtreeError(f"device must be a string such as 'cpu' or 'cuda', got {device!r}")
    try:
        kind = torch.device(device).type
    except RuntimeError:
        kind = None
    if kind not in ("cpu", "cuda"):
        raise SeedtreeError(f"unknown device '{device}': use cpu, cuda or cuda:N")
    if kind == "cuda" and not torch.cuda.is_available():
        raise SeedtreeError(f"device '{device}' is not available here: use --device cpu")


def _is_quantized(model: PreTrainedModel) -> bool:
    return any("quantized" in type(m).__module__ for m in model.modules())


def _logit_size(model: PreTrainedModel) -> int:
    return int(model.config.vocab_size)


def _eos_ids(model: PreTrainedModel, tokenizer) -> tuple[int, ...]:
    ids: set[int] = set()
    for source in (getattr(model, "generation_config", None), model.config, tokenizer):
        value = getattr(source, "eos_token_id", None)
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, list | tuple):
            ids.update(int(v) for v in value)
    # Chat models end a turn with a special token that is not always registered as eos.
    for token in ("<|im_end|>", "<|endoftext|>", "<|eot_id|>"):
        tid = tokenizer.convert_tokens_to_ids(token) if hasattr(tokenizer, "get_vocab") else None
        if isinstance(tid, int) and tid != getattr(tokenizer, "unk_token_id", None) and tid >= 0:
            ids.add(tid)
    return tuple(sorted(ids))


def check_same_vocabulary(draft_tok, target_tok, draft_name: str, target_name: str) -> None:
    """Speculative decoding compares p and q token by token: both must use one vocabulary."""
    if draft_tok.get_vocab() != target_tok.get_vocab():
        raise SeedtreeError(
            f"draft '{draft_name}' and target '{target_name}' use different tokenizers "
            f"({len(draft_tok)} vs {len(target_tok)} tokens): pick a draft from the target's family"
        )


def _looks_like_path(source: str) -> bool:
    """A Hugging Face id is `name` or `org/name`. A string that starts with '.', '~' or '/',
    holds a backslash or more than one '/', or whose `org` part is a local folder, is a path."""
    if source.startswith((".", "~", "/")) or source.endswith("/") or "\\" in source:
        return True
    parts = source.split("/")
    return len(parts) > 2 or (len(parts) == 2 and Path(parts[0]).is_dir())


def _hub_offline() -> bool:
    """Hugging Face ids resolve from the local cache only, unless HF_HUB_OFFLINE says 0/false."""
    return os.environ.get("HF_HUB_OFFLINE", "1").strip().lower() not in ("0", "false", "no", "off")


def _resolve_source(source: str) -> tuple[str, dict]:
    """(what to pass to from_pretrained, its extra keyword arguments); a missing local path
    is an error at once, before transformers sees it."""
    path = Path(source).expanduser()
    if path.is_dir():
        return str(path), {}
    if path.exists():
        raise SeedtreeError(f"model path '{source}' is a file: pass the model's folder")
    if _looks_like_path(source):
        raise SeedtreeError(
            f"model folder '{source}' does not exist: pass an existing folder or a "
            "Hugging Face id such as Qwen/Qwen2.5-Coder-1.5B-Instruct"
        )
    return source, {"local_files_only": _hub_offline()}


def _load_error(source: str, exc: Exception, hub: bool, fix: str | None) -> SeedtreeError:
    if hub and _hub_offline():
        return SeedtreeError(
            f"model '{source}' is neither a local folder nor in the local Hugging Face cache: pass "
            "an existing folder, or download it (set HF_HUB_OFFLINE=0 to let seedtree do it)"
        )
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    fix = fix or "pass a local folder or a Hugging Face id that is in the local cache"
    return SeedtreeError(f"cannot load model '{source}' ({first[:160]}): {fix}")


def _load_tokenizer(source: str, fix: str | None = None):
    name, kwargs = _resolve_source(source)
    try:
        return AutoTokenizer.from_pretrained(name, **kwargs)
    except (OSError, ValueError) as exc:
        raise _load_error(source, exc, bool(kwargs), fix) from None


def _load_model(source: str, dtype: str, fix: str | None = None) -> PreTrainedModel:
    hf_logging.disable_progress_bar()  # a seconds-long load needs no per-tensor bar
    name, kwargs = _resolve_source(source)
    try:
        torch_dtype = torch.float32 if dtype == "int8" else DTYPES[dtype]
        model = AutoModelForCausalLM.from_pretrained(name, dtype=torch_dtype, **kwargs).eval()
    except (OSError, ValueError, SafetensorError) as exc:
        raise _load_error(source, exc, bool(kwargs), fix) from None
    return quantize_int8(model) if dtype == "int8" else model


def load_pair(
    pair: str | None = None,
    draft: str | None = None,
    target: str | None = None,
    dtype: str = "float32",
    draft_dtype: str | None = "int8",
    progress: bool = True,
) -> ModelPair:
    """Load an embedded pair by name (default `qwen2.5-coder`) or `draft` + `target` ids/folders.

    `dtype` is the target's (it defines the output); `draft_dtype` the draft's (None: same as the
    target). The draft's precision only moves the acceptance rate, never the output.
    """
    if dtype not in DTYPES:
        raise SeedtreeError(f"unknown dtype '{dtype}': choose one of {', '.join(DTYPES)}")
    draft_dtype = draft_dtype or dtype
    if draft_dtype not in DRAFT_DTYPES:
        raise SeedtreeError(
            f"unknown draft dtype '{draft_dtype}': choose one of {', '.join(DRAFT_DTYPES)}"
        )
    if (draft is None) != (target is None):
        raise SeedtreeError("pass both --draft and --target, or neither (to use --pair)")
    if draft is not None and pair is not None:
        raise SeedtreeError("pass either --pair or --draft/--target, not both")
    fix = None
    if draft is None:
        embedded = get_pair(pair or DEFAULT_PAIR)
        draft = str(prepare_model(embedded.draft, progress=progress))
        target = str(prepare_model(embedded.target, progress=progress))
        name, fix = embedded.name, f"the cache may be damaged: {REPAIR}"
    else:
        name = f"{draft} -> {target}"
    q_tok, p_tok = _load_tokenizer(draft, fix), _load_tokenizer(target, fix)
    check_same_vocabulary(q_tok, p_tok, draft, target)
    q_model, p_model = _load_model(draft, draft_dtype, fix), _load_model(target, dtype, fix)
    return ModelPair(draft=q_model, target=p_model, tokenizer=p_tok, name=name)


def has_chat_template(pair: ModelPair) -> bool:
    return bool(getattr(pair.tokenizer, "chat_template", None))


def encode_prompt(pair: ModelPair, prompt: str, chat: bool = False) -> list[int]:
    """Prompt text -> token ids, through the chat template (one user message) when `chat`."""
    if not prompt or not prompt.strip():
        raise SeedtreeError("prompt is empty: pass some text with --prompt")
    tok = pair.tokenizer
    if chat:
        if not has_chat_template(pair):
            raise SeedtreeError("this model has no chat template: drop --chat")
        messages = [{"role": "user", "content": prompt}]
        ids = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
    else:
        ids = tok(prompt, add_special_tokens=False)["input_ids"]
    ids = [int(i) for i in ids]
    if len(ids) >= pair.max_context:
        raise SeedtreeError(
            f"prompt has {len(ids)} tokens but the model context is {pair.max_context}:"
            " shorten the prompt"
        )
    return ids
