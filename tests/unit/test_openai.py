"""The OpenAI-compatible surface (/v1/*) through TestClient with a fake generator.

The real `openai` SDK against the real server is in tests/integration/test_clients.py.
"""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from .test_api import ASK, make_client, setup  # noqa: F401 - `setup` is a fixture

CHAT = "/v1/chat/completions"
QUESTION = {"role": "user", "content": ASK["question"]}


@pytest.fixture
def client(setup) -> TestClient:  # noqa: F811
    with make_client(setup) as client:
        yield client


def error_of(response) -> dict:
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"message", "type", "param", "code"}, body
    assert response.headers["content-type"].startswith("application/json")
    return body["error"]


def test_models_list_the_served_indexes(client: TestClient) -> None:
    listed = client.get("/v1/models").json()
    assert listed["object"] == "list"
    (model,) = listed["data"]
    assert model["id"] == "tiny" and model["object"] == "model" and model["created"] > 0
    assert client.get("/v1/models/tiny").json() == model
    missing = client.get("/v1/models/gpt-4o")
    assert missing.status_code == 404
    error = error_of(missing)
    assert error["code"] == "model_not_found" and "gpt-4o" in error["message"]


def test_unknown_model_is_404_model_not_found(client: TestClient) -> None:
    response = client.post(CHAT, json={"model": "gpt-4o", "messages": [QUESTION]})
    assert response.status_code == 404
    error = error_of(response)
    assert error["code"] == "model_not_found" and error["param"] == "model"
    assert "served: tiny" in error["message"]
    assert client.post(CHAT, json={"model": "tiny", "messages": [QUESTION]}).status_code == 200


def test_content_parts_null_content_and_long_system_prompts(client: TestClient) -> None:
    messages = [
        {"role": "system", "content": "You are a helpful assistant. " * 200},  # ~5,800 chars
        {"role": "user", "content": [{"type": "text", "text": "How many goats "}]},
        {"role": "assistant", "content": None},
        {"role": "user", "content": [{"type": "text", "text": ASK["question"]}]},
    ]
    reply = client.post(CHAT, json={"model": "tiny", "messages": messages})
    assert reply.status_code == 200, reply.text
    assert reply.json()["choices"][0]["message"]["content"].startswith("Beta station keeps")


def test_messages_past_the_configured_size_are_400(setup) -> None:  # noqa: F811
    with make_client(setup, max_message_chars=100) as client:
        messages = [{"role": "system", "content": "x" * 101}, QUESTION]
        response = client.post(CHAT, json={"messages": messages})
        assert response.status_code == 400
        assert "RAG_MAX_MESSAGE_CHARS" in error_of(response)["message"]


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"n": 2}, "n"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
        ({"tool_choice": "auto"}, "tool_choice"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"logprobs": True}, "logprobs"),
        ({"logprobs": 0}, "logprobs"),  # JSON false only, as the schema says
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"max_completion_tokens": 0}, "max_completion_tokens"),
    ],
)
def test_unsupported_fields_are_refused_naming_them(client: TestClient, extra, param) -> None:
    response = client.post(CHAT, json={"messages": [QUESTION], **extra})
    assert response.status_code == 400
    error = error_of(response)
    assert error["param"].split(".")[0] == param and error["type"] == "invalid_request_error"
    assert param.split("_")[0] in error["message"]


def test_supported_defaults_of_those_fields_are_accepted(client: TestClient) -> None:
    body = {
        "messages": [QUESTION],
        "n": 1,
        "tools": [],
        "tool_choice": "none",
        "response_format": {"type": "text"},
        "logprobs": False,
        "user": "someone",  # unknown fields are ignored, as OpenAI does
    }
    assert client.post(CHAT, json=body).status_code == 200


def test_image_parts_are_refused_with_400(client: TestClient) -> None:
    part = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    messages = [{"role": "user", "content": [part, {"type": "text", "text": "What is this?"}]}]
    response = client.post(CHAT, json={"messages": messages})
    assert response.status_code == 400
    assert error_of(response)["param"].startswith("messages.0.content")


def test_max_completion_tokens_reaches_the_generator(setup) -> None:  # noqa: F811
    from .test_api import FakeGenerator

    seen: list[int | None] = []

    class Recording(FakeGenerator):
        def generate(self, messages, max_new_tokens=None, **options) -> str:
            seen.append(max_new_tokens)
            return super().generate(messages, max_new_tokens, **options)

    with make_client(setup, Recording()) as client:
        body = {"messages": [QUESTION], "max_tokens": 50}
        client.post(CHAT, json={**body, "max_completion_tokens": 7})
        client.post(CHAT, json=body)
    assert seen == [7, 50]


