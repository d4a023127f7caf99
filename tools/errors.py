"""The errors tools raise: `ToolRetry` (a message back to the model), a timeout, an MCP server that failed,
the Harmony vocabulary missing."""

from __future__ import annotations

from sandbox.errors import ConfigurationError, OssAgentError

__all__ = ["ConfigurationError", "MCPServerError", "OssAgentError", "ToolRetry", "ToolTimeout", "VocabularyError"]


class VocabularyError(OssAgentError):
    """The Harmony vocabulary (o200k_base.tiktoken) could not be loaded."""


class ToolRetry(OssAgentError):
    """Raised by a tool to send a message back to the model and let it try again.

    The message is the tool result the model sees; it counts against the tool's
    retry budget.
    """


class ToolTimeout(OssAgentError):
    """A tool did not finish within its timeout."""


class MCPServerError(OssAgentError):
    """An MCP server did not start, or stopped and could not be started again.

    `command` is what was run (or the URL); `stderr` is the tail of what the server wrote there.
    """

    def __init__(self, message: str, command: str = "", stderr: str = "") -> None:
        super().__init__(message)
        self.command = command
        self.stderr = stderr
