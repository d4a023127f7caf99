"""`oss-agent doctor`: check what the current configuration needs, one line each with a fix."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from typing import Any

from rich.markup import escape

from agent.cli.options import Options
from agent.cli.render import console

RAW_TEST_TIMEOUT_S = 120.0
SEARCH_TIMEOUT_S = 20.0
VOCABULARY_URL = "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken"
VOCABULARY_FIX = (
    f"on a machine with network, download {VOCABULARY_URL} into a folder, copy that folder here "
    "and set TIKTOKEN_ENCODINGS_BASE to it"
)
SERVER_BACKENDS = {"llamacpp": "llama-server", "openai": "completions server"}


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    needed: bool = True


async def doctor(options: Options) -> int:
    """Print every check; exit status 1 if something the configuration needs is missing."""
    out = console()
    checks: list[Check] = []

    def report(check: Check) -> None:
        checks.append(check)
        if check.ok:
            mark, style = "✓", "green"
        else:
            mark, style = ("✗", "red") if check.needed else ("!", "yellow")
        line = f"[{style}]{mark}[/] [bold]{check.name}[/]: {escape(check.detail)}"
        if not check.ok and check.fix:
            line += f"\n    [{style}]→[/] {escape(check.fix)}"
        if not check.ok and not check.needed:
            line += " [dim](not needed by the current configuration)[/]"
        out.print(line)

    report(check_vocabulary())
    uses_ollama = options.backend == "ollama"
    if uses_ollama:
        server = await check_ollama(options)
        report(server)
        if server.ok:
            model = await check_model(options)
            report(model)
            if model.ok:
                report(await check_raw_mode(options))
    elif options.backend in SERVER_BACKENDS:
        for check in await check_server(options):
            report(check)
    else:
        report(Check("backend", True, f"{options.backend} (runs in-process; server checks skipped)"))
    needs_docker = "python" in options.tools
    docker = await asyncio.to_thread(check_docker, needs_docker)
    report(docker)
    if docker.ok:
        report(await asyncio.to_thread(check_image, needs_docker))
    if "browser" in options.tools:
        report(await check_search())
    for check in await check_mcp_servers(options):
        report(check)
    failed = [c for c in checks if not c.ok and c.needed]
    out.print()
    if failed:
        out.print(f"[red]{len(failed)} problem{'s' if len(failed) > 1 else ''} to fix[/]")
        return 1
    out.print("[green]all set[/]")
    return 0


def check_vocabulary() -> Check:
    from agent.errors import VocabularyError
    from agent.harmony.encoding import get_encoding

    try:
        get_encoding()
    except VocabularyError as exc:
        return Check("Harmony vocabulary", False, str(exc), VOCABULARY_FIX)
    where = os.environ.get("TIKTOKEN_ENCODINGS_BASE") or "the tiktoken cache"
    return Check("Harmony vocabulary", True, f"o200k_base loaded from {where}")


async def check_search() -> Check:
    """The browser's search backend answers one query (it needs the network, or a local SearXNG)."""
    from agent.errors import OssAgentError
    from tools.browser.search import SearchError, make_search

    fix = (
        "the browser needs network access to search; on a machine without it, run SearXNG locally and set "
        "OSS_AGENT_SEARCH=searxng and OSS_AGENT_SEARXNG_URL"
    )
    try:
        backend = make_search()
    except OssAgentError as exc:
        return Check("browser search", False, _first(str(exc)), fix)
    name = type(backend).__name__.removesuffix("Search").lower()
    try:
        hits = await asyncio.wait_for(backend.search("gpt-oss", 1), SEARCH_TIMEOUT_S)
    except (SearchError, asyncio.TimeoutError) as exc:
        detail = _first(str(exc)) or f"no answer within {SEARCH_TIMEOUT_S:.0f} s"
        return Check("browser search", False, f"{name}: {detail}", fix)
    finally:
        await backend.aclose()
    return Check("browser search", True, f"{name} answered ({len(hits)} result{'s' if len(hits) != 1 else ''})")


async def check_ollama(options: Options) -> Check:
    import httpx

    from agent.backends.ollama import resolve_host

    url = resolve_host(options.host)
    try:
        async with httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(10.0, connect=5.0)) as http:
            r = await http.get("/api/version")
            r.raise_for_status()
            version = str(r.json().get("version", "unknown"))
    except (httpx.HTTPError, ValueError) as exc:
        return Check(
            "Ollama",
            False,
            f"no Ollama server answers at {url} ({type(exc).__name__})",
            "start it with `ollama serve`, or point --host / OLLAMA_HOST at it",
        )
    detail = f"version {version} at {url}"
    if _older(version, (0, 12, 6)):
        return Check("Ollama", True, detail + " (older than 0.12.6: prompts are length-checked locally only)")
    return Check("Ollama", True, detail)


async def check_model(options: Options) -> Check:
    from agent.backends.ollama import OllamaBackend
    from agent.errors import OssAgentError

    backend = OllamaBackend(model=options.model, host=options.host, num_ctx=options.num_ctx)
    try:
        info = await backend.probe()
    except OssAgentError as exc:
        return Check("model", False, str(exc).split(";")[0], f"run `oss-agent pull {backend.model}`")
    finally:
        await backend.aclose()
    context = f", trained context {info.context_length:,}" if info.context_length else ""
    return Check("model", True, f"{backend.model} is pulled{context}")


