"""Plain data that crosses the process boundary between the parent and a model worker."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Generic, TypeVar

from ..prompting import Message, PromptMode

if TYPE_CHECKING:
    pass

R = TypeVar("R")


class Ask(Generic[R]):
    """A request the worker answers with one Reply whose value is an R (the parent's `_ask` returns it)."""


class ExtraBufts(str, Enum):
    """llama.cpp's extra CPU buffer types: weights repacked for AVX2/AVX-512/NEON kernels, or routed
    through AMX tiles. They speed up some types on many CPUs, and crash (SIGILL) on some AMX ones."""

    AUTO = "auto"  # on, unless they have crashed on this machine with this build of llama.cpp
    ON = "on"
    OFF = "off"  # llama.cpp's --no-repack


@dataclass(frozen=True)
class LoadOptions:
    """How llama.cpp loads a model and sizes its context."""

    n_ctx: int = 4096
    n_threads: int | None = None  # None: the machine's physical cores
    n_batch: int = 512
    n_gpu_layers: int = 0
    use_mmap: bool = True
    n_ubatch: int | None = None  # prompt tokens per compute graph; None: the same as n_batch
    flash_attn: str = "auto"  # auto | on | off
    use_mlock: bool = False  # pin the weights in RAM
    kv_cache_type: str = "f16"  # f32 | f16 | bf16 | q8_0 | q4_0 | ...
    extra_bufts: ExtraBufts = ExtraBufts.AUTO  # the worker gets ON or OFF: the parent settles AUTO
    # The worker's data-segment limit (Linux RLIMIT_DATA: heap and anonymous memory, not the mapped
    # model file): llama.cpp's own allocations past it fail cleanly instead of eating the machine.
    memory_limit_bytes: int | None = None
    # An eval callback on the context gathers an importance matrix during ImatrixRequests (it costs a
    # little on every decode, so only workers opened for `ondevice imatrix` carry it).
    collect_imatrix: bool = False
    # llama.cpp RPC servers ("HOST:PORT") whose devices take layers (n_gpu_layers) next to this machine's.
    rpc_servers: tuple[str, ...] = ()
    # Share of the offloaded layers per device, in llama.cpp's device order (RPC servers in the order
    # given); empty: in proportion to each device's free memory, as llama.cpp decides.
    tensor_split: tuple[float, ...] = ()


@dataclass(frozen=True)
class GenerationParams:
    """Sampling and stopping; temperature <= 0 means greedy."""

    max_tokens: int = 256
    temperature: float = 0.8
    top_p: float = 0.95
    top_k: int = 40
    seed: int | None = None
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False  # generate exactly max_tokens, as speed benchmarks need


# Token events leave the worker at most this often: each message wakes the parent, and on a laptop
# with few cores that wake-up takes CPU from the decode threads. The first token goes at once, and
# every event keeps the time the worker measured, so the figures do not change.
SEND_EVERY_S = 0.03


@dataclass(frozen=True)
class GenerateRequest:
    messages: tuple[Message, ...]
    mode: PromptMode
    params: GenerationParams = GenerationParams()
    send_every: float = SEND_EVERY_S  # seconds between token batches; a UI asks for its redraw rate


@dataclass(frozen=True)
class DeviceShare:
    """What llama.cpp put on one device (from its load log): "CPU", or "RPC0" and the like."""

    device: str
    description: str  # an RPC device's endpoint, or the CPU's name
    model_bytes: int
    kv_cache_bytes: int
    compute_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.model_bytes + self.kv_cache_bytes + self.compute_bytes

    def as_dict(self) -> dict[str, object]:
        return {
            "device": self.device,
            "description": self.description,
            "model_bytes": self.model_bytes,
            "kv_cache_bytes": self.kv_cache_bytes,
            "compute_bytes": self.compute_bytes,
        }


@dataclass(frozen=True)
class ModelFacts:
    """What the worker learned while loading."""

    n_ctx: int
    n_ctx_train: int
    n_vocab: int
    n_threads: int
    n_gpu_layers: int
    model_size_bytes: int  # the weights, as llama.cpp counts them
    model_buffer_bytes: int  # buffers holding the weights (mmapped or read), from llama.cpp's log
    kv_cache_bytes: int
    compute_buffer_bytes: int
    output_buffer_bytes: int
    load_seconds: float
    bos_text: str
    eos_text: str
    add_bos: bool
    chat_template: str | None
    system_info: str
    pid: int
    extra_bufts: bool = True  # whether llama.cpp's extra CPU buffer types were on for this load
    gpu_offload: bool = False  # whether this llama.cpp build can offload layers to a GPU at all
    split: tuple[DeviceShare, ...] = ()  # per device, when layers went beyond this machine's CPU
    layers_offloaded: int = 0  # llama.cpp's "offloaded N/M layers": N (repeating layers and output)


@dataclass(frozen=True)
class PromptReady:
    """The exact text the model received and how many tokens it had."""

    text: str
    n_tokens: int
    n_reused: int  # tokens already in the KV cache from the previous turn


@dataclass(frozen=True)
class TokenEvent:
    text: str  # may be empty while a multi-byte character is incomplete
    token_id: int
    t: float  # seconds since the request started


@dataclass(frozen=True)
class TokenBatch:
    """Token events the worker sends together; the engine hands them on one by one."""

    events: tuple[TokenEvent, ...]


class StopReason(str, Enum):
    EOS = "eos"  # the model ended its text
    LENGTH = "length"  # max_tokens reached
    STOP = "stop"  # a stop string appeared
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class GenerationStats:
    prompt_tokens: int  # tokens in the rendered prompt
    prompt_tokens_evaluated: int  # those not already in the KV cache
    generated_tokens: int
    prompt_seconds: float
    generation_seconds: float  # from the first generated token to the last
    time_to_first_token: float
    peak_rss_bytes: int
    stop_reason: StopReason

    @property
    def prompt_tps(self) -> float:
        return _rate(self.prompt_tokens_evaluated, self.prompt_seconds)

    @property
    def generation_tps(self) -> float:
        # The first token comes out of prompt processing; decode speed counts the tokens after it.
        return _rate(self.generated_tokens - 1, self.generation_seconds)

    def as_dict(self) -> dict[str, float | int | str]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "prompt_tokens_evaluated": self.prompt_tokens_evaluated,
            "generated_tokens": self.generated_tokens,
            "prompt_seconds": round(self.prompt_seconds, 6),
            "generation_seconds": round(self.generation_seconds, 6),
            "time_to_first_token_seconds": round(self.time_to_first_token, 6),
            "prompt_tps": round(self.prompt_tps, 3),
            "generation_tps": round(self.generation_tps, 3),
            "peak_rss_bytes": self.peak_rss_bytes,
            "stop_reason": self.stop_reason.value,
        }


