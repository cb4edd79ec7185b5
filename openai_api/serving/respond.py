"""From a run (or a stored result) to the HTTP response, through an endpoint's renderer.

The same two functions answer chat and completions (and may answer the Responses API): live,
streamed or not, and from the cache.
"""

from __future__ import annotations

from django.http import HttpResponse

from .choices import ChoiceRun, replay_outputs
from .common import Keep, Renderer, json_response, replayed, sse_response, sse_stream, with_relaxed
from .results import GenerationResult


async def respond_live(run: ChoiceRun, renderer: Renderer, *, stream: bool, keep: Keep | None) -> HttpResponse:
    """Start the run (errors before any byte), then stream it or answer it whole; a complete
    answer not cut short by its deadline goes to `keep` (the cache)."""
    await run.start()
    if stream:
        return with_relaxed(sse_response(sse_stream(renderer, run.outputs(), run.result, keep)), run.result.relaxed)
    result = await run.collect()
    if keep is not None and not result.timed_out:
        await keep(result)
    return with_relaxed(json_response(renderer.whole(result)), result.relaxed)


def respond_stored(result: GenerationResult, renderer: Renderer, *, stream: bool) -> HttpResponse:
    """A stored result through the same renderer: streamed (one piece per choice) or whole."""
    if stream:
        response = sse_response(sse_stream(renderer, replayed(replay_outputs(result)), result, None))
    else:
        response = json_response(renderer.whole(result))
    return with_relaxed(response, result.relaxed)
