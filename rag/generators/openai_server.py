"""The OpenAI-compatible backend: a model server answers, nothing is loaded in this process.

Any server speaking `/v1/chat/completions` works: vLLM, Ollama, llama.cpp's server, TGI,
`transformers serve` (docs/model-servers.md). Requests go through httpx (importing the openai
SDK alone costs about a second of `rag ask`'s start-up); Server-Sent Events are read line by line.

What a caller can rely on:
- `load_openai` asks the server for its models first, so a URL that does not answer, a refused
  key or a model it does not serve is a ModelLoadError naming the URL and the model (exit 2);
- up to RAG_GENERATOR_CONCURRENCY requests run at once (`generate_batch`, `rag serve`): the
  server batches them, which one in-process generation at a time cannot;
- 429 and 503 are retried RAG_GENERATOR_RETRIES times with backoff (Retry-After wins), within
  the deadline; any other failure, a stream cut before its finish reason or a reply longer than
  the token bound is GeneratorUnavailable: never a partial answer passed off as complete;
- token counts are the server's (its usage, or vLLM's /tokenize), else a local tokenizer
  loaded on first use (RAG_GENERATOR_TOKENIZER, default RAG_GENERATOR); `token_counts` says which.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from rag.config import PACKAGED_GENERATOR, Settings
from rag.errors import GenerationTimeout, ModelLoadError
from rag.generators.base import STOP_STRINGS, Chat, Generation, GeneratorUnavailable, cut_at_stop

log = logging.getLogger(__name__)
RETRIED = frozenset({429, 503})
BACKOFF = 0.5  # seconds before the first retry, doubled for each next one
MAX_BACKOFF = 8.0
READ_TIMEOUT = 300.0  # seconds a request without a deadline may wait on the server
CHARS_PER_TOKEN = 4  # the last-resort estimate when no tokenizer can be had


def within(max_time: float | None) -> str:
    return "in time" if max_time is None else f"within {max_time:.1f} s"


def models_url(url: str) -> str:
    return url.rstrip("/") + "/models"


def server_root(url: str) -> str:
    """The server's root (vLLM's /tokenize lives there, not under /v1)."""
    url = url.rstrip("/")
    return url.removesuffix("/v1")


def error_text(response: httpx.Response) -> str:
    """The server's own message from an error body (OpenAI's shape, FastAPI's, or plain text)."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:300] or response.reason_phrase
    if isinstance(body, dict):
        error = body.get("error", body.get("detail", body))
        if isinstance(error, dict):
            error = error.get("message", error)
        return str(error)[:300]
    return str(body)[:300]


def served_models(client: httpx.Client, url: str) -> list[str]:
    """The model names the server lists; ModelLoadError naming the URL when it cannot say."""
    try:
        response = client.get(models_url(url))
    except httpx.HTTPError as exc:
        raise ModelLoadError(
            f"the model server {url} does not answer ({type(exc).__name__}: {exc}); start it, "
            "or fix RAG_GENERATOR_URL"
        ) from None
    if response.status_code in (401, 403):
        raise ModelLoadError(
            f"the model server {url} refused the key ({response.status_code}: "
            f"{error_text(response)}); set RAG_GENERATOR_API_KEY"
        )
    if response.status_code == 404:
        raise ModelLoadError(
            f"no OpenAI-compatible API at {url} (GET /models answered 404); the URL usually "
            "ends in /v1"
        )
    if response.status_code != 200:
        raise ModelLoadError(
            f"the model server {url} answered GET /models with {response.status_code}: "
            f"{error_text(response)}"
        )
    try:
        return [str(entry["id"]) for entry in response.json()["data"]]
    except (ValueError, KeyError, TypeError):
        raise ModelLoadError(f"the model server {url} sent a model list rag cannot read") from None


def pick_model(wanted: str | None, served: list[str], url: str) -> str:
    """The configured model, checked against the list (Ollama lists `name:tag` for `name`)."""
    if wanted is None:
        if len(served) == 1:
            return served[0]
        raise ModelLoadError(
            f"the model server {url} serves {len(served)} models ({', '.join(served) or 'none'}): "
            "name one with RAG_GENERATOR_MODEL"
        )
    if wanted in served or any(name.split(":")[0] == wanted for name in served):
        return wanted
    raise ModelLoadError(
        f"the model server {url} does not serve the model {wanted!r} (RAG_GENERATOR_MODEL); "
        f"it serves: {', '.join(served) or 'none'}"
    )


