"""`oss-agent run -t browser`: the real browser tool, a local web, and citations printed as links."""

from __future__ import annotations

from cli_helpers import cli_env, run_cli, serve
from fake_ollama import FakeOllama, final_text
from fake_web import FakeWeb, builtin_call


def test_run_with_browser_prints_citations_as_links(tmp_path):
    fake = FakeOllama(
        [
            builtin_call("browser.search", '{"query": "heron swallows fish"}'),
            builtin_call("browser.open", '{"id": 0}'),
            builtin_call("browser.find", '{"pattern": "swallows fish"}'),
            final_text("Herons swallow fish whole【2†L1-L2】."),
        ]
    )
    web = FakeWeb().start()
    try:
        with serve(fake) as url:
            done = run_cli("run", "-t", "browser", "Do herons chew fish?", env=cli_env(tmp_path, url, **web.env()))
    finally:
        web.stop()
    assert done.returncode == 0, done.stderr
    assert "Herons swallow fish whole" in done.stdout
    assert f"{web.url}/guide.html" in done.stdout and "【2†" not in done.stdout
    assert "browser.search" in done.stderr and "browser.find" in done.stderr  # tool panels on stderr
