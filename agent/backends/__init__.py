"""Model backends: token ids in, token ids out. Heavy ones are imported on first use."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from agent.backends.base import Backend, CompletionRequest, Usage, shared_prefix
from agent.backends.scripted import ScriptedBackend, call, final, preamble

__all__ = [
    "Backend",
    "CompletionRequest",
    "LlamaCppBackend",
    "OllamaBackend",
    "OpenAICompatibleBackend",
    "ScriptedBackend",
    "TransformersBackend",
    "Usage",
    "call",
    "final",
    "preamble",
    "shared_prefix",
]
_LAZY = {
    "LlamaCppBackend": "agent.backends.llamacpp",
    "OllamaBackend": "agent.backends.ollama",
    "TransformersBackend": "agent.backends.transformers",
    "OpenAICompatibleBackend": "agent.backends.openai_compat",
}

if TYPE_CHECKING:
    from agent.backends.llamacpp import LlamaCppBackend
    from agent.backends.ollama import OllamaBackend
    from agent.backends.openai_compat import OpenAICompatibleBackend
    from agent.backends.transformers import TransformersBackend


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'agent.backends' has no attribute {name!r}")
