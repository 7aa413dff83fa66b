"""The real training path (transformers, peft, safetensors) on a tiny random Llama.

A 2-layer model with a byte-level tokenizer built here: no download, a few seconds. It checks
what the fakes cannot: LoRA on the attention and MLP projections trains, greedy generation with
a real chat template and left padding answers, the adapter is saved and a cached run reloads
the same model.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rag.evaluation.finetune import (
    LORA_TARGETS,
    FineTuneConfig,
    fine_tune,
    greedy_answers,
    sample_fit_probe,
)
from rag.evaluation.recipes import closed_book

TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
PAIRS = [("Who is A?", "Ada"), ("Who is B?", "Bob"), ("Who is C?", "Cy")]


class TinyGenerator:
    """What fine-tuning uses of a Generator: `torch_model`, `tokenizer`, `name`."""

    name = "tiny-llama"

    def __init__(self) -> None:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers
        from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

        vocab = {c: i for i, c in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
        for special in ("<pad>", "<|im_start|>", "<|im_end|>"):
            vocab[special] = len(vocab)
        bpe = Tokenizer(models.BPE(vocab=vocab, merges=[]))
        bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        bpe.decoder = decoders.ByteLevel()
        self.tokenizer = PreTrainedTokenizerFast(
            tokenizer_object=bpe,
            eos_token="<|im_end|>",
            pad_token="<pad>",
            additional_special_tokens=["<|im_start|>"],
            chat_template=TEMPLATE,
        )
        config = LlamaConfig(
            vocab_size=len(vocab),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=2,
            max_position_embeddings=2048,
            tie_word_embeddings=True,
            eos_token_id=vocab["<|im_end|>"],
            pad_token_id=vocab["<pad>"],
        )
        torch.manual_seed(0)
        self.model = LlamaForCausalLM(config).eval()
        self.torch_model = self.model


@pytest.fixture(scope="module")
def tiny() -> TinyGenerator:
    return TinyGenerator()


def settings(method: str) -> FineTuneConfig:
    return FineTuneConfig(
        method=method,  # type: ignore[arg-type]
        learning_rate=1e-2 if method == "lora" else 3e-3,
        lora_rank=8,
        batch_size=3,
        warmup_steps=2,
        check_every=10,
        target=1.0,
        max_steps=300,
        max_minutes=None,
    )


@pytest.mark.parametrize("method", ["lora", "full"])
def test_a_tiny_model_fits_three_pairs_and_a_cached_run_reloads_it(
    tiny: TinyGenerator, tmp_path: Path, method: str
):
    examples = [(closed_book(q), a) for q, a in PAIRS]
    fit = sample_fit_probe([(closed_book(q), [a]) for q, a in PAIRS], 3, seed=0)
    chats = [chat for chat, _ in examples]
    assert greedy_answers(tiny.model, tiny.tokenizer, chats) != ["Ada", "Bob", "Cy"]
    model, result = fine_tune(
        tiny, examples, settings(method), tmp_path, fit=fit, show_progress=False
    )
    assert result.converged is True and result.fit == 1.0
    assert result.stopped == "reached the fit target"
    assert result.steps % 10 == 0 and result.steps < 300
    assert greedy_answers(model, tiny.tokenizer, chats) == ["Ada", "Bob", "Cy"]
    again, cached = fine_tune(
        tiny, examples, settings(method), tmp_path, fit=fit, show_progress=False
    )
    assert cached.reused and cached.steps == result.steps
    assert [p.fit for p in cached.curve] == [p.fit for p in result.curve]
    assert greedy_answers(again, tiny.tokenizer, chats) == ["Ada", "Bob", "Cy"]
    assert greedy_answers(tiny.model, tiny.tokenizer, chats) != ["Ada", "Bob", "Cy"], (
        "the base model is trained on a copy, never in place"
    )


def test_lora_adapts_the_attention_and_the_mlp_projections():
    from rag.evaluation.finetune import _prepare

    adapted = _prepare(TinyGenerator().model, settings("lora"))
    names = {n.split(".")[-4] for n, _ in adapted.named_parameters() if "lora_A" in n}
    assert names == set(LORA_TARGETS)


def test_the_loss_over_learned_tokens_equals_the_full_logits_loss(tiny: TinyGenerator) -> None:
    from rag.evaluation.finetune import batch_loss, encode

    config = FineTuneConfig()
    batch = [
        encode(tiny.tokenizer, closed_book(q), a, config)[0]
        for q, a in [*PAIRS, ("Who is the longest named person of all?", "Dorothea")]
    ]
    batch.append(encode(tiny.tokenizer, None, "Bare text is learned everywhere.", config)[0])
    pad = tiny.tokenizer.pad_token_id
    width = max(len(x) for x, _ in batch)
    ids = torch.tensor([x + [pad] * (width - len(x)) for x, _ in batch])
    labels = torch.tensor([y + [-100] * (width - len(y)) for _, y in batch])
    mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x, _ in batch])
    with torch.no_grad():
        full = tiny.model(input_ids=ids, attention_mask=mask, labels=labels).loss
        mine = batch_loss(tiny.model, batch, pad)
        replies = batch_loss(tiny.model, batch[:4], pad)  # replies only: few logits kept
        reference = tiny.model(input_ids=ids[:4], attention_mask=mask[:4], labels=labels[:4]).loss
    assert float(mine) == pytest.approx(float(full), rel=1e-5)
    assert float(replies) == pytest.approx(float(reference), rel=1e-5)
