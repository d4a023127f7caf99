"""An agent with one custom tool, one question.

Run Ollama with gpt-oss (`ollama pull gpt-oss:20b`), then: python examples/quickstart.py
"""

from agent import Agent, tool


@tool
def get_weather(city: str) -> dict:
    """Get the current weather for a city.

    Args:
        city: City name, e.g. "Paris".
    """
    forecasts = {"paris": ("rain", 14), "tokyo": ("sunny", 22)}
    sky, temp = forecasts.get(city.lower(), ("cloudy", 18))
    return {"city": city, "sky": sky, "temp_c": temp}


agent = Agent(model="gpt-oss:20b", tools=[get_weather], reasoning_effort="low")
result = agent.run("Do I need an umbrella in Paris today?")
print(result.output)
