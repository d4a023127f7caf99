"""Settings of `chat` and `run`: defaults < config file < environment < flags.

`SETTINGS` is the single list of every setting, with its config key, its
environment variable and its flag; the README table is written from it.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.cli.model_options import parse_options
from agent.errors import ConfigurationError

EFFORTS = ("low", "medium", "high")
DEFAULT_MODEL = "gpt-oss:20b"
BACKENDS = ("ollama", "llamacpp", "openai", "transformers")
BUILTIN_TOOLS = ("browser", "python")


@dataclass(frozen=True)
class Setting:
    name: str  # attribute of `Options` and key in config.toml
    kind: type
    default: Any
    env: str | None
    flag: str | None
    help: str


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "model",
        str,
        None,
        "OSS_AGENT_MODEL",
        "--model/-m",
        "model name (Ollama tag, default gpt-oss:20b; servers: the served id, which they name when unset)",
    ),
    Setting(
        "backend",
        str,
        "ollama",
        "OSS_AGENT_BACKEND",
        "--backend",
        "ollama, llamacpp (llama-server), openai (with base_url) or transformers",
    ),
    Setting("host", str, None, "OLLAMA_HOST", "--host", "Ollama server URL (default http://localhost:11434)"),
    Setting(
        "base_url",
        str,
        None,
        "OSS_AGENT_BASE_URL",
        "--base-url",
        "URL of llama-server (llamacpp) or of an OpenAI-compatible server (openai)",
    ),
    Setting(
        "adapter",
        str,
        None,
        "OSS_AGENT_ADAPTER",
        "--adapter",
        "a LoRA adapter folder loaded on the model (transformers backend)",
    ),
    Setting(
        "tools",
        list,
        [],
        "OSS_AGENT_TOOLS",
        "--tools/-t",
        "browser, python, or paths of .py files with @tool functions",
    ),
    Setting("instructions", str, None, "OSS_AGENT_INSTRUCTIONS", "--instructions/-s", "developer instructions"),
    Setting("effort", str, "medium", "OSS_AGENT_EFFORT", "--effort", "reasoning effort: low, medium or high"),
    Setting("max_steps", int, 20, "OSS_AGENT_MAX_STEPS", "--max-steps", "model calls allowed per turn"),
    Setting("num_ctx", int, 32768, "OSS_AGENT_NUM_CTX", "--num-ctx", "context window to ask Ollama for"),
    Setting(
        "options",
        dict,
        {},
        None,
        "--option/-o KEY VALUE",
        "model options: temperature, top_p, top_k, seed, num_ctx, max_tokens (per step)",
    ),
    Setting("yes", bool, False, "OSS_AGENT_YES", "--yes/-y", "approve every tool call without asking"),
    Setting("save", bool, True, "OSS_AGENT_SAVE", "--no-save", "save conversations in the sessions database"),
    Setting("reasoning", str, "show", "OSS_AGENT_REASONING", "--reasoning", "show or hide the chain of thought"),
    Setting("debug", bool, False, "OSS_AGENT_DEBUG", "--debug", "tracebacks and the raw Harmony text"),
    Setting("mcp", list, [], None, "--mcp", "MCP servers to start, each a command line (stdio)"),
    Setting("mcp_http", list, [], None, "--mcp-http", "MCP servers to reach, each a streamable HTTP URL"),
    Setting(
        "mcp_config",
        str,
        None,
        "OSS_AGENT_MCP_CONFIG",
        "--mcp-config",
        "a JSON file of servers in the mcpServers shape",
    ),
    Setting("mcp_servers", dict, {}, None, None, "servers by name, in the mcpServers shape (config file only)"),
)
_BY_NAME = {s.name: s for s in SETTINGS}


@dataclass
class Options:
    """Resolved settings, plus which ones were given on the command line."""

    model: str | None = None  # unset: Ollama's gpt-oss:20b, or the model the server serves
    backend: str = "ollama"
    host: str | None = None
    base_url: str | None = None
    adapter: str | None = None
    tools: list[str] = field(default_factory=list)
    instructions: str | None = None
    effort: str = "medium"
    max_steps: int = 20
    num_ctx: int = 32768
    options: dict[str, Any] = field(default_factory=dict)
    yes: bool = False
    save: bool = True
    reasoning: str = "show"
    debug: bool = False
    mcp: list[str] = field(default_factory=list)
    mcp_http: list[str] = field(default_factory=list)
    mcp_config: str | None = None
    mcp_servers: dict[str, Any] = field(default_factory=dict)
    explicit: set[str] = field(default_factory=set)  # names given as flags
    config_path: Path | None = None  # the config file that was read, if any


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "oss-agent"


def config_path(flag: str | None = None) -> tuple[Path, bool]:
    """The config file to read and whether it was named explicitly (then it must exist)."""
    if flag:
        return Path(flag).expanduser(), True
    if env := os.environ.get("OSS_AGENT_CONFIG"):
        return Path(env).expanduser(), True
    return config_dir() / "config.toml", False


def read_config(path: Path, required: bool) -> dict[str, Any]:
    """The config file's settings, checked; {} when an implicit file is absent."""
    if not (path.exists() if required else path.is_file()):
        if required:
            raise ConfigurationError(f"config file {path} does not exist")
        return {}
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"cannot read config file {path}: {exc}") from None
    values: dict[str, Any] = {}
    for key, raw in data.items():
        name = key.replace("-", "_")
        if name not in _BY_NAME or name == "debug":
            known = ", ".join(s.name for s in SETTINGS if s.name != "debug")
            raise ConfigurationError(f"{path}: unknown setting {key!r} (known: {known})")
        values[name] = _check(_BY_NAME[name], raw, f"{path}: {key}")
    if values.get("mcp_config"):
        values["mcp_config"] = str(_relative_to(values["mcp_config"], path.parent))
    if values.get("tools"):  # tool files are relative to the config file
        values["tools"] = [_relative_to(t, path.parent) for t in values["tools"]]
    return values


