"""`oss-agent run`: one turn, the answer on stdout (or JSON events with `--json`)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from agent.cli.options import Options
from agent.errors import ConfigurationError


def read_prompt(prompt: str | None, files: list[str] | None = None) -> str:
    """The prompt: `-f` files, then piped stdin (when not a terminal), then the argument, as `llm` joins them.

    `-` or no argument means stdin alone; an empty prompt is refused.
    """
    if prompt == "-":
        prompt = None
    texts = [read_text_file(path) for path in files or []]
    terminal = sys.stdin is None or sys.stdin.isatty()
    piped = "" if terminal else _read_stdin()
    if prompt is None and terminal and not texts:
        raise ConfigurationError('no prompt: pass one (oss-agent run "...") or pipe it on stdin')
    parts = [text for text in (*texts, piped, prompt or "") if text.strip()]
    if not parts:
        where = "the prompt read from stdin" if prompt is None else "the prompt"
        raise ConfigurationError(f'{where} is empty; pass a question (oss-agent run "...") or pipe text on stdin')
    return "\n\n".join(part.strip("\n") for part in parts)


def read_text_file(name: str) -> str:
    """A `-f` file as prompt text, headed by its name; binary files belong in the sandbox (`-a`)."""
    path = Path(name).expanduser()
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"cannot read {name}: {exc.strerror or exc}") from None
    if b"\0" in raw[:8192]:
        raise ConfigurationError(f"{name} is not a text file; put it into the sandbox with -a {name} -t python")
    return f"{path.name}:\n{raw.decode('utf-8', 'replace').strip()}"


def _read_stdin() -> str:
    """Stdin's bytes, decoded leniently: a stray non-UTF-8 byte becomes U+FFFD, not a crash."""
    buffer = getattr(sys.stdin, "buffer", None)
    raw = buffer.read() if buffer is not None else sys.stdin.read().encode("utf-8", "surrogateescape")
    return str(raw.decode("utf-8", "replace"))


async def run_once(
    options: Options,
    prompt: str,
    *,
    json_output: bool,
    resume: str | None,
    latest: bool,
    attach: list[str] | None = None,
    schema: str | None = None,
) -> int:
    from agent.cli.jsonl import dumps, event_to_dict
    from agent.cli.render import make_consoles
    from agent.cli.runner import Runner, upload_note
    from agent.events import TextDelta

    out, err = make_consoles()
    ask = _terminal_ask(err) if sys.stdin.isatty() and not json_output else None
    runner = Runner(options, out, err, ask=ask)
    runner.renderer.reasoning_hint = "run with --reasoning show to see it"
    try:
        runner.start(resume=resume, latest=latest)
        notes = [upload_note(path, await runner.upload(path)) for path in (Path(a).expanduser() for a in attach or [])]
        if notes:
            prompt = "\n".join(notes) + "\n\n" + prompt

        def emit(event: Any) -> None:
            data = event_to_dict(event)
            if runner.recorder is not None and runner.recorder.session_id:  # to follow up with --session
                data["session_id"] = runner.recorder.session_id
            sys.stdout.write(dumps(data) + "\n")
            sys.stdout.flush()

        output_type = None
        if schema:
            from agent.cli.schema import output_type as schema_type

            output_type = schema_type(schema)

        def render(event: Any) -> None:  # with --schema the object is printed whole once it validated
            if not isinstance(event, TextDelta):
                runner.renderer.handle(event)

        handler = emit if json_output else render if output_type is not None else None
        try:
            result = await runner.turn(prompt, on_event=handler, output_type=output_type)
            if result is not None and output_type is not None and not json_output:
                output = result.output
                text = output.model_dump_json() if hasattr(output, "model_dump_json") else json.dumps(output)
                sys.stdout.write(text + "\n")
                sys.stdout.flush()
        except BrokenPipeError:  # `oss-agent run ... | head`: the reader has gone, stop quietly as Unix tools do
            _silence_stdout()
            return 0
    finally:
        await runner.aclose()
    return 0 if result is not None else 1


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's final flush does not fail a second time."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _terminal_ask(err: Any) -> Any:
    async def ask(question: str) -> str:
        err.print(question, end="", markup=False, highlight=False)
        try:
            return await asyncio.to_thread(sys.stdin.readline)
        except EOFError:
            return ""

    return ask
