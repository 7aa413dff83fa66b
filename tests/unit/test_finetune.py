"""Fine-tuning's encoding, schedule, fit check and learning curve, with a fake model.

The fake "learns" one more training answer every few optimiser steps, so the fit rises on a
known schedule and the stopping rules can be checked exactly.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rag.errors import InputError
from rag.evaluation.finetune import (
    FineTuneConfig,
    Probe,
    _train,
    encode,
    fine_tune,
    learning_rate_at,
    probe_accuracy,
    sample_fit_probe,
)
from rag.evaluation.recipes import closed_book


class CharTokenizer:
    """One token per character; chat templates as `<user>...<assistant>`."""

    eos_token = "$"
    eos_token_id = ord("$")
    pad_token_id = 0
    padding_side = "right"

    def __call__(self, text, add_special_tokens=True):
        return {"input_ids": [ord(c) for c in text]}

    def apply_chat_template(self, chats, add_generation_prompt, tokenize=True, **kwargs):
        def one(chat):
            return "".join(f"<{m['role']}>{m['content']}" for m in chat) + "<assistant>"

        if not tokenize:
            return one(chats)
        rows = [[ord(c) for c in one(chat)] for chat in chats]
        width = max(len(r) for r in rows)
        padded = [[0] * (width - len(r)) + r for r in rows]  # left padding
        return {"input_ids": torch.tensor(padded)}

    def decode(self, ids, skip_special_tokens=True):
        return "".join(chr(int(i)) for i in ids if int(i) not in (0, self.eos_token_id))


class LearningModel(torch.nn.Module):
    """Knows the answers in `book` one by one: one more every `pace` optimiser steps."""

    def __init__(self, book: dict[str, str], pace: int) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.book, self.pace, self.steps = list(book.items()), pace, 0

    def forward(self, input_ids, attention_mask, position_ids=None, logits_to_keep=0):
        if self.training:
            self.steps += 1
        keep = logits_to_keep or input_ids.shape[1]

        class Out:  # flat logits over a byte vocabulary, differentiable in `weight`
            logits = torch.zeros(input_ids.shape[0], keep, 512) + self.weight

        return Out()

    def generate(self, input_ids, **options):
        known = dict(self.book[: self.steps // self.pace])
        rows = []
        for row in input_ids:
            prompt = "".join(chr(int(i)) for i in row if int(i))
            reply = next((a for q, a in known.items() if q in prompt), "no idea")
            rows.append(row.tolist() + [ord(c) for c in reply])
        width = max(len(r) for r in rows)
        return torch.tensor([r + [0] * (width - len(r)) for r in rows])


BOOK = {f"Who is person {i}?": f"Name{i}" for i in range(10)}


def examples():
    return [(closed_book(q), a) for q, a in BOOK.items()]


def fit_probe():
    return sample_fit_probe([(closed_book(q), [a]) for q, a in BOOK.items()], 10, seed=0)


def config(**overrides) -> FineTuneConfig:
    base = {"batch_size": 2, "check_every": 5, "max_steps": 100, "max_minutes": None}
    return FineTuneConfig(**(base | overrides))


def test_a_document_is_split_into_windows_that_cover_all_of_it():
    text = "abcdefghij" * 5  # 50 characters + eos = 51 tokens
    windows = encode(CharTokenizer(), None, text, FineTuneConfig(window=16))
    assert [len(ids) for ids, _ in windows] == [16, 16, 16, 3]
    assert "".join(chr(t) for ids, _ in windows for t in ids) == text + "$"
    assert all(ids == labels for ids, labels in windows)


def test_a_question_answer_pair_learns_only_the_answer():
    [(ids, labels)] = encode(CharTokenizer(), closed_book("Who?"), "Ada", FineTuneConfig())
    answer = [ord(c) for c in "Ada$"]
    assert ids[-4:] == answer
    assert labels[-4:] == answer
    assert set(labels[:-4]) == {-100}


def test_a_pair_longer_than_max_length_is_dropped_not_cut():
    assert (
        encode(CharTokenizer(), closed_book("Who?"), "A" * 100, FineTuneConfig(max_length=40)) == []
    )


def test_the_schedule_warms_up_then_holds_or_decays():
    flat = FineTuneConfig(learning_rate=1e-3, warmup_steps=4, schedule="constant", max_steps=100)
    assert learning_rate_at(0, flat) == pytest.approx(2.5e-4)
    assert learning_rate_at(3, flat) == pytest.approx(1e-3)
    assert learning_rate_at(99, flat) == pytest.approx(1e-3)
    cosine = FineTuneConfig(learning_rate=1e-3, warmup_steps=4, schedule="cosine", max_steps=104)
    assert learning_rate_at(4, cosine) == pytest.approx(1e-3)
    assert learning_rate_at(104, cosine) == pytest.approx(1e-4)


def test_the_fit_check_scores_containment_by_kind_and_refusals_as_zero():
    model = LearningModel(BOOK, pace=1)
    model.steps = 10  # knows everything
    chats = [closed_book("Who is person 1?"), None, closed_book("Who is person 2?")]
    probe = Probe(chats, [["Name1"], ["Name5"], ["Wrong"]], ["a", "a", "b"])
    assert probe_accuracy(model, CharTokenizer(), probe) == {"a": 0.5, "b": 0.0, "all": 1 / 3}


def test_training_stops_at_the_first_check_where_the_fit_reaches_the_target():
    model = LearningModel(BOOK, pace=2)  # one more answer every 2 steps: 10 known at step 20
    run = _train(
        model,
        CharTokenizer(),
        examples(),
        config(target=0.8),
        fit_probe(),
        Probe([], [], []),
        False,
    )
    assert run.stopped == "reached the fit target"
    assert run.steps == 20, "16 steps know 8 answers, but the check after 15 saw 7"
    assert [p.step for p in run.curve] == [0, 5, 10, 15, 20]
    assert [p.fit for p in run.curve] == [0.0, 0.2, 0.5, 0.7, 1.0]


def test_a_spent_step_budget_is_not_convergence(tmp_path: Path):
    class Gen:
        torch_model = LearningModel(BOOK, pace=100)  # learns nothing within the budget
        tokenizer = CharTokenizer()
        name = "fake"

    _, result = fine_tune(
        Gen(),
        examples(),
        config(method="full", max_steps=12),
        tmp_path,
        fit=fit_probe(),
        show_progress=False,
    )
    assert result.converged is False
    assert result.stopped == "step budget"
    assert result.steps == 12
    assert [p.step for p in result.curve] == [0, 5, 10, 12], "the last state is always checked"
    assert result.fit == 0.0


def test_the_time_budget_stops_training():
    model = LearningModel(BOOK, pace=100)
    run = _train(
        model,
        CharTokenizer(),
        examples(),
        config(max_minutes=1e-9),
        fit_probe(),
        Probe([], [], []),
        False,
    )
    assert run.stopped == "time budget"
    assert run.steps == 1, "the budget is checked before each step"


def test_the_curve_records_test_accuracy_by_kind_at_every_check():
    model = LearningModel(BOOK, pace=1)
    test = Probe(
        [closed_book("Who is person 0?"), closed_book("Who is person 9?")],
        [["Name0"], ["Name9"]],
        ["memorization", "rephrased"],
    )
    run = _train(model, CharTokenizer(), examples(), config(target=1.0), fit_probe(), test, False)
    assert run.curve[0].test == {"memorization": 0.0, "rephrased": 0.0, "all": 0.0}
    assert run.curve[-1].test == {"memorization": 1.0, "rephrased": 1.0, "all": 1.0}
    assert all(a.seconds <= b.seconds for a, b in zip(run.curve, run.curve[1:], strict=False))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"target": 0.0}, "target"),
        ({"target": 1.5}, "target"),
        ({"max_steps": 0}, "step budget"),
        ({"max_minutes": -1.0}, "time budget"),
        ({"max_minutes": 0.0}, "time budget"),
        ({"learning_rate": -1e-3}, "learning rate"),
    ],
)
def test_a_budget_or_target_that_means_nothing_is_refused(overrides, message):
    with pytest.raises(InputError, match=message):
        FineTuneConfig(**overrides).validate()