class TokenCounter:
    """Token counts from the server's /tokenize when it has one, else a local tokenizer.

    Both are found on first use, not at start-up: `rag ask` reads the counts from the server's
    usage and never needs either.
    """

    def __init__(self, generator: OpenAIServerGenerator, settings: Settings) -> None:
        self.generator, self.settings = generator, settings
        self.lock = threading.Lock()
        self.method: str | None = None  # "server", "local" or "estimate" once known
        self.tokenizer: Any = None
        self.source = "not needed yet"

    def _choose(self) -> None:
        with self.lock:
            if self.method is not None:
                return
            if self.generator.server_count([{"role": "user", "content": "hello"}]) is not None:
                self.method, self.source = (
                    "server",
                    f"the server's /tokenize ({self.generator.url})",
                )
                return
            try:
                self.tokenizer, name = load_local_tokenizer(self.settings)
                self.method, self.source = "local", f"a local tokenizer ({name})"
            except Exception as exc:  # a count must never fail an answer
                log.warning("no tokenizer for token counts (%s): estimating", exc)
                self.method = "estimate"
                self.source = (
                    f"an estimate ({CHARS_PER_TOKEN} characters a token; set "
                    "RAG_GENERATOR_TOKENIZER)"
                )

    def chat(self, messages: Chat) -> int:
        self._choose()
        if self.method == "server":
            counted = self.generator.server_count(messages)
            if counted is not None:
                return counted
        if self.method == "local":
            ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True)
            return len(ids["input_ids"] if hasattr(ids, "keys") else ids)
        return sum(len(m["content"]) for m in messages) // CHARS_PER_TOKEN + 1

    def text(self, text: str) -> int:
        self._choose()
        if self.method == "server":
            counted = self.generator.server_count(text)
            if counted is not None:
                return counted
        if self.method == "local":
            return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        return len(text) // CHARS_PER_TOKEN


def load_local_tokenizer(settings: Settings) -> tuple[Any, str]:
    """RAG_GENERATOR_TOKENIZER (a folder or hub id), else the configured generator's own."""
    from transformers import AutoTokenizer

    if settings.generator_tokenizer:
        return AutoTokenizer.from_pretrained(settings.generator_tokenizer), (
            settings.generator_tokenizer
        )
    from rag.generators.source import resolve_source
    from rag.generators.transformers import dequantized_cache_dir

    source = resolve_source(settings)
    if source.gguf is not None:  # the dequantized copy's tokenizer.json reads in a blink
        cache = dequantized_cache_dir(settings.model_copy(update={"generator_cache": True}), source)
        if cache is not None and (cache / "tokenizer.json").is_file():
            return AutoTokenizer.from_pretrained(str(cache)), source.name
    return AutoTokenizer.from_pretrained(source.location, **source.load_options), source.name