async def check_raw_mode(options: Options) -> Check:
    """Send a tiny raw Harmony prompt to Ollama and parse the answer."""
    from agent.backends.ollama import OllamaBackend

    backend = OllamaBackend(model=options.model, host=options.host, num_ctx=options.num_ctx, max_completion_tokens=256)
    return await check_round_trip(backend, "update Ollama; raw generation must return Harmony markers for gpt-oss")


async def check_server(options: Options) -> list[Check]:
    """llama-server or an OpenAI-compatible server: reachable, model served, context, raw Harmony round trip."""
    from agent.cli.build import make_backend
    from agent.errors import BackendUnavailableError, ModelNotFoundError, OssAgentError

    label = SERVER_BACKENDS[options.backend]
    backend = make_backend(options)
    where = getattr(backend, "base_url", "")
    try:
        await backend.probe()
    except BackendUnavailableError as exc:
        return [Check(label, False, f"no {label} answers at {where}", _fix(str(exc)))]
    except ModelNotFoundError as exc:
        return [Check(label, True, f"answers at {where}"), Check("model", False, _first(str(exc)), _fix(str(exc)))]
    except OssAgentError as exc:
        return [Check(label, False, _first(str(exc)), _fix(str(exc)))]
    finally:
        await backend.aclose()
    checks = [
        Check(label, True, f"answers at {where}"),
        Check("model", True, f"{backend.model or 'the served model'}, context {backend.context_window:,} tokens"),
    ]
    checks.append(
        await check_round_trip(
            make_backend(options, max_completion_tokens=256), "check the server log; the model must be gpt-oss"
        )
    )
    return checks


def _first(message: str) -> str:
    return message.split("; ")[0]


def _fix(message: str) -> str:
    return message.split("; ", 1)[1] if "; " in message else ""


async def check_round_trip(backend: Any, fix: str) -> Check:
    """Send a tiny raw Harmony prompt through the backend and parse the answer."""
    from agent.errors import OssAgentError
    from agent.loop import Agent

    agent = Agent(backend=backend, reasoning_effort="low", max_steps=2)
    started = time.perf_counter()
    try:
        result = await asyncio.wait_for(agent.arun("Say OK"), RAW_TEST_TIMEOUT_S)
    except asyncio.TimeoutError:
        return Check(
            "raw Harmony mode",
            False,
            f"no answer within {RAW_TEST_TIMEOUT_S:.0f} s",
            "the model may still be loading; try again",
        )
    except OssAgentError as exc:
        return Check("raw Harmony mode", False, " ".join(str(exc).split())[:200], fix)
    finally:
        await agent.aclose()
    from agent.harmony.encoding import get_encoding

    if not any(get_encoding().is_special_token(token) for token in agent.last_completion):
        return Check(
            "raw Harmony mode",
            False,
            "the answer holds no Harmony markers (the server strips special tokens, or does not take the prompt raw)",
            fix,
        )
    answer = " ".join(result.output.split())[:40]
    return Check("raw Harmony mode", True, f"answered {answer!r} in {time.perf_counter() - started:.1f} s")


async def check_mcp_servers(options: Options) -> list[Check]:
    """Each configured MCP server starts and lists its tools (then it is stopped again)."""
    from agent.cli.build import mcp_servers
    from agent.errors import OssAgentError

    checks = []
    for server in mcp_servers(options):
        name = f"MCP {server.name}"
        try:
            tools = await server.list_tools()
        except OssAgentError as exc:
            checks.append(Check(name, False, _first(str(exc)), "check the command or URL and that it runs by itself"))
            continue
        finally:
            await server.aclose()
        names = ", ".join(t.name for t in tools[:8]) + (", …" if len(tools) > 8 else "")
        checks.append(Check(name, True, f"{len(tools)} tool{'s' if len(tools) != 1 else ''}: {names or 'none'}"))
    return checks


def check_docker(needed: bool) -> Check:
    try:
        import docker

        client = docker.from_env(timeout=5)
        version = client.version().get("Version", "unknown")
        client.close()
    except Exception as exc:  # no socket, daemon down, permission denied
        return Check(
            "Docker",
            False,
            f"no Docker daemon answers ({type(exc).__name__})",
            "start Docker (and add your user to the docker group) to use -t python",
            needed,
        )
    return Check("Docker", True, f"daemon version {version}", needed=needed)


def check_image(needed: bool) -> Check:
    try:
        import docker
        import docker.errors

        from sandbox import DEFAULT_IMAGE, IMAGE_ENV
    except Exception as exc:
        return Check("sandbox image", False, f"the sandbox is not available ({exc})", "reinstall oss-agent", needed)
    from sandbox.image import find_built_image

    client = docker.from_env(timeout=5)
    image = os.environ.get(IMAGE_ENV) or find_built_image(client) or DEFAULT_IMAGE
    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        return Check(
            "sandbox image",
            False,
            f"{image} is not present",
            f"run `docker pull {image}`, or build one offline with `python -m sandbox.image` "
            "(the sandbox finds it by itself)",
            needed,
        )
    except Exception as exc:
        return Check("sandbox image", False, f"cannot inspect {image} ({type(exc).__name__})", "check Docker", needed)
    finally:
        client.close()
    return Check("sandbox image", True, f"{image} is present", needed=needed)


def _older(version: str, minimum: tuple[int, ...]) -> bool:
    try:
        parts = tuple(int(p) for p in version.split("-")[0].split(".")[:3])
    except ValueError:
        return False
    return parts < minimum
