"""An agent whose model calls the `python` built-in twice: state carries over (real Docker)."""

from __future__ import annotations

import pytest
from sandbox_fixtures import docker_client, sandbox_image  # noqa: F401

from agent import Agent
from agent.backends import ScriptedBackend
from agent.backends.scripted import call, final

pytestmark = pytest.mark.docker


def test_python_state_carries_over_between_calls(sandbox_image, docker_client, monkeypatch):
    import docker

    monkeypatch.setenv("OSS_AGENT_SANDBOX_IMAGE", sandbox_image)
    backend = ScriptedBackend(
        [
            call("python", "import math\nx = math.factorial(5)", reasoning="Compute 5! first."),
            call("python", "print('x =', x)\nx + 1", reasoning="Reuse x."),
            final("5! + 1 = 121."),
        ]
    )
    with Agent(backend, tools=["python"]) as agent:
        result = agent.run("What is 5! + 1? Use python.")
        tool = agent.tools.builtins["python"]
        container = tool.sandbox.container_id
        assert result.output == "5! + 1 = 121."
        assert [record.output for record in result.tool_calls] == ["(no output)", "x = 120\n121"]
        prompt = backend.prompt_texts[-1]
        assert "<|start|>python to=assistant<|channel|>analysis<|message|>x = 120\n121<|end|>" in prompt
        system = backend.prompt_texts[0]
        assert "## python" in system and "Internet access for this session is disabled." in system
    backend.assert_complete()
    with pytest.raises(docker.errors.NotFound):  # closing the agent removed the sandbox
        docker_client.api.inspect_container(container)
