"""Hugging Face transformers backend: Harmony token ids straight into the model.

One forward loop with a KV cache, run in a worker thread so the event loop
keeps streaming. The cache of the previous request is kept: a new prompt is
compared with the tokens already in the cache, the cache is cropped to their
longest common prefix and only the rest is prefilled. Inside a tool chain the
prompt extends the previous one, so only the new tokens (plus the last sampled
token, whose keys were never computed) are prefilled.

torch and transformers are imported on first use (extra `transformers`); peft
only for a LoRA adapter (extra `finetune`).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import inspect
import os
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from agent.backends._final import FinalWatch, final_header_ids
from agent.backends._grammar import SchemaMask
from agent.backends._http import HARMONY_VOCAB, completion_budget
from agent.backends.base import DEFAULT_COMPLETION_TOKENS, CompletionRequest, Usage, shared_prefix
from agent.errors import (
    BackendError,
    ConfigurationError,
    ModelNotFoundError,
    OssAgentError,
)
from agent.harmony.encoding import special_ids


class TransformersBackend:
    """Runs a gpt-oss checkpoint (model id, local path, or a loaded model) in-process.

    `temperature <= 0` means greedy decoding. `seed` makes sampling repeatable.
    `reuse_prefix=False` prefills every prompt from scratch. Long prompts are
    prefilled `prefill_chunk` tokens at a time.

    `adapter` is a LoRA adapter folder (as `examples/finetune_lora.py` saves it) or
    hub id, loaded with peft (extra `finetune`) on top of the model. By default it
    is merged into the weights once at load (`merge_and_unload`): inference then
    costs exactly what the base model costs and runs the model's own forward.
    `merge_adapter=False` keeps the PeftModel wrapper (the base weights stay as they
    are; needed for a quantized base that cannot be merged into); its forward calls
    the real model's, so the KV cache and streaming work the same. Given a model
    object, the adapter is added to (and merged into) that object in place.
    """

    def __init__(
        self,
        model: Any,
        *,
        context_window: int | None = None,
        max_completion_tokens: int = DEFAULT_COMPLETION_TOKENS,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: int | None = None,
        reuse_prefix: bool = True,
        prefill_chunk: int = 2048,
        adapter: str | os.PathLike[str] | None = None,
        merge_adapter: bool = True,
    ) -> None:
        self._adapter = _check_adapter(adapter) if adapter is not None else None
        self._merge_adapter = merge_adapter
        self._adapted = False
        local = isinstance(model, (str, os.PathLike))
        self._source = os.path.expanduser(os.fspath(model)) if local else None
        self._model: Any = None if self._source is not None else model
        self.model: str | None = (  # the name sessions and the terminal show
            os.fspath(model) if local else getattr(getattr(model, "config", None), "_name_or_path", None) or None
        )
        self._context_window = context_window
        self._max_completion = int(max_completion_tokens)
        self.temperature = temperature
        self.top_p = top_p
        self._seed = seed
        self.reuse_prefix = reuse_prefix
        self._prefill_chunk = max(1, int(prefill_chunk))
        self._cache: Any = None
        self._cache_ids: list[int] = []  # tokens whose keys/values are in the cache
        self._generator: Any = None
        self._cache_kw = "past_key_values"
        self._keep_kw = False
        self._prepared = False
        self._executor: ThreadPoolExecutor | None = None
        self._locks: weakref.WeakKeyDictionary[Any, asyncio.Lock] = weakref.WeakKeyDictionary()

    def _lock(self) -> asyncio.Lock:
        """One request at a time per backend (the cache is shared)."""
        loop = asyncio.get_running_loop()
        return self._locks.setdefault(loop, asyncio.Lock())

    # -- protocol ------------------------------------------------------------
    @property
    def context_window(self) -> int:
        if self._context_window is None:
            config = self._model.config if self._model is not None else self._load_config()
            self._context_window = int(getattr(config, "max_position_embeddings", 131072))
        return self._context_window

    @property
    def max_completion_tokens(self) -> int:
        return self._max_completion

    async def stream(self, request: CompletionRequest) -> AsyncIterator[list[int] | Usage]:
        """Yield token ids as they are sampled (stop token included), then one `Usage`."""
        async with self._lock():
            loop = asyncio.get_running_loop()
            queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
            cancel = threading.Event()

            def emit(kind: str, value: Any = None) -> None:
                loop.call_soon_threadsafe(queue.put_nowait, (kind, value))

            if self._executor is None:
                self._executor = ThreadPoolExecutor(1, thread_name_prefix="oss-agent-transformers")
            job = loop.run_in_executor(self._executor, self._run, request, emit, cancel)
            kind = ""
            try:
                while True:
                    kind, value = await queue.get()
                    ids: list[int] = []
                    while kind == "token":  # hand over everything sampled since the last chunk
                        ids.append(value)
                        if queue.empty():
                            break
                        kind, value = queue.get_nowait()
                    if ids:
                        yield ids
                    if kind == "usage":
                        yield value
                    elif kind == "error":
                        raise value
                    elif kind == "end":
                        break
            finally:
                if kind != "end":  # stopped early: tell the worker and wait for it
                    cancel.set()
                    with contextlib.suppress(BaseException):  # the worker reports through the queue
                        await asyncio.shield(job)
                # after "end" the worker may still be caching the last token; the next job queues behind it

    async def aclose(self) -> None:
        async with self._lock():
            executor, self._executor = self._executor, None
            if executor is not None:
                await asyncio.get_running_loop().run_in_executor(None, executor.shutdown)
            self.clear_cache()

    def clear_cache(self) -> None:
        """Forget the kept KV cache (the next prompt is prefilled in full)."""
        self._cache, self._cache_ids = None, []

    def load(self) -> Any:
        """Load the model now (otherwise the first request does); returns it."""
        if self._model is None:
            from transformers import AutoModelForCausalLM

            self._check_path()
            kwargs: dict[str, Any] = {"torch_dtype": "auto"}
            if importlib.util.find_spec("accelerate") is not None:
                kwargs["device_map"] = "auto"
            try:
                model = AutoModelForCausalLM.from_pretrained(self._path, **kwargs)
            except (OSError, ValueError) as exc:
                raise ModelNotFoundError(f"cannot load model {self._source}: {_first_line(exc)}") from None
            self._model = model.eval()
        if self._adapter is not None and not self._adapted:
            self._model = self._load_adapter(self._model, self._adapter).eval()
            self._adapted = True
        if not self._prepared:
            self._prepare(self._model)
            self._prepared = True
        return self._model

    # -- worker thread ---------------------------------------------------------
    @property
    def _path(self) -> str:
        """The model's folder or hub id (only for a backend made from a path, never from a model object)."""
        if self._source is None:
            raise ModelNotFoundError("this backend was given a model object, not a path")
        return self._source

    def _check_path(self) -> None:
        source = self._path
        looks_local = source.startswith((".", "~", os.sep)) or source.count("/") > 1
        if looks_local and not os.path.exists(os.path.expanduser(source)):
            raise ModelNotFoundError(f"no model at {source} (not a local folder or a Hugging Face model id)")

    def _load_config(self) -> Any:
        from transformers import AutoConfig

        self._check_path()
        try:
            return AutoConfig.from_pretrained(self._path)
        except (OSError, ValueError) as exc:
            raise ModelNotFoundError(f"cannot load model {self._source}: {_first_line(exc)}") from None

    def _load_adapter(self, model: Any, adapter: str) -> Any:
        from peft import PeftModel

        try:
            tuned = PeftModel.from_pretrained(model, adapter)
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise ModelNotFoundError(f"cannot load the LoRA adapter {adapter}: {_first_line(exc)}") from None
        return tuned.merge_and_unload() if self._merge_adapter else tuned

    def _prepare(self, model: Any) -> None:
        vocab = getattr(model.config, "vocab_size", 0)
        if vocab < HARMONY_VOCAB:
            raise BackendError(f"model vocabulary has {vocab} tokens; gpt-oss Harmony needs {HARMONY_VOCAB}")
        # an unmerged PeftModel's forward takes **kwargs and hands them on: ask the real model what it takes
        real = model.get_base_model() if callable(getattr(model, "get_base_model", None)) else model
        params = inspect.signature(real.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        self._keep_kw = "logits_to_keep" in params

    def _run(self, request: CompletionRequest, emit: Callable[..., None], cancel: threading.Event) -> None:
        last: int | None = None
        try:
            import torch

            with torch.inference_mode():
                usage, last = self._generate(request, emit, cancel)
            emit("usage", usage)
        except BaseException as exc:
            self.clear_cache()  # a failed forward may leave the cache half-updated
            if not isinstance(exc, OssAgentError):
                exc = BackendError(f"transformers generation failed: {_first_line(exc)}")
            emit("error", exc)
        finally:
            emit("end")
        if last is not None and last != special_ids().return_ and not cancel.is_set():
            self._warm(last)

    def _warm(self, token: int) -> None:
        """Run the last sampled token through the model after the stream ended.

        The next prompt of a tool chain starts with it, so its cache entry is
        ready and only the new tokens are prefilled; this runs on the worker
        thread while the caller is busy with the tool.
        """
        if self._cache is None or len(self._cache_ids) >= self.context_window:
            return
        try:
            import torch

            with torch.inference_mode():
                self._forward([token])
        except Exception:
            self.clear_cache()

    def _generate(
        self, request: CompletionRequest, emit: Callable[..., None], cancel: threading.Event
    ) -> tuple[Usage, int]:
        """Prefill what the cache lacks, then sample; returns the usage and the last sampled token."""
        from transformers import DynamicCache

        self.load()
        prompt = list(request.prompt)
        if not prompt:
            raise BackendError("empty prompt")
        budget = completion_budget(len(prompt), self.context_window, request.max_tokens, self._max_completion)
        started = time.perf_counter()
        keep = shared_prefix(self._cache_ids, prompt) if self.reuse_prefix and self._cache is not None else 0
        keep = min(keep, len(prompt) - 1)  # at least one token must run to get logits
        if keep == 0:
            self._cache, self._cache_ids = DynamicCache(), []
        elif keep < len(self._cache_ids):
            self._cache.crop(keep - len(self._cache_ids))  # negative: drop that many from the end
            del self._cache_ids[keep:]
        rest = prompt[keep:]
        for i in range(0, len(rest), self._prefill_chunk):
            logits = self._forward(rest[i : i + self._prefill_chunk])
        prefilled = time.perf_counter()
        produced = 0
        watch = FinalWatch(prompt) if request.final_schema is not None else None
        mask = SchemaMask(request.final_schema or {}) if watch is not None and watch.opened else None
        while True:
            token = self._sample(logits if mask is None else mask.apply(logits))
            produced += 1
            if watch is not None and mask is None:
                for passed in watch.feed([token]):
                    emit("token", passed)
                if watch.opened:  # a final answer's body starts: constrain it to the schema from here
                    logits, mask = self._open_final(watch.replaced), SchemaMask(request.final_schema or {})
                    if produced >= budget or cancel.is_set():
                        break
                    continue
            else:
                if mask is not None:
                    mask.accept(token)
                emit("token", token)
            if token in request.stop or produced >= budget or cancel.is_set():
                for held in watch.held() if watch is not None else []:
                    emit("token", held)
                break
            logits = self._forward([token])
        done = time.perf_counter()
        usage = Usage(
            prompt_tokens=len(prompt),
            cached_prompt_tokens=keep,
            completion_tokens=produced,
            prompt_seconds=prefilled - started,
            completion_seconds=done - prefilled,
            total_seconds=done - started,
            finish_reason="stop" if token in request.stop else "length" if produced >= budget else None,
        )
        return usage, token

    def _open_final(self, replaced: int) -> Any:
        """Put the canonical final header in the cache instead of the sampled one; the logits after it.

        The sampled header is in the cache but for its last token (`<|message|>`, sampled, not run yet).
        """
        drop = replaced - 1
        if drop > 0:
            self._cache.crop(-drop)
            del self._cache_ids[-drop:]
        return self._forward(final_header_ids())

    def _forward(self, ids: list[int]) -> Any:
        import torch

        model = self._model
        inputs = torch.tensor([ids], dtype=torch.long, device=model.device)
        kwargs: dict[str, Any] = {self._cache_kw: self._cache, "use_cache": True}
        if self._keep_kw:
            kwargs["logits_to_keep"] = 1
        out = model(input_ids=inputs, **kwargs)
        self._cache_ids.extend(ids)
        return out.logits[0, -1]

    def _sample(self, logits: Any) -> int:
        import torch

        if self.temperature <= 0:
            return int(torch.argmax(logits))
        probs = torch.softmax(logits.float() / self.temperature, dim=-1)
        if self.top_p < 1.0:
            sorted_probs, order = torch.sort(probs, descending=True)
            beyond = torch.cumsum(sorted_probs, dim=-1) - sorted_probs > self.top_p
            sorted_probs[beyond] = 0.0
            probs = torch.zeros_like(probs).scatter_(0, order, sorted_probs)
        if self._generator is None and self._seed is not None:
            self._generator = torch.Generator(device=probs.device).manual_seed(self._seed)
        return int(torch.multinomial(probs, 1, generator=self._generator))


def _check_adapter(adapter: str | os.PathLike[str]) -> str:
    """The adapter's folder or hub id; a missing folder or a missing peft fails here, in one line."""
    source = os.path.expanduser(os.fspath(adapter))
    if importlib.util.find_spec("peft") is None:
        raise ConfigurationError('a LoRA adapter needs peft: pip install "oss-agent[finetune]"')
    looks_local = source.startswith((".", "~", os.sep)) or source.count("/") != 1 or os.path.exists(source)
    if looks_local and not os.path.isfile(os.path.join(source, "adapter_config.json")):
        why = "the folder has no adapter_config.json" if os.path.isdir(source) else "no such folder"
        raise ModelNotFoundError(f"no LoRA adapter at {source}: {why} (train one with examples/finetune_lora.py)")
    return source


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
