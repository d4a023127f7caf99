"""Saved conversations in a local SQLite database.

One row per session (the settings needed to render the same prompt again) and
one row per Harmony message, written as each message completes; the user's
message is written when the turn starts, so a crash before the model answers
loses nothing. The database runs in WAL mode with a busy timeout, so several
processes can write at once. Every storage failure (a damaged file, a full
disk, no permission, a lock held too long) is a `SessionError` that names the
file and says what to do.

    store = SessionStore()                 # <data dir>/sessions.db
    recorder = SessionRecorder(store, agent, model="gpt-oss:20b", backend="ollama", tools=["browser"])
    recorder.begin_turn("hi")              # stores the user's message now
    async for event in agent.astream("hi"):
        recorder.record(event)             # stores each message as it completes
    saved = store.load(recorder.session_id)
    restore(agent2, saved)                 # same history, same settings, same rendered prompt
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import sqlite3
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.errors import SessionError

if TYPE_CHECKING:
    from openai_harmony import Message

    from agent.harmony.render import PromptSettings
    from agent.loop import Agent

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    title TEXT,
    turns INTEGER NOT NULL DEFAULT 0,
    settings TEXT NOT NULL,
    rating TEXT
);
CREATE TABLE IF NOT EXISTS messages (
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    created_at REAL NOT NULL,
    role TEXT NOT NULL,
    channel TEXT,
    body TEXT NOT NULL,
    error TEXT,
    step INTEGER,
    PRIMARY KEY (session_id, seq)
);
CREATE TABLE IF NOT EXISTS compactions (
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    seq_after INTEGER NOT NULL,
    created_at REAL NOT NULL,
    summary TEXT NOT NULL,
    history TEXT NOT NULL,
    PRIMARY KEY (session_id, seq_after)
);
CREATE TABLE IF NOT EXISTS prompts (
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    seq_from INTEGER NOT NULL,
    settings TEXT NOT NULL,
    PRIMARY KEY (session_id, seq_from)
);
CREATE INDEX IF NOT EXISTS sessions_by_update ON sessions(updated_at);
"""
# Columns added since the first version; older databases get them on open.
_ADDED_COLUMNS = (("sessions", "rating", "TEXT"), ("messages", "error", "TEXT"), ("messages", "step", "INTEGER"))
RATINGS = ("good", "bad")
TITLE_CHARS = 60


def storage_error(path: Path, exc: BaseException) -> SessionError:
    """A one-line `SessionError` for a failure of the database at `path`: what happened, what to do."""
    text = str(exc) or type(exc).__name__
    lower = text.lower()
    if "not a database" in lower or "malformed" in lower or "corrupt" in lower:
        return SessionError(
            f"the sessions database {path} is damaged ({text}); move it aside "
            f"(e.g. rename it to {path.name}.damaged) and a new one is started"
        )
    if "full" in lower or getattr(exc, "errno", None) == 28:
        return SessionError(
            f"cannot write the sessions database {path}: the disk is full; free some space, "
            "or set OSS_AGENT_HOME to a directory on another disk"
        )
    if "locked" in lower or "busy" in lower:
        return SessionError(
            f"the sessions database {path} is locked by another process ({text}); "
            "close other oss-agent processes or try again"
        )
    if isinstance(exc, OSError) or any(w in lower for w in ("readonly", "read-only", "permission", "unable to open")):
        return SessionError(
            f"cannot write the sessions database {path} ({text}); check that this user may "
            "write there, or set OSS_AGENT_HOME to a writable directory"
        )
    return SessionError(f"the sessions database {path} failed ({text}); if this persists, move the file aside")


