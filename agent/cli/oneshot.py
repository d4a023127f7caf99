"""`oss-agent run`: one turn, the answer on stdout (or JSON events with `--json`)."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from agent.cli.options import Options
from agent.errors import ConfigurationError


def read_prompt(prompt: str | None) -> str:
    """The prompt: piped stdin (when stdin is not a terminal) first, then the argument, as `llm` joins them.

    `-` or no argument means stdin alone; an empty prompt is refused.
    """
    if prompt == "-":
        prompt = None
    piped = "" if sys.stdin is None or sys.stdin.isatty() else _read_stdin()
    if prompt is None and sys.stdin is not None and sys.stdin.isatty():
        raise ConfigurationError("no prompt: pass one (oss-agent run \"...\") or pipe it on stdin")
    parts = [text for text in (piped, prompt or "") if text.strip()]
    if not parts:
        where = "the prompt read from stdin" if prompt is None else "the prompt"
        raise ConfigurationError(f"{where} is empty; pass a question (oss-agent run \"...\") or pipe text on stdin")
    return "\n\n".join(part.strip("\n") for part in parts)


def _read_stdin() -> str:
    """Stdin's bytes, decoded leniently: a stray non-UTF-8 byte becomes U+FFFD, not a crash."""
    buffer = getattr(sys.stdin, "buffer", None)
    raw = buffer.read() if buffer is not None else sys.stdin.read().encode("utf-8", "surrogateescape")
    return str(raw.decode("utf-8", "replace"))


async def run_once(options: Options, prompt: str, *, json_output: bool, resume: str | None, latest: bool) -> int:
    from agent.cli.jsonl import dumps, event_to_dict
    from agent.cli.render import make_consoles
    from agent.cli.runner import Runner

    out, err = make_consoles()
    ask = _terminal_ask(err) if sys.stdin.isatty() and not json_output else None
    runner = Runner(options, out, err, ask=ask)
    runner.renderer.reasoning_hint = "run with --reasoning show to see it"
    try:
        runner.start(resume=resume, latest=latest)

        def emit(event: Any) -> None:
            data = event_to_dict(event)
            if runner.recorder is not None and runner.recorder.session_id:  # to follow up with --session
                data["session_id"] = runner.recorder.session_id
            sys.stdout.write(dumps(data) + "\n")
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
