"""examples/finetune_lora.py trains a LoRA on a tiny gpt-oss model; TransformersBackend(adapter=) uses it (CPU)."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import require_extra

from agent.backends.transformers import TransformersBackend
from agent.cli.build import make_backend
from agent.cli.options import SETTINGS, resolve
from agent.errors import ConfigurationError, ModelNotFoundError
from agent.harmony.encoding import get_encoding, special_ids

require_extra("transformers,finetune", "torch", "transformers", "peft", "trl")
import torch  # noqa: E402
from safetensors import safe_open  # noqa: E402  (after the skip: both come with the extras)
from test_backend_transformers import chain, collect, flat, req, tiny_config  # noqa: E402
from test_backend_transformers import render as prompt  # noqa: E402  (system + user, as the SFT rows)
from transformers import GptOssForCausalLM  # noqa: E402

pytestmark = pytest.mark.torch

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "finetune_lora.py"
RANK, STEPS, LR = 8, 30, 1e-2
PAIRS = [("What is the capital of France?", "Paris."), ("What is the capital of Italy?", "Rome.")]


def _load_script():
    spec = importlib.util.spec_from_file_location("finetune_lora", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


ft = _load_script()


def target(answer: str) -> list[int]:
    return get_encoding().encode(f"<|channel|>final<|message|>{answer}<|return|>", allowed_special="all")


def write_rows(path: Path) -> Path:
    with path.open("w", encoding="utf-8") as f:
        for question, answer in PAIRS:
            context, wanted = prompt(question), target(answer)
            row = {
                "input_ids": context + wanted,
                "labels": [-100] * len(context) + wanted,
                "messages": [{"role": "user", "content": question}],
                "session": "s1",
                "tools": [],
            }
            f.write(json.dumps(row) + "\n")
    return path


def greedy_answer(backend: TransformersBackend, question: str) -> list[int]:
    chunks, _ = asyncio.run(collect(backend, req(prompt(question), len(target("Paris.")))))
    return flat(chunks)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny saved model, the SFT file, and an adapter trained on it in-process: (model_dir, data, adapter, report)."""
    root = tmp_path_factory.mktemp("finetune")
    torch.manual_seed(0)
    GptOssForCausalLM(tiny_config()).save_pretrained(root / "model")
    data = write_rows(root / "sft.jsonl")
    config = ft.TrainConfig(rank=RANK, alpha=16, lr=LR, max_steps=STEPS, seed=0)
    lora = ft.add_lora(ft.load_model(str(root / "model")), config)
    report = ft.train(lora, ft.load_examples(data), config, log=lambda line: None)
    lora.save_pretrained(root / "adapter")
    return root / "model", data, root / "adapter", report


def test_load_examples_reads_ids_and_labels_ignores_other_keys_and_truncates(tmp_path):
    data = write_rows(tmp_path / "sft.jsonl")
    examples = ft.load_examples(data)
    context, wanted = prompt(PAIRS[0][0]), target(PAIRS[0][1])
    assert examples[0] == ft.Example(context + wanted, [-100] * len(context) + wanted)
    assert len(examples) == len(PAIRS)
    cut = ft.load_examples(data, max_length=len(context) + 2)
    assert [len(e.input_ids) for e in cut] == [len(prompt(q)) + 2 for q, _ in PAIRS]
    assert ft.load_examples(data, max_length=len(context) - 5) == []  # nothing left to learn: dropped


def test_training_lowers_the_loss(trained):
    _, _, _, report = trained
    assert report.steps == STEPS == len(report.losses)
    assert report.first_loss == report.losses[0] and report.last_loss == report.losses[-1]
    # a random tiny model starts near ln(vocab) = 12.2 and its small lm_head keeps the loss near 11
    # (measured: 12.24 -> 11.19); enough for the targets to become the greedy tokens
    assert report.last_loss < report.first_loss - 0.5


