"""Fine-tune the generator on a dataset: the `ft` systems of the evaluation.

Two recipes: `sft` trains on question/answer pairs (train.jsonl, the FineTuneBench protocol,
or pairs generated from the corpus when there is none); `cpt` continues pre-training on the
corpus text (Ovadia et al. 2024). Two methods: `lora` (peft adapters, merged for inference)
and `full`. Weights are saved under a key of data and settings, and reused when it matches.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import random
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from rag.documents import Document
from rag.evaluation.data import Question
from rag.evaluation.memory import PeakMemory
from rag.progress import bar

log = logging.getLogger(__name__)
CLOSED_BOOK = "Answer the question in one short sentence.\n\nQuestion: {question}"


@dataclass(frozen=True)
class FineTuneConfig:
    recipe: Literal["sft", "cpt"] = "sft"
    method: Literal["lora", "full"] = "lora"
    epochs: int = 3
    learning_rate: float | None = None  # 1e-3 for LoRA, 5e-5 for full
    batch_size: int = 8
    max_length: int = 160
    lora_rank: int = 16
    # Caps the epochs: 3 epochs of covidqa-dev's 10,000 generated pairs would be 3,900 steps,
    # hours on 2 cores. fictional-people's 3 epochs take 54.
    max_steps: int | None = 300
    seed: int = 0

    @property
    def lr(self) -> float:
        return self.learning_rate or (1e-3 if self.method == "lora" else 5e-5)


@dataclass
class FineTuneResult:
    path: str
    reused: bool
    seconds: float
    peak_rss_mb: float
    steps: int
    examples: int
    final_loss: float | None
    size_mb: float


def examples_for(
    recipe: str, train: list[Question], documents: list[Document]
) -> list[tuple[str, str]]:
    """(prompt, target) pairs; for `cpt` the prompt is empty and the target is corpus text."""
    if recipe == "cpt":
        return [("", f"{d.title}\n{d.text}") for d in documents]
    if train:
        return [(q.question, q.answers[0]) for q in train]
    pairs = []  # no train.jsonl: one pair per sentence, asked about the document's title
    for doc in documents:
        for sentence in re.split(r"(?<=[.!?])\s+", doc.text):
            if len(sentence.split()) >= 4:
                pairs.append((f"What is one fact about {doc.title}?", sentence))
    return pairs


def cache_key(config: FineTuneConfig, base: str, examples: list[tuple[str, str]]) -> str:
    # "windows": documents are split into windows (earlier caches trained on their openings).
    payload = json.dumps([asdict(config), base, examples, "windows"], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def fine_tune(
    generator,
    examples: list[tuple[str, str]],
    config: FineTuneConfig,
    cache_dir: Path,
    *,
    base=None,
    show_progress: bool = True,
) -> tuple[object, FineTuneResult]:
    """Train a copy of `base` (default: the generator's model); returns (model, result)."""
    base = base if base is not None else generator.torch_model
    out = (
        Path(cache_dir)
        / f"{config.recipe}-{config.method}-{cache_key(config, generator.name, examples)}"
    )
    if (out / "result.json").is_file():
        result = FineTuneResult(**json.loads((out / "result.json").read_text()))
        result.reused = True
        return load_tuned(base, out, config), result
    with PeakMemory() as memory:
        started = time.perf_counter()
        model = _prepare(copy.deepcopy(base), config)
        steps, loss = _train(model, generator.tokenizer, examples, config, show_progress)
        seconds = time.perf_counter() - started
    out.mkdir(parents=True, exist_ok=True)
    if config.method == "lora":
        model.save_pretrained(out, safe_serialization=True)  # the adapter only (a few MB)
    else:
        # save_pretrained refuses models loaded from GGUF; safetensors' save_model handles
        # the tied embedding and output weights.
        from safetensors.torch import save_model

        save_model(model, str(out / "model.safetensors"))
    model = (model.merge_and_unload() if config.method == "lora" else model).eval()
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 1e6
    result = FineTuneResult(
        str(out), False, seconds, memory.peak_mb, steps, len(examples), loss, size
    )
    (out / "result.json").write_text(json.dumps(asdict(result), indent=1))
    return model, result


def _prepare(model, config: FineTuneConfig):
    if config.method == "full":
        model.train()
        return model
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=config.lora_rank,
        lora_alpha=2 * config.lora_rank,
        lora_dropout=0.0,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, lora)
    model.train()
    return model


def _encode(
    tokenizer, prompt: str, target: str, max_length: int
) -> list[tuple[list[int], list[int]]]:
    """Token ids and labels; for pairs only the answer is learned (prompt labels are -100).

    A document (no prompt) becomes consecutive windows of `max_length` tokens, so continued
    pre-training sees all of a long article, not only its opening.
    """
    if not prompt:
        ids = tokenizer(target + tokenizer.eos_token)["input_ids"]
        windows = [ids[i : i + max_length] for i in range(0, len(ids), max_length)]
        return [(w, list(w)) for w in windows if len(w) > 1]
    chat = [{"role": "user", "content": CLOSED_BOOK.format(question=prompt)}]
    head = tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
    head_ids = tokenizer(head, add_special_tokens=False)["input_ids"]
    tail_ids = tokenizer(target + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
    ids = (head_ids + tail_ids)[:max_length]
    labels = ([-100] * len(head_ids) + tail_ids)[:max_length]
    return [(ids, labels)]


def _train(model, tokenizer, examples, config: FineTuneConfig, show_progress: bool):
    import torch

    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    encoded = [e for p, t in examples for e in _encode(tokenizer, p, t, config.max_length)]
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0)
    per_epoch = max(1, -(-len(encoded) // config.batch_size))
    total = min(config.max_steps or per_epoch * config.epochs, per_epoch * config.epochs)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    step, loss_value = 0, None
    with bar(
        total,
        desc=f"fine-tuning ({config.recipe}, {config.method})",
        unit="step",
        show=show_progress,
    ) as meter:
        while step < total:
            order = list(range(len(encoded)))
            rng.shuffle(order)
            for start in range(0, len(order), config.batch_size):
                if step >= total:
                    break
                batch = [encoded[i] for i in order[start : start + config.batch_size]]
                width = max(len(ids) for ids, _ in batch)
                ids = torch.tensor([x + [pad] * (width - len(x)) for x, _ in batch])
                labels = torch.tensor([y + [-100] * (width - len(y)) for _, y in batch])
                mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x, _ in batch])
                loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optimizer.step()
                optimizer.zero_grad()
                loss_value = float(loss.detach())
                step += 1
                meter.update(1)
                meter.set_postfix(loss=f"{loss_value:.3f}")
    return step, loss_value


def load_tuned(base, path: Path, config: FineTuneConfig):
    """Rebuild a saved fine-tuned model from safetensors (no pickle)."""
    if config.method == "full":
        from safetensors.torch import load_model

        model = copy.deepcopy(base)
        load_model(model, str(Path(path) / "model.safetensors"))
        return model.eval()
    from peft import PeftModel

    return PeftModel.from_pretrained(copy.deepcopy(base), path).merge_and_unload().eval()
