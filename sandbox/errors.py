"""The root of every error oss-agent raises, and the sandbox's own.

The root lives on the lowest floor so that every package can raise errors that
`except OssAgentError` catches; `agent.errors` gathers the whole hierarchy.
"""

from __future__ import annotations


class OssAgentError(Exception):
    """Root of the hierarchy."""


class ConfigurationError(OssAgentError):
    """The agent was set up in a way that cannot work (bad tool, bad option)."""


class SandboxError(OssAgentError):
    """The Python sandbox failed."""


class SandboxUnavailableError(SandboxError):
    """No Docker daemon answers, or the sandbox image is missing."""
