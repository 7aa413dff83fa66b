"""The FastAPI application: loads embedder, generator and indexes once, then serves them."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable

from fastapi import FastAPI

from api import problems, security
from api.deps import ServiceState
from api.limits import BodyLimit
from api.routers import ask, chat, health, models, page
from api.serving import GenerationQueue, ServedIndex
from rag.config import Settings
from rag.errors import RagError

log = logging.getLogger(__name__)
Loader = Callable[[ServiceState], None]
OFFLINE = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")


def load_models_and_indexes(service: ServiceState) -> None:
    """Load the embedder and generator once, then every served index with them."""
    from rag.embeddings import load_embedder
    from rag.generators import load_generator

    embedder = load_embedder(service.settings)
    generator = load_generator(service.settings)
    generator.count_text_tokens("ready")  # whatever tokenizer the counts need, loaded now
    for name in service.names:
        service.served[name] = ServedIndex(service.settings, name, embedder, generator)


def create_app(
    settings: Settings,
    names: list[str],
    *,
    loader: Loader = load_models_and_indexes,
    background: bool = True,
) -> FastAPI:
    """`loader` fills the service state; in the background so /healthz answers at once."""
    for variable in OFFLINE:  # no model library may reach a hub at run time
        os.environ[variable] = "1"
    # A model server batches concurrent requests; an in-process backend runs one at a time.
    remote = settings.generator_backend == "openai"
    running = settings.generator_concurrency if remote else 1
    service = ServiceState(
        settings=settings, names=names, queue=GenerationQueue(settings.max_queue, running)
    )

    def load() -> None:
        try:
            loader(service)
            service.ready = True
        except RagError as exc:
            service.load_error = problems.redact(str(exc))
            log.error("not ready: %s", exc)
        except Exception as exc:  # keep the process up so /healthz and /readyz can say why
            service.load_error = f"loading failed: {type(exc).__name__}"
            log.exception("loading failed")

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if background:
            threading.Thread(target=load, name="rag-loader", daemon=True).start()
        else:
            load()
        yield

    app = FastAPI(
        title="rag",
        summary="Grounded, cited answers from your own documents.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.service = service
    problems.install(app)
    for router in (health.router, ask.router, chat.router, models.router, page.router):
        app.include_router(router)
    if settings.api_key is None:
        app.openapi = without_security(app)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    security.install(app, settings.allowed_hosts, settings.cors_origins)
    return app


def without_security(app: FastAPI) -> Callable[[], dict]:
    """The OpenAPI schema without auth requirements, for a service started without a key."""
    generate = app.openapi

    def openapi() -> dict:
        schema = generate()
        for operations in schema["paths"].values():
            for operation in operations.values():
                operation.pop("security", None)
        schema.get("components", {}).pop("securitySchemes", None)
        return schema

    return openapi
