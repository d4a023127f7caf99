"""`oss-agent run`: one turn, the answer on stdout (or JSON events with `--json`)."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from agent.cli.options import Options
from agent.errors import ConfigurationError


def read_prompt(prompt: str | None) -> str:
    """The prompt argument, or stdin when it is `-` or missing and stdin is not a terminal."""
    if prompt is not None and prompt != "-":
        return prompt
    if prompt is None and sys.stdin.isatty():
        raise ConfigurationError("no prompt: pass one (oss-agent run \"...\") or pipe it on stdin")
    # Bytes, decoded leniently: a stray non-UTF-8 byte becomes U+FFFD, not a crash.
    buffer = getattr(sys.stdin, "buffer", None)
    raw = buffer.read() if buffer is not None else sys.stdin.read().encode("utf-8", "surrogateescape")
    text = raw.decode("utf-8", "replace")
    if not text.strip():
        raise ConfigurationError("the prompt read from stdin is empty")
    return text


async def run_once(options: Options, prompt: str, *, json_output: bool, resume: str | None, latest: bool) -> int:
    from agent.cli.jsonl import dumps, event_to_dict
    from agent.cli.render import make_consoles
    from agent.cli.runner import Runner

    out, err = make_consoles()
    ask = _terminal_ask(err) if sys.stdin.isatty() and not json_output else None
    runner = Runner(options, out, err, ask=ask)
    try:
        runner.start(resume=resume, latest=latest)

        def emit(event: Any) -> None:
            sys.stdout.write(dumps(event_to_dict(event)) + "\n")
            sys.stdout.flush()

        result = await runner.turn(prompt, on_event=emit if json_output else None)
    finally:
        await runner.aclose()
    return 0 if result is not None else 1


def _terminal_ask(err: Any) -> Any:
    async def ask(question: str) -> str:
        err.print(question, end="", markup=False, highlight=False)
        try:
            return await asyncio.to_thread(sys.stdin.readline)
        except EOFError:
            return ""

    return ask
