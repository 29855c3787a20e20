"""Dead letters: what a consumer refused, why, and the original bytes."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse

from orchestrator.api.deps import Admin, ctx
from orchestrator.api.problems import Problem, not_found
from orchestrator.service.letters import CannotRedrive, letters, redrive

router = APIRouter(tags=["dead letters"])
REDRIVER = "baton.api"
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


@router.post("/dead-letters/{letter_id}/redrive", status_code=202,
             summary="publish a dead letter's bytes to their topic again")
async def redrive_letter(request: Request, letter_id: LetterId, caller: Admin,
                         again: Annotated[bool, Query(description="re-drive a letter that was "
                                                      "re-driven before")] = False
                         ) -> JSONResponse:
    """Under their key, to the partition they came from; the re-drive is recorded on
    baton.dlq naming who asked (consumers dedupe by event id, so re-driving an input that was
    applied after all is harmless). Dead letters are read from the bus itself, so the next
    `GET /dead-letters` shows it: there is no projection to wait for."""
    bus = ctx(request).bus
    letter = next((found for found in await letters(bus) if found.id == letter_id), None)
    if letter is None:
        raise not_found(f"dead letter {letter_id!r}", "list them with GET /api/v1/dead-letters")
    if letter.redriven_to and not again:
        raise Problem(409, "redriven-already", "Re-driven already",
                      f"letter {letter.id} was re-driven already (to "
                      f"{', '.join(letter.redriven_to)}); pass again=true to send it once more")
    try:
        sent = await redrive(bus, letter, by=f"{REDRIVER}:{caller.name}/{caller.request_id}")
    except CannotRedrive as exc:
        raise Problem(409, "cannot-redrive", "Cannot re-drive", str(exc)) from None
    return JSONResponse({"id": letter.id, "redriven_to": sent.where, "position": None},
                        status_code=202, headers={"X-Request-Id": caller.request_id})