def _storage(method: Any) -> Any:
    """Turn SQLite and file-system errors of a `SessionStore` method into `SessionError`."""

    @functools.wraps(method)
    def guarded(self: SessionStore, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except (sqlite3.Error, OSError) as exc:
            raise storage_error(self.path, exc) from None

    return guarded


def data_dir() -> Path:
    """Where oss-agent keeps its data: `OSS_AGENT_HOME`, else the platform's user data dir."""
    if home := os.environ.get("OSS_AGENT_HOME"):
        return Path(home).expanduser()
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
    else:
        base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "oss-agent"


def default_path() -> Path:
    return data_dir() / "sessions.db"


@dataclass(frozen=True)
class SessionInfo:
    id: str
    created_at: float
    updated_at: float
    title: str
    turns: int
    settings: dict[str, Any]
    rating: str | None = None  # "good", "bad", or not rated


@dataclass
class SavedSession:
    info: SessionInfo
    messages: list[Message] = field(default_factory=list)  # every message, as it happened
    # What the prompt holds: `messages`, or after a compaction its history plus what came after it.
    prompt_history: list[Message] | None = None
    seqs: list[int] = field(default_factory=list)  # each message's position in the session
    times: list[float] = field(default_factory=list)  # when each message was stored (Unix time)
    steps: list[int | None] = field(default_factory=list)  # the sampling step of the turn that wrote each message
    errors: dict[int, str] = field(default_factory=dict)  # position -> why it failed (a tool error, a rejected answer)
    compactions: list[tuple[int, list[Message]]] = field(default_factory=list)  # (from position, prompt history)
    prompts: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # (from position, PromptSettings data)

    @property
    def settings(self) -> dict[str, Any]:
        return self.info.settings


class SessionStore:
    """The sessions database. Every write is its own short transaction."""

    def __init__(self, path: str | Path | None = None, *, busy_timeout: float = 30.0) -> None:
        self.path = Path(path) if path is not None else default_path()
        self._busy_timeout = busy_timeout
        self._db: sqlite3.Connection | None = None

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(self.path, timeout=self._busy_timeout, isolation_level=None)
            except (OSError, sqlite3.Error) as exc:
                raise storage_error(self.path, exc) from None
            try:
                db.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
                db.execute("PRAGMA journal_mode = WAL")
                db.execute("PRAGMA foreign_keys = ON")
                db.execute("PRAGMA synchronous = NORMAL")
                with _write(db):
                    _create(db)
            except sqlite3.Error as exc:
                db.close()
                raise storage_error(self.path, exc) from None
            self._db = db
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    # -- writing ------------------------------------------------------------

    @_storage
    def create(self, settings: dict[str, Any], title: str | None = None) -> str:
        """Add an empty session and return its id."""
        session_id = uuid.uuid4().hex[:12]
        now = time.time()
        db = self._conn()
        with _write(db):
            db.execute(
                "INSERT INTO sessions (id, created_at, updated_at, title, settings) VALUES (?, ?, ?, ?, ?)",
                (session_id, now, now, title, json.dumps(settings)),
            )
        return session_id

    @_storage
    def append(self, session_id: str, message: Message, error: str | None = None, step: int | None = None) -> int:
        """Store one message at the end of the session; returns its position."""
        from openai_harmony import Role

        body = message_to_json(message)
        is_user = message.author.role == Role.USER
        title = _title(message) if is_user else None
        now = time.time()
        db = self._conn()
        with _write(db):
            updated = db.execute(
                "UPDATE sessions SET updated_at = ?, turns = turns + ?, title = COALESCE(title, ?) WHERE id = ?",
                (now, int(is_user), title, session_id),
            )
            if updated.rowcount == 0:
                raise SessionError(f"no saved session {session_id!r}")
            row = db.execute("SELECT COALESCE(MAX(seq), -1) + 1 FROM messages WHERE session_id = ?", (session_id,))
            seq = row.fetchone()[0]
            db.execute(
                "INSERT INTO messages (session_id, seq, created_at, role, channel, body, error, step) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (session_id, seq, now, message.author.role.value, message.channel, body, error, step),
            )
        return seq

    @_storage
    def add_compaction(self, session_id: str, summary: str, history: list[Message]) -> None:
        """Record that, from the next message on, the prompt holds `history` instead of the messages so far."""
        db = self._conn()
        with _write(db):
            row = db.execute("SELECT COALESCE(MAX(seq), -1) + 1 FROM messages WHERE session_id = ?", (session_id,))
            db.execute(
                "INSERT OR REPLACE INTO compactions (session_id, seq_after, created_at, summary, history) "
                "VALUES (?, ?, ?, ?, ?)",
                (
                    session_id,
                    row.fetchone()[0],
                    time.time(),
                    summary,
                    json.dumps([json.loads(message_to_json(m)) for m in history], ensure_ascii=False),
                ),
            )

    @_storage
    def add_prompt_settings(self, session_id: str, seq_from: int, settings: dict[str, Any]) -> None:
        """Record the prompt settings (`PromptSettings.to_dict()`) in force from message `seq_from` on."""
        db = self._conn()
        with _write(db):
            db.execute(
                "INSERT OR REPLACE INTO prompts (session_id, seq_from, settings) VALUES (?, ?, ?)",
                (session_id, seq_from, json.dumps(settings, ensure_ascii=False)),
            )

    @_storage
    def mark_error(self, session_id: str, seq: int, error: str) -> None:
        """Note that the message at `seq` failed (a tool's error, an answer that was rejected)."""
        db = self._conn()
        with _write(db):
            db.execute("UPDATE messages SET error = ? WHERE session_id = ? AND seq = ?", (error, session_id, seq))

    @_storage
    def rate(self, session_id: str, rating: str | None) -> str:
        """Mark a session good or bad (None clears it); returns its full id."""
        if rating is not None and rating not in RATINGS:
            raise SessionError(f"a rating is good or bad, not {rating!r}")
        full = self.resolve(session_id)
        db = self._conn()
        with _write(db):
            db.execute("UPDATE sessions SET rating = ? WHERE id = ?", (rating, full))
        return full

    @_storage
    def replace(self, session_id: str, seq: int, message: Message) -> None:
        """Store `message` in place of the message at position `seq`."""
        db = self._conn()
        with _write(db):
            db.execute(
                "UPDATE messages SET body = ? WHERE session_id = ? AND seq = ?",
                (message_to_json(message), session_id, seq),
            )

    @_storage
    def remove(self, session_id: str, seq: int) -> bool:
        """Take back the message at `seq` (a turn that never reached the model).

        A session left without messages is deleted too; returns True then.
        """
        db = self._conn()
        with _write(db):
            row = db.execute("SELECT role FROM messages WHERE session_id = ? AND seq = ?", (session_id, seq)).fetchone()
            if row is None:
                return False
            db.execute("DELETE FROM messages WHERE session_id = ? AND seq = ?", (session_id, seq))
            is_user = int(row[0] == "user")
            db.execute("UPDATE sessions SET turns = MAX(turns - ?, 0) WHERE id = ?", (is_user, session_id))
            if db.execute("SELECT 1 FROM messages WHERE session_id = ? LIMIT 1", (session_id,)).fetchone() is None:
                db.execute("DELETE FROM sessions WHERE id = ?", (session_id,))
                return True
        return False

    @_storage
    def update_settings(self, session_id: str, settings: dict[str, Any]) -> None:
        db = self._conn()
        with _write(db):
            db.execute("UPDATE sessions SET settings = ? WHERE id = ?", (json.dumps(settings), session_id))

    @_storage
    def set_title(self, session_id: str, title: str) -> None:
        db = self._conn()
        with _write(db):
            db.execute("UPDATE sessions SET title = ? WHERE id = ?", (title, session_id))

    @_storage
    def delete(self, session_id: str) -> None:
        full = self.resolve(session_id)
        db = self._conn()
        with _write(db):
            db.execute("DELETE FROM messages WHERE session_id = ?", (full,))
            db.execute("DELETE FROM compactions WHERE session_id = ?", (full,))
            db.execute("DELETE FROM prompts WHERE session_id = ?", (full,))
            db.execute("DELETE FROM sessions WHERE id = ?", (full,))

    # -- reading --------------------------------------------------------------

    @_storage
    def list(self, limit: int | None = None) -> list[SessionInfo]:
        """Sessions, most recently updated first."""
        sql = f"SELECT {_INFO_COLUMNS} FROM sessions ORDER BY updated_at DESC, rowid DESC"
        rows = self._conn().execute(sql + (f" LIMIT {int(limit)}" if limit else "")).fetchall()
        return [_info(row) for row in rows]

    def latest(self) -> SessionInfo | None:
        found = self.list(limit=1)
        return found[0] if found else None

    @_storage
    def resolve(self, session_id: str) -> str:
        """The full id of a session given its id or a unique prefix of it."""
        key = session_id.strip().lower()
        if not key:
            raise SessionError("no session id given")
        rows = (
            self._conn()
            .execute("SELECT id FROM sessions WHERE id = ? OR id LIKE ? ESCAPE '\\'", (key, _like_prefix(key)))
            .fetchall()
        )
        ids = sorted({r[0] for r in rows})
        if key in ids:
            return key
        if not ids:
            raise SessionError(f"no saved session {session_id!r}; `oss-agent sessions` lists them")
        if len(ids) > 1:
            raise SessionError(f"session id {session_id!r} is ambiguous ({', '.join(ids[:5])}); give more characters")
        return ids[0]

    @_storage
    def load(self, session_id: str) -> SavedSession:
        full = self.resolve(session_id)
        db = self._conn()
        row = db.execute(f"SELECT {_INFO_COLUMNS} FROM sessions WHERE id = ?", (full,)).fetchone()
        bodies = db.execute(
            "SELECT seq, body, error, created_at, step FROM messages WHERE session_id = ? ORDER BY seq", (full,)
        ).fetchall()
        compacted = db.execute(
            "SELECT seq_after, history FROM compactions WHERE session_id = ? ORDER BY seq_after", (full,)
        ).fetchall()
        prompts = db.execute(
            "SELECT seq_from, settings FROM prompts WHERE session_id = ? ORDER BY seq_from", (full,)
        ).fetchall()
        try:
            messages = [message_from_json(b[1]) for b in bodies]
            compactions = [(c[0], [message_from_json(json.dumps(m)) for m in json.loads(c[1])]) for c in compacted]
            prompt = None
            if compactions:
                after, history = compactions[-1]
                prompt = history + [m for m, b in zip(messages, bodies, strict=True) if b[0] >= after]
            settings = [(p[0], json.loads(p[1])) for p in prompts]
        except (ValueError, TypeError, KeyError) as exc:
            raise SessionError(f"session {full} is damaged and cannot be read: {exc}") from None
        return SavedSession(
            _info(row),
            messages,
            prompt,
            seqs=[b[0] for b in bodies],
            times=[b[3] for b in bodies],
            steps=[b[4] for b in bodies],
            errors={b[0]: b[2] for b in bodies if b[2]},
            compactions=compactions,
            prompts=settings,
        )


class SessionRecorder:
    """Writes an agent's messages to the store as they happen.

    `begin_turn(prompt)` stores the user's message when a turn starts; then
    `record(event)` stores each completed message (`MessageEvent`), the user's
    own confirming the one already stored. `abort_turn()` takes the message
    back when the turn ended before reaching the model, as the agent does. The
    session row is created at the first message, so an unused chat leaves
    nothing behind. `start_new()` (after `agent.reset()`) begins another one.
    """

    def __init__(self, store: SessionStore, agent: Agent, session_id: str | None = None, **meta: Any) -> None:
        self.store = store
        self.agent = agent
        self.meta = meta  # model, backend, tools: what `session_settings` cannot read off the agent
        self.session_id = session_id
        self._pending: int | None = None  # position of a user message the agent has not confirmed yet
        self._prompt: dict[str, Any] | None = None  # the prompt settings stored last
        self._tool_error: str | None = None  # the error of the tool result whose message comes next
        self._step_final: int | None = None  # position of this step's final answer, until the step ends

    def begin_turn(self, prompt: str) -> None:
        """Store the user's message of a turn that is starting, as the agent will phrase it."""
        from openai_harmony import Message, Role

        from tools.text import clean_text

        self._pending = None  # an earlier turn's prompt that was interrupted stays where it is
        self._pending = self.add(Message.from_role_and_content(Role.USER, clean_text(prompt)))

    def abort_turn(self) -> None:
        """The turn ended before reaching the model: forget its user message (an emptied session goes too)."""
        pending, self._pending = self._pending, None
        if pending is not None and self.session_id is not None and self.store.remove(self.session_id, pending):
            self.session_id = None

    def record(self, event: Any) -> None:
        """Store what a session keeps of an agent event.

        Messages and compactions; a user message also stores the prompt settings
        it was answered with (when they changed), a failed tool's error goes with
        its result, and an answer sent back for another try is marked rejected.
        """
        from openai_harmony import Role

        kind = getattr(event, "type", None)
        if kind == "message":
            message = event.message
            role = message.author.role
            error, self._tool_error = (self._tool_error, None) if role == Role.TOOL else (None, self._tool_error)
            seq = self.add(message, error, event.step)
            if role == Role.USER:
                self._store_prompt(seq)
            elif role == Role.ASSISTANT and message.channel == "final":
                self._step_final = seq
        elif kind == "tool_result":
            self._tool_error = event.error
        elif kind == "step":
            if event.outcome == "retry" and self._step_final is not None and self.session_id is not None:
                self.store.mark_error(self.session_id, self._step_final, f"answer rejected: {event.error}")
            self._step_final = None
        elif kind == "compacted" and self.session_id is not None:
            self.store.add_compaction(self.session_id, event.summary, event.history)

    def _store_prompt(self, seq: int) -> None:
        settings = self.agent.settings.to_dict()
        if settings != self._prompt and self.session_id is not None:
            self.store.add_prompt_settings(self.session_id, seq, settings)
            self._prompt = settings

    def add(self, message: Message, error: str | None = None, step: int | None = None) -> int:
        """Store `message` (a user message the turn started with replaces its early copy); returns its position."""
        from openai_harmony import Role

        if self._pending is not None and self.session_id is not None and message.author.role == Role.USER:
            seq, self._pending = self._pending, None
            self.store.replace(self.session_id, seq, message)
            return seq
        if self.session_id is None:
            self.session_id = self.store.create(session_settings(self.agent, **self.meta))
        return self.store.append(self.session_id, message, error, step)

    def save_all(self) -> str:
        """Make sure the whole conversation so far is stored (for `/save` when saving was off)."""
        if self.session_id is None:
            self.session_id = self.store.create(session_settings(self.agent, **self.meta))
            for message in self.agent.history:
                self.store.append(self.session_id, message)
            if self.agent.history:  # the settings of now: the best knowledge of what earlier turns used
                self.store.add_prompt_settings(self.session_id, 0, self.agent.settings.to_dict())
        return self.session_id

    def settings_changed(self) -> None:
        if self.session_id is not None:
            self.store.update_settings(self.session_id, session_settings(self.agent, **self.meta))

    def start_new(self) -> None:
        self.session_id, self._pending, self._prompt = None, None, None


def session_settings(agent: Agent, **meta: Any) -> dict[str, Any]:
    """What a session must remember to render the same prompt again."""
    s = agent.settings
    return {
        "reasoning_effort": s.reasoning_effort,
        "date": s.date,
        "instructions": s.instructions,
        "header_digest": header_digest(agent),
        **meta,
    }


def header_digest(agent: Agent) -> str:
    """A fingerprint of the agent's rendered system and developer messages (tools included)."""
    return settings_digest(agent.settings)


def settings_digest(settings: PromptSettings) -> str:
    """A fingerprint of the system and developer messages `settings` render."""
    from openai_harmony import Conversation

    from agent.harmony.encoding import get_encoding

    ids = get_encoding().render_conversation(Conversation.from_messages(settings.header_messages()))
    return hashlib.sha256(json.dumps(ids).encode()).hexdigest()[:16]


def restore(agent: Agent, saved: SavedSession) -> bool:
    """Give `agent` the saved conversation and prompt settings.

    Returns False when the agent's tools render differently from the saved
    session's (the conversation is restored all the same).
    """
    settings = saved.settings
    agent.reset()
    agent.settings.reasoning_effort = settings.get("reasoning_effort") or agent.settings.reasoning_effort
    agent.settings.date = settings.get("date") or agent.settings.date
    agent.settings.instructions = settings.get("instructions")
    agent.history[:] = saved.messages if saved.prompt_history is None else saved.prompt_history
    return settings.get("header_digest") in (None, header_digest(agent))


def message_to_json(message: Message) -> str:
    return json.dumps(message.to_dict(), default=_enum_value, ensure_ascii=False)


def message_from_json(text: str) -> Message:
    from openai_harmony import Message

    return Message.from_dict(json.loads(text))


def _enum_value(value: Any) -> Any:
    if hasattr(value, "value"):
        return value.value
    raise TypeError(f"cannot store {type(value).__name__} in a session")


def _create(db: sqlite3.Connection) -> None:
    for statement in filter(str.strip, _SCHEMA.split(";")):
        db.execute(statement)
    for table, column, kind in _ADDED_COLUMNS:
        if column not in {row[1] for row in db.execute(f"PRAGMA table_info({table})")}:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")


class _write:
    """`BEGIN IMMEDIATE … COMMIT` (rollback on error): one writer at a time, waiting politely."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if exc_type is None:
            self.db.execute("COMMIT")
            return
        try:
            self.db.execute("ROLLBACK")
        except sqlite3.Error:  # SQLite already rolled back (a full disk does that): keep the first error
            pass


_INFO_COLUMNS = "id, created_at, updated_at, title, turns, settings, rating"


def _info(row: tuple[Any, ...]) -> SessionInfo:
    try:
        settings = json.loads(row[5])
    except ValueError:
        settings = {}
    return SessionInfo(row[0], row[1], row[2], row[3] or "(untitled)", row[4], settings, row[6])


def _title(message: Message) -> str:
    text = " ".join("".join(getattr(c, "text", "") for c in message.content).split())
    return text if len(text) <= TITLE_CHARS else text[: TITLE_CHARS - 1] + "…"


def _like_prefix(key: str) -> str:
    return key.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
