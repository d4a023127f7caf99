"""`oss-agent chat`: the interactive loop, its key bindings and slash commands.

Enter sends; Alt-Enter (or Esc then Enter), or a line ending in a backslash,
adds a line. Ctrl-C during a turn cancels it and keeps the conversation;
Ctrl-C at the prompt clears the line; Ctrl-D exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from agent.cli import build
from agent.cli.options import EFFORTS, Options
from agent.cli.runner import Runner, upload_note
from agent.errors import ConfigurationError, OssAgentError

PROMPT = "› "
SERVER_BACKENDS = ("ollama", "llamacpp", "openai")  # checked when the chat starts
PREFLIGHT_TIMEOUT_S = 10.0
REPLAY_TURNS = 3  # turns of a resumed session shown again
ALIASES = {"/bye": "/exit", "/quit": "/exit", "/?": "/help"}  # as `ollama run` and `llm chat` spell them
COMMANDS = {
    "/help": ("", "show this help (or /?)"),
    "/show": ("", "the model, backend, context window, effort, options and tools of this chat"),
    "/reset": ("", "start a new conversation"),
    "/effort": ("LEVEL", "reasoning effort: low, medium or high"),
    "/tools": ("", "list the tools the model can call"),
    "/set": ("[KEY VALUE]", "a model option: temperature, top_p, top_k, seed, num_ctx, max_tokens; alone: list"),
    "/model": ("[NAME]", "switch to another model of the same server; alone: show the current one"),
    "/clear": ("", "clear the screen (the conversation is kept)"),
    "/reasoning": ("show|hide", "show or hide the chain of thought; alone: print the last one"),
    "/upload": ("PATH", "copy a file into the sandbox's /mnt/data"),
    "/save": ("[TITLE]", "save this conversation (optionally with a title)"),
    "/rate": ("good|bad", "mark this conversation good or bad, for `sessions export --format sft --rated good`"),
    "/sessions": ("", "list saved sessions"),
    "/resume": ("ID", "continue a saved session"),
    "/raw": ("", "last prompt and completion as Harmony text"),
    "/context": ("", "context window use, the history policy, and what /compact would do"),
    "/compact": ("", "compact the history now, as the history policy would past its mark"),
    "/exit": ("", "quit (or /bye, /quit, Ctrl-D)"),
}


async def chat(options: Options, resume: str | None = None, latest: bool = False) -> int:
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise ConfigurationError("`oss-agent chat` needs a terminal; use `oss-agent run` with pipes and scripts")
    from agent.cli.render import make_consoles

    out, err = make_consoles()
    repl = Repl(options, out, err)
    try:
        return await repl.main(resume, latest)
    finally:
        await repl.runner.aclose()


class Repl:
    def __init__(self, options: Options, out: Console, err: Console) -> None:
        self.out, self.err = out, err
        self.runner = Runner(options, out, err, ask=self._ask)
        self.prompt_session: Any = None
        self.pending_notes: list[str] = []
        self.running = True

    # -- the loop -----------------------------------------------------------------

    async def main(self, resume: str | None, latest: bool) -> int:
        saved = self.runner.start(resume=resume, latest=latest)
        problems = await self._preflight()  # first, so the banner names the model a server serves
        self._banner(saved)
        for problem in problems:
            self.err.print(f"warning: {' '.join(problem.split())}", style="yellow", markup=False, highlight=False)
        self.prompt_session = _prompt_session()
        while self.running:
            try:
                text = await self.prompt_session.prompt_async(PROMPT)
            except KeyboardInterrupt:
                continue
            except EOFError:
                break
            text = text.strip()
            if not text:
                continue
            if text.startswith("/") and not text.startswith("//"):
                await self._command(text)
                continue
            await self._turn(text.removeprefix("/"))
        return 0

    async def _turn(self, text: str) -> None:
        if self.pending_notes:
            text = "\n".join(self.pending_notes) + "\n\n" + text
            self.pending_notes.clear()
        task = asyncio.create_task(self.runner.turn(text))
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGINT, task.cancel)
        except (NotImplementedError, RuntimeError):  # no signal handlers here (e.g. Windows)
            pass
        try:
            with _no_echo():
                await asyncio.wait([task])
        finally:
            try:
                loop.remove_signal_handler(signal.SIGINT)
            except (NotImplementedError, RuntimeError):
                pass
        if task.cancelled():
            self.err.print("stopped; the conversation is kept (Ctrl-D exits)", style="yellow")
            return
        exc = task.exception()
        if exc is not None:
            self._report(exc)

    def _report(self, exc: BaseException) -> None:
        if self.runner.options.debug:
            _print_traceback(exc)
        from agent.cli.options import cli_words

        message = cli_words(" ".join(str(exc).split()) or type(exc).__name__, chat=True)
        if not isinstance(exc, OssAgentError):
            message = f"unexpected {type(exc).__name__}: {message} (a bug; --debug shows the traceback)"
        self.err.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)

    async def _ask(self, question: str) -> str:
        from prompt_toolkit import PromptSession

        try:
            return await PromptSession().prompt_async(question, handle_sigint=False)
        except KeyboardInterrupt:  # Ctrl-C at an approval prompt stops the turn
            raise asyncio.CancelledError from None
        except EOFError:
            return "no"

    # -- slash commands -----------------------------------------------------------

    async def _command(self, line: str) -> None:
        name, _, arg = line.partition(" ")
        name, arg = name.lower(), arg.strip()
        name = ALIASES.get(name, name)
        if name == "/exit":
            self.running = False
            return
        handler = getattr(self, "_cmd_" + name[1:], None)
        if name not in COMMANDS or handler is None:
            self.err.print(f"unknown command {escape(name)}; /help lists them", style="yellow")
            return
        try:
            result = handler(arg)
            if asyncio.iscoroutine(result):
                await result
        except OssAgentError as exc:
            self._report(exc)

    def _cmd_help(self, arg: str) -> None:
        table = Table(box=None, show_header=False, pad_edge=False)
        for name, (usage, text) in COMMANDS.items():
            table.add_row(f"[bold]{name}[/] {usage}", text)
        self.err.print(table)
        self.err.print(
            "Enter sends · Alt-Enter or a trailing \\ adds a line · Ctrl-C stops a turn · Ctrl-D exits",
            style="dim",
            markup=False,
        )

    def _cmd_show(self, arg: str) -> None:
        from agent.cli.model_options import describe

        runner, agent = self.runner, self.runner.agent
        options = runner.options
        window = getattr(agent.backend, "context_window", None)
        where = getattr(agent.backend, "host", None) or options.base_url or "in-process"
        rows = [
            ("model", build.model_name(options, agent.backend)),
            ("backend", f"{options.backend} ({where})"),
            ("context", f"{window:,} tokens" if isinstance(window, int) else "unknown until the server answers"),
            ("effort", agent.reasoning_effort),
            ("options", describe(options.options)),
            ("tools", ", ".join(t.name for t in agent.tools) or "none"),
            ("session", runner.recorder.session_id or "not saved yet" if runner.recorder else "not saved (--no-save)"),
        ]
        table = Table(box=None, show_header=False, pad_edge=False)
        for key, value in rows:
            table.add_row(f"[bold]{key}[/]", escape(str(value)))
        self.err.print(table)

    def _cmd_reset(self, arg: str) -> None:
        self.runner.agent.reset()
        if self.runner.recorder is not None:
            self.runner.recorder.start_new()
        self.err.print("new conversation", style="green")

    def _cmd_effort(self, arg: str) -> None:
        agent = self.runner.agent
        if not arg:
            self.err.print(f"reasoning effort: {agent.reasoning_effort}")
            return
        if arg.lower() not in EFFORTS:
            self.err.print(f"effort must be one of {', '.join(EFFORTS)}", style="yellow")
            return
        agent.reasoning_effort = arg.lower()
        if self.runner.recorder is not None:
            self.runner.recorder.settings_changed()
        self.err.print(f"reasoning effort: {agent.reasoning_effort}", style="green")

    async def _cmd_set(self, arg: str) -> None:
        from dataclasses import replace

        from agent.cli.model_options import describe, parse_option

        options = self.runner.options
        key, _, value = arg.partition(" ")
        if not arg:
            self.err.print(f"model options: {describe(options.options)}", markup=False, highlight=False)
            return
        if not value.strip():
            self.err.print("usage: /set KEY VALUE (e.g. /set temperature 0.7)", style="yellow")
            return
        name, number = parse_option(key, value.strip(), "/set")
        await self.runner.use_options(replace(options, options={**options.options, name: number}))
        self.err.print(f"{name}: {number}", style="green", highlight=False)

    async def _cmd_model(self, arg: str) -> None:
        from dataclasses import replace

        options = self.runner.options
        if not arg:
            name = build.model_name(options, self.runner.agent.backend)
            self.err.print(f"model: {name} (oss-agent models lists what the server has)", markup=False)
            return
        await self.runner.use_options(replace(options, model=arg, explicit=options.explicit | {"model"}), check=True)
        self.err.print(f"model: {arg}; the conversation goes on with it", style="green", markup=False)

    def _cmd_clear(self, arg: str) -> None:
        self.out.clear()

    def _cmd_tools(self, arg: str) -> None:
        registry = self.runner.agent.tools
        if not list(registry):
            self.err.print("no tools; start the chat with -t browser, -t python or -t my_tools.py")
            return
        table = Table(box=None, show_header=False, pad_edge=False)
        for name, tool in registry.builtins.items():
            members = ", ".join(t.name for t in tool.namespace_config().tools) or "code"
            table.add_row(f"[bold]{name}[/]", f"built-in: {members}")
        by_toolset: dict[int, list[tuple[str, Any]]] = {}
        for name, tool in registry.functions.items():  # MCP tools are listed under their server
            by_toolset.setdefault(id(getattr(tool, "server", registry.local)), []).append((name, tool))
        for toolset in [registry.local, *registry.toolsets]:
            listed = by_toolset.get(id(toolset), [])
            if toolset is not registry.local:
                where = escape(getattr(getattr(toolset, "transport", None), "label", lambda: "")())
                state = "" if listed else " [dim](starts with the next message)[/]"
                table.add_row(f"[bold]MCP server {escape(toolset.name)}[/]", f"[dim]{where}[/]{state}")
            for name, tool in listed:
                approval = " [yellow](asks first)[/]" if tool.requires_approval else ""
                table.add_row(f"[bold]functions.{name}[/]", escape(getattr(tool, "description", "") or "") + approval)
        self.err.print(table)

    def _cmd_reasoning(self, arg: str) -> None:
        renderer = self.runner.renderer
        if arg in ("show", "hide"):
            renderer.show_reasoning = arg == "show"
            self.err.print(f"reasoning: {arg}", style="green")
        elif not arg:
            self.err.print(renderer.last_reasoning or "(no reasoning yet)", style="dim", markup=False)
        else:
            self.err.print("usage: /reasoning show|hide", style="yellow")

    async def _cmd_upload(self, arg: str) -> None:
        if not arg:
            self.err.print("usage: /upload PATH", style="yellow")
            return
        path = Path(arg).expanduser()
        where = await self.runner.upload(path)
        self.pending_notes.append(upload_note(path, where))
        self.err.print(f"uploaded to {where}; the model is told with your next message", style="green")

    def _cmd_save(self, arg: str) -> None:
        from agent.cli import build
        from agent.sessions import SessionRecorder

        runner = self.runner
        if runner.recorder is None:
            meta = build.session_meta(runner.options, runner.agent.backend)
            runner.recorder = SessionRecorder(runner.sessions(), runner.agent, **meta)
        if not runner.agent.history and runner.recorder.session_id is None:
            self.err.print("nothing to save yet; it is saved as you talk from now on", style="yellow")
            return
        session_id = runner.recorder.save_all()
        if arg:
            runner.sessions().set_title(session_id, arg)
        self.err.print(f"saved as {session_id}; resume with `oss-agent chat --session {session_id}`", style="green")

    def _cmd_rate(self, arg: str) -> None:
        rating = arg.strip().lower()
        if rating not in ("good", "bad", "none"):
            self.err.print("usage: /rate good|bad (none clears it)", style="yellow")
            return
        recorder = self.runner.recorder
        if recorder is None or recorder.session_id is None:
            self.err.print("nothing saved to rate yet: talk first (or /save when saving is off)", style="yellow")
            return
        self.runner.sessions().rate(recorder.session_id, None if rating == "none" else rating)
        said = f"rated {rating}" if rating != "none" else "rating cleared"
        self.err.print(f"{said}: session {recorder.session_id}", style="green")

    def _cmd_sessions(self, arg: str) -> None:
        from agent.cli.manage import _when

        sessions = self.runner.sessions().list(limit=15)
        if not sessions:
            self.err.print("no saved sessions")
            return
        current = self.runner.recorder.session_id if self.runner.recorder else None
        table = Table(box=None, pad_edge=False, header_style="bold")
        for column in ("id", "updated", "turns", "title"):
            table.add_column(column)
        for s in sessions:
            mark = " *" if s.id == current else ""
            table.add_row(s.id + mark, _when(s.updated_at), str(s.turns), escape(s.title))
        self.err.print(table)

    async def _cmd_resume(self, arg: str) -> None:
        if not arg:
            self.err.print("usage: /resume ID (see /sessions)", style="yellow")
            return
        saved = await self.runner.switch_to(arg)
        self._banner(saved)

    async def _cmd_context(self, arg: str) -> None:
        from agent.history import apply_policy, describe, forced

        agent = self.runner.agent
        context = agent.context()
        used = context.prompt_tokens(agent.history)
        self.err.print(
            f"context: {used:,} of {context.window:,} tokens ({used / context.window:.0%}) "
            f"in {len(agent.history)} messages",
            markup=False,
            highlight=False,
        )
        self.err.print(f"history policy {describe(agent.history_policy, context)}", markup=False, highlight=False)
        preview = await apply_policy(forced(agent.history_policy), list(agent.history), context)
        would = (
            "nothing"
            if preview is None
            else (f"{preview.summary} ({used:,} → {context.prompt_tokens(preview.history):,} tokens)")
        )
        self.err.print(f"/compact would: {would}", markup=False, highlight=False)

    async def _cmd_compact(self, arg: str) -> None:
        from agent.history import forced

        agent = self.runner.agent
        event = await agent.compact(forced(agent.history_policy))
        if event is None:
            self.err.print("nothing to compact", style="yellow")
            return
        self.runner.record(event)
        self.runner.renderer.handle(event)

    def _cmd_raw(self, arg: str) -> None:
        from agent.harmony.render import render_text

        agent = self.runner.agent
        if not agent.last_prompt:
            self.err.print("nothing sent to the model yet", style="yellow")
            return
        self.err.rule("prompt", style="dim")
        self.out.print(render_text(agent.last_prompt), markup=False, highlight=False)
        self.err.rule("completion", style="dim")
        self.out.print(render_text(agent.last_completion), markup=False, highlight=False)

    # -- helpers ------------------------------------------------------------------

    async def _preflight(self) -> list[str]:
        """Say now, not at the first message, when the vocabulary or the model server is missing."""
        from agent.errors import VocabularyError
        from agent.harmony.encoding import get_encoding

        problems = []
        try:
            get_encoding()
        except VocabularyError as exc:
            problems.append(str(exc))
        probe = getattr(self.runner.agent.backend, "probe", None)
        if self.runner.options.backend in SERVER_BACKENDS and probe is not None:
            try:
                await asyncio.wait_for(probe(), PREFLIGHT_TIMEOUT_S)
            except OssAgentError as exc:
                problems.append(str(exc))
            except asyncio.TimeoutError:
                problems.append(
                    f"the {self.runner.options.backend} server did not answer within "
                    f"{PREFLIGHT_TIMEOUT_S:.0f} s; check that it is running"
                )
        return problems

    def _replay(self, saved: Any) -> None:
        """The last turns of a resumed session, the user's words and the answers, so the chat reads on."""
        from openai_harmony import Role
        from rich.markdown import Markdown

        from agent.harmony.parse import message_text

        turns: list[list[Any]] = []
        for message in saved.messages:
            if message.author.role == Role.USER:
                turns.append([message_text(message), None])
            elif turns and message.channel == "final" and not message.recipient:
                turns[-1][1] = message_text(message)
        shown = turns[-REPLAY_TURNS:]
        if (earlier := len(turns) - len(shown)) > 0:
            self.err.print(
                f"… {earlier} earlier turn{'s' if earlier != 1 else ''} (oss-agent sessions show {saved.info.id})",
                style="dim",
                markup=False,
            )
        for question, answer in shown:
            self.err.print(f"> {_clip(question)}", style="bold", markup=False, highlight=False)
            if answer:
                self.out.print(Markdown(_clip(answer)))

    def _banner(self, saved: Any) -> None:
        options, agent = self.runner.options, self.runner.agent
        where = options.backend
        if options.backend == "ollama":
            where = f"Ollama at {getattr(agent.backend, 'host', options.host)}"
        tools = ", ".join(t.name for t in agent.tools) or "no tools"
        model = build.model_name(options, agent.backend)
        self.err.print(
            f"[bold]oss-agent[/] · {escape(model)} via {escape(where)} · "
            f"effort {agent.reasoning_effort} · {escape(tools)}"
        )
        if saved is not None:
            info = saved.info
            turns = f"{info.turns} turn{'s' if info.turns != 1 else ''}"
            self.err.print(f"resumed session {info.id} ({turns}): {escape(info.title)}", style="green")
            if not self.runner.restored_exactly:
                self.err.print("note: the tools differ from when this session was saved", style="yellow")
            self._replay(saved)
        self.err.print("/help for commands · Ctrl-C stops a turn · Ctrl-D exits", style="dim")


