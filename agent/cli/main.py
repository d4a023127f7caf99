"""`oss-agent`: the command line. Parsing and error reporting; commands live in sibling modules."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

DESCRIPTION = "Chat with a local gpt-oss model, with tools, in your terminal."
EPILOG = """\
examples:
  oss-agent "Why is the sky blue?"           answer one prompt (as `oss-agent run`)
  oss-agent chat -t browser                  chat with web browsing
  oss-agent run "What is 2**100?" -t python  one answer on stdout
  oss-agent chat -c                          continue the latest session
  oss-agent doctor                           check the backend, the model, Docker
  oss-agent models                           what the server serves (sizes, context)

Settings come from ~/.config/oss-agent/config.toml (or --config / OSS_AGENT_CONFIG),
then environment variables (OSS_AGENT_MODEL, OLLAMA_HOST, ...), then flags.
Run `oss-agent COMMAND --help` for each command's options."""


def _general(nested: bool = False) -> argparse.ArgumentParser:
    """--config and --debug; `nested` parsers must not overwrite what their parent parsed."""
    parser = argparse.ArgumentParser(add_help=False)
    default = argparse.SUPPRESS if nested else None
    g = parser.add_argument_group("general")
    g.add_argument(
        "--config", metavar="PATH", default=default, help="config file (default ~/.config/oss-agent/config.toml)"
    )
    g.add_argument(
        "--debug", action="store_const", const=True, default=default, help="show tracebacks and the raw Harmony text"
    )
    return parser


