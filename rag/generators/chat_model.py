"""Any `ChatGenerator` as a LangChain chat model, usable in an LCEL chain."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

ROLES = {"system": "system", "human": "user", "ai": "assistant"}


def to_chat(messages: list[BaseMessage]) -> list[dict[str, str]]:
    return [{"role": ROLES.get(m.type, "user"), "content": str(m.content)} for m in messages]


class GeneratorChatModel(BaseChatModel):
    """LangChain chat model over a loaded generator; the reply carries token usage and the
    finish reason (`usage_metadata`, `response_metadata["finish_reason"]`)."""

    generator: Any
    max_new_tokens: int | None = None
    temperature: float | None = None
    max_time: float | None = None

    def _options(self) -> dict[str, Any]:
        return {
            "max_new_tokens": self.max_new_tokens,
            "temperature": self.temperature,
            "max_time": self.max_time,
        }

    @property
    def _llm_type(self) -> str:
        return f"rag-{getattr(self.generator, 'backend', 'generator')}"

    def _generate(
        self, messages: list[BaseMessage], stop=None, run_manager=None, **kwargs: Any
    ) -> ChatResult:
        complete = getattr(self.generator, "complete", None)
        if complete is None:  # a minimal stand-in (tests) offering generate() only
            text = self.generator.generate(to_chat(messages), **self._options())
            return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text))])
        result = complete(to_chat(messages), **self._options())
        message = AIMessage(
            content=result.text,
            usage_metadata={
                "input_tokens": result.prompt_tokens,
                "output_tokens": result.completion_tokens,
                "total_tokens": result.prompt_tokens + result.completion_tokens,
            },
            response_metadata={"finish_reason": result.finish_reason},
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self, messages: list[BaseMessage], stop=None, run_manager=None, **kwargs: Any
    ) -> Iterator[ChatGenerationChunk]:
        for piece in self.generator.stream(to_chat(messages), **self._options()):
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece))
            if run_manager:
                run_manager.on_llm_new_token(piece, chunk=chunk)
            yield chunk
