"""Model options (`-o KEY VALUE`, `[options]` in config.toml, `/set` in a chat), as `llm -o` takes them."""

from __future__ import annotations

import inspect
import sys
from typing import Any

from agent.backends.base import DEFAULT_COMPLETION_TOKENS
from agent.errors import ConfigurationError

MODEL_OPTIONS: dict[str, tuple[type, str]] = {
    "temperature": (float, "sampling temperature (default 1.0, as gpt-oss is meant to be sampled)"),
    "top_p": (float, "nucleus sampling (default 1.0)"),
    "top_k": (int, "top-k sampling, 0 for off (default 0)"),
    "seed": (int, "sampling seed, for repeatable answers"),
    "num_ctx": (int, "context window to ask Ollama for (as --num-ctx)"),
    "max_tokens": (int, f"tokens the model may write per step (default {DEFAULT_COMPLETION_TOKENS})"),
}
BACKEND_ARGUMENTS = {"max_tokens": "max_completion_tokens"}  # option name -> backend keyword
DEFAULT_MAX_TOKENS = DEFAULT_COMPLETION_TOKENS


def parse_option(key: str, value: Any, where: str = "-o") -> tuple[str, float | int]:
    """One option, checked and converted: ("temperature", 0.7)."""
    name = key.strip().lower().replace("-", "_")
    if name not in MODEL_OPTIONS:
        raise ConfigurationError(f"{where}: unknown model option {key!r}; known: {', '.join(MODEL_OPTIONS)}")
    kind = MODEL_OPTIONS[name][0]
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ConfigurationError(f"{where}: {name} must be a number, not {value!r}")
    try:
        number = kind(value) if isinstance(value, str) or kind is float else value
    except ValueError:
        raise ConfigurationError(
            f"{where}: {name} must be {'a number' if kind is float else 'a whole number'}, not {value!r}"
        ) from None
    if kind is int and not isinstance(number, int):
        raise ConfigurationError(f"{where}: {name} must be a whole number, not {value!r}")
    if name in ("num_ctx", "max_tokens") and number < 1:
        raise ConfigurationError(f"{where}: {name} must be at least 1")
    return name, number


def parse_options(values: dict[str, Any], where: str = "-o") -> dict[str, float | int]:
    return dict(parse_option(key, value, where) for key, value in values.items())


_WARNED: set[tuple[str, str]] = set()  # (backend, option) pairs already reported in this process


def backend_arguments(backend_class: Any, options: dict[str, float | int], label: str) -> dict[str, Any]:
    """Keyword arguments for `backend_class` from the options.

    An option this backend does not have (`num_ctx` is Ollama's) is left out with a one-line warning, once,
    so one config file serves every backend; a misspelled name never gets here (`parse_option` refuses it).
    """
    accepted = inspect.signature(backend_class).parameters
    arguments: dict[str, Any] = {}
    for name, value in options.items():
        keyword = BACKEND_ARGUMENTS.get(name, name)
        if keyword not in accepted:
            if (label, name) not in _WARNED:
                _WARNED.add((label, name))
                sys.stderr.write(f"warning: the {label} backend has no model option {name}; it is ignored\n")
            continue
        arguments[keyword] = value
    arguments.setdefault("max_completion_tokens", DEFAULT_MAX_TOKENS)
    return arguments


def describe(options: dict[str, float | int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in options.items()) or "none (the defaults)"
