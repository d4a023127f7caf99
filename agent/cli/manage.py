"""`oss-agent pull`, `oss-agent models` and `oss-agent sessions [list|show|export|rate|rm]`."""

from __future__ import annotations

import datetime
from typing import Any

from rich.markdown import Markdown
from rich.table import Table

from agent.cli.render import console
from agent.errors import ConfigurationError


async def pull(model: str, host: str | None) -> int:
    """Pull `model` into Ollama with a progress bar per layer."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    from agent.backends.ollama import pull_model, resolve_host

    err = console(stderr=True)
    err.print(f"pulling {model} into Ollama at {resolve_host(host)}")
    tasks: dict[str, Any] = {}
    after: list[str] = []  # statuses once the bars are drawn ("verifying", "success") go below them
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, console=err, transient=False) as progress:
        async for step in pull_model(model, host=host):
            if step.digest and step.total:
                key = step.digest
                if key not in tasks:
                    tasks[key] = progress.add_task(step.digest.removeprefix("sha256:")[:12], total=step.total)
                progress.update(tasks[key], completed=step.completed or 0)
            elif step.status and tasks:
                if step.status not in after:
                    after.append(step.status)
            elif step.status:
                progress.console.print(step.status, style="dim")
    for status in after:
        err.print(status, style="dim")
    err.print(f"{model} is ready")
    return 0


async def list_models(options: Any) -> int:
    """What the configured server serves: names, sizes and context windows."""
    out = console()
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("model", "size", "parameters", "context"):
        table.add_column(column, justify="left" if column == "model" else "right")
    if options.backend == "ollama":
        for row in await _ollama_models(options.host):
            table.add_row(*row)
    elif options.backend in ("llamacpp", "openai"):
        from agent.cli.build import make_backend

        backend = make_backend(options)
        try:
            await backend.probe()
        finally:
            await backend.aclose()
        table.add_row(backend.model or "(the served model)", "", "", f"{backend.context_window:,}")
    else:
        from agent.cli.build import model_name

        out.print(f"the {options.backend} backend runs in-process: {model_name(options)}")
        return 0
    out.print(table)
    return 0


async def _ollama_models(host: str | None) -> list[tuple[str, str, str, str]]:
    import httpx

    from agent.backends.ollama import resolve_host
    from agent.errors import BackendUnavailableError

    url = resolve_host(host)
    rows = []
    try:
        async with httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(30.0, connect=5.0)) as http:
            response = await http.get("/api/tags")
            response.raise_for_status()
            for model in response.json().get("models", []):
                name = str(model.get("name") or model.get("model"))
                details = model.get("details") or {}
                size = f"{model['size'] / 1e9:.1f} GB" if isinstance(model.get("size"), int) else ""
                shown = await http.post("/api/show", json={"model": name})
                info = shown.json().get("model_info", {}) if shown.status_code == 200 else {}
                context = next((v for k, v in info.items() if k.endswith(".context_length")), None)
                rows.append(
                    (
                        name,
                        size,
                        str(details.get("parameter_size", "")),
                        f"{context:,}" if isinstance(context, int) else "",
                    )
                )
    except (httpx.HTTPError, ValueError) as exc:
        raise BackendUnavailableError(
            f"cannot list the models of Ollama at {url} ({type(exc).__name__}); "
            "start it with `ollama serve`, or set OLLAMA_HOST"
        ) from None
    return rows


def list_sessions(limit: int, json_output: bool = False) -> int:
    import json
    import sys

    from agent.sessions import SessionStore

    store = SessionStore()
    sessions = store.list(limit=limit) if store.path.exists() else []
    out = console()
    if json_output:  # one object per line, as `llm logs --json` and jq like it
        for s in sessions:
            sys.stdout.write(
                json.dumps(
                    {
                        "id": s.id,
                        "title": s.title,
                        "turns": s.turns,
                        "model": s.settings.get("model"),
                        "backend": s.settings.get("backend"),
                        "rating": s.rating,
                        "created_at": _iso(s.created_at),
                        "updated_at": _iso(s.updated_at),
                    },
                    ensure_ascii=False,
                )
                + "\n"
            )
        return 0
    if not sessions:
        console(stderr=True).print("no saved sessions yet; `oss-agent chat` saves one as you talk")
        return 0
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("id", "updated", "turns", "model", "rated", "title"):
        table.add_column(column, no_wrap=column != "title", justify="right" if column == "turns" else "left")
    for s in sessions:
        table.add_row(
            s.id, _when(s.updated_at), str(s.turns), str(s.settings.get("model", "")), s.rating or "", s.title
        )
    out.print(table)
    return 0


def show_session(session_id: str) -> int:
    from openai_harmony import Role

    from agent.harmony.parse import message_text
    from agent.sessions import SessionStore

    saved = SessionStore().load(session_id)
    out = console()
    info, settings = saved.info, saved.settings
    tools = ", ".join(settings.get("tools") or []) or "none"
    out.print(
        f"[bold]{info.title}[/]  [dim]{info.id} · {_when(info.created_at)} · {settings.get('model', '?')} · "
        f"effort {settings.get('reasoning_effort', '?')} · tools: {tools}[/]"
    )
    for message in saved.messages:
        role, text = message.author.role, message_text(message)
        if role == Role.USER:
            out.print()
            out.print("[bold green]› [/]" + _escape(text))
        elif role == Role.TOOL:
            out.print(f"[blue]← {message.author.name}[/] [dim]{_escape(_clip(text))}[/]")
        elif message.recipient:
            out.print(f"[blue]→ {message.recipient}[/] [dim]{_escape(_clip(text))}[/]")
        elif message.channel == "analysis":
            out.print(_escape(text), style="dim")
        elif message.channel == "final":
            out.print(Markdown(text) if out.is_terminal else _escape(text))  # piped: the text as written
        else:
            out.print(_escape(text), style="italic")
    return 0


def export(session_ids: list[str], fmt: str) -> int:
    import sys

    from agent.cli.export import export_session
    from agent.sessions import SessionStore

    if len(session_ids) != 1:
        raise ConfigurationError(f"--format {fmt} exports one session; give one id (--format sft takes several)")
    sys.stdout.write(export_session(SessionStore().load(session_ids[0]), fmt))
    return 0


def export_sft(args: Any) -> int:
    """`sessions export --format sft`: the JSONL on stdout or in -o FILE, the report on stderr."""
    import sys

    from agent.sessions import SessionStore
    from agent.training import export_sft as export

    report = export(
        SessionStore(),
        args.ids,
        out=args.output or sys.stdout,
        all_sessions=args.all_sessions,
        since=args.since,
        rated=args.rated,
        drop_failed=args.drop_failed,
        near_duplicates=None if args.keep_duplicates else args.near,
    )
    err = console(stderr=True)
    for line in report.lines():
        err.print(line, markup=False, highlight=False)
    if not report.examples:
        err.print("nothing was exported: only turns that ended in an answer become examples", style="yellow")
    return 0


def rate_session(session_id: str, rating: str) -> int:
    from agent.sessions import SessionStore

    full = SessionStore().rate(session_id, None if rating == "none" else rating)
    console(stderr=True).print(f"session {full} rated {rating}" if rating != "none" else f"session {full} unrated")
    return 0


def remove_session(session_id: str) -> int:
    from agent.sessions import SessionStore

    store = SessionStore()
    full = store.resolve(session_id)
    store.delete(full)
    console(stderr=True).print(f"deleted session {full}")
    return 0


def _when(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M")


def _clip(text: str, limit: int = 200) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _iso(timestamp: float) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).isoformat(timespec="seconds")
