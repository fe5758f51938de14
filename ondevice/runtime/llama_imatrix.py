"""Collecting an importance matrix in the model worker, as llama.cpp's `llama-imatrix` does.

An eval callback on the context (`cb_eval`) sees every graph node. Asked about a node, it wants every
MUL_MAT whose weight (src0) is a `blk.*` tensor and whose input (src1) is F32 with at least 16 rows,
and every MUL_MAT_ID (MoE experts); once such a node is computed, its input's squared values are summed
per column (imatrix_sums) on a zero-copy numpy view of the tensor when it is in host memory, else on a
copy. ggml's tensor struct is read through ctypes; the layout is checked against the library first.

Worker process only (it loads llama.cpp's libraries).
"""

from __future__ import annotations

import ctypes
import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import llama_cpp
import numpy as np

from ..errors import PromptError, WorkerError
from ..imatrix_file import ImatrixEntry
from . import build, llama_ggml
from .imatrix_sums import dense_sums, expert_sums
from .protocol import ImatrixRequest

if TYPE_CHECKING:
    from .llama_session import LlamaSession

MIN_ROWS = 16  # llama.cpp skips smaller batches (single-token decodes say little about the weights)
_GGML_MAX_DIMS, _GGML_MAX_SRC, _GGML_MAX_OP_PARAMS, _GGML_MAX_NAME = 4, 10, 64, 64
_GGML_OBJECT_SIZE = 32  # struct ggml_object: two size_t, a pointer, an enum and 4 bytes of padding
_GGML_TYPE_F32, _GGML_TYPE_I32 = 0, 26


class _Tensor(ctypes.Structure):
    """ggml.h's `struct ggml_tensor` (llama.cpp as vendored by llama-cpp-python 0.3.36)."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("buffer", ctypes.c_void_p),
        ("ne", ctypes.c_int64 * _GGML_MAX_DIMS),
        ("nb", ctypes.c_size_t * _GGML_MAX_DIMS),
        ("op", ctypes.c_int),
        ("op_params", ctypes.c_int32 * (_GGML_MAX_OP_PARAMS // 4)),
        ("flags", ctypes.c_int32),
        ("src", ctypes.c_void_p * _GGML_MAX_SRC),
        ("view_src", ctypes.c_void_p),
        ("view_offs", ctypes.c_size_t),
        ("data", ctypes.c_void_p),
        ("name", ctypes.c_char * _GGML_MAX_NAME),
        ("extra", ctypes.c_void_p),
        ("padding", ctypes.c_char * 8),
    ]


_OP_OFFSET = _Tensor.op.offset


@dataclass(frozen=True)
class _Ggml:
    """The few ggml functions the collector calls, from llama.cpp's own libggml-base."""

    lib: ctypes.CDLL
    mul_mat: int
    mul_mat_id: int


@functools.lru_cache(maxsize=1)
def _ggml() -> _Ggml:
    lib = llama_ggml.lib()  # the libggml-base that llama.cpp itself runs, through libllama's handle
    lib.ggml_tensor_overhead.restype = ctypes.c_size_t
    lib.ggml_tensor_overhead.argtypes = []
    lib.ggml_nbytes.restype = ctypes.c_size_t
    lib.ggml_nbytes.argtypes = [ctypes.c_void_p]
    lib.ggml_op_name.restype = ctypes.c_char_p
    lib.ggml_op_name.argtypes = [ctypes.c_int]
    lib.ggml_get_name.restype = ctypes.c_char_p
    lib.ggml_get_name.argtypes = [ctypes.c_void_p]
    lib.ggml_backend_buffer_is_host.restype = ctypes.c_bool
    lib.ggml_backend_buffer_is_host.argtypes = [ctypes.c_void_p]
    lib.ggml_backend_tensor_get.restype = None
    lib.ggml_backend_tensor_get.argtypes = [
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_size_t,
    ]
    if lib.ggml_tensor_overhead() != _GGML_OBJECT_SIZE + ctypes.sizeof(_Tensor):
        raise WorkerError(
            "this build of llama.cpp lays out its tensors differently from the one ondevice reads "
            f"(llama-cpp-python {build.version()}); the importance matrix cannot be collected with it"
        )
    ops = {}
    for code in range(200):  # GGML_OP_COUNT is about 90; past it ggml_op_name reads out of its table
        name = lib.ggml_op_name(code)
        if name in (b"MUL_MAT", b"MUL_MAT_ID"):
            ops[name] = code
        if len(ops) == 2:
            break
    if len(ops) != 2:
        raise WorkerError("this build of llama.cpp has no MUL_MAT operations to collect from")
    return _Ggml(lib, ops[b"MUL_MAT"], ops[b"MUL_MAT_ID"])


def _weight_name(tensor: _Tensor) -> str:
    """A weight's GGUF name; a copy on another backend is named "CUDA0#blk.0.attn_k.weight#0"."""
    name = tensor.name.decode("utf-8", errors="replace")
    return name.split("#")[1] if "#" in name else name


