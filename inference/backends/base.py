"""A backend that generates one request at a time (llama-cpp-python's `LlamaProxy` pattern: explicit
close). `SerialEngine` (inference/engines/serial.py) serves it under the engine contract."""

from __future__ import annotations

from typing import Callable, Iterator, Protocol

from ..events import Event
from ..params import GenerationRequest, ModelSpec


class GenerationBackend(Protocol):
    """A loaded model. Every method runs on the model's one owner thread."""

    @classmethod
    def check(cls, spec: ModelSpec) -> list[str]:
        """Problems that would stop `spec` from loading (missing file, bad option); [] if none."""
        ...

    @classmethod
    def load(cls, spec: ModelSpec) -> "GenerationBackend":
        """Load the model; raise `ModelUnavailable` with a clear message if it can't be."""
        ...

    def generate(
        self, request: GenerationRequest, should_stop: Callable[[], bool]
    ) -> Iterator[Event]:
        """Yield Started, then Deltas, then Finished; check `should_stop` between tokens."""
        ...

    def close(self) -> None:
        """Free the model's memory now, not at garbage collection."""
        ...
