"""Fine-tune gpt-oss with a LoRA adapter on an `oss-agent sessions export --format sft` file.

Each line of the data file is a JSON object with `input_ids` (Harmony o200k token ids) and
`labels` (the same length; -100 where a token carries no loss, the id itself where it does);
other keys are ignored. Only the adapter is saved (a few MB), not the model:

    pip install -e ".[transformers,finetune]"
    python examples/finetune_lora.py --data sft.jsonl --model openai/gpt-oss-20b --out ./finetuned_adapter
    oss-agent run --backend transformers --model openai/gpt-oss-20b --adapter ./finetuned_adapter "Hi"

`--merge-to DIR` also writes the base model with the adapter merged in, for servers that cannot
load adapters (with `--adapter DIR` and no `--data` it only merges an adapter trained earlier):

    python examples/finetune_lora.py --model openai/gpt-oss-20b --adapter ./finetuned_adapter --merge-to ./merged

vLLM can serve the adapter without merging: `vllm serve openai/gpt-oss-20b --enable-lora
--lora-modules mine=./finetuned_adapter`.

The defaults follow the gpt-oss LoRA guides: rank 8, alpha 16, the attention projections
(q_proj, k_proj, v_proj, o_proj), learning rate 2e-4, one epoch. The loop is deliberately
plain: AdamW on the LoRA parameters, the causal LM loss of the given labels (transformers
shifts them when `labels=` is passed), one optimizer step per `--grad-accum` batches.

On a GPU (gpt-oss-20b needs about 40 GB in bfloat16; the guides train on one 80 GB card)
load the base in bfloat16 and let accelerate place it:

    python examples/finetune_lora.py --data sft.jsonl --model openai/gpt-oss-20b \\
        --dtype bfloat16 --device auto --max-length 2048 --grad-accum 4 --out ./finetuned_adapter

The hub checkpoint stores its experts in MXFP4; without the Triton kernels transformers
dequantizes them to bfloat16 on load. Lower-memory 4-bit bases (bitsandbytes, QLoRA) load
through `AutoModelForCausalLM.from_pretrained(..., quantization_config=...)` in `load_model`;
a 4-bit base can train an adapter but not be merged into (`--merge-to` needs a bf16/fp32 base).
`--merge-to` also copies the base's tokenizer when it has one (a base without one, like the
tests' tiny model, gets a note on stderr: point the server at a tokenizer, e.g. `--tokenizer`).
Only the CPU path is tested here (on a tiny random model).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

IGNORE = -100  # the label of a token that carries no loss
DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")


@dataclass(frozen=True)
class Example:
    input_ids: list[int]
    labels: list[int]


@dataclass(frozen=True)
class TrainConfig:
    rank: int = 8
    alpha: int = 16
    dropout: float = 0.0
    targets: tuple[str, ...] = DEFAULT_TARGETS
    lr: float = 2e-4
    epochs: int = 1
    max_steps: int | None = None  # optimizer steps; when set it wins over epochs (as in transformers' Trainer)
    batch_size: int = 1
    grad_accum: int = 1
    seed: int = 0


@dataclass(frozen=True)
class TrainReport:
    first_loss: float
    last_loss: float
    steps: int
    losses: list[float] = field(default_factory=list)


def load_examples(path: str | Path, max_length: int | None = None) -> list[Example]:
    """The rows of an SFT export, truncated to `max_length` tokens; rows with no loss left are dropped."""
    examples: list[Example] = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            ids, labels = row.get("input_ids"), row.get("labels")
            if not isinstance(ids, list) or not isinstance(labels, list) or len(ids) != len(labels):
                raise ValueError(f"{path}:{number}: needs input_ids and labels, lists of the same length")
            if max_length is not None:
                ids, labels = ids[:max_length], labels[:max_length]
            if any(label != IGNORE for label in labels[1:]):  # the first label has no token before it
                examples.append(Example([int(t) for t in ids], [int(t) for t in labels]))
    return examples


def load_model(name: str, dtype: str = "auto", device: str = "cpu") -> Any:
    """The base model; `device="auto"` lets accelerate place it (GPUs first)."""
    import torch
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"torch_dtype": dtype if dtype == "auto" else getattr(torch, dtype)}
    if device == "auto":
        kwargs["device_map"] = "auto"
    model = AutoModelForCausalLM.from_pretrained(name, **kwargs)
    return model if device == "auto" else model.to(device)


def add_lora(model: Any, config: TrainConfig) -> Any:
    """`model` wrapped as a PeftModel with fresh LoRA weights on the target projections."""
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(config.seed)  # the LoRA A matrices start random
    lora = LoraConfig(
        r=config.rank,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=list(config.targets),
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)


def batches(examples: Sequence[Example], config: TrainConfig) -> Any:
    """Shuffled batches, epoch after epoch (forever when max_steps decides when to stop)."""
    order = list(range(len(examples)))
    rng = random.Random(config.seed)
    epoch = 0
    while config.max_steps is not None or epoch < config.epochs:
        rng.shuffle(order)
        for i in range(0, len(order), config.batch_size):
            yield [examples[k] for k in order[i : i + config.batch_size]]
        epoch += 1


def collate(batch: Sequence[Example], device: Any) -> dict[str, Any]:
    """Right-padded tensors; padding is masked out of attention and loss."""
    import torch

    width = max(len(e.input_ids) for e in batch)
    ids = torch.zeros((len(batch), width), dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, e in enumerate(batch):
        n = len(e.input_ids)
        ids[row, :n] = torch.tensor(e.input_ids)
        labels[row, :n] = torch.tensor(e.labels)
        mask[row, :n] = 1
    return {"input_ids": ids.to(device), "labels": labels.to(device), "attention_mask": mask.to(device)}


def train(
    model: Any, examples: Sequence[Example], config: TrainConfig, log: Callable[[str], None] | None = None
) -> TrainReport:
    """Train the LoRA weights of `model` (a PeftModel from `add_lora`); the loss of every optimizer step."""
    import torch

    if not examples:
        raise ValueError("no training examples (every row was empty or had no labelled tokens)")
    log = log or (lambda text: print(text, file=sys.stderr, flush=True))
    torch.manual_seed(config.seed)  # dropout
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0)
    per_epoch = math.ceil(len(examples) / config.batch_size)  # batches; accumulation windows run across epochs
    total = config.max_steps or math.ceil(per_epoch * config.epochs / config.grad_accum)
    device = params[0].device
    model.train()
    losses: list[float] = []
    window: list[float] = []
    stream = batches(examples, config)
    for batch in stream:
        loss = model(**collate(batch, device), use_cache=False).loss / config.grad_accum
        loss.backward()
        window.append(loss.item())
        if len(window) < config.grad_accum:
            continue
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(sum(window))
        window = []
        log(f"step {len(losses)}/{total}  loss {losses[-1]:.4f}")
        if len(losses) >= total:
            break
    if window:  # a last, partial accumulation window at the end of the data
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(sum(window) * config.grad_accum / len(window))
        log(f"step {len(losses)}/{total}  loss {losses[-1]:.4f}")
    model.eval()
    return TrainReport(losses[0], losses[-1], len(losses), losses)


def merge(model: Any, out: str | Path, tokenizer_from: str | None = None) -> None:
    """Fold the adapter of a PeftModel into its base weights and save the full model to `out`.

    With `tokenizer_from` (the base's id or folder) its tokenizer is saved next to the weights, if it has one.
    """
    model.merge_and_unload().save_pretrained(out)
    if tokenizer_from is not None:
        from transformers import AutoTokenizer

        try:
            AutoTokenizer.from_pretrained(tokenizer_from).save_pretrained(out)
        except (OSError, ValueError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            print(f"note: no tokenizer saved with the merged model ({reason})", file=sys.stderr)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Train a LoRA adapter for gpt-oss on an oss-agent SFT export.")
    p.add_argument("--data", help="the JSONL file of `oss-agent sessions export --format sft`")
    p.add_argument("--model", default="openai/gpt-oss-20b", help="base model: hub id or local folder")
    p.add_argument("--out", default="./finetuned_adapter", help="where the adapter is saved")
    p.add_argument("--adapter", help="an adapter trained earlier: with --merge-to and no --data, merge it")
    p.add_argument("--merge-to", metavar="DIR", help="also save the base with the adapter merged in")
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--alpha", type=int, default=16)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--targets", default=",".join(DEFAULT_TARGETS), help="comma-separated module names")
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--max-steps", type=int, help="stop after this many optimizer steps (wins over --epochs)")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--grad-accum", type=int, default=1, help="batches per optimizer step")
    p.add_argument("--max-length", type=int, help="truncate examples to this many tokens")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", default="auto", help="auto (as saved), bfloat16, float32 ...")
    p.add_argument("--device", default="cpu", help="cpu, cuda, or auto (accelerate's device_map)")
    args = p.parse_args(argv)
    if args.data is None and not (args.adapter and args.merge_to):
        p.error("give --data to train, or --adapter with --merge-to to merge an adapter trained earlier")
    if args.data is not None and args.adapter:
        p.error("--adapter is for merging without training; leave it out when training with --data")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    model = load_model(args.model, args.dtype, args.device)
    if args.data is None:
        from peft import PeftModel

        merge(PeftModel.from_pretrained(model, args.adapter), args.merge_to, args.model)
        print(f"merged {args.adapter} into {args.model}: saved to {args.merge_to}")
        return 0
    config = TrainConfig(
        rank=args.rank,
        alpha=args.alpha,
        dropout=args.dropout,
        targets=tuple(t.strip() for t in args.targets.split(",") if t.strip()),
        lr=args.lr,
        epochs=args.epochs,
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        grad_accum=args.grad_accum,
        seed=args.seed,
    )
    examples = load_examples(args.data, args.max_length)
    lora = add_lora(model, config)
    report = train(lora, examples, config)
    lora.save_pretrained(args.out)
    done = (
        f"loss {report.first_loss:.4f} -> {report.last_loss:.4f} in {report.steps} steps; adapter saved to {args.out}"
    )
    if args.merge_to:
        merge(lora, args.merge_to, args.model)
        done += f"; merged model saved to {args.merge_to}"
    print(done)
    return 0


if __name__ == "__main__":
    sys.exit(main())
