"""How fine-tuning examples become token windows, with a character-level fake tokenizer."""

from rag.evaluation.finetune import _encode


class CharTokenizer:
    """One token per character; enough to check windows and label masks."""

    eos_token = "$"

    def __call__(self, text, add_special_tokens=True):
        return {"input_ids": [ord(c) for c in text]}

    def apply_chat_template(self, chat, add_generation_prompt, tokenize):
        return f"<user>{chat[0]['content']}<assistant>"


def test_a_document_is_split_into_windows_that_cover_all_of_it():
    text = "abcdefghij" * 5  # 50 characters + eos = 51 tokens
    windows = _encode(CharTokenizer(), "", text, max_length=16)
    assert [len(ids) for ids, _ in windows] == [16, 16, 16, 3]
    assert "".join(chr(t) for ids, _ in windows for t in ids) == text + "$"
    assert all(ids == labels for ids, labels in windows)


def test_a_question_answer_pair_learns_only_the_answer():
    [(ids, labels)] = _encode(CharTokenizer(), "Who?", "Ada", max_length=500)
    answer = [ord(c) for c in "Ada$"]
    assert ids[-4:] == answer
    assert labels[-4:] == answer
    assert set(labels[:-4]) == {-100}


def test_a_long_pair_is_cut_to_max_length():
    [(ids, labels)] = _encode(CharTokenizer(), "Who?", "A" * 100, max_length=40)
    assert len(ids) == len(labels) == 40
