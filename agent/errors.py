"""Every exception oss-agent raises. Catch `OssAgentError` to catch them all.

The classes say whose fault it is: the model's output (`ModelOutputError`), the
run's limits (`MaxStepsError`, `RepeatedToolCallError`, `ToolRetriesExhausted`,
`ContextOverflowError`), or the infrastructure (`BackendError`, `SandboxError`,
`MCPServerError`). The root and the sandbox's errors are defined in `sandbox.errors`, the tools' in
`tools.errors`, so that the lower floors can raise them; all are importable from here.
"""

from __future__ import annotations

from typing import Any

from sandbox.errors import ConfigurationError, OssAgentError, SandboxError, SandboxUnavailableError
from tools.errors import MCPServerError, ToolRetry, ToolTimeout, VocabularyError

__all__ = [
    "BackendError",
    "BackendUnavailableError",
    "CompletionCutError",
    "ConfigurationError",
    "ContextOverflowError",
    "MCPServerError",
    "MaxStepsError",
    "ModelNotFoundError",
    "ModelOutputError",
    "OssAgentError",
    "OutputRetry",
    "OutputValidationError",
    "PromptTruncatedError",
    "RepeatedToolCallError",
    "RunLimitError",
    "SandboxError",
    "SandboxUnavailableError",
    "SessionError",
    "ToolRetriesExhausted",
    "ToolRetry",
    "ToolTimeout",
    "VocabularyError",
]


class ModelOutputError(OssAgentError):
    """The model kept producing output that Harmony cannot parse."""

    def __init__(self, message: str, raw: str = "") -> None:
        super().__init__(message)
        self.raw = raw


class OutputValidationError(ModelOutputError):
    """The final answer kept failing the output type's validation (after `output_retries` retries).

    `raw` is the last answer as the model wrote it; `errors` the validation errors of that answer.
    """

    def __init__(self, message: str, raw: str = "", errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message, raw)
        self.errors = errors or []


class RunLimitError(OssAgentError):
    """A run stopped because it hit one of its limits."""


class MaxStepsError(RunLimitError):
    """The run used `max_steps` model calls without a final answer."""


class RepeatedToolCallError(RunLimitError):
    """The model called the same tool with the same arguments too many times in a row."""


class ToolRetriesExhausted(RunLimitError):
    """A tool failed more times than its retry budget allows."""


class CompletionCutError(RunLimitError):
    """The model's output kept being cut at the completion budget or the context window."""


class ContextOverflowError(RunLimitError):
    """The prompt does not fit the backend's context window with room for a completion."""


class OutputRetry(ToolRetry):
    """Raised by an output validator to tell the model what is wrong with its answer and let it try again."""


class BackendError(OssAgentError):
    """The model server failed or answered something unusable."""


class BackendUnavailableError(BackendError):
    """The model server cannot be reached."""


class ModelNotFoundError(BackendError):
    """The model server does not have the requested model."""


class PromptTruncatedError(BackendError):
    """The model server silently cut the prompt (its context window is too small)."""


class SessionError(OssAgentError):
    """A saved session cannot be found or read."""