def build_parser() -> argparse.ArgumentParser:
    from agent.cli.options import BACKENDS, EFFORTS

    common, nested = _general(), _general(nested=True)

    target = argparse.ArgumentParser(add_help=False)
    g = target.add_argument_group("model")
    g.add_argument("-m", "--model", help="model name (default gpt-oss:20b; llamacpp/openai: the server's only model)")
    g.add_argument("--host", help="Ollama URL (default $OLLAMA_HOST, else http://localhost:11434)")
    g.add_argument("--backend", choices=BACKENDS, help="model backend (default ollama)")
    g.add_argument(
        "--base-url",
        dest="base_url",
        metavar="URL",
        help="server URL for --backend llamacpp (default http://localhost:8080) or openai",
    )
    g.add_argument(
        "-t",
        "--tools",
        action="append",
        metavar="TOOL",
        help="browser, python, or a .py file of @tool functions (repeatable)",
    )
    g.add_argument(
        "--adapter", metavar="PATH", help="a LoRA adapter folder to load on the model (--backend transformers)"
    )
    g.add_argument(
        "--mcp",
        action="append",
        metavar="COMMAND",
        help='an MCP server to start: "npx -y @modelcontextprotocol/server-filesystem ./docs" (repeatable)',
    )
    g.add_argument(
        "--mcp-http",
        dest="mcp_http",
        action="append",
        metavar="URL",
        help="an MCP server to reach over streamable HTTP (repeatable)",
    )
    g.add_argument(
        "--mcp-config",
        dest="mcp_config",
        metavar="PATH",
        help='a JSON file of MCP servers in the "mcpServers" shape (as Claude Desktop writes)',
    )

    talk = argparse.ArgumentParser(add_help=False)
    g = talk.add_argument_group("conversation")
    g.add_argument("-s", "--instructions", metavar="TEXT", help="developer instructions for the model")
    g.add_argument("--effort", choices=EFFORTS, help="reasoning effort (default medium)")
    g.add_argument("-c", "--continue", dest="latest", action="store_true", help="continue the latest saved session")
    g.add_argument("--session", metavar="ID", help="continue the saved session ID (a unique prefix is enough)")
    g.add_argument("-y", "--yes", action="store_const", const=True, help="approve tool calls without asking")
    g.add_argument(
        "--max-steps", dest="max_steps", type=int, metavar="N", help="model calls allowed per turn (default 20)"
    )
    g.add_argument(
        "--num-ctx", dest="num_ctx", type=int, metavar="N", help="context window to ask Ollama for (default 32768)"
    )
    g.add_argument(
        "-o",
        "--option",
        dest="options",
        nargs=2,
        action="append",
        metavar=("KEY", "VALUE"),
        help="a model option: temperature, top_p, top_k, seed, num_ctx, max_tokens (repeatable)",
    )
    g.add_argument("--reasoning", choices=("show", "hide"), help="show or hide the chain of thought (default show)")
    g.add_argument("--no-save", dest="save", action="store_const", const=False, help="do not save this conversation")

    parser = argparse.ArgumentParser(
        prog="oss-agent", description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action=_VersionAction, nargs=0, help="show the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")

    p = sub.add_parser(
        "chat",
        parents=[target, talk, common],
        help="interactive chat (the default command)",
        description="Interactive chat. Type /help inside for the slash commands.",
    )
    p.set_defaults(handler=cmd_chat)

    p = sub.add_parser(
        "run",
        parents=[target, talk, common],
        help="answer one prompt and exit",
        description="Answer one prompt: the answer goes to stdout, reasoning and tool calls to stderr.",
    )
    p.add_argument("prompt", nargs="?", metavar="PROMPT", help="the prompt; read from stdin when '-' or omitted")
    p.add_argument("--json", action="store_true", help="print one JSON event per line instead of the answer")
    p.add_argument(
        "--schema",
        metavar="SPEC",
        help="answer with a JSON object: fields as 'name str, age int: in years', or a schema .json file",
    )
    p.add_argument(
        "-f",
        "--file",
        dest="files",
        action="append",
        metavar="FILE",
        help="a text file whose content goes into the prompt, before it (repeatable)",
    )
    p.add_argument(
        "-a",
        "--attach",
        action="append",
        metavar="FILE",
        help="a file to put into the python sandbox's /mnt/data (with -t python; repeatable)",
    )
    p.set_defaults(handler=cmd_run)

    p = sub.add_parser(
        "doctor",
        parents=[target, common],
        help="check that everything the configuration needs works",
        description="Check the backend, the model, raw Harmony mode, the vocabulary, Docker and the sandbox image.",
    )
    p.set_defaults(handler=cmd_doctor)

    p = sub.add_parser(
        "pull",
        parents=[common],
        help="download a model into Ollama",
        description="Download a model into Ollama, with a progress bar.",
    )
    p.add_argument("model", nargs="?", metavar="MODEL", help="model name (default: the configured model)")
    p.add_argument("--host", help="Ollama URL (default $OLLAMA_HOST, else http://localhost:11434)")
    p.set_defaults(handler=cmd_pull)

    p = sub.add_parser(
        "models",
        parents=[common],
        help="list the models the configured server serves",
        description="List the models the configured server serves, with sizes and context windows.",
    )
    p.add_argument("--host", help="Ollama URL (default $OLLAMA_HOST, else http://localhost:11434)")
    p.add_argument("--backend", choices=BACKENDS, help="model backend (default ollama)")
    p.add_argument("--base-url", dest="base_url", metavar="URL", help="server URL for --backend llamacpp or openai")
    p.set_defaults(handler=cmd_models)

    p = sub.add_parser(
        "sessions",
        parents=[common],
        help="list, show, export, rate or delete saved sessions",
        description="Saved conversations. Without a subcommand: list them.",
    )
    p.set_defaults(handler=cmd_sessions, action="list")
    p.add_argument("--json", action="store_true", help="list: one JSON object per session and line")
    actions = p.add_subparsers(dest="action", metavar="ACTION", title="actions")
    q = actions.add_parser("list", parents=[nested], help="list saved sessions (the default)")
    q.add_argument("-n", "--limit", type=int, default=20, help="how many to list (default 20)")
    q.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="one JSON object per session and line"
    )
    q = actions.add_parser("show", parents=[nested], help="print a session's conversation")
    q.add_argument("id", metavar="ID", help="session id or a unique prefix")
    q = actions.add_parser(
        "export",
        parents=[nested],
        help="a session as Markdown or JSON; sessions as fine-tuning data (sft)",
        description="Print one session as Markdown or JSON, or write sessions as supervised fine-tuning examples "
        "(--format sft: one JSONL line per answered turn, Harmony token ids with labels plus the chat form; "
        "a report goes to stderr).",
    )
    q.add_argument("ids", nargs="*", metavar="ID", help="session ids or unique prefixes")
    q.add_argument(
        "--format",
        dest="fmt",
        choices=("markdown", "json", "sft"),
        default="markdown",
        help="markdown (default), json, or sft",
    )
    q.add_argument("--all", dest="all_sessions", action="store_true", help="sft: every saved session")
    q.add_argument("--since", metavar="DATE", help="sft: only turns begun on or after DATE (YYYY-MM-DD, UTC)")
    q.add_argument("--rated", choices=("good", "bad"), help="sft: only sessions rated so (`sessions rate`, /rate)")
    q.add_argument(
        "--drop-failed",
        dest="drop_failed",
        action="store_true",
        help="sft: leave out turns in which a tool call failed",
    )
    q.add_argument(
        "--near-duplicates",
        dest="near",
        type=float,
        default=0.8,
        metavar="J",
        help="sft: drop examples whose user messages are this similar (Jaccard, default 0.8)",
    )
    q.add_argument(
        "--keep-duplicates",
        dest="keep_duplicates",
        action="store_true",
        help="sft: keep near duplicates (exact ones still go)",
    )
    q.add_argument("-o", "--output", metavar="FILE", help="sft: write to FILE (default stdout)")
    q = actions.add_parser("rate", parents=[nested], help="mark a session good or bad (for export --rated)")
    q.add_argument("id", metavar="ID", help="session id or a unique prefix")
    q.add_argument("rating", choices=("good", "bad", "none"), help="good, bad, or none to clear it")
    q = actions.add_parser("rm", parents=[nested], help="delete a session")
    q.add_argument("id", metavar="ID", help="session id or a unique prefix")
    p.set_defaults(limit=20)
    return parser


