"""Upload a CSV into the sandbox, let the model analyse it with `python`, read its result file back.

Needs Docker and a sandbox image (`python -m sandbox.image`, then export OSS_AGENT_SANDBOX_IMAGE).
Run Ollama with gpt-oss, then: python examples/data_analysis.py
"""

import csv
from pathlib import Path

from agent import Agent

data = Path("sales.csv")
if not data.exists():
    rows = [
        ("region", "month", "revenue"),
        ("north", "jan", 120),
        ("north", "feb", 135),
        ("south", "jan", 90),
        ("south", "feb", 160),
        ("west", "jan", 75),
        ("west", "feb", 80),
    ]
    with data.open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)

with Agent(
    model="gpt-oss:20b",
    tools=["python"],
    instructions="The user's files are in /mnt/data. Use python to compute, never guess numbers.",
) as agent:
    sandbox = agent.tools.builtins["python"].sandbox
    sandbox.upload(data)
    result = agent.run(
        "Total revenue per region in /mnt/data/sales.csv? Also write the totals to /mnt/data/totals.csv."
    )
    print(result.output)
    saved = sandbox.download("totals.csv", Path.cwd())
    print(f"\nSaved {saved.name}:\n{saved.read_text()}")
