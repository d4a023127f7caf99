"""How to test your own agent without a model: `ScriptedBackend` plays the model.

The script is what gpt-oss would write; it goes through the same Harmony
parser and loop as real output. Run with pytest: pytest examples/testing_your_agent.py
"""

from agent import Agent, tool
from agent.backends import ScriptedBackend, call, final


@tool
def convert(amount: float, currency: str) -> dict:
    """Convert euros into another currency.

    Args:
        amount: Amount in euros.
        currency: Target currency code, e.g. "USD".
    """
    rates = {"USD": 1.1, "GBP": 0.85}
    return {"amount": round(amount * rates[currency], 2), "currency": currency}


def build_agent(backend) -> Agent:
    return Agent(backend=backend, tools=[convert], instructions="Answer with the converted amount only.")


def test_agent_calls_convert_and_answers():
    backend = ScriptedBackend(
        [
            call("functions.convert", {"amount": 10, "currency": "USD"}, reasoning="Convert 10 EUR."),
            final("11.0 USD"),
        ]
    )
    result = build_agent(backend).run("How much is 10 EUR in dollars?")

    assert result.output == "11.0 USD"
    assert result.tool_calls[0].output == '{"amount": 11.0, "currency": "USD"}'
    backend.assert_complete()
    # The exact Harmony prompt of the second step, tool result included:
    assert (
        '<|start|>functions.convert to=assistant<|channel|>commentary<|message|>{"amount": 11.0'
        in backend.prompt_texts[1]
    )


def test_bad_arguments_go_back_to_the_model():
    backend = ScriptedBackend(
        [
            call("functions.convert", {"amount": "ten", "currency": "USD"}),
            call("functions.convert", {"amount": 10, "currency": "USD"}),
            final("11.0 USD"),
        ]
    )
    result = build_agent(backend).run("10 EUR in USD?")
    assert "invalid arguments for convert: amount" in result.tool_calls[0].output
    assert result.output == "11.0 USD"


if __name__ == "__main__":
    test_agent_calls_convert_and_answers()
    test_bad_arguments_go_back_to_the_model()
    print("both checks passed")