def test_the_adapter_folder_holds_only_the_lora_weights_r_times_in_plus_out(trained):
    model_dir, _, adapter, _ = trained
    assert {p.name for p in adapter.iterdir()} - {"README.md"} == {"adapter_config.json", "adapter_model.safetensors"}
    c = tiny_config()
    q_out, kv_out = c.num_attention_heads * c.head_dim, c.num_key_value_heads * c.head_dim
    shapes = {
        "q_proj": (c.hidden_size, q_out),
        "k_proj": (c.hidden_size, kv_out),
        "v_proj": (c.hidden_size, kv_out),
        "o_proj": (q_out, c.hidden_size),
    }
    expected = c.num_hidden_layers * sum(RANK * (i + o) for i, o in shapes.values())
    path = adapter / "adapter_model.safetensors"
    with safe_open(path, "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    assert all("lora_A" in k or "lora_B" in k for k in tensors)
    assert sum(t.numel() for t in tensors.values()) == expected == 7168
    width = next(iter(tensors.values())).element_size()
    assert expected * width <= path.stat().st_size <= expected * width + 16_384  # plus the JSON header
    assert path.stat().st_size * 1000 < (model_dir / "model.safetensors").stat().st_size
    assert json.loads((adapter / "adapter_config.json").read_text())["r"] == RANK


def test_the_adapter_changes_the_greedy_answer_to_the_trained_target(trained):
    model_dir, _, adapter, _ = trained
    question, answer = PAIRS[0]
    base = greedy_answer(TransformersBackend(model_dir, temperature=0), question)
    tuned = greedy_answer(TransformersBackend(model_dir, adapter=adapter, temperature=0), question)
    assert tuned == target(answer) != base


@pytest.mark.parametrize("merge_adapter", [True, False], ids=["merged", "peft-wrapper"])
def test_prefix_reuse_with_the_adapter_matches_fresh_prefill_and_prefills_only_new_tokens(trained, merge_adapter):
    model_dir, _, adapter, _ = trained
    reused_backend = TransformersBackend(model_dir, adapter=adapter, temperature=0, merge_adapter=merge_adapter)
    reused = chain(reused_backend, steps=2)
    fresh = chain(
        TransformersBackend(model_dir, adapter=adapter, temperature=0, merge_adapter=merge_adapter, reuse_prefix=False),
        steps=2,
    )
    assert [c for _, c, _ in reused] == [c for _, c, _ in fresh]
    assert reused_backend._keep_kw  # the real model's forward was inspected, not the wrapper's **kwargs
    (prev_prompt, prev_completion, first), (second_prompt, _, second) = reused
    assert first.cached_prompt_tokens == 0 and fresh[1][2].cached_prompt_tokens == 0
    # the cache holds the previous prompt and completion, but for a last <|return|>, never run (nothing follows it)
    unrun = 1 if prev_completion[-1] == special_ids().return_ else 0
    assert second.cached_prompt_tokens == len(prev_prompt) + len(prev_completion) - unrun
    new_tokens = len(second_prompt) - len(prev_prompt) - len(prev_completion)
    assert second.prompt_tokens - second.cached_prompt_tokens == new_tokens + unrun
    assert new_tokens > 0


def test_merge_to_writes_a_full_model_that_answers_like_the_adapter(trained, tmp_path):
    model_dir, _, adapter, _ = trained
    assert ft.main(["--model", str(model_dir), "--adapter", str(adapter), "--merge-to", str(tmp_path / "merged")]) == 0
    assert (tmp_path / "merged" / "model.safetensors").is_file()
    assert not (tmp_path / "merged" / "adapter_config.json").exists()
    question = PAIRS[1][0]
    merged = greedy_answer(TransformersBackend(tmp_path / "merged", temperature=0), question)
    assert merged == greedy_answer(TransformersBackend(model_dir, adapter=adapter, temperature=0), question)
    assert merged != greedy_answer(TransformersBackend(model_dir, temperature=0), question)


def test_the_script_runs_as_a_program(trained, tmp_path):
    model_dir, data, _, _ = trained
    out = tmp_path / "adapter"
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--data",
            str(data),
            "--model",
            str(model_dir),
            "--out",
            str(out),
            "--max-steps",
            "2",
            "--lr",
            "1e-2",
            "--rank",
            "4",
            "--grad-accum",
            "2",
            "--merge-to",
            str(tmp_path / "full"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    assert [line for line in proc.stderr.splitlines() if line.startswith("step ")][-1].startswith("step 2/2  loss ")
    assert proc.stdout.startswith("loss ") and f"in 2 steps; adapter saved to {out}" in proc.stdout
    assert json.loads((out / "adapter_config.json").read_text())["r"] == 4
    assert (tmp_path / "full" / "model.safetensors").is_file()
    assert "note: no tokenizer saved with the merged model" in proc.stderr  # the tiny base has none
    assert (
        subprocess.run(
            [sys.executable, str(SCRIPT), "--model", str(model_dir)], capture_output=True, text=True
        ).returncode
        == 2
    )  # neither --data nor --adapter


def test_a_missing_adapter_folder_is_a_one_line_error(trained, tmp_path):
    model_dir, _, _, _ = trained
    with pytest.raises(ModelNotFoundError, match=r"no LoRA adapter at .*nope: no such folder") as missing:
        TransformersBackend(model_dir, adapter=tmp_path / "nope")
    assert "\n" not in str(missing.value)
    with pytest.raises(ModelNotFoundError, match=r"has no adapter_config\.json"):
        TransformersBackend(model_dir, adapter=model_dir)  # a model folder, not an adapter


def test_without_peft_the_adapter_asks_for_the_finetune_extra(trained, monkeypatch):
    model_dir, _, adapter, _ = trained
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "peft" else real(name, *a))
    with pytest.raises(ConfigurationError, match=r'pip install "oss-agent\[finetune\]"'):
        TransformersBackend(model_dir, adapter=adapter)


def options(monkeypatch, tmp_path, **flags):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))  # no config file
    for setting in SETTINGS:
        if setting.env:
            monkeypatch.delenv(setting.env, raising=False)
    return resolve(flags)


