"""The exported chat form, rendered by Hugging Face's gpt-oss chat template (TRL's bundled copy).

The template renders our `messages`/`tools`/`chat_template_kwargs` into a conversation that Harmony reads as the
same messages as the exported `input_ids`, except for the template's own, known differences, each normalised here
by name: today's date, its header order and JSON spacing, tool results quoted as JSON strings, the chain's
reasoning dropped when an answer follows, and a comma after a parameter's default.
"""

from __future__ import annotations

import importlib.resources
import io
import json
import re

from helpers import recorded, require_extra

require_extra("transformers,finetune", "transformers", "trl")

from openai_harmony import Role  # noqa: E402
from transformers.utils.chat_template_utils import render_jinja_template  # noqa: E402

from agent import Agent, tool
from agent.backends import ScriptedBackend, call, final
from agent.harmony.encoding import get_encoding
from agent.sessions import SessionStore
from agent.training import export_sft


@tool
def get_weather(city: str, unit: str = "C") -> str:
    """The weather in a city."""
    return f"sunny in {city}, 21 {unit}"


def template() -> str:
    return (importlib.resources.files("trl") / "chat_templates" / "gptoss.jinja").read_text(encoding="utf-8")


def exported_rows(tmp_path) -> list[dict]:
    script = [
        call("functions.get_weather", '{"city":"Paris"}', reasoning="Need Paris."),
        final("Sunny in Paris.", reasoning="The tool says sunny."),
        call("functions.get_weather", '{"city":"Rome","unit":"F"}', reasoning="Rome, in Fahrenheit."),
        final("Rome is sunny too.", reasoning="Both sunny."),
    ]
    agent = Agent(
        ScriptedBackend(script),
        tools=[get_weather],
        date="2026-12-01",
        instructions="Be brief.",
        reasoning_effort="low",
    )
    store = SessionStore(tmp_path / "s.db")
    recorder = recorded(agent, store, ["Weather in Paris?", "And Rome?"])
    out = io.StringIO()
    export_sft(store, [recorder.session_id], out=out)
    store.close()
    return [json.loads(line) for line in out.getvalue().splitlines()]


def read(text: str) -> list[tuple]:
    """Harmony's own reading of a rendered conversation: (role, name, channel, recipient, content type, text)."""
    enc = get_encoding()
    messages = enc.parse_messages_from_completion_tokens(enc.encode(text, allowed_special="all"), role=None)
    return [
        (
            m.author.role,
            m.author.name,
            m.channel,
            m.recipient,
            m.content_type,
            "".join(getattr(c, "text", "") for c in m.content),
        )
        for m in messages
    ]


def normalised(messages: list[tuple], *, template_side: bool) -> list[tuple]:
    out = []
    for role, name, channel, recipient, ctype, text in messages:
        if role == Role.SYSTEM:
            text = re.sub(r"Current date: \d{4}-\d{2}-\d{2}", "Current date: <date>", text)
        if role == Role.DEVELOPER and template_side:
            text = re.sub(r"(// default: [^\n]*),\n", r"\1\n", text)  # the template's comma after a default
        if recipient and recipient.startswith("functions."):
            text = json.dumps(json.loads(text))  # the template writes `tojson` spacing
        if role == Role.TOOL and template_side:
            text = json.loads(text)  # the template quotes tool results as JSON strings
        out.append((role, name, channel, recipient, ctype, text))
    return out


def without_chain_reasoning(messages: list[tuple]) -> list[tuple]:
    """Our messages as the template keeps them: analysis right before a call goes when an answer follows it."""
    kept = []
    for i, message in enumerate(messages):
        following = messages[i + 1] if i + 1 < len(messages) else None
        if message[2] == "analysis" and following is not None and following[3]:
            continue
        kept.append(message)
    return kept


def test_the_template_renders_the_chat_form_as_the_same_conversation(tmp_path):
    enc = get_encoding()
    rows = exported_rows(tmp_path)
    assert len(rows) == 2
    for row in rows:
        rendered = render_jinja_template(
            [row["messages"]], tools=row["tools"], chat_template=template(), **row["chat_template_kwargs"]
        )
        text = rendered[0][0] if isinstance(rendered, tuple) else rendered[0]
        ours = read(enc.decode(row["input_ids"]))
        theirs = read(text)
        assert normalised(theirs, template_side=True) == without_chain_reasoning(normalised(ours, template_side=False))
        # and what the template does with the last message is what the labels train: the answer, then <|return|>
        assert text.endswith("<|channel|>final<|message|>" + row["messages"][-1]["content"] + "<|return|>")
        assert enc.decode(row["input_ids"]).endswith(text[text.rindex("<|channel|>final") :])


def test_the_template_drops_chain_reasoning_that_the_labels_keep(tmp_path):
    """Why training uses `input_ids`/`labels`: the template loses the reasoning before a call."""
    row = exported_rows(tmp_path)[1]
    rendered = render_jinja_template(
        [row["messages"]], tools=row["tools"], chat_template=template(), **row["chat_template_kwargs"]
    )
    text = rendered[0][0] if isinstance(rendered, tuple) else rendered[0]
    assert "Rome, in Fahrenheit." not in text
    assert "Rome, in Fahrenheit." in get_encoding().decode(row["input_ids"])
