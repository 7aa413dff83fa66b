"""`rag serve` with fake models under real uvicorn: the real app, queue and generator thread.

The embedder is the fake bag-of-words one; the generator is rag's real `TransformersGenerator` (one
generation thread, deadlines) driving a fake model that answers with the first sentence of
passage [1]. It sleeps 0.02 s, 0.3 s when the question is about "gamma", and until the
deadline when it is about "alpha". It records the most generations it ever ran at once in the
file named by RAG_TEST_PEAK_FILE. Run from the repository root:

    python -m tests.reliability.fake_server --index tiny --port 8123
"""

from __future__ import annotations

import argparse
import os
import re
import threading
import time
from pathlib import Path

import torch
import uvicorn

from api.app import create_app
from api.deps import ServiceState
from api.serving import ServedIndex
from rag.config import Settings
from rag.generators.transformers import TransformersGenerator
from tests.conftest import FakeEmbedder


class WordTokenizer:
    """Whitespace-separated pieces as token ids; decoding joins them back exactly."""

    pad_token_id = eos_token_id = 0

    def __init__(self) -> None:
        self.words, self.ids = ["<pad>"], {"<pad>": 0}
        self.lock = threading.Lock()

    def encode(self, text: str) -> list[int]:
        with self.lock:
            return [self.ids.setdefault(w, len(self.words)) for w in self._new(text)]

    def _new(self, text: str) -> list[str]:
        pieces = re.findall(r"\s*\S+\s*", text)
        for piece in pieces:
            if piece not in self.ids:
                self.ids[piece] = len(self.words)
                self.words.append(piece)
        return pieces

    def decode(self, ids, skip_special_tokens: bool = True, **_) -> str:
        return "".join(self.words[i] for i in ids if i)

    def __call__(self, text: str, **_) -> dict[str, list[int]]:
        return {"input_ids": self.encode(text)}

    def apply_chat_template(self, messages, **_) -> dict[str, torch.Tensor]:
        text = "\n".join(m["content"] for m in messages)
        return {"input_ids": torch.tensor([self.encode(text)])}


class SlowModel:
    """Stands in for the transformers model: honours max_time and a streamer like it does."""

    def __init__(self, tokenizer: WordTokenizer, peak_file: Path | None) -> None:
        self.tokenizer, self.peak_file = tokenizer, peak_file
        self.running = self.peak = 0
        self.lock = threading.Lock()

    def generate(self, input_ids, max_time=None, streamer=None, **_):
        with self.lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
            if self.peak_file:
                self.peak_file.write_text(str(self.peak))
        try:
            prompt = self.tokenizer.decode(input_ids[0].tolist())
            question = prompt.rsplit("Question:", 1)[-1]
            delay = 3600 if "alpha" in question else 0.3 if "gamma" in question else 0.02
            time.sleep(delay if max_time is None else max(0.0, min(delay, max_time)))
            passage = re.search(r"<<<\n(.*?)\n>>>", prompt, re.S)
            answer = passage.group(1).split(".")[0] + ". [1]" if passage else "I don't know."
            ids = self.tokenizer.encode(answer)
            if streamer is not None:
                streamer.put(input_ids)
                for token in ids:
                    streamer.put(torch.tensor([token]))
                streamer.end()
            return torch.cat([input_ids, torch.tensor([ids])], dim=1)
        finally:
            with self.lock:
                self.running -= 1


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--index", action="append", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    settings = Settings(embedder="fake-bow", min_score=0.3, min_sentence_score=0.0)
    peak = os.environ.get("RAG_TEST_PEAK_FILE")
    tokenizer = WordTokenizer()
    generator = TransformersGenerator(
        SlowModel(tokenizer, Path(peak) if peak else None), tokenizer, "slow", settings
    )
    embedder = FakeEmbedder()

    def loader(service: ServiceState) -> None:
        for name in service.names:
            service.served[name] = ServedIndex(service.settings, name, embedder, generator)

    app = create_app(settings, args.index, loader=loader)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
