"""The tools of one agent, and the routing of Harmony recipients to them."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from openai_harmony import ToolDescription, ToolNamespaceConfig

from tools.base import BuiltinTool, Tool, ToolCall
from tools.errors import ConfigurationError, ToolRetry
from tools.function import FunctionTool, repair_json_arguments, to_identifier
from tools.toolset import LocalToolset, Toolset

# Built-in namespaces by name; each agent gets fresh instances (they hold per-conversation state).
BUILTIN_FACTORIES = {
    "browser": ("tools.browser", "BrowserTool"),
    "python": ("tools.python", "PythonTool"),
}

ToolLike = Tool | Toolset | Callable[..., Any] | str


class ToolRegistry:
    """Function tools (`functions.*`, developer message) and built-ins (system message), from toolsets.

    `functions` and `builtins` hold the tools of the current turn; `refresh()`
    lists every toolset again (the local tools first, then the others in the
    order added). A name taken by an earlier toolset gets the later toolset's
    name as a prefix (`docs_read_file`).
    """

    def __init__(self, tools: Iterable[ToolLike] = ()) -> None:
        self.functions: dict[str, Tool] = {}
        self.builtins: dict[str, BuiltinTool] = {}
        self.local = LocalToolset()
        self.toolsets: list[Toolset] = []  # besides the local tools: MCP servers and the like
        for item in tools:
            self.add(item)

    def add(self, item: ToolLike) -> Tool | Toolset:
        """Register a function, a `Tool`, a `Toolset`, or a built-in by name (`"browser"`, `"python"`).

        A tool is callable at once and declared to the model from the next turn on.
        """
        if isinstance(item, Toolset):
            if any(item is t for t in self.toolsets):
                raise ConfigurationError(f"the toolset {item.name!r} was added twice")
            self.toolsets.append(item)
            return item
        if isinstance(item, str):
            item = _make_builtin(item)
        elif not isinstance(item, Tool):
            item = FunctionTool(item)
        if not isinstance(item, BuiltinTool) and not hasattr(item, "tool_description"):
            raise ConfigurationError(f"{item!r} is neither a function tool nor a built-in namespace")
        self.local.add(item)
        table: dict[str, Any] = self.builtins if isinstance(item, BuiltinTool) else self.functions
        table[item.name] = item
        return item

    async def refresh(self) -> None:
        """List every toolset again (starting MCP servers on first use) and rebuild the tool tables."""
        functions: dict[str, Tool] = {}
        builtins: dict[str, BuiltinTool] = {}
        for toolset in [self.local, *self.toolsets]:
            for tool in await toolset.list_tools():
                if isinstance(tool, BuiltinTool):
                    if tool.name in builtins:
                        raise ConfigurationError(f"two built-in namespaces are named {tool.name!r}")
                    builtins[tool.name] = tool
                    continue
                if tool.name in functions and toolset is not self.local:
                    prefixed = f"{to_identifier(toolset.name)}_{tool.name}"
                    if prefixed in functions:
                        raise ConfigurationError(
                            f"the tool {tool.name!r} of {toolset.name!r} clashes with {prefixed!r}; "
                            "give the toolset another name"
                        )
                    tool.name = prefixed
                functions[tool.name] = tool
        self.functions, self.builtins = functions, builtins

    def __iter__(self) -> Iterator[Tool | Toolset]:
        """The local tools, then the other toolsets: what `reset()` and `aclose()` reach."""
        yield from self.builtins.values()
        yield from (tool for tool in self.local.tools.values() if not isinstance(tool, BuiltinTool))
        yield from self.toolsets

    def system_namespaces(self) -> list[ToolNamespaceConfig]:
        return [tool.namespace_config() for tool in self.builtins.values()]

    def function_descriptions(self) -> list[ToolDescription]:
        return [tool.tool_description() for tool in self.functions.values()]  # type: ignore[attr-defined]

    def recipients(self) -> list[str]:
        names = [f"functions.{name}" for name in self.functions]
        for name, tool in self.builtins.items():
            members = [t.name for t in tool.namespace_config().tools]
            names += [f"{name}.{m}" for m in members] or [name]
        return names

    def route(self, recipient: str) -> str | None:
        """The recipient a sampled header means, or None if it names nothing offered.

        `functions.*` is always a call (an unknown function is answered with an
        error the model can act on); a bare offered name gets its namespace
        (`get_weather` -> `functions.get_weather`, as the gpt-oss reference
        server reads it); a name with `json` glued on (`functions.shelljson`)
        means the offered `functions.shell`; a built-in namespace that is not
        offered (`python`, `container.exec` with no such tool) is not a call.
        """
        name = recipient.removeprefix("functions.")
        if name.endswith("json") and name not in self.functions and name[: -len("json")] in self.functions:
            return f"functions.{name[: -len('json')]}"  # `functions.shelljson`: `<|constrain|>` left out (llama.cpp)
        if recipient.startswith("functions."):
            return recipient
        namespace = recipient.partition(".")[0]
        if namespace in self.builtins:
            return recipient
        if "." not in recipient and recipient in self.functions:
            return f"functions.{recipient}"
        return None

    def resolve(self, recipient: str, arguments: str, channel: str) -> tuple[Tool, ToolCall]:
        """Find the tool a recipient names; `ToolRetry` explains an unknown one to the model."""
        target = recipient.strip()
        if target.startswith("functions."):
            name = target.removeprefix("functions.")
            if name in self.functions:
                return self.functions[name], ToolCall(recipient, name, None, repair_json_arguments(arguments), channel)
            target = name  # a common slip: `functions.browser.search`, `functions.python`
        namespace, _, method = target.partition(".")
        if namespace in self.builtins:
            return self.builtins[namespace], ToolCall(recipient, namespace, method or None, arguments, channel)
        available = ", ".join(self.recipients()) or "none"
        raise ToolRetry(f"unknown tool {recipient!r}; available tools: {available}")


def _make_builtin(name: str) -> BuiltinTool:
    if name not in BUILTIN_FACTORIES:
        raise ConfigurationError(f"unknown built-in tool {name!r}; choose from {', '.join(BUILTIN_FACTORIES)}")
    module, cls = BUILTIN_FACTORIES[name]
    try:
        factory = getattr(importlib.import_module(module), cls)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"built-in tool {name!r} is not available: {exc}") from exc
    return factory()