class _VersionAction(argparse.Action):
    """--version, reading the installed version only when asked."""

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        print(f"oss-agent {_version()}")
        parser.exit()


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("oss-agent")
    except PackageNotFoundError:
        return "unknown"


def _options(args: argparse.Namespace) -> Any:
    from agent.cli.model_options import parse_option
    from agent.cli.options import resolve

    flags = vars(args).copy()
    if flags.get("options"):  # [[KEY, VALUE], ...] from -o
        flags["options"] = dict(parse_option(key, value) for key, value in flags["options"])
    return resolve(flags, getattr(args, "config", None))


# -- commands -------------------------------------------------------------------


def cmd_chat(args: argparse.Namespace) -> int:
    import asyncio

    from agent.cli.repl import chat

    options = _options(args)
    return asyncio.run(chat(options, resume=args.session, latest=args.latest))


def cmd_run(args: argparse.Namespace) -> int:
    import asyncio

    from agent.cli.oneshot import read_prompt, run_once

    options = _options(args)
    prompt = read_prompt(args.prompt, args.files)
    return asyncio.run(
        run_once(
            options,
            prompt,
            json_output=args.json,
            resume=args.session,
            latest=args.latest,
            attach=args.attach,
            schema=args.schema,
        )
    )


def cmd_doctor(args: argparse.Namespace) -> int:
    import asyncio

    from agent.cli.doctor import doctor

    return asyncio.run(doctor(_options(args)))


def cmd_pull(args: argparse.Namespace) -> int:
    import asyncio

    from agent.cli.manage import pull

    options = _options(args)
    from agent.backends.ollama import resolve_model

    return asyncio.run(pull(args.model or resolve_model(options.model), options.host))


def cmd_models(args: argparse.Namespace) -> int:
    import asyncio

    from agent.cli.manage import list_models

    return asyncio.run(list_models(_options(args)))


def cmd_sessions(args: argparse.Namespace) -> int:
    from agent.cli import manage

    _options(args)  # a broken config file is reported here too
    if args.action == "show":
        return manage.show_session(args.id)
    if args.action == "export":
        if args.fmt == "sft":
            return manage.export_sft(args)
        return manage.export(args.ids, args.fmt)
    if args.action == "rate":
        return manage.rate_session(args.id, args.rating)
    if args.action == "rm":
        return manage.remove_session(args.id)
    return manage.list_sessions(args.limit, json_output=bool(getattr(args, "json", False)))


# -- entry point --------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns (and exits with) the exit status."""
    try:
        parser = build_parser()
    except ImportError as exc:  # a file of the user's hides one of our packages
        sys.exit(_report(exc, debug=False, json_output=False))
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in {"chat", "run", "doctor", "pull", "models", "sessions", "-h", "--help", "--version"}:
        # `oss-agent` alone, or with chat flags, starts a chat; with a prompt it answers it, as `llm "..."` does
        _, rest = parser.parse_known_args(["chat", *argv])
        argv = ["run" if any(not word.startswith("-") for word in rest) else "chat", *argv]
    args = parser.parse_args(argv)
    debug = bool(args.debug) or os.environ.get("OSS_AGENT_DEBUG", "") in ("1", "true", "yes", "on")
    json_output = bool(getattr(args, "json", False))
    try:
        code = args.handler(args)
    except KeyboardInterrupt:
        _error("interrupted", json_output, "KeyboardInterrupt")
        code = 130
    except Exception as exc:
        code = _report(exc, debug, json_output)
    sys.exit(code)


def _report(exc: BaseException, debug: bool, json_output: bool) -> int:
    """One clear line on stderr (and an error event with --json); the traceback only with --debug."""
    from agent import shadowing_error

    if isinstance(exc, ImportError) and (shadowed := shadowing_error()) is not None:
        _error(str(shadowed), json_output, type(shadowed).__name__)  # nothing of ours may import: say it plainly
        return 1
    from agent.cli.options import cli_words
    from agent.errors import ModelOutputError, OssAgentError

    expected = isinstance(exc, OssAgentError)
    if debug:
        import traceback

        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
        if isinstance(exc, ModelOutputError) and exc.raw:
            print(f"raw model output:\n{exc.raw}", file=sys.stderr)
    message = cli_words(str(exc) or type(exc).__name__)
    if not expected:
        message = f"unexpected {type(exc).__name__}: {message} (this is a bug; run with --debug for the traceback)"
    _error(message, json_output, type(exc).__name__)
    return 1 if expected else 2


def _error(message: str, json_output: bool, kind: str) -> None:
    import json  # not agent.cli.jsonl: this must work when the packages themselves fail to import

    line = " ".join(message.split())
    if json_output:
        print(
            json.dumps({"type": "error", "error": kind, "message": line}, ensure_ascii=False, separators=(",", ":")),
            flush=True,
        )
    red, reset = ("\x1b[31;1m", "\x1b[0m") if sys.stderr.isatty() and not os.environ.get("NO_COLOR") else ("", "")
    print(f"{red}error:{reset} {line}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