def read_env(environ: dict[str, str] | None = None) -> dict[str, Any]:
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        if setting.env and env.get(setting.env, "") != "":
            values[setting.name] = _parse_text(setting, env[setting.env], setting.env)
    return values


def resolve(flags: dict[str, Any], config_flag: str | None = None) -> Options:
    """Merge defaults, the config file, the environment and the flags (non-None values win)."""
    path, required = config_path(config_flag)
    merged: dict[str, Any] = {}
    merged.update(read_config(path, required))
    merged.update(read_env())
    given = {k: v for k, v in flags.items() if k in _BY_NAME and v is not None}
    for name, value in given.items():
        value = _check(_BY_NAME[name], value, _BY_NAME[name].flag or name)
        merged[name] = {**merged.get(name, {}), **value} if name == "options" else value  # -o adds to the file's
    options = Options(**merged, explicit=set(given), config_path=path if path.is_file() else None)
    validate(options)
    return options


def validate(options: Options) -> None:
    if options.effort not in EFFORTS:
        raise ConfigurationError(f"effort must be one of {', '.join(EFFORTS)}, not {options.effort!r}")
    if options.backend not in BACKENDS:
        raise ConfigurationError(f"backend must be one of {', '.join(BACKENDS)}, not {options.backend!r}")
    if options.reasoning not in ("show", "hide"):
        raise ConfigurationError(f"reasoning must be show or hide, not {options.reasoning!r}")
    if options.backend == "openai" and not options.base_url:
        raise ConfigurationError(
            "--backend openai needs --base-url (or OSS_AGENT_BASE_URL), "
            "e.g. http://127.0.0.1:8000/v1 (vLLM) or http://127.0.0.1:8080/v1 (llama-server)"
        )
    if options.model is not None and not options.model.strip():
        raise ConfigurationError("model must not be empty; leave it out to use the default (or the served model)")
    options.options = parse_options(options.options, "model options")
    if options.max_steps < 1:
        raise ConfigurationError("max_steps must be at least 1")


def is_tool_file(spec: str) -> bool:
    return spec not in BUILTIN_TOOLS


def _relative_to(spec: str, base: Path) -> str:
    if not is_tool_file(spec):
        return spec
    p = Path(spec).expanduser()
    return str(p if p.is_absolute() else base / p)


def _check(setting: Setting, value: Any, where: str) -> Any:
    if isinstance(value, str) and setting.kind is not str:
        return _parse_text(setting, value, where)
    if setting.kind is list:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigurationError(f"{where}: expected a list of strings")
        return list(value)
    if setting.kind is dict and not isinstance(value, dict):
        raise ConfigurationError(f"{where}: expected a table")
    if setting.kind is bool and not isinstance(value, bool):
        raise ConfigurationError(f"{where}: expected true or false")
    if setting.kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigurationError(f"{where}: expected a whole number")
    if setting.kind is str and not isinstance(value, str):
        raise ConfigurationError(f"{where}: expected a string")
    return value


def _parse_text(setting: Setting, text: str, where: str) -> Any:
    if setting.kind is bool:
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigurationError(f"{where}: expected 1/0, true/false, yes/no or on/off, not {text!r}")
    if setting.kind is int:
        try:
            return int(text)
        except ValueError:
            raise ConfigurationError(f"{where}: expected a whole number, not {text!r}") from None
    if setting.kind is list:
        return [part.strip() for part in text.split(",") if part.strip()]
    return text


def cli_words(message: str, *, chat: bool = False) -> str:
    """An error of the library's, with its setting names as the command line (or the chat) spells them."""
    words = {
        "max_completion_tokens": "max_tokens (/set max_tokens N)" if chat else "max_tokens (-o max_tokens N)",
        "raise max_steps": "raise max_steps (--max-steps N)",
    }
    for library, cli in words.items():
        message = message.replace(library, cli)
    return message