class OpenAIServerGenerator:
    """`ChatGenerator` over an OpenAI-compatible server: complete, stream, batch, counts."""

    backend = "openai"

    def __init__(self, client: httpx.Client, url: str, model: str, settings: Settings) -> None:
        self.client, self.url, self.model = client, url.rstrip("/"), model
        self.name = f"{model} at {self.url}"
        self.max_new_tokens = settings.max_new_tokens
        self.do_sample, self.temperature = settings.do_sample, settings.temperature
        self.retries = settings.generator_retries
        self.connect_timeout = settings.generator_connect_timeout
        self.concurrency = settings.generator_concurrency
        self.slots = threading.BoundedSemaphore(self.concurrency)
        self.counter = TokenCounter(self, settings)
        self._tokenize: bool | None = None  # does the server have vLLM's /tokenize?

    @property
    def token_counts(self) -> str:
        """Where token counts come from, for reports: the server's usage first, then this."""
        return f"the server's usage; otherwise {self.counter.source}"

    def where(self) -> str:
        return f"the model server {self.url} (model {self.model!r})"

    # -- requests ------------------------------------------------------------------------

    def _body(
        self, messages: Chat, max_new_tokens: int | None, temperature: float | None, stream: bool
    ) -> dict[str, Any]:
        temperature = self.temperature if temperature is None else temperature
        sample = self.do_sample and temperature > 0
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "max_tokens": max_new_tokens or self.max_new_tokens,
            "temperature": temperature if sample else 0.0,  # 0: greedy, as OpenAI's API says
            "stream": stream,
        }
        if STOP_STRINGS:
            body["stop"] = list(STOP_STRINGS)
        if stream:
            body["stream_options"] = {"include_usage": True}
        return body

    def _timeout(self, left: float | None) -> httpx.Timeout:
        connect = self.connect_timeout if left is None else min(self.connect_timeout, left)
        return httpx.Timeout(READ_TIMEOUT if left is None else left, connect=connect)

    def _failure(self, response: httpx.Response) -> GeneratorUnavailable:
        status = response.status_code
        what = {401: "refused the key", 403: "refused the key", 404: "does not know the model"}
        return GeneratorUnavailable(
            f"{self.where()} {what.get(status, 'failed')} ({status}: {error_text(response)})"
        )

    def _send(self, body: dict[str, Any], max_time: float | None, read: Callable[..., Any]) -> Any:
        """POST the chat within the deadline, retrying 429/503; `read` consumes the response."""
        deadline = None if max_time is None else time.monotonic() + max_time

        def left() -> float | None:
            if deadline is None:
                return None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise GenerationTimeout(f"{self.where()} gave no answer {within(max_time)}")
            return remaining

        if not self.slots.acquire(timeout=left()):
            raise GenerationTimeout(
                f"all {self.concurrency} requests to {self.where()} stayed busy {within(max_time)}"
            )
        try:
            for attempt in range(self.retries + 1):
                request = self.client.build_request(
                    "POST",
                    self.url + "/chat/completions",
                    json=body,
                    timeout=self._timeout(left()),
                )
                try:
                    response = self.client.send(request, stream=True)
                except httpx.TimeoutException:
                    raise GenerationTimeout(
                        f"{self.where()} gave no answer {within(max_time)}"
                    ) from None
                except httpx.HTTPError as exc:
                    raise GeneratorUnavailable(
                        f"{self.where()} does not answer ({type(exc).__name__}: {exc})"
                    ) from None
                try:
                    if response.status_code == 200:
                        return read(response, left)
                    response.read()
                    if response.status_code in RETRIED and attempt < self.retries:
                        wait = backoff(response, attempt)
                        remaining = left()
                        if remaining is not None and wait >= remaining:
                            raise self._failure(response)
                        log.warning(
                            "%s answered %d; retrying in %.1f s",
                            self.where(),
                            response.status_code,
                            wait,
                        )
                        time.sleep(wait)
                        continue
                    raise self._failure(response)
                finally:
                    response.close()
            raise AssertionError("unreachable: the last attempt returns or raises")
        finally:
            self.slots.release()

    def _read_whole(self, limit: int, max_time: float | None):
        def read(response: httpx.Response, left: Callable[[], float | None]) -> Generation:
            try:
                response.read()
                body = response.json()
                choice = body["choices"][0]
                raw = choice["message"].get("content") or ""
                reason = choice.get("finish_reason")
            except httpx.TimeoutException:
                raise GenerationTimeout(
                    f"{self.where()} gave no answer {within(max_time)}"
                ) from None
            except httpx.HTTPError as exc:
                raise GeneratorUnavailable(
                    f"{self.where()} broke off the answer ({type(exc).__name__}: {exc})"
                ) from None
            except (ValueError, KeyError, IndexError, TypeError, AttributeError):
                raise GeneratorUnavailable(
                    f"{self.where()} sent a reply that is not a chat completion"
                ) from None
            return self._generation(raw, reason, body.get("usage"), limit)

        return read

    def _generation(
        self, raw: str, reason: str | None, usage: dict | None, limit: int
    ) -> Generation:
        """The Generation for a whole reply, after the checks the bad-input list asks for."""
        if reason is None:
            raise GeneratorUnavailable(
                f"{self.where()} ended the answer without a finish reason: it may be incomplete"
            )
        text, stopped = cut_at_stop(raw)
        prompt = int(usage.get("prompt_tokens") or 0) if usage else 0
        made = int(usage.get("completion_tokens") or 0) if usage else 0
        if made > limit:
            raise GeneratorUnavailable(
                f"{self.where()} sent {made} tokens, over the bound of {limit} (max_tokens): "
                "it ignores the bound"
            )
        finish = "length" if reason == "length" and not stopped else "stop"
        return Generation(text.strip(), prompt, made, finish)

    def complete(
        self,
        messages: Chat,
        max_new_tokens: int | None = None,
        temperature: float | None = None,
        max_time: float | None = None,
    ) -> Generation:
        """Complete a chat; GenerationTimeout past `max_time`, GeneratorUnavailable on failure."""
        limit = max_new_tokens or self.max_new_tokens
        body = self._body(messages, limit, temperature, stream=False)
        result = self._send(body, max_time, self._read_whole(limit, max_time))
        if not result.prompt_tokens:  # a server that reports no usage
            made = self.count_text_tokens(result.text)
            result = Generation(
                result.text, self.count_tokens(messages), made, result.finish_reason
            )
        return result

    def generate(
        self,
        messages: Chat,
        max_new_tokens: int | None = None,
        temperature: float | None = None,
        max_time: float | None = None,
    ) -> str:
        return self.complete(messages, max_new_tokens, temperature, max_time).text

    def stream(
        self,
        messages: Chat,
        max_new_tokens: int | None = None,
        temperature: float | None = None,
        max_time: float | None = None,
    ) -> Iterator[str]:
        """Yield text pieces as the server sends them, up to the first stop string.

        A stream cut before its finish reason raises GeneratorUnavailable, and one that runs
        past `max_time` GenerationTimeout: what came before is never passed off as the answer.
        """
        limit = max_new_tokens or self.max_new_tokens
        body = self._body(messages, limit, temperature, stream=True)
        items: queue.SimpleQueue[str | BaseException | None] = queue.SimpleQueue()

        def read(response: httpx.Response, left: Callable[[], float | None]) -> None:
            sent, given, made, finished = "", 0, 0, False
            try:
                for data in events(response):
                    left()  # GenerationTimeout once the deadline has passed
                    if "error" in data:
                        raise GeneratorUnavailable(
                            f"{self.where()} failed mid-answer: {data['error']}"
                        )
                    usage = data.get("usage") or {}
                    made = max(made, int(usage.get("completion_tokens") or 0))
                    if made > limit:
                        raise GeneratorUnavailable(
                            f"{self.where()} sent {made} tokens, over the bound of {limit}"
                        )
                    for choice in data.get("choices") or []:
                        sent += (choice.get("delta") or {}).get("content") or ""
                        finished = finished or bool(choice.get("finish_reason"))
                    text, stopped = cut_at_stop(sent)
                    if len(text) > given:
                        items.put(text[given:])
                        given = len(text)
                    if stopped:
                        return  # closing the response tells the server to stop
            except httpx.TimeoutException:
                raise GenerationTimeout(f"{self.where()} sent nothing {within(max_time)}") from None
            except httpx.HTTPError as exc:
                raise GeneratorUnavailable(
                    f"{self.where()} broke off the answer ({type(exc).__name__}: {exc})"
                ) from None
            if not finished:
                raise GeneratorUnavailable(
                    f"{self.where()} ended the stream before the answer was finished"
                )

        def produce() -> None:
            # The response is read and closed on this thread, whatever the consumer does.
            try:
                self._send(body, max_time, read)
                items.put(None)
            except BaseException as exc:  # raised again on the consumer's side
                items.put(exc)

        threading.Thread(target=produce, name="rag-remote-stream", daemon=True).start()
        while (item := items.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item

    def generate_batch(
        self, conversations: list[Chat], max_new_tokens: int | None = None
    ) -> list[str]:
        """All chats at once, RAG_GENERATOR_CONCURRENCY in flight: the server batches them."""
        if not conversations:
            return []
        with ThreadPoolExecutor(min(self.concurrency, len(conversations))) as pool:
            return list(pool.map(lambda chat: self.generate(chat, max_new_tokens), conversations))

    # -- token counts --------------------------------------------------------------------

    def server_count(self, what: Chat | str) -> int | None:
        """vLLM's /tokenize count of a chat (template included) or a text; None without one."""
        if self._tokenize is False:
            return None
        body: dict[str, Any] = {"model": self.model}
        if isinstance(what, str):
            body |= {"prompt": what, "add_special_tokens": False}
        else:
            body |= {"messages": what, "add_generation_prompt": True}
        try:
            response = self.client.post(
                server_root(self.url) + "/tokenize", json=body, timeout=self._timeout(10.0)
            )
            count = int(response.json()["count"]) if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            count = None
        if self._tokenize is None:
            self._tokenize = count is not None
        return count

    def count_tokens(self, messages: Chat) -> int:
        return self.counter.chat(messages)

    def count_text_tokens(self, text: str) -> int:
        return self.counter.text(text)

    def chat_prompt(self, messages: Chat) -> str:
        """The prompt as the local tokenizer's chat template renders it (the server's may
        differ only if it was given another template)."""
        self.counter._choose()
        if self.counter.method == "local":
            return self.counter.tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, tokenize=False
            )
        return "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"

    def check(self) -> None:
        """ModelLoadError unless the server answers and still serves the model (/readyz)."""
        pick_model(self.model, served_models(self.client, self.url), self.url)

    def close(self) -> None:
        self.client.close()


