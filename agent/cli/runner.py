"""What `chat` and `run` share: building the agent, resuming a session, running a turn."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.cli import build
from agent.cli.options import Options
from agent.cli.render import TurnRenderer
from agent.errors import SessionError

if TYPE_CHECKING:
    from rich.console import Console

    from agent.events import RunResult
    from agent.sessions import SavedSession, SessionRecorder, SessionStore
    from tools.base import ToolCall

Ask = Callable[[str], Awaitable[str]]  # shows a question, returns the user's answer


def upload_note(path: Path, where: str) -> str:
    """What the model is told about an uploaded file, with the user's next message."""
    return f"[I uploaded {path.name} to {where}]"


class Approvals:
    """Tool-call approval: yes / no / always (for this session, per tool)."""

    def __init__(self, approve_all: bool, ask: Ask | None, before_asking: Callable[[], None] = lambda: None) -> None:
        self.approve_all = approve_all
        self.ask = ask
        self.before_asking = before_asking
        self.after_approving: Callable[[ToolCall], None] = lambda call: None
        self.show_call: Callable[[ToolCall], None] = lambda call: None  # shows what would run, before asking
        self.always: set[str] = set()
        self.declined_without_asking: list[str] = []
        self._asked: list[tuple[ToolCall, float, bool]] = []  # (call, seconds spent asking, approved)

    async def __call__(self, call: ToolCall) -> bool:
        if self.approve_all or call.name in self.always:
            return True
        if self.ask is None:  # nobody to ask: decline, and say so at the end
            self.declined_without_asking.append(call.recipient)
            self._asked.append((call, 0.0, False))
            return False
        self.before_asking()
        started = time.perf_counter()
        approved = await self._question(call)
        self._asked.append((call, time.perf_counter() - started, approved))
        if approved:
            self.after_approving(call)
        return approved

    async def _question(self, call: ToolCall) -> bool:
        assert self.ask is not None
        self.show_call(call)  # the code or arguments in a panel; the question on a line of its own
        while True:
            question = f"Run {call.recipient}? [y]es / [n]o / [a]lways: "
            answer = (await self.ask(question)).strip().lower()
            if answer in ("y", "yes"):
                return True
            if answer in ("n", "no", ""):
                return False
            if answer in ("a", "always"):
                self.always.add(call.name)
                return True

    def outcome(self, call: ToolCall) -> tuple[float, bool]:
        """(seconds spent asking, declined) for a call, forgotten once read; (0, False) if nobody was asked."""
        for index, (asked, waited, approved) in enumerate(self._asked):
            if asked is call or (asked.recipient, asked.arguments) == (call.recipient, call.arguments):
                del self._asked[index]
                return waited, not approved
        return 0.0, False


