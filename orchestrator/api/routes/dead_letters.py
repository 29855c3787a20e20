"""Dead letters: what a consumer refused, why, and the original bytes."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request

from orchestrator.api.problems import not_found
from orchestrator.api.routes.runs import ctx
from orchestrator.service.letters import letters

router = APIRouter(tags=["dead letters"])
LetterId = Annotated[str, Path(pattern=r"^\d{1,9}@\d{1,18}$",
                               description="PARTITION@OFFSET on baton.dlq")]


@router.get("/dead-letters", summary="dead letters, oldest first")
async def list_letters(request: Request) -> dict[str, Any]:
    """Each with its reason, the consumer that refused it, when, where it came from, a
    preview and the original bytes (base64)."""
    return {"items": [letter.as_json(whole=True) for letter in await letters(ctx(request).bus)]}


@router.get("/dead-letters/{letter_id}", summary="one dead letter")
async def get_letter(request: Request, letter_id: LetterId) -> dict[str, Any]:
    for letter in await letters(ctx(request).bus):
        if letter.id == letter_id:
            return letter.as_json(whole=True)
    raise not_found(f"dead letter {letter_id!r}", "list them with GET /api/v1/dead-letters")