class ServedAndTrainable:
    """The server answers; fine-tuning trains the same model loaded locally (`rag eval`'s ft
    systems). Everything but `torch_model`, `tokenizer` and `with_model` goes to the server."""

    def __init__(self, served: OpenAIServerGenerator, local: Any) -> None:
        self.served, self.local = served, local

    def __getattr__(self, name: str) -> Any:
        return getattr(self.served, name)

    @property
    def torch_model(self) -> Any:
        return self.local.torch_model

    @property
    def tokenizer(self) -> Any:
        return self.local.tokenizer

    def with_model(self, model: Any, name: str) -> Any:
        """A fine-tuned copy answers in process: the server never saw its weights."""
        return self.local.with_model(model, name)


def events(response: httpx.Response) -> Iterator[dict[str, Any]]:
    """The JSON data of each Server-Sent Event until `[DONE]`."""
    for line in response.iter_lines():
        if not line.startswith("data:"):
            continue
        data = line.removeprefix("data:").strip()
        if data == "[DONE]":
            return
        try:
            yield json.loads(data)
        except ValueError:
            raise GeneratorUnavailable(f"unreadable event from the server: {data[:120]}") from None


def backoff(response: httpx.Response, attempt: int) -> float:
    """Seconds before the next try: the server's Retry-After, else doubling from BACKOFF."""
    try:
        return min(MAX_BACKOFF, max(0.0, float(response.headers.get("retry-after", ""))))
    except ValueError:
        return min(MAX_BACKOFF, BACKOFF * 2**attempt)