class Runner:
    """An agent with its renderer and session recorder."""

    def __init__(self, options: Options, out: Console, err: Console, ask: Ask | None = None) -> None:
        self.options = options
        self.out, self.err = out, err
        self.ask = ask
        self.store: SessionStore | None = None
        self.recorder: SessionRecorder | None = None
        self.agent: Any = None
        self.restored_exactly = True
        self.approvals = Approvals(options.yes, ask)
        self.renderer = TurnRenderer(out, err, show_reasoning=options.reasoning == "show")
        self.approvals.before_asking = self.renderer.pause
        self.approvals.show_call = self.renderer.approval
        self.approvals.after_approving = self.renderer.tool_running
        self.renderer.approval_of = self.approvals.outcome

    # -- set-up -------------------------------------------------------------------

    def sessions(self) -> SessionStore:
        if self.store is None:
            from agent.sessions import SessionStore

            self.store = SessionStore()
        return self.store

    def start(self, resume: str | None = None, latest: bool = False) -> SavedSession | None:
        """Build the agent; with `resume` (an id) or `latest`, continue a saved session."""
        saved = None
        if resume or latest:
            store = self.sessions()
            if resume:
                saved = store.load(resume)
            else:
                info = store.latest()
                if info is None:
                    from agent.errors import SessionError

                    raise SessionError("there is no saved session to continue; start one with `oss-agent chat`")
                saved = store.load(info.id)
            self.options = build.options_for_session(self.options, saved)
        self._make_agent(saved)
        return saved

    def _make_agent(self, saved: SavedSession | None) -> None:
        from agent.harmony.render import render_text
        from agent.sessions import SessionRecorder, restore

        date = saved.settings.get("date") if saved else None
        self.agent = build.make_agent(self.options, approve=self.approvals, date=date)
        if saved is not None:
            self.restored_exactly = restore(self.agent, saved)
        browser = self.agent.tools.builtins.get("browser")
        self.renderer.cite = getattr(browser, "render_citations", None)
        self.renderer.context_window = lambda: getattr(self.agent.backend, "context_window", None)
        self.renderer.raw_text = render_text
        if self.options.save:
            self.recorder = SessionRecorder(
                self.sessions(),
                self.agent,
                saved.info.id if saved else None,
                **build.session_meta(self.options, self.agent.backend),
            )

    async def switch_to(self, session_id: str) -> SavedSession:
        """Load another saved session in place of the current conversation."""
        saved = self.sessions().load(session_id)
        old = self.agent
        self.options = build.options_for_session(self.options, saved)
        self._make_agent(saved)
        if self.recorder is None:  # saving was off: resuming a saved session turns it on
            from agent.sessions import SessionRecorder

            meta = build.session_meta(self.options, self.agent.backend)
            self.recorder = SessionRecorder(self.sessions(), self.agent, saved.info.id, **meta)
        await old.aclose()
        return saved

    async def upload(self, path: Path) -> str:
        """Copy a file into the python sandbox's /mnt/data; returns where it is (as the model sees it)."""
        from agent.errors import ConfigurationError

        tool = self.agent.tools.builtins.get("python")
        if tool is None:
            raise ConfigurationError("uploads go into the python sandbox: enable it with -t python")
        sandbox = getattr(tool, "sandbox", None)
        if sandbox is None or not hasattr(sandbox, "upload"):
            raise ConfigurationError("this python tool does not accept uploads")
        if not path.is_file():
            raise ConfigurationError(f"no such file: {path}")
        return str(await asyncio.to_thread(sandbox.upload, path))

    async def use_options(self, options: Options, *, check: bool = False) -> None:
        """Swap in a backend made from `options` (after /set or /model); with `check`, it must answer first."""
        backend = build.make_backend(options)
        if check and options.backend in ("ollama", "llamacpp", "openai"):
            try:
                await backend.probe()
            except BaseException:
                await backend.aclose()
                raise
        old, self.agent.backend, self.options = self.agent.backend, backend, options
        if self.recorder is not None:
            self.recorder.meta.update(build.session_meta(options, backend))
            self._saving(lambda recorder: recorder.settings_changed())
        await old.aclose()

    # -- turns -------------------------------------------------------------------

    async def turn(
        self, prompt: str, on_event: Callable[[Any], None] | None = None, output_type: Any = None
    ) -> RunResult | None:
        """Run one user turn, rendering (or handing over) each event; returns the result."""
        from agent.events import RunFinished, StepFinished

        handle = on_event or self.renderer.handle
        result = None
        await self._learn_model()
        self.renderer.begin()
        self._saving(lambda recorder: recorder.begin_turn(prompt))  # a crash from here on keeps the prompt
        stream = (
            self.agent.astream(prompt) if output_type is None else self.agent.astream(prompt, output_type=output_type)
        )
        try:
            async with contextlib.aclosing(stream):
                async for event in stream:
                    self.record(event)
                    if self.options.debug and isinstance(event, StepFinished) and on_event is None:
                        self.renderer.debug_raw(
                            self.agent.last_prompt, self.agent.last_completion, event.shared_prefix_tokens
                        )
                    handle(event)
                    if isinstance(event, RunFinished):
                        result = event.result
        except (asyncio.CancelledError, KeyboardInterrupt):
            raise  # interrupted: the prompt stays in the conversation and in the session
        except BaseException:
            self._saving(lambda recorder: recorder.abort_turn())  # a failure before the model: take it back
            raise
        finally:
            self.renderer.close()
        if self.approvals.declined_without_asking:
            names = ", ".join(sorted(set(self.approvals.declined_without_asking)))
            self.approvals.declined_without_asking.clear()
            self.err.print(f"note: declined {names} (it needs approval; pass --yes to allow it)", style="yellow")
        return result

    async def _learn_model(self) -> None:
        """A server names its model when asked (once); the session then records that name."""
        probe = getattr(self.agent.backend, "probe", None)
        if probe is None or self.options.backend not in ("llamacpp", "openai"):
            return
        await probe()
        if self.recorder is not None:
            name = build.known_model(self.options, self.agent.backend)
            if self.recorder.meta.get("model") != name:
                self.recorder.meta["model"] = name
                if self.recorder.session_id is not None:
                    self._saving(lambda recorder: recorder.settings_changed())

    def record(self, event: Any) -> None:
        """Store what a session keeps of an event (`SessionRecorder.record`)."""
        if getattr(event, "type", None) in ("message", "compacted", "tool_result", "step"):
            self._saving(lambda recorder: recorder.record(event))

    def _saving(self, write: Callable[[SessionRecorder], None]) -> None:
        """Run one session write; when storage fails, say why once and go on without saving."""
        if self.recorder is None:
            return
        try:
            write(self.recorder)
        except (SessionError, TypeError, ValueError) as exc:  # the conversation goes on; saving stops
            self.err.print(f"warning: the session is no longer saved: {exc}", style="yellow")
            self.recorder = None

    async def aclose(self) -> None:
        if self.agent is not None:
            await self.agent.aclose()
        if self.store is not None:
            self.store.close()