def test_cli_adapter_goes_to_the_transformers_backend_only(trained, monkeypatch, tmp_path):
    model_dir, _, adapter, _ = trained
    backend = make_backend(
        options(
            monkeypatch,
            tmp_path,
            backend="transformers",
            model=str(model_dir),
            adapter=str(adapter),
            options={"temperature": "0"},
        )
    )
    assert isinstance(backend, TransformersBackend)
    assert greedy_answer(backend, PAIRS[0][0]) == target(PAIRS[0][1])
    for other in ("ollama", "llamacpp"):
        with pytest.raises(ConfigurationError, match="--adapter needs --backend transformers; for vLLM"):
            make_backend(options(monkeypatch, tmp_path, backend=other, adapter=str(adapter)))


def _exported(tmp_path: Path) -> Path:
    """A recorded two-turn tool chain, exported with `oss-agent sessions export --format sft`'s function."""
    from helpers import recorded

    from agent import Agent, tool
    from agent.backends import ScriptedBackend, call, final
    from agent.sessions import SessionStore
    from agent.training import export_sft

    @tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return f"sunny in {city}"

    script = [
        call("functions.get_weather", '{"city":"Paris"}', reasoning="Need Paris."),
        final("Sunny in Paris.", reasoning="The tool says so."),
        final("You are welcome."),
    ]
    agent = Agent(ScriptedBackend(script), tools=[get_weather], date="2026-12-01")
    store = SessionStore(tmp_path / "sessions.db")
    recorder = recorded(agent, store, ["Weather in Paris?", "Thanks!"])
    data = tmp_path / "data.jsonl"
    assert export_sft(store, [recorder.session_id], out=data).examples == 2
    store.close()
    return data


def test_the_exported_file_trains_as_it_is(trained, tmp_path):
    """Export -> finetune_lora: the script reads the export's rows (every extra key ignored) and learns from them."""
    model_dir = trained[0]
    data = _exported(tmp_path)
    rows = [json.loads(line) for line in data.read_text(encoding="utf-8").splitlines()]
    examples = ft.load_examples(data)
    assert [(e.input_ids, e.labels) for e in examples] == [(r["input_ids"], r["labels"]) for r in rows]
    config = ft.TrainConfig(rank=4, alpha=8, lr=LR, max_steps=16, seed=0)
    lora = ft.add_lora(ft.load_model(str(model_dir)), config)

    def mean_loss() -> float:
        with torch.no_grad():
            return sum(
                float(lora(input_ids=torch.tensor([e.input_ids]), labels=torch.tensor([e.labels])).loss)
                for e in examples
            ) / len(examples)

    before = mean_loss()
    ft.train(lora, examples, config, log=lambda line: None)
    after = mean_loss()
    assert after < before - 0.25, (before, after)  # measured 12.21 -> 11.84 (the same rows, evaluated alike)


def test_trl_collates_the_exported_rows_with_their_labels_as_they_are(tmp_path):
    """What the README promises: TRL's SFT collator keeps the export's labels and pads with -100."""
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    rows = [json.loads(line) for line in _exported(tmp_path).read_text(encoding="utf-8").splitlines()]
    pad = special_ids().end
    batch = DataCollatorForLanguageModeling(pad_token_id=pad)(
        [{"input_ids": r["input_ids"], "labels": r["labels"]} for r in rows]
    )
    longest = max(len(r["input_ids"]) for r in rows)
    for i, row in enumerate(rows):
        n = len(row["labels"])
        assert batch["labels"][i, :n].tolist() == row["labels"]
        assert batch["labels"][i, n:].tolist() == [-100] * (longest - n)
        assert batch["input_ids"][i, :n].tolist() == row["input_ids"]