def load_openai(settings: Settings, transport: httpx.BaseTransport | None = None):
    """Connect to RAG_GENERATOR_URL and check it serves the model; loads no weights.

    `transport` replaces the network (httpx.MockTransport in the unit tests).
    """
    url = (settings.generator_url or "").rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ModelLoadError(
            f"RAG_GENERATOR_URL {url!r} is not an http(s) URL (e.g. http://127.0.0.1:8001/v1)"
        )
    headers = {}
    if settings.generator_api_key is not None:
        headers["Authorization"] = f"Bearer {settings.generator_api_key.get_secret_value()}"
    client = httpx.Client(
        headers=headers,
        timeout=httpx.Timeout(30.0, connect=settings.generator_connect_timeout),
        limits=httpx.Limits(max_connections=settings.generator_concurrency + 4),
        transport=transport,
    )
    try:
        served = served_models(client, url)
    except ModelLoadError as exc:
        client.close()
        wanted = settings.generator_model
        raise ModelLoadError(f"{exc} (model {wanted!r})" if wanted else str(exc)) from None
    try:
        model = pick_model(settings.generator_model, served, url)
    except ModelLoadError:
        client.close()
        raise
    log.info("answering with %s at %s", model, url)
    return OpenAIServerGenerator(client, url, model, settings)


def plain_model_folder(settings: Settings) -> Path:
    """A plain float model folder of the configured generator, for a model server to load.

    The packaged GGUF is dequantized once into the transformers backend's own cache (the same
    folder `rag ask` reads), so a server and the in-process backend run the very same weights.
    A generator that is already a folder is returned as it is.
    """
    from rag.generators.source import resolve_source
    from rag.generators.transformers import (
        dequantized_cache_dir,
        load_pretrained,
        save_dequantized,
    )

    source = resolve_source(settings)
    if source.gguf is None:
        return Path(source.location)
    cache = dequantized_cache_dir(settings.model_copy(update={"generator_cache": True}), source)
    assert cache is not None  # a GGUF source with the cache on always has one
    if not (cache / "config.json").is_file():
        tokenizer, model = load_pretrained(source.location, source.load_options)
        save_dequantized(model, tokenizer, cache)
        if not (cache / "config.json").is_file():
            raise ModelLoadError(f"could not write the plain model folder {cache}")
    return cache


__all__ = ["PACKAGED_GENERATOR", "OpenAIServerGenerator", "load_openai", "plain_model_folder"]
