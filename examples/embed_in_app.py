"""An agent inside a small async web service: one conversation per user, saved across restarts.

    python examples/embed_in_app.py --port 8080
    curl -s localhost:8080/chat -d '{"user": "alice", "message": "Are you open on Sunday?"}'

Each user gets their own `Agent` (their own conversation); every message is
written to the sessions database as it completes, so a restarted service
picks each conversation up where it was. Only the standard library serves HTTP.
"""

import argparse
import asyncio
import json

from agent import Agent, OssAgentError, tool
from agent.sessions import SessionRecorder, SessionStore, restore

HOURS = {"monday": "9-17", "saturday": "10-14", "sunday": "closed"}


@tool
def opening_hours(day: str) -> str:
    """Opening hours of the shop on a weekday.

    Args:
        day: Day of the week, e.g. "monday".
    """
    return HOURS.get(day.lower(), "9-17")


class ChatService:
    """One agent per user, restored from the sessions database on first use."""

    def __init__(self, store: SessionStore) -> None:
        self.store = store
        self.conversations: dict[str, tuple[Agent, SessionRecorder, asyncio.Lock]] = {}

    def conversation(self, user: str) -> tuple[Agent, SessionRecorder, asyncio.Lock]:
        if user not in self.conversations:
            agent = Agent(model="gpt-oss:20b", tools=[opening_hours], instructions="You answer for a small shop.")
            recorder = SessionRecorder(self.store, agent)
            saved = next((s for s in self.store.list() if s.title == f"user:{user}"), None)
            if saved is not None:
                restore(agent, self.store.load(saved.id))
                recorder.session_id = saved.id
            self.conversations[user] = (agent, recorder, asyncio.Lock())
        return self.conversations[user]

    async def ask(self, user: str, message: str) -> str:
        agent, recorder, lock = self.conversation(user)
        async with lock:  # one turn at a time per conversation; other users run concurrently
            async for event in agent.astream(message):
                recorder.record(event)
                if event.type == "done":
                    self.store.set_title(recorder.session_id, f"user:{user}")
                    return event.result.output
        raise RuntimeError("the run ended without an answer")


async def handle(service: ChatService, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    request_line = await reader.readline()
    headers = {}
    while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    status, answer = 200, {}
    if not request_line.startswith(b"POST /chat "):
        status, answer = 404, {"error": 'POST /chat with {"user": ..., "message": ...}'}
    else:
        try:
            data = json.loads(body)
            answer = {"answer": await service.ask(str(data["user"]), str(data["message"]))}
        except (ValueError, KeyError):
            status, answer = 400, {"error": "expected JSON with user and message"}
        except OssAgentError as exc:  # model server down, limits hit: say so, keep serving
            status, answer = 502, {"error": str(exc)}
    payload = json.dumps(answer).encode()
    writer.write(
        f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
        f"Connection: close\r\n\r\n".encode()
        + payload
    )
    await writer.drain()
    writer.close()


async def main(port: int) -> None:
    service = ChatService(SessionStore())
    server = await asyncio.start_server(lambda r, w: handle(service, r, w), "127.0.0.1", port)
    print(f"listening on http://127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8080)
    asyncio.run(main(parser.parse_args().port))
