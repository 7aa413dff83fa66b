"""Fine-tune the generator until it fits its training data or a budget runs out.

A run trains on examples (a chat and the target reply, or bare text for continued
pre-training) and, every `check_every` steps, asks the model being trained a fixed sample of
its own training questions (greedy, answer containment): the *fit*. It stops once the fit
reaches `target` (converged) or when the step or time budget is spent (not converged), and
records a learning curve: fit and held-out test accuracy by kind against steps and seconds.
The recipes that make the examples live in rag/evaluation/recipes.py.

Only `generator.torch_model` and `generator.tokenizer` are used: the training copy is a plain
transformers model, and generation during checks calls its `generate` directly. Training runs
where the generator's model lives (RAG_DEVICE): on a GPU with float32 weights and bf16 autocast
(rag/device.py), the tuned model handed back in the generator's own dtype.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import random
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from rag.device import model_device, on_device, training_precision
from rag.errors import InputError
from rag.evaluation.memory import PeakMemory
from rag.evaluation.metrics import containment
from rag.progress import bar

log = logging.getLogger(__name__)
CLOSED_BOOK = "Answer the question in one short sentence.\n\nQuestion: {question}"
Chat = list[dict[str, str]]
# Attention and MLP projections of Llama-style blocks (SmolLM2, Qwen, Llama): facts are
# thought to live in the MLPs, so adapters on attention alone under-fit (measured in issue 11).
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class FineTuneConfig:
    """One fine-tuning run: recipe, method, optimiser, and when to stop."""

    recipe: Literal["sft", "sft-para", "cpt", "raft"] = "sft"
    # Full fine-tuning fitted fictional-people's 150 pairs to 81% in 200 steps at 3e-4, where
    # every LoRA setting tried stayed under 13% (bench/finetune_search.py; README).
    method: Literal["lora", "full"] = "full"
    learning_rate: float | None = None  # 4e-4 for LoRA, 3e-4 for full
    schedule: Literal["constant", "cosine"] = "constant"
    warmup_steps: int = 5
    batch_size: int = 8
    max_length: int = 768  # pairs longer than this (tokens) are dropped, never cut
    window: int = 160  # continued pre-training: documents become windows of this many tokens
    lora_rank: int = 32
    target: float = 0.95  # fit on training questions that counts as converged
    check_every: int = 25  # steps between fit checks
    fit_sample: int = 32  # training questions asked at each check
    max_steps: int = 400
    max_minutes: float | None = 10.0  # training time, checks excluded
    seed: int = 0

    @property
    def lr(self) -> float:
        return self.learning_rate or (4e-4 if self.method == "lora" else 3e-4)

    def validate(self) -> FineTuneConfig:
        """Raise InputError for a budget or target that cannot mean anything."""
        if not 0 < self.target <= 1:
            raise InputError(f"the fit target must be in (0, 1], got {self.target}")
        if self.max_steps < 1:
            raise InputError(f"the step budget must be at least 1, got {self.max_steps}")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise InputError(f"the time budget must be positive minutes, got {self.max_minutes}")
        if self.check_every < 1 or self.fit_sample < 1 or self.batch_size < 1:
            raise InputError("check_every, fit_sample and batch_size must be at least 1")
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise InputError(f"the learning rate must be positive, got {self.learning_rate}")
        return self


@dataclass(frozen=True)
class Probe:
    """Questions put to the model while it trains: chats (None: the retrieval gate refused,
    scored 0), their gold answers and a kind each."""

    chats: list[Chat | None]
    answers: list[list[str]]
    kinds: list[str]

    def __len__(self) -> int:
        return len(self.chats)


@dataclass
class CurvePoint:
    step: int
    seconds: float  # training time so far, checks excluded
    loss: float | None
    fit: float | None  # containment on the fixed sample of training questions
    test: dict[str, float] = field(default_factory=dict)  # containment by kind, and "all"


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
    converged: bool | None  # None: nothing to check the fit on
    stopped: str  # "reached the fit target", "step budget", "time budget"
    fit: float | None
    target: float
    check_seconds: float = 0.0
    curve: list[CurvePoint] = field(default_factory=list)
    device: str = "cpu"  # where it was trained (results saved before this field: the CPU)
    passes: float | None = None  # steps x batch over the token sequences (cpt: windows)

    @classmethod
    def from_json(cls, text: str) -> FineTuneResult:
        data = json.loads(text)
        data["curve"] = [CurvePoint(**p) for p in data.get("curve", [])]
        return cls(**data)


def sample_fit_probe(pairs: list[tuple[Chat, list[str]]], size: int, seed: int) -> Probe:
    """A fixed, seeded sample of training questions (chat, gold answers) to check the fit on."""
    picked = random.Random(seed).sample(pairs, min(size, len(pairs)))
    return Probe([c for c, _ in picked], [a for _, a in picked], ["train"] * len(picked))


def greedy_answers(model, tokenizer, chats: list[Chat], max_new_tokens: int = 24) -> list[str]:
    """Greedy replies to a batch of chats, straight from the torch model being trained."""
    import torch

    side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # new tokens must follow each prompt directly
    try:
        inputs = tokenizer.apply_chat_template(
            chats, add_generation_prompt=True, return_tensors="pt", return_dict=True, padding=True
        )
    finally:
        tokenizer.padding_side = side
    inputs = on_device(inputs, model_device(model))
    with torch.no_grad():
        output = model.generate(
            **inputs,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
            pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
            stop_strings=["\n\n"],
            tokenizer=tokenizer,
        )
    width = inputs["input_ids"].shape[1]
    return [tokenizer.decode(row[width:], skip_special_tokens=True).strip() for row in output]


def probe_accuracy(model, tokenizer, probe: Probe, batch: int = 8) -> dict[str, float]:
    """Containment by kind and over all ("all"); a refused chat (None) scores 0."""
    scores: list[float] = [0.0] * len(probe)
    asked = [i for i, c in enumerate(probe.chats) if c is not None]
    for start in range(0, len(asked), batch):
        rows = asked[start : start + batch]
        replies = greedy_answers(model, tokenizer, [probe.chats[i] for i in rows])
        for i, reply in zip(rows, replies, strict=True):
            scores[i] = containment(reply, probe.answers[i])
    by_kind: dict[str, list[float]] = {}
    for kind, value in zip(probe.kinds, scores, strict=True):
        by_kind.setdefault(kind, []).append(value)
    out = {kind: statistics.fmean(v) for kind, v in sorted(by_kind.items())}
    return out | ({"all": statistics.fmean(scores)} if scores else {})


def cache_key(config: FineTuneConfig, base: str, examples: list, probes: list[Probe]) -> str:
    payload = json.dumps(
        [asdict(config), base, examples, [asdict(p) for p in probes], "fit-v1"], sort_keys=True
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def fine_tune(
    generator,
    examples: list[tuple[Chat | None, str]],
    config: FineTuneConfig,
    cache_dir: Path,
    *,
    fit: Probe | None = None,
    test: Probe | None = None,
    base=None,
    show_progress: bool = True,
) -> tuple[object, FineTuneResult]:
    """Train a copy of `base` (default: the generator's model) to fit; returns (model, result).

    Weights and result are saved under a key of data, probes and settings, and reused.
    """
    config.validate()
    if not examples:
        raise InputError(f"nothing to fine-tune on: the {config.recipe} recipe made no examples")
    base = base if base is not None else generator.torch_model
    device = model_device(base)
    fit = fit or Probe([], [], [])
    test = test or Probe([], [], [])
    key = cache_key(config, getattr(generator, "name", ""), examples, [fit, test])
    out = Path(cache_dir) / f"{config.recipe}-{config.method}-{key}"
    if (out / "result.json").is_file():
        result = FineTuneResult.from_json((out / "result.json").read_text())
        result.reused = True
        return load_tuned(base, out, config), result
    with PeakMemory() as memory:
        model = copy.deepcopy(base)
        if device.type != "cpu":
            model.float()  # float32 weights to update; the steps compute in bf16 (autocast)
        model = _prepare(model, config)
        run = _train(model, generator.tokenizer, examples, config, fit, test, show_progress)
    out.mkdir(parents=True, exist_ok=True)
    if config.method == "lora":
        model.save_pretrained(out, safe_serialization=True)  # the adapter only (a few MB)
    else:
        # save_pretrained refuses models loaded from GGUF; safetensors' save_model handles
        # the tied embedding and output weights.
        from safetensors.torch import save_model

        save_model(model, str(out / "model.safetensors"))
    model = (model.merge_and_unload() if config.method == "lora" else model).eval()
    if device.type != "cpu":
        model.to(dtype=next(base.parameters()).dtype)  # answer as the generator it came from
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 1e6
    last_fit = run.curve[-1].fit if run.curve else None
    result = FineTuneResult(
        path=str(out),
        reused=False,
        seconds=run.seconds,
        peak_rss_mb=memory.peak_mb,
        steps=run.steps,
        examples=len(examples),
        final_loss=run.loss,
        size_mb=size,
        converged=None if last_fit is None else last_fit >= config.target,
        stopped=run.stopped,
        fit=last_fit,
        target=config.target,
        check_seconds=run.check_seconds,
        curve=run.curve,
        device=device.type,
        passes=run.steps * config.batch_size / run.sequences,
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
        target_modules=list(LORA_TARGETS),
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, lora)
    model.train()
    return model


def encode(
    tokenizer, chat: Chat | None, target: str, config: FineTuneConfig
) -> list[tuple[list[int], list[int]]]:
    """Token ids and labels; for a chat only the reply is learned (prompt labels are -100).

    Bare text (no chat) becomes consecutive windows of `config.window` tokens, so continued
    pre-training sees all of a long article, not only its opening. A chat longer than
    `config.max_length` is dropped rather than cut, since cutting would lose the answer.
    """
    if chat is None:
        ids = tokenizer(target + tokenizer.eos_token)["input_ids"]
        size = config.window
        windows = [ids[i : i + size] for i in range(0, len(ids), size)]
        return [(w, list(w)) for w in windows if len(w) > 1]
    head = tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
    head_ids = tokenizer(head, add_special_tokens=False)["input_ids"]
    tail_ids = tokenizer(target + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
    if len(head_ids) + len(tail_ids) > config.max_length:
        return []
    return [(head_ids + tail_ids, [-100] * len(head_ids) + tail_ids)]


@dataclass
class _Run:
    sequences: int
    steps: int = 0
    seconds: float = 0.0
    check_seconds: float = 0.0
    loss: float | None = None
    stopped: str = "step budget"
    curve: list[CurvePoint] = field(default_factory=list)


def learning_rate_at(step: int, config: FineTuneConfig) -> float:
    """Linear warm-up, then constant or a cosine decay to a tenth over the step budget."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    if config.schedule == "constant":
        return config.lr
    span = max(1, config.max_steps - config.warmup_steps)
    progress = min(1.0, (step - config.warmup_steps) / span)
    return config.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def _train(model, tokenizer, examples, config: FineTuneConfig, fit: Probe, test: Probe, show):
    import torch

    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    encoded = [e for chat, t in examples for e in encode(tokenizer, chat, t, config)]
    if not encoded:
        raise InputError(f"every example is longer than max_length={config.max_length} tokens")
    if len(encoded) < sum(1 for c, _ in examples if c is not None):
        log.warning("dropped pairs longer than max_length=%d tokens", config.max_length)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    run = _Run(sequences=len(encoded))
    device = model_device(model)
    budget_s = None if config.max_minutes is None else 60 * config.max_minutes

    def check() -> bool:
        """Record a curve point; True when the fit target is reached."""
        start = time.perf_counter()
        model.eval()
        with training_precision(device):
            score = probe_accuracy(model, tokenizer, fit).get("all") if len(fit) else None
            on_test = probe_accuracy(model, tokenizer, test) if len(test) else {}
        model.train()
        run.check_seconds += time.perf_counter() - start
        run.curve.append(CurvePoint(run.steps, run.seconds, run.loss, score, on_test))
        return score is not None and score >= config.target

    desc = f"fine-tuning ({config.recipe}, {config.method})"
    with bar(config.max_steps, desc=desc, unit="step", show=show) as meter:
        done = check()  # step 0: the base model, so the curve starts where training did
        run.stopped = "reached the fit target" if done else run.stopped
        while not done:
            order = list(range(len(encoded)))
            rng.shuffle(order)
            for start in range(0, len(order), config.batch_size):
                if run.steps >= config.max_steps:
                    run.stopped, done = "step budget", True
                elif budget_s is not None and run.seconds >= budget_s:
                    run.stopped, done = "time budget", True
                if done:
                    break
                began = time.perf_counter()
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate_at(run.steps, config)
                batch = [encoded[i] for i in order[start : start + config.batch_size]]
                with training_precision(device):
                    loss = batch_loss(model, batch, pad)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optimizer.step()
                optimizer.zero_grad()
                run.loss = float(loss.detach())  # on a GPU this waits for the step to finish
                run.steps += 1
                run.seconds += time.perf_counter() - began
                meter.update(1)
                meter.set_postfix(loss=f"{run.loss:.3f}")
                if run.steps % config.check_every == 0 and check():
                    run.stopped, done = "reached the fit target", True
                    break
        if run.curve[-1].step != run.steps:
            check()  # the model as it ends, so the result never reports a stale fit
    return run


def batch_loss(model, batch: list[tuple[list[int], list[int]]], pad: int):
    """Mean cross-entropy over the learned tokens of a left-padded batch.

    Left padding puts every reply at the end of its row, so the output layer (a fifth of the
    model's work at SmolLM2's 49k vocabulary) runs only over the last positions that hold a
    learned token, not over the prompts: the same loss as the full logits give, cheaper.
    """
    import torch

    device = model_device(model)
    width = max(len(ids) for ids, _ in batch)
    ids = torch.tensor([[pad] * (width - len(x)) + x for x, _ in batch])
    # a row's first token has nothing before it to be predicted from
    labels = torch.tensor([[-100] * (width - len(y) + 1) + y[1:] for _, y in batch])
    mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x, _ in batch])
    positions = (mask.cumsum(-1) - 1).clamp(min=0)  # each row counts from its first real token
    learned = (labels != -100).any(0).nonzero()
    span = width - int(learned[0]) if len(learned) else 1  # last positions holding a label
    keep = min(width, span + 1)  # one more: the logit before a token predicts it
    logits = model(
        input_ids=ids.to(device),
        attention_mask=mask.to(device),
        position_ids=positions.to(device),
        logits_to_keep=keep,
    ).logits
    targets = labels[:, width - keep + 1 :].to(device)
    return torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), ignore_index=-100
    )


def load_tuned(base, path: Path, config: FineTuneConfig):
    """Rebuild a saved fine-tuned model from safetensors (no pickle)."""
    if config.method == "full":
        from safetensors.torch import load_model

        model = copy.deepcopy(base)  # float32 weights are cast to the base's dtype on loading
        load_model(model, str(Path(path) / "model.safetensors"), device=str(model_device(base)))
        return model.eval()
    from peft import PeftModel

    return PeftModel.from_pretrained(copy.deepcopy(base), path).merge_and_unload().eval()


def curve_summary(result: FineTuneResult) -> dict[str, Any]:
    """The learning curve's end points, for the report and the CLI."""
    first, last = (result.curve[0], result.curve[-1]) if result.curve else (None, None)
    return {
        "start": asdict(first) if first else None,
        "end": asdict(last) if last else None,
    }
