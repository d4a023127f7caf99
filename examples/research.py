"""Research with the built-in browser: search, open, find, and an answer with its citations as links.

No API key: search goes through ddgs by default (or a SearXNG instance: set
OSS_AGENT_SEARCH=searxng and OSS_AGENT_SEARXNG_URL).
Run Ollama with gpt-oss, then: python examples/research.py "your question"
"""

import sys

from agent import Agent
from tools.browser import BrowserTool

question = " ".join(sys.argv[1:]) or "When was the Harmony response format for gpt-oss published, and by whom?"

browser = BrowserTool()
agent = Agent(
    model="gpt-oss:20b",
    tools=[browser],
    instructions="Search the web, read the best sources, and cite them for every claim.",
)
result = agent.run(question)

# 【cursor†L9-L11】 markers become Markdown links to the page and lines the model read.
print(browser.render_citations(result.output))
print("\nSources:")
for citation in browser.citations(result.output):
    if citation.url:
        print(f"- {citation.url} (lines {citation.line_start}-{citation.line_end})")