def test_stream_sends_the_usage_chunk_when_asked(client: TestClient) -> None:
    body = {"messages": [QUESTION], "stream": True, "stream_options": {"include_usage": True}}
    text = client.post(CHAT, json=body).text
    chunks = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]
    assert text.rstrip().endswith("data: [DONE]")
    *answer, last = chunks
    assert last["choices"] == [] and last["usage"]["completion_tokens"] > 0
    assert last["usage"]["total_tokens"] == sum(
        last["usage"][k] for k in ("prompt_tokens", "completion_tokens")
    )
    assert all(c["usage"] is None and c["choices"] for c in answer)
    plain = client.post(CHAT, json={"messages": [QUESTION], "stream": True}).text
    plain_chunks = [json.loads(x[6:]) for x in plain.splitlines() if x.startswith("data: {")]
    assert all("usage" not in c and c["choices"] for c in plain_chunks)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", CHAT, {"messages": "nope"}),
        ("post", CHAT, b"{not json"),
        ("get", "/v1/embeddings", None),
    ],
)
def test_errors_under_v1_have_openai_shape(client: TestClient, method, path, body) -> None:
    if isinstance(body, bytes):
        response = client.post(path, content=body, headers={"content-type": "application/json"})
    elif body is None:
        response = getattr(client, method)(path)
    else:
        response = getattr(client, method)(path, json=body)
    assert response.status_code in (400, 404, 405)
    assert error_of(response)["message"]


def test_large_bodies_on_v1_are_413_in_openai_shape(client: TestClient) -> None:
    payload = json.dumps({"messages": [{"role": "user", "content": "x" * 200_000}]}).encode()
    response = client.post(CHAT, content=payload, headers={"content-type": "application/json"})
    assert response.status_code == 413 and error_of(response)["message"]
    problem = client.post("/ask", content=payload, headers={"content-type": "application/json"})
    assert problem.headers["content-type"] == "application/problem+json"  # own routes unchanged


def test_wrong_key_on_v1_is_401_invalid_api_key(setup) -> None:  # noqa: F811
    with make_client(setup, api_key="s3cret") as client:
        response = client.get("/v1/models", headers={"authorization": "Bearer wrong"})
        assert response.status_code == 401
        assert error_of(response)["code"] == "invalid_api_key"
        ok = client.get("/v1/models", headers={"authorization": "Bearer s3cret"})
        assert ok.status_code == 200


def test_follow_up_is_answered_from_the_conversation(client: TestClient) -> None:
    messages = [
        {"role": "user", "content": "Which station keeps seventeen goats?"},
        {"role": "assistant", "content": "Beta station keeps them. [1]\n\nSources: [1] beta.txt"},
        {"role": "user", "content": "What are they named after?"},
    ]
    reply = client.post(CHAT, json={"messages": messages}).json()
    assert reply["standalone_question"] == "What are seventeen goats named after?"
    assert "planets" in reply["choices"][0]["message"]["content"]
    alone = client.post(CHAT, json={"messages": messages[-1:]}).json()
    assert alone["standalone_question"] == "What are they named after?"


def test_history_past_the_bounds_is_refused_on_ask(setup) -> None:  # noqa: F811
    with make_client(setup, max_history_turns=1, max_history_chars=200) as client:
        history = [{"question": "Where is alpha?", "answer": "I don't know."}] * 2
        asked = client.post("/ask", json={**ASK, "history": history})
        assert asked.status_code == 422 and "RAG_MAX_HISTORY_TURNS" in asked.json()["detail"]
        long = [{"question": "x " * 150, "answer": None}]
        too_long = client.post("/ask", json={**ASK, "history": long})
        assert too_long.status_code == 422
        assert "RAG_MAX_HISTORY_CHARS" in too_long.json()["detail"]


def test_chat_reads_only_the_most_recent_turns_within_the_bounds(setup) -> None:  # noqa: F811
    """Chat clients resend the whole conversation: older turns are dropped, not refused."""
    messages = [
        {"role": "user", "content": "Which station keeps seventeen goats?"},
        {"role": "assistant", "content": "Beta station. [1]"},
        {"role": "user", "content": "What does the alpha reactor run at?"},
        {"role": "assistant", "content": "451 kelvin. [1]"},
        {"role": "user", "content": "How often does it run?"},
    ]
    with make_client(setup, max_history_turns=1) as client:
        reply = client.post(CHAT, json={"messages": messages})
        assert reply.status_code == 200
        assert reply.json()["standalone_question"] == "How often does the alpha reactor run?"
    with make_client(setup, max_history_chars=10) as client:
        reply = client.post(CHAT, json={"messages": messages})
        assert reply.json()["standalone_question"] == "How often does it run?"


def test_ask_and_search_read_the_question_in_the_light_of_history(client: TestClient) -> None:
    history = [{"question": "Which station keeps seventeen goats?", "answer": "Beta station."}]
    body = {"question": "What are they named after?", "history": history}
    answer = client.post("/ask", json=body).json()
    assert answer["question"] == "What are seventeen goats named after?"
    assert "planets" in answer["answer"]
    found = client.post("/search", json={**body, "k": 1}).json()
    assert found["sources"][0]["doc_id"] == "beta.txt"


def test_a_question_longer_than_ask_takes_is_400_but_a_long_system_prompt_is_not(client) -> None:
    too_long = client.post(CHAT, json={"messages": [{"role": "user", "content": "x " * 1001}]})
    assert too_long.status_code == 400
    assert error_of(too_long)["param"] == "messages.0.content"
    system = {"role": "system", "content": "Be brief. " * 1500}  # 15,000 characters
    assert client.post(CHAT, json={"messages": [system, QUESTION]}).status_code == 200
