"""Terminal rendering of a run's events.

The answer goes to stdout (live Markdown on a terminal, plain text otherwise);
reasoning (dimmed), preambles, tool panels, status and the footer go to
stderr, so `oss-agent run ... > answer.md` captures only the answer.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.markdown import Markdown
from rich.panel import Panel
from rich.rule import Rule
from rich.syntax import Syntax
from rich.text import Text

from agent.events import (
    HistoryCompacted,
    PreambleDelta,
    ReasoningDelta,
    RunFinished,
    StepFinished,
    TextDelta,
    ToolCallEvent,
    ToolResultEvent,
)

ARGUMENT_LINES = 8
RESULT_LINES = 10
RESULT_CHARS = 800
REFRESH_S = 0.05  # live Markdown is redrawn at most this often


class Elapsed:
    """A status line that counts the seconds since it was made, each time it is drawn."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.started = time.perf_counter()

    def __rich__(self) -> Text:
        return Text(f"{self.label} {time.perf_counter() - self.started:.0f} s")


class TurnRenderer:
    """Renders the events of one turn after another; `close()` ends whatever is on screen."""

    def __init__(
        self,
        out: Console,
        err: Console,
        *,
        show_reasoning: bool = True,
        cite: Callable[[str], str] | None = None,
        context_window: Callable[[], int | None] | None = None,
        raw_text: Callable[[list[int]], str] | None = None,
    ) -> None:
        self.out, self.err = out, err
        self.show_reasoning = show_reasoning
        self.cite = cite
        self.context_window = context_window
        self.raw_text = raw_text
        self.last_reasoning = ""  # of the latest turn, for `/reasoning` after the fact
        self.reasoning_hint = "/reasoning to see it"  # how to see hidden reasoning (the chat's command)
        self.approval_of: Callable[[Any], tuple[float, bool]] = lambda call: (0.0, False)  # (wait, declined)
        self._reset_turn()

    def _reset_turn(self) -> None:
        if getattr(self, "_status", None) is not None:  # a spinner left running would animate forever
            self._stop_status()
        self._block: str | None = None
        self._text = ""  # the answer so far, raw
        self._preamble = ""  # the preamble block so far
        self._shown = ""  # what was written of it on a non-terminal stdout
        self._reasoning_chars = 0
        self._live: Live | None = None
        self._status: Any = None
        self._last_refresh = 0.0
        self._started = time.perf_counter()
        self._prompt_tokens_last = 0
        self._style_end = ""

    # -- events ---------------------------------------------------------------

    def handle(self, event: Any) -> None:
        if isinstance(event, ReasoningDelta):
            self._reasoning(event.text)
        elif isinstance(event, PreambleDelta):
            self._enter("preamble")
            self._preamble += event.text
            self._write_err(event.text)
        elif isinstance(event, TextDelta):
            on_screen = self.out.is_terminal and self.err.is_terminal
            if self._block == "preamble" and event.text == self._preamble and on_screen:
                return  # the preamble just shown turned out to be the answer: it is on this screen already
            self._answer(event.text)
        elif isinstance(event, ToolCallEvent):
            self._enter(None)
            self.tool_running(event.call)
        elif isinstance(event, ToolResultEvent):
            self._stop_status()
            waited, declined = self.approval_of(event.call)
            self.err.print(tool_panel(event, waited=waited, declined=declined))
            self.waiting()  # the result goes back to the model now
        elif isinstance(event, StepFinished):
            self._prompt_tokens_last = event.prompt_tokens
            if event.outcome == "retry" and event.error:
                self._discard_answer()
                self._enter(None)
                self.err.print(f"note: {event.error}; sampling again", style="yellow", markup=False, highlight=False)
            if event.outcome in ("retry", "continue"):
                self._enter(None)
                self.waiting()
        elif isinstance(event, HistoryCompacted):
            self._enter(None)
            self.err.print(
                f"note: history compacted: {event.summary} ({event.tokens_before:,} → {event.tokens_after:,} tokens)",
                style="dim",
                markup=False,
                highlight=False,
            )
        elif isinstance(event, RunFinished):
            self._stop_status()
            self._enter(None)
            self.err.print()
            self.err.print(self.footer(event.result), style="dim", highlight=False, soft_wrap=True)
            self._reset_turn()

    def begin(self) -> None:
        """A turn starts now (the footer's time counts from here); its first request is on its way."""
        self._reset_turn()
        self.waiting()

    def waiting(self) -> None:
        """A spinner with the seconds since a request was sent, until the model's first token (prefill on a
        CPU can take a minute)."""
        self._start_status(Elapsed("waiting for the model…"))

    def debug_raw(self, prompt: list[int], completion: list[int], shared: int) -> None:
        """With --debug: the new part of the prompt and the completion, as Harmony text."""
        if self.raw_text is None:
            return
        self._enter(None)
        self.err.print(Rule(f"prompt (+{len(prompt) - shared} new tokens)", style="dim"))
        self.err.print(self.raw_text(prompt[shared:]), style="dim", markup=False, highlight=False)
        self.err.print(Rule(f"completion ({len(completion)} tokens)", style="dim"))
        self.err.print(self.raw_text(completion), style="dim", markup=False, highlight=False)

    def close(self) -> None:
        """Stop live displays and spinners (after an error or a cancelled turn)."""
        self._stop_status()
        self._enter(None)
        self._reset_turn()

    def tool_running(self, call: Any) -> None:
        """A spinner while a tool runs (again after the user approved it)."""
        self._start_status(f"running {call.recipient}…")

    def pause(self) -> None:
        """Clear transient output before asking the user something."""
        self._stop_status()
        if self._block == "text":
            self._enter(None)

    def approval(self, call: Any) -> None:
        """The call in a panel, above the question that asks to run it."""
        self.pause()
        self.err.print(approval_panel(call))

    # -- blocks -----------------------------------------------------------------

    def _enter(self, block: str | None) -> None:
        if block == self._block:
            return
        self._stop_status()
        previous, self._block = self._block, block
        if self._style_end:
            self.err.file.write(self._style_end)
            self._style_end = ""
        if previous == "reasoning":
            if self.show_reasoning:
                self.err.print("\n")
            elif self._reasoning_chars:
                hidden = f"(reasoning hidden, {self._reasoning_chars} characters; {self.reasoning_hint})"
                self.err.print(hidden, style="dim")
        elif previous == "preamble":
            self.err.print()
        elif previous == "text":
            self._finish_answer()
        if block == "reasoning":
            self._reasoning_chars = 0
            self.last_reasoning = ""
            if self.show_reasoning:
                self.err.print("Thinking…", style="dim italic")
                self._begin_style("dim")
            else:
                self._start_status("thinking…")
        elif block == "preamble":
            self._preamble = ""
            self._begin_style("italic")
        elif block == "text":
            self._text = self._shown = ""
            if self.out.is_terminal:
                self._live = Live(console=self.out, auto_refresh=False, vertical_overflow="visible")
                self._live.start()

    def _reasoning(self, text: str) -> None:
        if self._block != "reasoning":
            self._enter("reasoning")
        self._reasoning_chars += len(text)
        self.last_reasoning += text
        if self.show_reasoning:
            self._write_err(text)

    def _begin_style(self, style: str) -> None:
        """Style a streamed block once, so its text reaches the terminal unbroken by escape codes."""
        if self.err.color_system is None:
            return
        with self.err.capture() as captured:
            self.err.print("\0", style=style, end="", markup=False, highlight=False)
        start, _, self._style_end = captured.get().partition("\0")
        self.err.file.write(start)

    def _write_err(self, text: str) -> None:
        self.err.file.write(text)
        self.err.file.flush()

    def _answer(self, text: str) -> None:
        self._enter("text")
        self._text += text
        if self._live is not None:
            now = time.perf_counter()
            if now - self._last_refresh >= REFRESH_S:
                self._last_refresh = now
                self._live.update(Markdown(self._displayable(final=False)), refresh=True)
        else:
            visible = self._displayable(final=False)
            self.out.file.write(visible[len(self._shown) :])
            self.out.file.flush()
            self._shown = visible

    def _discard_answer(self) -> None:
        """A step that is sampled again: take back its partial answer where the screen allows it."""
        if self._block == "text" and self._live is not None:
            self._text = ""
            self._live.update(Markdown(""), refresh=True)
            self._live.stop()
            self._live = None
            self._block = None

    def _finish_answer(self) -> None:
        if self._live is not None:
            self._live.update(Markdown(self._displayable(final=True)), refresh=True)
            self._live.stop()
            self._live = None
        else:
            visible = self._displayable(final=True)
            self.out.file.write(visible[len(self._shown) :] + "\n")
            self.out.file.flush()
            self._shown = ""

    def _displayable(self, final: bool) -> str:
        """The answer with citations as links; an unfinished citation is held back while streaming."""
        if self.cite is None:
            return self._text
        text = self._text
        if not final:
            from tools.browser.citations import split_partial

            text, _unfinished = split_partial(self._text)
        rendered = self.cite(text)
        return rendered if final or not self._shown or rendered.startswith(self._shown) else self._shown

    def _start_status(self, message: Any) -> None:
        self._stop_status()  # one spinner at a time: the newest says what is going on
        if self.err.is_terminal:
            self._status = self.err.status(message, spinner="dots")
            self._status.start()

    def _stop_status(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

    # -- footer -------------------------------------------------------------------

    def footer(self, result: Any) -> str:
        usage = result.usage
        wall = time.perf_counter() - self._started
        total = usage.prompt_tokens + usage.completion_tokens
        parts = [f"{total:,} tokens ({usage.prompt_tokens:,} in, {usage.completion_tokens:,} out)"]
        decode = usage.completion_seconds or wall
        if usage.completion_tokens and decode > 0:
            parts.append(f"{usage.completion_tokens / decode:.1f} tok/s")
        parts.append(f"{wall:.1f} s")
        steps = len(result.steps)
        parts.append(f"{steps} step{'s' if steps != 1 else ''}")
        window = self.context_window() if self.context_window else None
        if window and self._prompt_tokens_last:
            parts.append(f"context {100 * self._prompt_tokens_last / window:.0f}% of {window:,}")
        return " · ".join(parts)


def tool_panel(event: ToolResultEvent, *, waited: float = 0.0, declined: bool = False) -> Panel:
    """A compact panel: the call's arguments, a rule, the (truncated) result.

    Its time leaves out `waited`, the time spent asking the user; a declined call says so.
    """
    call = event.call
    arguments: Any
    if call.name == "python" and call.method is None:
        arguments = Syntax(_clip_lines(call.arguments, ARGUMENT_LINES), "python", theme="ansi_dark", word_wrap=True)
    else:
        arguments = Text(_clip_lines(_pretty_json(call.arguments), ARGUMENT_LINES), style="cyan")
    output = event.output if len(event.output) <= RESULT_CHARS else event.output[:RESULT_CHARS] + "…"
    result = Text(_clip_lines(output, RESULT_LINES), style="red" if event.error else "")
    if declined:
        subtitle = "declined"
    else:
        subtitle = f"{'failed' if event.error else 'done'} in {max(0.0, event.duration_s - waited):.1f} s"
    return Panel(
        Group(arguments, Rule(style="dim"), result),
        title=f"[bold]{call.recipient}[/]",
        title_align="left",
        subtitle=subtitle,
        subtitle_align="right",
        border_style="red" if event.error else "blue",
        expand=False,
    )


APPROVAL_LINES = 60  # of the code or arguments shown before the user is asked


def approval_panel(call: Any) -> Panel:
    """What a call would run, for the user to read before saying yes: the code, or the arguments as JSON."""
    body: Any
    if call.name == "python" and call.method is None:
        body = Syntax(_clip_lines(call.arguments, APPROVAL_LINES), "python", theme="ansi_dark", word_wrap=True)
    else:
        body = Text(_clip_lines(_pretty_json(call.arguments), APPROVAL_LINES), style="cyan")
    return Panel(
        body, title=f"[bold]{call.recipient}[/] wants to run", title_align="left", border_style="yellow", expand=False
    )


def _pretty_json(text: str) -> str:
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return text.strip()


def _clip_lines(text: str, limit: int) -> str:
    lines = text.rstrip().splitlines() or [""]
    if len(lines) <= limit:
        return "\n".join(lines)
    return "\n".join(lines[:limit] + [f"… {len(lines) - limit} more lines"])


def console(stderr: bool = False, no_color: bool = False) -> Console:
    """A console for stdout or stderr; piped, its lines are never wrapped (the reader's terminal wraps them)."""
    made = Console(stderr=stderr, highlight=False, no_color=no_color or None)
    made.soft_wrap = not made.is_terminal
    if not made.is_terminal and not stderr and "COLUMNS" not in os.environ:
        made.width = PIPED_WIDTH  # tables take the width their cells need: no title is wrapped or cut
    return made


PIPED_WIDTH = 10_000  # stdout's width when it is a file or a pipe


def make_consoles(no_color: bool = False) -> tuple[Console, Console]:
    """Consoles for stdout (the answer) and stderr (everything else)."""
    return console(no_color=no_color), console(stderr=True, no_color=no_color)
