"""Tiny gpt-oss GGUFs for tests and benchmarks against a real llama-server.

Two recipes, both a 2-layer `GptOssForCausalLM` with the real gpt-oss
vocabulary (o200k_base plus the Harmony specials, ids checked against
openai-harmony) converted with llama.cpp's own `convert_hf_to_gguf.py`:

- `scripted(calls=N)`: hand-set weights whose output is a known Harmony
  completion. Until the prompt holds N tool calls per user message it answers
  with a call (`CALL`), then with a final answer (`FINAL`, which holds U+2028).
  Layer 1's attention counts marker tokens (`user`, `<|call|>`, `system`) from
  the `<|channel|>` and `<|message|>` positions; its expert saturates the sign
  of that count; every other position is a bigram lookup with margins so large
  that sampling at temperature 1 is as good as greedy.
- `random_weights()`: the same shapes, random initialisation.

GGUFs are cached under `$OSS_AGENT_CACHE/gguf` (default `~/.cache/oss-agent`),
keyed by a hash of the recipe and of this file.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import itertools
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

VOCAB = 201088
FIRST_SPECIAL = 199998
TOOL = "lookup"
ARGS = '{"q": "x"}'
CALL = f"<|channel|>commentary to=functions.{TOOL} <|constrain|>json<|message|>{ARGS}<|call|>"
ANSWER = "Done\u2028ok."
FINAL = f"<|channel|>final<|message|>{ANSWER}<|return|>"
# o200k_base's split pattern; transformers' converter defaults to cl100k's.
O200K_PATTERN = "|".join(
    [  # noqa: FLY002 - one alternative per line
        r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
        r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
        r"\p{N}{1,3}",
        r" ?[^\s\p{L}\p{N}]+[\r\n/]*",
        r"\s*[\r\n]+",
        r"\s+(?!\S)",
        r"\s+",
    ]
)
SRC_ENV = "OSS_AGENT_LLAMACPP_SRC"
CHAT_TEMPLATE = "models/templates/openai-gpt-oss-120b.jinja"
LLAMACPP_VERSION = "0.3.36"  # the llama-cpp-python sdist .ci/llama_server.sh builds from


@dataclass(frozen=True)
class Recipe:
    kind: str  # "scripted" or "random"
    calls: int = 1  # scripted: tool calls per user message before the final answer
    seed: int = 0  # random: initialisation seed

    @property
    def key(self) -> str:
        source = Path(__file__).read_bytes()
        blob = json.dumps(asdict(self), sort_keys=True).encode() + source
        return hashlib.sha256(blob).hexdigest()[:16]


def scripted(calls: int = 1) -> Path:
    """The GGUF of the scripted model (built once, then cached)."""
    return build(Recipe("scripted", calls=calls))


def random_weights(seed: int = 0) -> Path:
    """The GGUF of a randomly initialised model (built once, then cached)."""
    return build(Recipe("random", seed=seed))


def cache_dir() -> Path:
    base = os.environ.get("OSS_AGENT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "oss-agent"
    )
    return Path(base) / "gguf"


def converter_src() -> Path:
    """The vendored llama.cpp tree with `convert_hf_to_gguf.py` (from `.ci/llama_server.sh`)."""
    env = os.environ.get(SRC_ENV)
    src = Path(env) if env else cache_dir().parent / f"llama-cpp-python-{LLAMACPP_VERSION}" / "src"
    if not (src / "convert_hf_to_gguf.py").is_file() or not (src / CHAT_TEMPLATE).is_file():
        raise FileNotFoundError(
            f"no convert_hf_to_gguf.py or {CHAT_TEMPLATE} under {src}; run `. .ci/llama_server.sh` or set {SRC_ENV}"
        )
    return src


def build(recipe: Recipe) -> Path:
    out = cache_dir() / f"gpt-oss-tiny-{recipe.kind}-{recipe.key}.gguf"
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with _locked(out.with_suffix(".lock")):
        if out.is_file():  # another process built it while we waited
            return out
        from helpers import require_extra

        require_extra("transformers", "torch", "transformers")  # building one takes torch; a cached one does not
        with tempfile.TemporaryDirectory(prefix="tiny-gpt-oss-") as tmp:
            model_dir = Path(tmp) / "hf"
            save_checkpoint(recipe, model_dir)
            partial = out.with_suffix(".partial")
            subprocess.run(
                [
                    sys.executable,
                    str(converter_src() / "convert_hf_to_gguf.py"),
                    str(model_dir),
                    "--outfile",
                    str(partial),
                    "--outtype",
                    "f32",
                ],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                timeout=600,
            )
            partial.replace(out)
    return out


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# -- the Hugging Face checkpoint ---------------------------------------------------


def config() -> Any:
    from transformers import GptOssConfig

    return GptOssConfig(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=64,
        num_local_experts=2,
        num_experts_per_tok=2,
        sliding_window=128,
        max_position_embeddings=131072,
        eos_token_id=200002,
        pad_token_id=199999,
    )


def save_checkpoint(recipe: Recipe, model_dir: Path) -> None:
    import torch
    from transformers import GptOssForCausalLM

    torch.manual_seed(recipe.seed)
    model = GptOssForCausalLM(config()).eval()
    if recipe.kind == "scripted":
        with torch.no_grad():
            _script(model, recipe.calls)
        _check_script(model, recipe.calls)
    model.save_pretrained(model_dir)
    save_tokenizer(model_dir)


def _ids(text: str) -> list[int]:
    from agent.harmony.encoding import get_encoding

    return get_encoding().encode(text, allowed_special="all")


def _script(model: Any, calls: int) -> None:
    """Set every weight so that the model writes CALL or FINAL (see the module docstring)."""
    call, final = _ids(CALL), _ids(FINAL)
    start = _ids("assistant")
    markers = {"user": _ids("user")[0], "call": call[-1], "system": _ids("system")[0]}
    successors: dict[int, dict[str, int]] = {}  # token -> {"call"/"final"/"both": next}
    for name, seq in (("call", start + call), ("final", start + final)):
        for prev, nxt in itertools.pairwise(seq):
            assert successors.setdefault(prev, {}).setdefault(name, nxt) == nxt, f"token {prev} repeats"
    slots = {tok: i for i, tok in enumerate(successors)}
    other = len(slots)
    marker_dim = {name: other + 1 + i for i, name in enumerate(markers)}
    count_dim, sign_dim = other + 4, other + 5
    hidden = model.config.hidden_size
    assert sign_dim < hidden, "script too long for the hidden size"
    assert not set(markers.values()) & set(slots), "a marker token is also a script token"

    for p in model.parameters():
        p.zero_()
    emb = model.model.embed_tokens.weight
    emb[:, other] = 1.0
    for tok, i in slots.items():
        emb[tok] = 0.0
        emb[tok, i] = 1.0
    for name, tok in markers.items():
        emb[tok] = 0.0
        emb[tok, marker_dim[name]] = 1.0
    for layer in model.model.layers:
        layer.input_layernorm.weight.fill_(1.0)
        layer.post_attention_layernorm.weight.fill_(1.0)
    model.model.norm.weight.fill_(1.0)

    # Layer 1 (full attention), head 0: decision tokens query the markers. The
    # query and key sit in the lowest-frequency rotary pair, so the score does
    # not depend on distance; the sink takes all the weight elsewhere.
    norm = 8.0  # a one-hot row of a 64-wide residual after RMSNorm
    rope_dim = model.config.head_dim // 2 - 1
    attn = model.model.layers[1].self_attn
    decisions = [tok for tok, nxt in successors.items() if len(set(nxt.values())) > 1]
    for tok in decisions:
        attn.q_proj.weight[rope_dim, slots[tok]] = 24.0 / norm
    for name in markers:
        attn.k_proj.weight[rope_dim, marker_dim[name]] = 24.0 / norm
    # value: +1/N per call, -1 per user message, +0.5/N for the system message
    attn.v_proj.weight[0, marker_dim["call"]] = 1.0 / calls / norm
    attn.v_proj.weight[0, marker_dim["user"]] = -1.0 / norm
    attn.v_proj.weight[0, marker_dim["system"]] = 0.5 / calls / norm
    attn.o_proj.weight[count_dim, 0] = 1.0
    attn.sinks[0] = 40.0

    # Layer 1 expert (both experts alike): clamp the count's sign to ±7.
    experts = model.model.layers[1].mlp.experts
    experts.gate_up_proj_bias[:, 0] = 10.0  # gate of unit 0: clamped to 7, glu ≈ 7
    experts.gate_up_proj[:, count_dim, 1] = 10000.0  # up of unit 0
    experts.gate_up_proj_bias[:, 1] = -1.0  # so that (up + 1) is 0 where the count is 0
    experts.down_proj[:, 0, sign_dim] = 1.0 / 56.0

    head = model.lm_head.weight
    for tok, nxt in successors.items():
        if tok in decisions:
            head[nxt["final"], slots[tok]] = 20.0
            head[nxt["call"], slots[tok]] = 20.0
            head[nxt["final"], sign_dim] = 20.0
            head[nxt["call"], sign_dim] = -20.0
        else:
            (only,) = set(nxt.values())
            head[only, slots[tok]] = 20.0


def _check_script(model: Any, calls: int) -> None:
    """Greedy decoding in transformers follows the script (first turn and after the calls)."""
    import torch
    from openai_harmony import Author, Message, Role

    from agent.harmony.encoding import special_ids
    from agent.harmony.render import PromptSettings, extend_chain, render_turn

    prompt = render_turn(PromptSettings(date="2025-01-01"), [Message.from_role_and_content(Role.USER, "Hi")])
    result = (
        Message.from_author_and_content(Author.new(Role.TOOL, f"functions.{TOOL}"), "42")
        .with_recipient("assistant")
        .with_channel("commentary")
    )
    for step in range(calls + 1):
        expected = _ids(FINAL if step == calls else CALL)
        logits = None
        got: list[int] = []
        for _ in expected:  # greedy, whole prompt each time: the check must not depend on a cache
            logits = model(torch.tensor([prompt + got]), logits_to_keep=1).logits[0, -1]
            got.append(int(torch.argmax(logits)))
        assert got == expected, f"scripted model wrote {got}, expected {expected}"
        prompt = extend_chain(prompt, got, special_ids().call, [result])


# -- the tokenizer -------------------------------------------------------------------


def save_tokenizer(model_dir: Path) -> None:
    """o200k_base ranks plus one name per Harmony special id, as `tokenizer.json`."""
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    from agent.harmony.encoding import get_encoding

    enc = get_encoding()
    specials = [enc.decode([i]) for i in range(FIRST_SPECIAL, VOCAB)]
    assert len(set(specials)) == len(specials), "two special ids share a name"

    class _Converter(TikTokenConverter):
        @staticmethod
        def load_tiktoken_bpe(tiktoken_url: str) -> dict[bytes, int]:
            return _read_ranks(Path(tiktoken_url))

    converter = _Converter(vocab_file=str(_vocab_file()), pattern=O200K_PATTERN, extra_special_tokens=specials)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=converter.converted(), eos_token="<|return|>", pad_token="<|endoftext|>"
    )
    for i in (FIRST_SPECIAL, 200005, 200012, VOCAB - 1):
        assert tokenizer.convert_tokens_to_ids(enc.decode([i])) == i, f"special id {i} moved"
    sample = "<|start|>user<|message|>Grüße, 3.14 ok?\u2028  x<|end|><|start|>assistant"
    assert tokenizer.encode(sample, add_special_tokens=False) == _ids(sample), "tokenizer differs from Harmony"
    # llama.cpp's own gpt-oss template, so that `llama-server --jinja` renders chats as for a real GGUF
    tokenizer.chat_template = (converter_src() / CHAT_TEMPLATE).read_text(encoding="utf-8")
    tokenizer.save_pretrained(model_dir)


def _vocab_file() -> Path:
    base = os.environ.get("TIKTOKEN_ENCODINGS_BASE")
    path = Path(base) / "o200k_base.tiktoken" if base else None
    if path is None or not path.is_file():
        raise FileNotFoundError("set TIKTOKEN_ENCODINGS_BASE to the folder of o200k_base.tiktoken")
    return path


def _read_ranks(path: Path) -> dict[bytes, int]:
    ranks: dict[bytes, int] = {}
    for line in path.read_bytes().splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks
