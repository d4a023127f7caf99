"""Custom tools: sync and async functions, pydantic arguments, approval, retryable errors.

Run Ollama with gpt-oss, then: python examples/custom_tools.py
"""

import asyncio
from typing import Literal

from pydantic import BaseModel, Field

from agent import Agent, ToolRetry, tool


class Order(BaseModel):
    """One line of an order."""

    item: str = Field(description="Product name")
    quantity: int = Field(ge=1, description="How many")
    shipping: Literal["standard", "express"] = "standard"


STOCK = {"mug": 12, "poster": 0}


@tool
def check_stock(item: str) -> int:
    """How many of an item are in stock.

    Args:
        item: Product name, e.g. "mug".
    """
    if item not in STOCK:
        # The model reads this message and may call again with a valid name.
        raise ToolRetry(f"unknown item {item!r}; known items: {', '.join(STOCK)}")
    return STOCK[item]


@tool(requires_approval=True, timeout=30)
async def place_order(order: Order) -> dict:
    """Place an order. Asks the user first.

    Args:
        order: What to order.
    """
    await asyncio.sleep(0)  # a real shop API call would go here
    STOCK[order.item] -= order.quantity
    return {"status": "placed", "item": order.item, "quantity": order.quantity, "shipping": order.shipping}


def ask_user(call) -> bool:
    answer = input(f"Allow {call.recipient} {call.arguments}? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


agent = Agent(
    model="gpt-oss:20b",
    tools=[check_stock, place_order],
    instructions="You run a small shop. Check stock before ordering.",
    approve=ask_user,
)
print(agent.run("Please order 2 mugs with express shipping.").output)