def _rate(n: int, seconds: float) -> float:
    return n / seconds if n > 0 and seconds > 0 and math.isfinite(seconds) else 0.0


@dataclass(frozen=True)
class Finished:
    text: str
    token_ids: tuple[int, ...]
    prompt: PromptReady
    stats: GenerationStats


class FailureKind(str, Enum):
    ERROR = "error"
    PROMPT = "prompt"  # the user's prompt is at fault (too long, empty), not the model or the worker


@dataclass(frozen=True)
class Failed:
    """A request failed inside the worker, which is still alive."""

    message: str
    kind: FailureKind = FailureKind.ERROR


@dataclass(frozen=True)
class TokenizeRequest(Ask[list[int]]):
    text: str
    add_special: bool = False
    parse_special: bool = False


@dataclass(frozen=True)
class DetokenizeRequest(Ask[str]):
    token_ids: tuple[int, ...]


@dataclass(frozen=True)
class ResetRequest(Ask[None]):
    """Forget the KV cache (a new conversation)."""


@dataclass(frozen=True)
class Reply:
    """The answer to an Ask request."""

    value: object = None


class BenchTest(str, Enum):
    PP = "pp"  # prompt processing: `n_tokens` random ids decoded in prompt batches
    TG = "tg"  # text generation: `n_tokens` single-token decodes


@dataclass(frozen=True)
class BenchRequest(Ask["BenchTiming"]):
    """One llama-bench test on an empty KV cache. Timed inside the worker, so the pipe costs nothing."""

    test: BenchTest
    n_tokens: int
    n_threads: int | None = None  # None: keep the threads the model was loaded with
    seed: int = 0


@dataclass(frozen=True)
class BenchTiming:
    test: BenchTest
    n_tokens: int
    n_threads: int
    seconds: float  # the decode calls only, synchronized
    first_token_seconds: float  # pp only: until a greedy first token is picked after the prompt
    peak_rss_bytes: int


@dataclass(frozen=True)
class ScoreRequest(Ask["ChunkScores"]):
    """Evaluate one chunk of tokens and score positions first .. len-2 against the token after each
    (llama-perplexity). With `save_path` the worker writes its quantized log-probabilities for those
    positions as rows `row ...` of the reference files; with `compare_path` it reads those rows
    and scores KL divergence and top-token agreement against them."""

    tokens: tuple[int, ...]
    first: int
    row: int = 0
    save_path: str | None = None
    compare_path: str | None = None
    reference_nll: tuple[float, ...] = ()  # the reference's exact -log p(next) for these rows
    reference_top: tuple[int, ...] = ()  # the reference's most likely token for these rows


@dataclass(frozen=True)
class ImatrixRequest(Ask["dict[str, ImatrixEntry]"]):
    """Evaluate one chunk of tokens in a worker loaded with `collect_imatrix` and return, for each
    `blk.*` weight, the per-column sums of the squared activations that entered it and the rows
    counted (llama.cpp's imatrix tool). The parent adds the chunks up."""

    tokens: tuple[int, ...]
