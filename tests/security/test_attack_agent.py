"""Attacks seen through an agent: what the user and the model read when the sandbox is attacked
from outside or by the model's own code, and that the next turn works (real Docker)."""

from __future__ import annotations

import threading

import pytest
from sandbox_fixtures import SLOW_CELL, wait_for_file

from agent import Agent
from agent.backends import ScriptedBackend
from agent.backends.scripted import call, final
from agent.errors import SandboxError

pytestmark = pytest.mark.docker


def test_container_removed_during_a_tool_call_ends_the_turn_with_one_line_and_the_next_turn_works(
    sandbox_image, docker_client, monkeypatch
):
    monkeypatch.setenv("OSS_AGENT_SANDBOX_IMAGE", sandbox_image)
    backend = ScriptedBackend(
        [
            call("python", "x = 1", reasoning="Warm up."),
            call("python", SLOW_CELL, reasoning="Run the slow part."),
            call("python", "'back again'", reasoning="Try again."),
            final("It works again."),
        ]
    )
    with Agent(backend, tools=["python"]) as agent:
        box = agent.tools.builtins["python"].sandbox.start()
        container = box.container_id

        def remove_once_started():
            wait_for_file(docker_client, container, "/mnt/data/started")
            docker_client.api.remove_container(container, force=True)

        remover = threading.Thread(target=remove_once_started, daemon=True)
        remover.start()
        with pytest.raises(SandboxError) as failed:
            agent.run("Run the slow computation.")
        remover.join(30)
        message = str(failed.value)
        assert "removed from outside" in message and "next call starts a fresh sandbox" in message
        assert "\n" not in message and "APIError" not in message and "http+docker" not in message
        result = agent.run("Try once more.")
        assert result.output == "It works again."
        assert result.tool_calls[-1].output.endswith("'back again'")


def test_the_model_reads_a_clear_message_when_its_code_breaks_the_channel(sandbox_image, docker_client, monkeypatch):
    monkeypatch.setenv("OSS_AGENT_SANDBOX_IMAGE", sandbox_image)
    backend = ScriptedBackend(
        [
            call("python", "import os, time\nos.closerange(3, 1024)\ntime.sleep(120)", reasoning="Break it."),
            call("python", "2 + 2", reasoning="Continue."),
            final("Done."),
        ]
    )
    with Agent(backend, tools=["python"]) as agent:
        result = agent.run("Do it.")
    first, second = (record.output for record in result.tool_calls)
    assert "closed its channel to the sandbox" in first and "variables were lost" in first
    assert second == "4" and result.output == "Done."
