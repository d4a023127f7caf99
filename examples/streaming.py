"""Consume the typed event stream and print a live transcript.

Reasoning and tool activity go to stderr, the answer to stdout.
Run Ollama with gpt-oss, then: python examples/streaming.py
"""

import sys

from agent import Agent, tool
from agent.events import (
    PreambleDelta,
    ReasoningDelta,
    StepFinished,
    TextDelta,
    ToolCallEvent,
    ToolResultEvent,
)


@tool
def word_count(text: str) -> int:
    """Count the words in a text."""
    return len(text.split())


agent = Agent(model="gpt-oss:20b", tools=[word_count], reasoning_effort="low")

for event in agent.stream("How many words are in 'the quick brown fox'?"):
    if isinstance(event, ReasoningDelta):
        print(event.text, end="", file=sys.stderr, flush=True)
    elif isinstance(event, PreambleDelta):
        print(event.text, end="", flush=True)
    elif isinstance(event, ToolCallEvent):
        print(f"\n[calling {event.call.recipient} {event.call.arguments}]", file=sys.stderr)
    elif isinstance(event, ToolResultEvent):
        print(f"[result: {event.output}]", file=sys.stderr)
    elif isinstance(event, TextDelta):
        print(event.text, end="", flush=True)
    elif isinstance(event, StepFinished):
        usage = event.usage
        print(
            f"\n[step {event.step}: {event.outcome}, {usage.prompt_tokens} prompt tokens, "
            f"{usage.cached_prompt_tokens} cached, {usage.completion_tokens} generated]",
            file=sys.stderr,
        )
print()
