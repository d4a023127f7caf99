"""`oss-agent run -t browser`: the real browser tool, a local web, and citations printed as links."""

from __future__ import annotations

from cli_helpers import cli_env, closed_port, run_cli, serve
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


def test_offline_search_tells_the_model_another_query_will_not_help(tmp_path):
    fake = FakeOllama([builtin_call("browser.search", '{"query": "herons"}'), final_text("I could not search.")])
    offline = {"OSS_AGENT_SEARCH": "searxng", "OSS_AGENT_SEARXNG_URL": f"http://127.0.0.1:{closed_port()}"}
    with serve(fake) as url:
        done = run_cli("run", "-t", "browser", "Herons?", env=cli_env(tmp_path, url, **offline))
    assert done.returncode == 0, done.stderr
    told = fake.generate_requests[1]["prompt"]
    assert "cannot be reached from this machine" in told and "another query will not help" in told
    assert "Try a different query" not in told


def test_doctor_with_the_browser_tries_a_search(tmp_path):
    fake = FakeOllama([final_text("pong")])
    web = FakeWeb().start()
    try:
        with serve(fake) as url:
            works = run_cli("doctor", "-t", "browser", env=cli_env(tmp_path, url, **web.env()))
    finally:
        web.stop()
    offline = {"OSS_AGENT_SEARCH": "searxng", "OSS_AGENT_SEARXNG_URL": f"http://127.0.0.1:{closed_port()}"}
    with serve(FakeOllama([final_text("pong")])) as url:
        broken = run_cli("doctor", "-t", "browser", env=cli_env(tmp_path, url, **offline))
    assert "✓ browser search: searxng answered (1 result)" in works.stdout, works.stdout
    assert broken.returncode == 1
    assert "✗ browser search: searxng: SearXNG is unreachable" in broken.stdout
    assert "OSS_AGENT_SEARXNG_URL" in broken.stdout
