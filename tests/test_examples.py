"""Every example runs as a real program against a fake Ollama server on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fake_ollama import FakeOllama, FakeOllamaServer, call_text, final_text
from fake_web import FakeWeb, builtin_call
from sandbox_fixtures import sandbox_image, docker_client  # noqa: F401  (fixtures)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(name: str, fake: FakeOllama, tmp_path: Path, stdin: str = "", **env: str):
    with FakeOllamaServer(fake, lifetime=120) as server:
        proc = subprocess.run(
            [sys.executable, str(EXAMPLES / name)],
            cwd=tmp_path,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "OLLAMA_HOST": server.url, **env},
        )
    assert proc.returncode == 0, proc.stderr
    assert fake.remaining == 0, "the example did not use the whole script"
    return proc


def prompts(fake: FakeOllama) -> list[str]:
    return [r["prompt"] for r in fake.generate_requests]


def test_quickstart(tmp_path):
    fake = FakeOllama(
        [call_text("get_weather", '{"city": "Paris"}'), final_text("Yes, it is raining in Paris (14 °C).")]
    )
    proc = run_example("quickstart.py", fake, tmp_path)
    assert proc.stdout == "Yes, it is raining in Paris (14 °C).\n"
    assert '{"city": "Paris", "sky": "rain", "temp_c": 14}' in prompts(fake)[1]


def test_custom_tools(tmp_path):
    order = {"order": {"item": "mug", "quantity": 2, "shipping": "express"}}
    fake = FakeOllama(
        [
            call_text("check_stock", '{"item": "cup"}'),
            call_text("check_stock", '{"item": "mug"}'),
            call_text("place_order", json.dumps(order)),
            final_text("Ordered 2 mugs with express shipping."),
        ]
    )
    proc = run_example("custom_tools.py", fake, tmp_path, stdin="y\n")
    assert "Allow functions.place_order" in proc.stdout
    assert proc.stdout.rstrip().endswith("Ordered 2 mugs with express shipping.")
    sent = prompts(fake)
    assert "unknown item 'cup'; known items: mug, poster" in sent[1]
    assert '"status": "placed"' in sent[3] and '"shipping": "express"' in sent[3]


def test_custom_tools_refused(tmp_path):
    fake = FakeOllama(
        [call_text("place_order", '{"order": {"item": "mug", "quantity": 1}}'), final_text("Not ordered.")]
    )
    run_example("custom_tools.py", fake, tmp_path, stdin="n\n")
    assert "the user declined to run functions.place_order" in prompts(fake)[1]


def test_streaming(tmp_path):
    fake = FakeOllama(
        [call_text("word_count", '{"text": "the quick brown fox"}', analysis="Count them."), final_text("4 words.")]
    )
    proc = run_example("streaming.py", fake, tmp_path)
    assert proc.stdout.strip() == "4 words."
    assert (
        "Count them." in proc.stderr and '[calling functions.word_count {"text": "the quick brown fox"}]' in proc.stderr
    )
    assert "[result: 4]" in proc.stderr and "[step 2: final," in proc.stderr


def test_testing_your_agent(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "testing_your_agent.py")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "both checks passed\n"


@pytest.mark.docker
def test_data_analysis(tmp_path, sandbox_image):  # noqa: F811
    code = (
        "import csv, collections\n"
        "totals = collections.Counter()\n"
        "for row in csv.DictReader(open('/mnt/data/sales.csv')):\n"
        "    totals[row['region']] += int(row['revenue'])\n"
        "with open('/mnt/data/totals.csv', 'w') as f:\n"
        "    f.write('region,total\\n' + ''.join(f'{k},{v}\\n' for k, v in sorted(totals.items())))\n"
        "dict(totals)"
    )
    fake = FakeOllama([builtin_call("python", code), final_text("north 255, south 250, west 155.")])
    proc = run_example("data_analysis.py", fake, tmp_path, OSS_AGENT_SANDBOX_IMAGE=sandbox_image)
    assert "{'north': 255, 'south': 250, 'west': 155}" in prompts(fake)[1]
    assert proc.stdout.startswith("north 255, south 250, west 155.")
    assert "Saved totals.csv:\nregion,total\nnorth,255\nsouth,250\nwest,155\n" in proc.stdout
    assert (tmp_path / "totals.csv").read_text() == "region,total\nnorth,255\nsouth,250\nwest,155\n"


def test_research(tmp_path):
    site = FakeWeb().start()
    base = site.url
    fake = FakeOllama(
        [
            builtin_call("browser.search", '{"query": "heron swallows fish", "topn": 3}'),
            builtin_call("browser.open", '{"id": 0}'),
            builtin_call("browser.find", '{"pattern": "swallows fish"}'),
            final_text("Herons swallow fish whole【2†L1-L2】."),
        ]
    )
    try:
        proc = run_example(
            "research.py",
            fake,
            tmp_path,
            OSS_AGENT_SEARCH="searxng",
            OSS_AGENT_SEARXNG_URL=base,
            OSS_AGENT_BROWSER_ALLOW_HOSTS="127.0.0.1",
        )
    finally:
        site.stop()
    sent = prompts(fake)
    assert "Herons of the Tidewater" in sent[1] and "swallows fish whole" in sent[3]
    first, _, sources = proc.stdout.partition("\nSources:\n")
    assert first.startswith("Herons swallow fish whole ([127.0.0.1 L") and f"]({base}/guide.html))." in first
    assert sources.startswith(f"- {base}/guide.html (lines ")


def _post(url: str, payload: dict) -> tuple[int, dict]:
    import httpx

    response = httpx.post(f"{url}/chat", json=payload, timeout=60)
    return response.status_code, response.json()


def _start_app(tmp_path: Path, ollama_url: str) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "OLLAMA_HOST": ollama_url, "OSS_AGENT_HOME": str(tmp_path / "data")}
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "embed_in_app.py"), "--port", "0"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()
    assert line.startswith("listening on "), proc.stderr.read()
    return proc, line.split()[-1]


def test_embed_in_app_keeps_one_conversation_per_user_across_restarts(tmp_path):
    fake = FakeOllama(
        [
            final_text("Hello Alice."),
            call_text("opening_hours", '{"day": "sunday"}'),
            final_text("Closed on Sunday, Bob."),
            final_text("You asked about greetings before, Alice."),
        ]
    )
    with FakeOllamaServer(fake, lifetime=120) as ollama:
        app, url = _start_app(tmp_path, ollama.url)
        try:
            assert _post(url, {"user": "alice", "message": "Hi, I am Alice."}) == (200, {"answer": "Hello Alice."})
            assert _post(url, {"user": "bob", "message": "Open on Sunday?"}) == (
                200,
                {"answer": "Closed on Sunday, Bob."},
            )
        finally:
            app.terminate()
            app.wait(timeout=30)
        app, url = _start_app(tmp_path, ollama.url)  # a restarted service
        try:
            status, body = _post(url, {"user": "alice", "message": "What did I say?"})
            assert status == 200 and body == {"answer": "You asked about greetings before, Alice."}
            assert _post(url, {"nope": 1})[0] == 400
        finally:
            app.terminate()
            app.wait(timeout=30)
    sent = prompts(fake)
    assert "Hi, I am Alice." in sent[3] and "Hello Alice." in sent[3]  # Alice's conversation came back
    assert "Open on Sunday?" not in sent[3] and "Hi, I am Alice." not in sent[1]  # and never mixed with Bob's
    assert fake.remaining == 0