@contextlib.contextmanager
def _no_echo() -> Iterator[None]:
    """While a turn runs, keys typed (and the ^C of Ctrl-C) are not echoed over the live display."""
    try:
        import termios
    except ImportError:  # Windows
        yield
        return
    try:
        fd = sys.stdin.fileno()
        before = termios.tcgetattr(fd)
        quiet = list(before)
        quiet[3] &= ~(termios.ECHO | getattr(termios, "ECHOCTL", 0))
        termios.tcsetattr(fd, termios.TCSANOW, quiet)
    except (termios.error, OSError, ValueError):  # not a terminal
        yield
        return
    try:
        yield
    finally:
        with contextlib.suppress(termios.error):
            termios.tcsetattr(fd, termios.TCSANOW, before)


def _clip(text: str, lines: int = 12) -> str:
    kept = text.strip().splitlines()
    return "\n".join(kept[:lines] + ([f"… ({len(kept) - lines} more lines)"] if len(kept) > lines else []))


def _print_traceback(exc: BaseException) -> None:
    import traceback

    traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)


def _prompt_session() -> Any:
    from prompt_toolkit import PromptSession
    from prompt_toolkit.history import FileHistory, InMemoryHistory
    from prompt_toolkit.key_binding import KeyBindings

    from agent.sessions import data_dir

    bindings = KeyBindings()

    @bindings.add("enter")
    def _send(event: Any) -> None:
        buffer = event.current_buffer
        if buffer.document.text_before_cursor.endswith("\\"):
            buffer.delete_before_cursor(1)
            buffer.insert_text("\n")
        else:
            buffer.validate_and_handle()

    @bindings.add("escape", "enter")
    def _newline(event: Any) -> None:
        event.current_buffer.insert_text("\n")

    history: Any
    try:
        folder = data_dir()
        folder.mkdir(parents=True, exist_ok=True)
        history = FileHistory(str(folder / "prompt_history"))
    except OSError:
        history = InMemoryHistory()
    return PromptSession(history=history, key_bindings=bindings, prompt_continuation="  ", enable_history_search=False)
