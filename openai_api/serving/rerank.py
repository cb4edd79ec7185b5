"""Rerank: score every document against the query, best first, cut to `top_n`.

https://docs.cohere.com/reference/rerank
"""

from __future__ import annotations

from django.http import HttpResponse

from inference.manager import get_manager
from inference.params import ModelSpec
from registry.selectors import tier_spec_aget

from ..access import meter_tokens
from ..schemas.rerank import RerankRequest
from ..request_record import note_tokens
from ..remote import is_remote, remote_json
from .common import deadline, json_response, new_id, require_kind


async def create_rerank(body: RerankRequest, *, spec: ModelSpec | None = None) -> HttpResponse:
    """`spec` when the caller already resolved (and authorized) the tier."""
    spec = (spec or await tier_spec_aget(model=body.model)).with_keep_alive(body.keep_alive)
    require_kind(spec, "rerank", "rerank")
    if is_remote(spec):  # issue 16: relayed to the tier's upstream
        return await remote_json(body, spec=spec, path="rerank")
    request = body.to_request()
    result = await get_manager().run_batched(spec, request, deadline=deadline())
    await meter_tokens(prompt=result.prompt_tokens)
    note_tokens(prompt_tokens=result.prompt_tokens)
    order = sorted(range(len(result.scores)), key=lambda i: result.scores[i], reverse=True)
    if body.top_n is not None:
        order = order[: body.top_n]
    results = []
    for index in order:
        item = {"index": index, "relevance_score": result.scores[index]}
        if body.return_documents:
            item["document"] = {"text": request.documents[index]}
        results.append(item)
    return json_response(
        {
            "id": new_id("rerank"),
            "model": spec.name,
            "results": results,
            "usage": {"prompt_tokens": result.prompt_tokens, "total_tokens": result.prompt_tokens},
        }
    )
