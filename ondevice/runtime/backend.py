"""What a loaded model is to its consumers: a backend whose core is one streaming generator."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ..errors import WorkerError
from .protocol import (
    BenchTest,
    BenchTiming,
    Finished,
    GenerateRequest,
    ImatrixRequest,
    ModelFacts,
    PromptReady,
    ScoreRequest,
    TokenEvent,
)

if TYPE_CHECKING:
    from ..imatrix_file import ImatrixEntry
    from .logprobs import ChunkScores

Event = PromptReady | TokenEvent | Finished


class Backend(ABC):
    """A loaded model. Consumers (CLI, benchmarks, TUI) only use this interface."""

    facts: ModelFacts

    @abstractmethod
    def stream(self, request: GenerateRequest) -> Iterator[Event]:
        """Yield PromptReady, then TokenEvents, then one Finished."""

    @abstractmethod
    def cancel(self) -> None:
        """Ask the current generation to stop soon; its Finished says "cancelled"."""

    @abstractmethod
    def close(self) -> None:
        """Release the model."""

    @abstractmethod
    def rss_bytes(self) -> int:
        """Resident memory the model takes now (0 once released)."""

    # What consumers use beyond generation. A backend that cannot do one says so when asked.

    def drain(self) -> Finished | None:
        """After a consumer stopped reading a stream, finish that answer and return its end."""
        return None

    def tokenize(self, text: str, add_special: bool = False, parse_special: bool = False) -> list[int]:
        raise WorkerError(f"{type(self).__name__} cannot tokenize")

    def detokenize(self, token_ids: list[int] | tuple[int, ...]) -> str:
        raise WorkerError(f"{type(self).__name__} cannot detokenize")

    def reset(self) -> None:
        """Start a new conversation: forget the KV cache."""
        return None  # a backend that keeps no cache has nothing to forget

    def bench(
        self, test: BenchTest | str, n_tokens: int, n_threads: int | None = None, seed: int = 0
    ) -> BenchTiming:
        """One llama-bench test on an empty KV cache."""
        raise WorkerError(f"{type(self).__name__} cannot benchmark")

    def score(self, request: ScoreRequest) -> ChunkScores:
        """Evaluate one chunk of tokens and return its per-position scores (see ScoreRequest)."""
        raise WorkerError(f"{type(self).__name__} cannot score")

    def imatrix(self, request: ImatrixRequest) -> dict[str, ImatrixEntry]:
        """One chunk's importance-matrix sums (see ImatrixRequest; the model must be loaded with
        `LoadOptions.collect_imatrix`)."""
        raise WorkerError(f"{type(self).__name__} cannot collect an importance matrix")

    def generate(self, request: GenerateRequest) -> Finished:
        """Run a request to the end and return its Finished event."""
        finished = None
        for event in self.stream(request):
            if isinstance(event, Finished):
                finished = event
        if finished is None:  # pragma: no cover - stream() always ends with Finished or raises
            raise WorkerError("generation ended without a result")
        return finished

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
