"""What one generation request measured, for the access log and the metrics.

The caller creates it and hands it to `ModelManager.generate`; the model's owner thread fills it
once per choice (never per token), and the caller reads it after the generation ended. Times are
`time.perf_counter()` values, comparable across threads.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class GenerationStats:
    queued_at: float | None = None  # handed to the model's queue
    started_at: float | None = None  # the owner thread took it
    first_token_at: float | None = None  # the first text of any choice
    prompt_tokens: int = 0
    completion_tokens: int = 0
    decode_seconds: float = 0.0  # summed over choices: first token to last
    decode_intervals: int = 0  # summed over choices: tokens after the first

    @property
    def queue_seconds(self) -> float | None:
        if self.queued_at is None or self.started_at is None:
            return None
        return max(0.0, self.started_at - self.queued_at)

    @property
    def seconds_per_output_token(self) -> float | None:
        """Mean time between output tokens (vLLM's request_time_per_output_token)."""
        return self.decode_seconds / self.decode_intervals if self.decode_intervals > 0 else None

    def choice_finished(self, *, started: float, first_token: float | None, ended: float, finished) -> None:
        """Called by the owner thread as each choice ends (`first_token`: seconds after `started`)."""
        self.prompt_tokens = finished.prompt_tokens
        self.completion_tokens += finished.completion_tokens
        if first_token is not None and finished.completion_tokens > 1:
            self.decode_seconds += ended - (started + first_token)
            self.decode_intervals += finished.completion_tokens - 1
