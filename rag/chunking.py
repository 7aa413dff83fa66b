"""Split documents into token-bounded chunks that the embedder sees whole, never truncated.

Each chunk is embedded as "title\\ntext"; the title's tokens are taken out of the chunk's
budget so that the pair still fits the embedder's maximum sequence length.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from langchain_text_splitters import RecursiveCharacterTextSplitter

from rag.documents import Document
from rag.errors import InputError

SPECIAL_TOKENS = 2  # [CLS] and [SEP]
MAX_TITLE_TOKENS = 32
COUNT_CACHE_LIMIT = 200_000  # distinct pieces whose token counts are remembered


@dataclass(frozen=True)
class Chunk:
    """A piece of one document, with where it came from."""

    doc_id: str
    chunk_no: int
    start: int
    end: int
    title: str
    text: str

    @property
    def embed_text(self) -> str:
        return f"{self.title}\n{self.text}"


class Chunker:
    """Token-aware recursive splitting with the embedder's own tokenizer."""

    def __init__(self, tokenizer, chunk_size: int, chunk_overlap: int, max_seq_length: int):
        limit = max_seq_length - SPECIAL_TOKENS - MAX_TITLE_TOKENS
        if chunk_size > limit:
            raise InputError(
                f"chunk_size {chunk_size} exceeds what the embedder reads whole ({limit} tokens "
                f"after room for the title); set RAG_CHUNK_SIZE to {limit} or less"
            )
        if chunk_overlap >= chunk_size:
            raise InputError(f"chunk_overlap {chunk_overlap} must be below chunk_size {chunk_size}")
        self.tokenizer = tokenizer
        self.chunk_size = chunk_size
        self.chunk_overlap = chunk_overlap
        self._backend = _untruncated_backend(tokenizer)
        self._counts: dict[str, int] = {}

    def count_tokens(self, text: str) -> int:
        """Tokens in `text`; remembered, since the splitter measures the same words again and
        again (most of chunking time went to tokenizing single words)."""
        count = self._counts.get(text)
        if count is None:
            count = self._measure(text)
            if len(self._counts) < COUNT_CACHE_LIMIT:
                self._counts[text] = count
        return count

    def _measure(self, text: str) -> int:
        if self._backend is not None:
            return len(self._backend.encode(text, add_special_tokens=False).ids)
        # verbose=False: pieces longer than the model limit are expected here, before splitting.
        return len(self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])

    def _title(self, title: str) -> str:
        ids = self.tokenizer(title, add_special_tokens=False, verbose=False)["input_ids"]
        if len(ids) <= MAX_TITLE_TOKENS:
            return title
        return self.tokenizer.decode(ids[:MAX_TITLE_TOKENS])

    def split(self, doc: Document) -> list[Chunk]:
        """Chunks of one document with character offsets into `doc.text`."""
        splitter = RecursiveCharacterTextSplitter(
            chunk_size=self.chunk_size,
            chunk_overlap=self.chunk_overlap,
            length_function=self.count_tokens,
            add_start_index=True,
            strip_whitespace=True,
        )
        title = self._title(doc.title)
        chunks: list[Chunk] = []
        for piece in splitter.create_documents([doc.text]):
            start = int(piece.metadata["start_index"])
            if start < 0:  # the splitter could not locate the piece; find it ourselves
                start = doc.text.find(piece.page_content)
            text = piece.page_content
            chunks.append(Chunk(doc.id, len(chunks), start, start + len(text), title, text))
        return chunks

    def split_all(self, docs: Iterable[Document]) -> Iterator[Chunk]:
        for doc in docs:
            yield from self.split(doc)


def _untruncated_backend(tokenizer):
    """A private copy of a fast tokenizer's Rust backend, with truncation and padding off.

    Calling it directly is about 5x cheaper than the transformers wrapper; the copy matters
    because the packaged tokenizer.json truncates at 128 tokens, which would undercount.
    Slow (pure Python) tokenizers have no backend: None, and the wrapper is used.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    from tokenizers import Tokenizer

    copy = Tokenizer.from_str(backend.to_str())
    copy.no_truncation()
    copy.no_padding()
    return copy
