"""Turn resolved options (and a saved session) into a backend, tools and an `Agent`."""

from __future__ import annotations

import importlib
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.cli.options import BUILTIN_TOOLS, DEFAULT_MODEL, Options, is_tool_file
from agent.errors import ConfigurationError

if TYPE_CHECKING:
    from agent.loop import Agent, Approver
    from agent.sessions import SavedSession


def make_backend(options: Options, *, max_completion_tokens: int | None = None) -> Any:
    """The backend the options name, with the model options; missing optional backends fail clearly."""
    from agent.cli.model_options import backend_arguments

    chosen: dict[str, Any] = dict(options.options)
    if max_completion_tokens is not None:
        chosen["max_tokens"] = max_completion_tokens
    if options.adapter and options.backend != "transformers":
        raise ConfigurationError(
            "--adapter needs --backend transformers; for vLLM serve the adapter with "
            "--enable-lora --lora-modules NAME=PATH and --backend openai --model NAME "
            "(or merge it: examples/finetune_lora.py --merge-to DIR)"
        )
    if options.backend == "ollama":
        from agent.backends.ollama import OllamaBackend

        chosen.setdefault("num_ctx", options.num_ctx)
        return OllamaBackend(
            model=options.model, host=options.host, **backend_arguments(OllamaBackend, chosen, "ollama")
        )
    if options.backend == "llamacpp":
        from agent.backends.llamacpp import LlamaCppBackend

        return LlamaCppBackend(
            options.base_url, model=served_model(options), **backend_arguments(LlamaCppBackend, chosen, "llamacpp")
        )
    if options.backend == "openai":
        cls = _backend_class("agent.backends.openai_compat", "OpenAICompatibleBackend", "openai")
        return cls(base_url=options.base_url, model=served_model(options), **backend_arguments(cls, chosen, "openai"))
    cls = _backend_class("agent.backends.transformers", "TransformersBackend", "transformers")
    # the Ollama tag means the HF id here
    arguments = backend_arguments(cls, chosen, "transformers")
    if options.adapter:
        arguments["adapter"] = options.adapter
    return cls(served_model(options) or "openai/gpt-oss-20b", **arguments)  # an Ollama-style tag is refused there


def served_model(options: Options) -> str | None:
    """The model to ask a server for; None when no flag, variable or config file names one (the server's own)."""
    return options.model


def known_model(options: Options, backend: Any = None) -> str | None:
    """The model a conversation runs on, as the backend knows it (a server names its own once probed)."""
    known = getattr(backend, "model", None) if backend is not None else None
    if isinstance(known, str) and known:
        return known
    return options.model or (DEFAULT_MODEL if options.backend == "ollama" else None)


def model_name(options: Options, backend: Any = None) -> str:
    """`known_model`, for people: a server that has not said yet is "the served model"."""
    return known_model(options, backend) or "the served model"


def _backend_class(module: str, name: str, label: str) -> Any:
    try:
        return getattr(importlib.import_module(module), name)
    except ImportError as exc:
        hint = ' (install it with: pip install "oss-agent[transformers]")' if label == "transformers" else ""
        raise ConfigurationError(f"the {label} backend is not available: {exc}{hint}") from None
    except AttributeError:
        raise ConfigurationError(f"the {label} backend is not available in this version") from None


def tool_specs(options: Options) -> list[str]:
    """The `--tools` entries, tool files made absolute (so a resumed session finds them again)."""
    specs: list[str] = []
    for spec in options.tools:
        if is_tool_file(spec):
            spec = str(Path(spec).expanduser().resolve())
        if spec not in specs:
            specs.append(spec)
    return specs


def make_tools(specs: list[str]) -> list[Any]:
    from agent.cli.tools_file import load_tools_file

    tools: list[Any] = []
    for spec in specs:
        if is_tool_file(spec):
            if not Path(spec).exists() and Path(spec).suffix != ".py":
                raise ConfigurationError(
                    f"unknown built-in tool {Path(spec).name!r}: the built-ins are "
                    f"{' and '.join(BUILTIN_TOOLS)}; a tools file is a path to a .py file"
                )
            tools.extend(load_tools_file(spec))
        elif spec == "python":  # in the terminal, model-written code runs only after the user says yes
            from tools.python import PythonTool

            tools.append(PythonTool(requires_approval=True))
        else:
            tools.append(spec)
    return tools


def make_agent(options: Options, approve: Approver | None = None, date: str | None = None) -> Agent:
    from agent.loop import Agent

    tools = make_tools(tool_specs(options)) + mcp_servers(options)
    return Agent(
        backend=make_backend(options),
        tools=tools,
        instructions=options.instructions,
        reasoning_effort=options.effort,
        max_steps=options.max_steps,
        approve=approve,
        date=date,
    )


def mcp_servers(options: Options) -> list[Any]:
    """The MCP servers of `--mcp`, `--mcp-http`, `--mcp-config` and the config file's `mcp_servers`."""
    if not (options.mcp or options.mcp_http or options.mcp_config or options.mcp_servers):
        return []
    from tools.mcp import config

    servers = [config.from_command(spec) for spec in options.mcp]
    servers += [config.from_url(url) for url in options.mcp_http]
    if options.mcp_config:
        servers += config.from_json_file(options.mcp_config)
    if options.mcp_servers:
        base = options.config_path.parent if options.config_path else None
        servers += config.from_mapping(options.mcp_servers, str(options.config_path or "the config file"), base)
    return config.unique(servers)


def session_meta(options: Options, backend: Any = None) -> dict[str, Any]:
    """What a saved session records besides the prompt settings (the model as the backend names it)."""
    meta = {"model": known_model(options, backend), "backend": options.backend, "tools": tool_specs(options)}
    if options.adapter:  # a fine-tuned model is resumed with its adapter
        meta["adapter"] = str(Path(options.adapter).expanduser().resolve())
    return meta


def options_for_session(options: Options, saved: SavedSession) -> Options:
    """`options` with the saved session's settings filled in, except those given as flags."""
    s = saved.settings
    from_session = {
        "effort": s.get("reasoning_effort"),
        "instructions": s.get("instructions"),
        "tools": s.get("tools"),
        "model": s.get("model"),
        "backend": s.get("backend"),
        "adapter": s.get("adapter"),
    }
    updates: dict[str, Any] = {
        k: v for k, v in from_session.items() if k not in options.explicit and (v is not None or k == "instructions")
    }
    return replace(options, **updates)
