"""GET /v1/models and /v1/models/{id}: the served indexes, as OpenAI lists models.

Model pickers (Open WebUI, LibreChat, editors' assistants) list these before anything else;
the id is what a chat completion names as its `model`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends

from api.deps import ServiceState, require_api_key, state
from api.problems import ModelNotFound
from api.schemas import ModelCard, ModelList, openai_error_responses

router = APIRouter(tags=["openai"], dependencies=[Depends(require_api_key)])
State = Annotated[ServiceState, Depends(state)]
OWNER = "rag"


def card(service: ServiceState, name: str) -> ModelCard:
    """An index as a model; `created` is when its served version was built (0 while loading)."""
    created = 0
    served = service.served.get(name)
    if served is not None:
        manifest = served.pipeline.index.manifest
        stamp = manifest.get("created_at") or manifest.get("updated_at")
        if isinstance(stamp, str):
            try:
                created = int(datetime.fromisoformat(stamp).timestamp())
            except ValueError:
                created = 0
    return ModelCard(id=name, created=created, owned_by=OWNER)


@router.get("/v1/models", responses=openai_error_responses(401))
def list_models(service: State) -> ModelList:
    """The served indexes, the first being the default."""
    return ModelList(data=[card(service, name) for name in service.names])


@router.get("/v1/models/{model}", responses=openai_error_responses(401, 404))
def retrieve_model(model: str, service: State) -> ModelCard:
    if model not in service.names:
        raise ModelNotFound(
            f"The model {model!r} does not exist here; served: {', '.join(service.names)}"
        )
    return card(service, model)