@dataclass
class ImatrixCollector:
    """The eval callback and what it gathered since `start`."""

    ggml: _Ggml = field(default_factory=_ggml)
    armed: bool = False
    gathered: dict[str, ImatrixEntry] = field(default_factory=dict)
    error: str | None = None

    def __post_init__(self) -> None:
        # Kept on the object: llama.cpp holds the pointer for the context's lifetime.
        self.callback = llama_cpp.ggml_backend_sched_eval_callback(self._on_node)

    def start(self) -> None:
        self.armed, self.gathered, self.error = True, {}, None

    def finish(self) -> dict[str, ImatrixEntry]:
        self.armed = False
        if self.error:
            raise WorkerError(f"collecting the importance matrix failed: {self.error}")
        gathered, self.gathered = self.gathered, {}
        return gathered

    def _on_node(self, node: int | None, ask: bool, _user_data: object) -> bool:
        # An exception must not escape into llama.cpp (ctypes would print it and answer False, which
        # stops the graph): the first one is kept and raised after the decode.
        if not self.armed or not node or self.error:
            return not ask  # declined, or carry on
        try:
            return self._wanted(node) if ask else self._collect(node)
        except Exception as exc:  # reported by finish()
            self.error = f"{type(exc).__name__}: {exc}"
            return not ask  # declined, or carry on

    def _wanted(self, node: int) -> bool:
        op = ctypes.c_int.from_address(node + _OP_OFFSET).value
        if op == self.ggml.mul_mat_id:
            return True
        if op != self.ggml.mul_mat:
            return False
        tensor = _Tensor.from_address(node)
        src1 = _Tensor.from_address(tensor.src[1])
        if src1.ne[1] < MIN_ROWS or src1.type != _GGML_TYPE_F32:
            return False
        return _weight_name(_Tensor.from_address(tensor.src[0])).startswith("blk.")

    def _collect(self, node: int) -> bool:
        tensor = _Tensor.from_address(node)
        weight = _Tensor.from_address(tensor.src[0])
        name = _weight_name(weight)
        if not name.startswith("blk."):
            return True
        x = self._view(tensor.src[1], np.float32)
        if tensor.op == self.ggml.mul_mat_id:
            ids = self._view(tensor.src[2], np.int32)  # (1, 1, n_tokens, n_used)
            n_experts = int(weight.ne[2])
            if x.shape[0] != 1:
                raise ValueError(f"{name}: an expert input of more than three dimensions")
            sums, counts = expert_sums(x[0], ids[0, 0], n_experts)
            self._add(name, sums, counts)
        else:
            sums, rows = dense_sums(x, (int(weight.ne[3]), int(weight.ne[2])))
            # One count per dense weight, its matrices' sums in one row, as llama-imatrix writes them.
            self._add(name, sums.reshape(1, -1), np.array([rows], dtype=np.float32))
        return True

    def _view(self, address: int, dtype: type[np.generic]) -> np.ndarray:
        """A tensor's data as a numpy array of its four axes (outermost first): a view of host memory,
        or a copy of a device's."""
        tensor = _Tensor.from_address(address)
        want = _GGML_TYPE_F32 if dtype is np.float32 else _GGML_TYPE_I32
        if tensor.type != want:
            raise ValueError(f"{tensor.name.decode(errors='replace')} is ggml type {tensor.type}, not {want}")
        nbytes = self.ggml.lib.ggml_nbytes(address)
        if tensor.buffer and self.ggml.lib.ggml_backend_buffer_is_host(tensor.buffer) and tensor.data:
            raw: Any = (ctypes.c_char * nbytes).from_address(tensor.data)
        else:
            copy = np.empty(nbytes, dtype=np.uint8)
            self.ggml.lib.ggml_backend_tensor_get(address, copy.ctypes.data, 0, nbytes)
            raw = copy
        return np.ndarray(
            shape=tuple(int(n) for n in reversed(tensor.ne)),
            dtype=dtype,
            buffer=raw,
            strides=tuple(int(n) for n in reversed(tensor.nb)),
        )

    def _add(self, name: str, sums: np.ndarray, counts: np.ndarray) -> None:
        if not (np.isfinite(sums).all()):
            raise ValueError(f"non-finite activations entering {name}")
        seen = self.gathered.get(name)
        if seen is None:
            self.gathered[name] = ImatrixEntry(sums, counts)
        elif seen.sums.shape != sums.shape:
            raise ValueError(f"{name}: inconsistent sizes {seen.sums.shape} and {sums.shape}")
        else:  # in place: the entry is frozen, its arrays are not
            np.add(seen.sums, sums, out=seen.sums)
            np.add(seen.counts, counts, out=seen.counts)


def collect(session: LlamaSession, request: ImatrixRequest) -> dict[str, ImatrixEntry]:
    """Evaluate one chunk with logits for every position (so the last layer's FFN sees every row, not
    only the last) and return what the callback gathered for it."""
    collector = session.collector
    if collector is None:
        raise WorkerError("this worker was not loaded to collect an importance matrix")
    tokens = request.tokens
    if not 0 < len(tokens) <= session.n_ctx:
        raise PromptError(f"a chunk of {len(tokens)} tokens does not fit a context of {session.n_ctx}")
    session.reset()
    batch = llama_cpp.llama_batch_init(session.n_batch, 0, 1)
    collector.start()
    try:
        for start in range(0, len(tokens), session.n_batch):
            size = min(session.n_batch, len(tokens) - start)
            for k in range(size):
                batch.token[k], batch.pos[k], batch.n_seq_id[k] = tokens[start + k], start + k, 1
                batch.seq_id[k][0] = 0
                batch.logits[k] = True
            batch.n_tokens = size
            session.decode(batch)
        llama_cpp.llama_synchronize(session.ctx)
    finally:
        collector.armed = False
        llama_cpp.llama_batch_free(batch)
        session.reset()
    return collector.finish()
