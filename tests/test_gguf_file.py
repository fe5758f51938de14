"""ondevice.gguf_file: a valid file reads back right; every broken header is one clear GGUFError.

Longer than our other modules on purpose: one short test per way a hostile file can be malformed
(the reader is the boundary llama.cpp is protected by), grouped by the part of the file it breaks."""

from __future__ import annotations

import os
import struct
import sys
import time
import tracemalloc
from pathlib import Path

import gguf
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ondevice.errors import GGUFError
from ondevice.gguf_file import read_gguf
from ondevice.gguf_summary import ArrayInfo, GGUFSummary, TensorInfo
from tests.support.gguf_samples import (
    QT,
    TINY_CONTEXT,
    TINY_TOKENS,
    TINY_VOCAB_SIZE,
    VT,
    RawTensor,
    encode_gguf,
    header_layout,
    put_u32,
    put_u64,
    tiny_tensors,
    write_tiny_gguf,
)

MiB = 1 << 20
TEMPLATE = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}"


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def refused(path: Path, fragment: str) -> str:
    """Assert read_gguf refuses the file with a one-line message naming it and containing fragment."""
    with pytest.raises(GGUFError) as info:
        read_gguf(path)
    message = str(info.value)
    assert fragment in message
    assert message.startswith(f"{path}: ")
    assert "\n" not in message
    return message


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    return write_tiny_gguf(tmp_path / "model.gguf", chat_template=TEMPLATE)


# --- a valid file ---------------------------------------------------------------------------------


def test_tiny_file_reads_back_what_was_written(tiny: Path) -> None:
    summary = read_gguf(tiny)
    reader = gguf.GGUFReader(tiny)
    written = tiny_tensors()

    assert summary.path == tiny
    assert summary.version == 3
    assert summary.file_size == tiny.stat().st_size
    assert summary.alignment == gguf.GGUF_DEFAULT_ALIGNMENT
    assert summary.data_offset == reader.data_offset
    assert [t.name for t in summary.tensors] == list(written)
    for tensor, array, ref in zip(summary.tensors, written.values(), reader.tensors, strict=True):
        assert tensor.shape == tuple(reversed(array.shape))  # GGUF stores ne0 (the row length) first
        assert tensor.n_elements == array.size
        assert tensor.n_bytes == array.nbytes
        assert tensor.type_name == ("F16" if array.dtype == np.float16 else "F32")
        assert tensor.offset == ref.data_offset
        assert tensor.offset % summary.alignment == 0
        stored = np.frombuffer(tiny.read_bytes()[tensor.offset : tensor.offset + tensor.n_bytes], array.dtype)
        assert np.array_equal(stored, array.ravel())

    params = sum(a.size for a in written.values())
    assert summary.parameter_count == params
    assert summary.tensor_bytes == sum(a.nbytes for a in written.values())
    assert summary.bits_per_weight == pytest.approx(summary.tensor_bytes * 8 / params)
    assert 16 < summary.bits_per_weight < 32  # F16 matrices, F32 norms

    assert summary.architecture == "llama"
    assert summary.name == "tiny test model"
    assert summary.file_type_name == "F16"
    assert summary.context_length == TINY_CONTEXT
    assert summary.chat_template == TEMPLATE
    assert summary.arch_value("block_count") == 1
    assert summary.arch_value("no_such_key", "fallback") == "fallback"
    assert summary.metadata["tokenizer.ggml.model"] == "llama"
    assert summary.metadata["tokenizer.ggml.bos_token_id"] == 1
    assert summary.metadata["tokenizer.ggml.tokens"] == ArrayInfo("STRING", TINY_VOCAB_SIZE)
    assert summary.metadata["tokenizer.ggml.scores"] == ArrayInfo("FLOAT32", TINY_VOCAB_SIZE)
    assert summary.metadata["tokenizer.ggml.token_type"] == ArrayInfo("INT32", TINY_VOCAB_SIZE)
    assert reader.fields["tokenizer.ggml.tokens"].contents() == TINY_TOKENS
    # every scalar and string the reference reader sees, we see with the same value
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or field.types[0] == VT.ARRAY:
            continue
        assert summary.metadata[key] == pytest.approx(field.contents()), key


def test_short_arrays_are_lists_and_long_ones_array_info(tmp_path: Path) -> None:
    extra = {
        "test.ints": [1, 2, 3],
        "test.words": ["a", "bé", "ç"],
        "test.sixty_four": (list(range(64)), VT.ARRAY),
        "test.sixty_five": (list(range(65)), VT.ARRAY),
        "test.flag": True,
        "test.ratio": 0.5,
    }
    summary = read_gguf(write_tiny_gguf(tmp_path / "m.gguf", n_layers=2, extra_kv=extra))
    assert summary.metadata["test.ints"] == [1, 2, 3]
    assert summary.metadata["test.words"] == ["a", "bé", "ç"]
    assert summary.metadata["test.sixty_four"] == list(range(64))
    assert summary.metadata["test.sixty_five"] == ArrayInfo("INT32", 65)
    assert summary.metadata["test.flag"] is True
    assert summary.metadata["test.ratio"] == 0.5
    assert summary.chat_template is None
    assert summary.arch_value("block_count") == 2
    assert len(summary.tensors) == 2 + 2 * 4


def test_other_architecture_and_version_2(tmp_path: Path) -> None:
    path = write_tiny_gguf(tmp_path / "m.gguf", arch="gemma3")
    summary = read_gguf(write(path, put_u32(path.read_bytes(), 4, 2)))
    assert summary.version == 2
    assert summary.architecture == "gemma3"
    assert summary.context_length == TINY_CONTEXT


def test_file_type_falls_back_to_the_dominant_matrix_type(tmp_path: Path) -> None:
    tensors = [
        RawTensor("token_embd.weight", (64, 32), QT.Q8_0),
        RawTensor("blk.0.attn_q.weight", (64, 4), QT.Q4_0),
        RawTensor("blk.0.attn_norm.weight", (4096,), QT.F32),  # largest, but 1-D
    ]
    summary = read_gguf(write(tmp_path / "m.gguf", encode_gguf([], tensors)))
    assert summary.file_type_name == "Q8_0"
    assert summary.tensors[0].n_bytes == 64 * 32 // 32 * 34
    assert summary.bits_per_weight == pytest.approx(summary.tensor_bytes * 8 / (64 * 36 + 4096))


def test_file_type_from_metadata(tmp_path: Path) -> None:
    kv = [("general.file_type", VT.UINT32, int(gguf.LlamaFileType.MOSTLY_Q4_K_M))]
    summary = read_gguf(write(tmp_path / "m.gguf", encode_gguf(kv, [RawTensor("w", (256, 2), QT.Q4_K)])))
    assert summary.file_type_name == "Q4_K_M"
    assert summary.tensors[0].type_name == "Q4_K"
    assert summary.bits_per_weight == pytest.approx(4.5)


def test_custom_alignment(tmp_path: Path) -> None:
    kv = [("general.alignment", VT.UINT32, 64)]
    tensors = [RawTensor("a", (3,)), RawTensor("b", (5,))]
    summary = read_gguf(write(tmp_path / "m.gguf", encode_gguf(kv, tensors, alignment=64)))
    assert summary.alignment == 64
    assert summary.data_offset % 64 == 0
    assert [t.offset - summary.data_offset for t in summary.tensors] == [0, 64]


def test_no_tensors_and_no_metadata(tmp_path: Path) -> None:
    summary = read_gguf(write(tmp_path / "m.gguf", encode_gguf(arch=None)))
    assert summary.metadata == {}
    assert summary.tensors == ()
    assert summary.data_offset == 24
    assert summary.architecture is None
    assert summary.arch_value("context_length", 7) == 7
    assert (summary.parameter_count, summary.bits_per_weight, summary.file_type_name) == (0, 0.0, None)


def test_large_vocabulary_is_walked_not_materialised(tmp_path: Path) -> None:
    n = 262_144
    tokens = [f"▁tok{i}".encode() for i in range(n)]
    kv = [
        ("tokenizer.ggml.tokens", VT.ARRAY, (VT.STRING, tokens)),
        ("tokenizer.ggml.scores", VT.ARRAY, (VT.FLOAT32, [0.0] * n)),
    ]
    path = write(tmp_path / "m.gguf", encode_gguf(kv, [RawTensor("w", (8,))]))
    start = time.perf_counter()
    summary = read_gguf(path)
    elapsed = time.perf_counter() - start
    assert summary.metadata["tokenizer.ggml.tokens"] == ArrayInfo("STRING", n)
    assert summary.metadata["tokenizer.ggml.scores"] == ArrayInfo("FLOAT32", n)
    assert elapsed < 1.0  # about 0.05 s; a per-token decode or list would show here


def test_memory_for_a_big_string_is_about_its_size(tmp_path: Path) -> None:
    template = "x" * (8 * MiB)
    path = write(tmp_path / "m.gguf", encode_gguf([("tokenizer.chat_template", VT.STRING, template)]))
    tracemalloc.start()
    try:
        summary = read_gguf(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert summary.chat_template == template
    assert peak < len(template) + MiB  # decoded straight from the mapping, no intermediate bytes copy


def test_tensor_info_properties() -> None:
    info = TensorInfo("w", (256, 3, 2), int(QT.Q6_K), 0, 6 * 210)
    assert info.n_elements == 256 * 3 * 2
    assert info.type_name == "Q6_K"


# --- the file itself ------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    refused(tmp_path / "model.gguf", "no such file")


def test_missing_parent_is_a_file(tmp_path: Path) -> None:
    refused(write(tmp_path / "f", b"x") / "model.gguf", "no such file")


def test_file_name_with_nul() -> None:
    with pytest.raises(GGUFError, match="not a usable file name"):
        read_gguf("model\0.gguf")


def test_directory(tmp_path: Path) -> None:
    (tmp_path / "model.gguf").mkdir()
    refused(tmp_path / "model.gguf", "is a directory")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "model.gguf")
    refused(tmp_path / "model.gguf", "not a regular file")


@pytest.mark.skipif(sys.platform == "win32" or os.geteuid() == 0, reason="root reads anything")
def test_unreadable_file(tiny: Path) -> None:
    tiny.chmod(0)
    refused(tiny, "cannot read")


def test_empty_file(tmp_path: Path) -> None:
    refused(write(tmp_path / "model.gguf", b""), "empty file")


def test_text_file_named_gguf(tmp_path: Path) -> None:
    refused(
        write(tmp_path / "model.gguf", b"hello, this is not a model\n"), "not a GGUF file (magic b'hell')"
    )


def test_tiny_non_gguf_file(tmp_path: Path) -> None:
    refused(write(tmp_path / "model.gguf", b"hi"), "not a GGUF file (magic b'hi')")


@pytest.mark.parametrize("data", [b"GG", b"GGUF", b"GGUF\x03\x00\x00\x00" + bytes(8)])
def test_shorter_than_fixed_header(tmp_path: Path, data: bytes) -> None:
    refused(write(tmp_path / "model.gguf", data), "file is truncated in the header")


def test_bad_magic(tiny: Path) -> None:
    refused(write(tiny, b"GGML" + tiny.read_bytes()[4:]), "not a GGUF file (magic b'GGML')")


@pytest.mark.parametrize("version", [0, 1, 4, 0xFFFF_FFFF])
def test_unsupported_version(tiny: Path, version: int) -> None:
    refused(write(tiny, put_u32(tiny.read_bytes(), 4, version)), f"unsupported GGUF version {version}")


def test_big_endian(tiny: Path) -> None:
    data = tiny.read_bytes()
    refused(write(tiny, data[:4] + struct.pack(">I", 3) + data[8:]), "big-endian")


# --- counts and lengths bounded by the file ---------------------------------------------------------


def test_header_claims_2_to_the_63_tensors(tiny: Path) -> None:
    data = put_u64(tiny.read_bytes(), 8, 2**63)
    size = len(data)
    refused(write(tiny, data), f"header claims 9223372036854775808 tensors but the file has {size} bytes")


def test_header_claims_too_many_metadata_entries(tiny: Path) -> None:
    refused(
        write(tiny, put_u64(tiny.read_bytes(), 16, 2**64 - 1)), "header claims 18446744073709551615 metadata"
    )


def test_counts_that_fit_alone_but_not_together(tmp_path: Path) -> None:
    data = encode_gguf(arch=None) + bytes(1000)
    refused(write(tmp_path / "m.gguf", put_u64(put_u64(data, 8, 30), 16, 30)), "30 tensors and 30 metadata")


def test_string_length_2_to_the_62(tiny: Path) -> None:
    data = put_u64(tiny.read_bytes(), header_layout(tiny).first_string_length_at, 2**62)
    refused(write(tiny, data), "key of metadata entry 0 at byte 24 claims 4611686018427387904 bytes")


def test_string_value_length_past_the_file(tiny: Path) -> None:
    at = header_layout(tiny).value_at["general.name"]
    refused(write(tiny, put_u64(tiny.read_bytes(), at, 10**9)), "value of 'general.name'")


def test_string_longer_than_llama_cpp_accepts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("ondevice.gguf_file.MAX_STRING_BYTES", 10)
    refused(
        write(tmp_path / "m.gguf", encode_gguf([("k", VT.STRING, "x" * 11)])), "more than llama.cpp accepts"
    )


def test_array_length_past_the_file(tiny: Path) -> None:
    length_at = header_layout(tiny).value_at["tokenizer.ggml.scores"] + 4
    refused(write(tiny, put_u64(tiny.read_bytes(), length_at, 2**40)), "claims 1099511627776 elements")


def test_string_array_element_past_the_file(tiny: Path) -> None:
    first_token_at = header_layout(tiny).value_at["tokenizer.ggml.tokens"] + 12
    data = put_u64(tiny.read_bytes(), first_token_at + 8 + len(TINY_TOKENS[0]), 10**6)
    refused(write(tiny, data), "array 'tokenizer.ggml.tokens' element 1")


def test_file_cut_inside_the_metadata(tiny: Path) -> None:
    cut = header_layout(tiny).value_at["tokenizer.ggml.bos_token_id"] + 2
    refused(write(tiny, tiny.read_bytes()[:cut]), "file is truncated in the header")


# --- metadata ---------------------------------------------------------------------------------------


def test_unknown_value_type(tiny: Path) -> None:
    at = header_layout(tiny).value_type_at["llama.block_count"]
    refused(
        write(tiny, put_u32(tiny.read_bytes(), at, 99)), "key 'llama.block_count' has unknown value type 99"
    )


def test_unknown_array_element_type(tiny: Path) -> None:
    at = header_layout(tiny).value_at["tokenizer.ggml.scores"]
    refused(write(tiny, put_u32(tiny.read_bytes(), at, 13)), "array of unknown value type 13")


def test_nested_array(tmp_path: Path) -> None:
    kv = [("nested", VT.ARRAY, (VT.ARRAY, [(VT.UINT8, [1, 2])]))]
    refused(write(tmp_path / "m.gguf", encode_gguf(kv)), "key 'nested' is a nested array")


def test_duplicate_key(tmp_path: Path) -> None:
    kv = [("llama.block_count", VT.UINT32, 1), ("llama.block_count", VT.UINT32, 2)]
    refused(write(tmp_path / "m.gguf", encode_gguf(kv)), "duplicate metadata key 'llama.block_count'")


def test_empty_key(tmp_path: Path) -> None:
    refused(write(tmp_path / "m.gguf", encode_gguf([("", VT.UINT8, 1)])), "metadata entry 1 has an empty key")


@pytest.mark.parametrize(
    ("kv", "tensors", "where"),
    [
        ([(b"bad\xff key", VT.UINT8, 1)], [], "key of metadata entry 1"),
        ([("general.name", VT.STRING, b"caf\xc3")], [], "value of 'general.name'"),
        ([("words", VT.ARRAY, (VT.STRING, [b"ok", b"\xed\xa0\x80"]))], [], "value of 'words[1]'"),
        ([], [RawTensor(b"blk.0.\xc0\xaf", (4,))], "name of tensor 0"),
    ],
)
def test_bad_utf8(tmp_path: Path, kv: list, tensors: list, where: str) -> None:
    refused(write(tmp_path / "m.gguf", encode_gguf(kv, tensors)), f"{where} at byte")
    refused(tmp_path / "m.gguf", "is not valid UTF-8")


@pytest.mark.parametrize(
    ("vtype", "value", "fragment"),
    [
        (VT.UINT32, 0, "general.alignment is 0, which is not a power of two"),
        (VT.UINT32, 48, "general.alignment is 48, which is not a power of two"),
        (VT.UINT64, 32, "general.alignment must be a UINT32, not UINT64"),
        (VT.STRING, "32", "general.alignment must be a UINT32, not STRING"),
    ],
)
def test_bad_alignment(tmp_path: Path, vtype: int, value: object, fragment: str) -> None:
    data = encode_gguf([("general.alignment", vtype, value)], [RawTensor("w", (4,))])
    refused(write(tmp_path / "m.gguf", data), fragment)


def test_architecture_must_be_a_string(tmp_path: Path) -> None:
    data = encode_gguf([("general.architecture", VT.UINT32, 7)], arch=None)
    refused(write(tmp_path / "m.gguf", data), "general.architecture must be a STRING, not UINT32")


# --- tensor infos -----------------------------------------------------------------------------------


def tensor_file(tmp_path: Path, *tensors: RawTensor, **kw: object) -> Path:
    return write(tmp_path / "model.gguf", encode_gguf([], tensors, **kw))


def test_dimension_zero(tmp_path: Path) -> None:
    refused(tensor_file(tmp_path, RawTensor("w", (4, 0), data_bytes=0)), "tensor 'w' dimension 1 is 0")


def test_negative_dimension(tmp_path: Path) -> None:
    refused(tensor_file(tmp_path, RawTensor("w", (-4,), data_bytes=0)), "tensor 'w' dimension 0 is -4")


@pytest.mark.parametrize("shape", [(), (1, 1, 1, 1, 1)])
def test_dimension_count(tmp_path: Path, shape: tuple[int, ...]) -> None:
    refused(tensor_file(tmp_path, RawTensor("w", shape)), f"tensor 'w' has {len(shape)} dimensions")


def test_dimension_count_past_the_file(tiny: Path) -> None:
    at = header_layout(tiny).tensor_n_dims_at["output_norm.weight"]
    refused(write(tiny, put_u32(tiny.read_bytes(), at, 2**32 - 1)), "4294967295 dimensions")


def test_element_count_overflows_int64(tmp_path: Path) -> None:
    refused(
        tensor_file(tmp_path, RawTensor("w", (2**32, 2**32), data_bytes=0)), "more elements than an int64"
    )


@pytest.mark.parametrize("ggml_type", [4, 31, 99, 2**32 - 1])  # 4 and 31 are removed types
def test_unknown_ggml_type(tmp_path: Path, ggml_type: int) -> None:
    path = tensor_file(tmp_path, RawTensor("w", (32,), ggml_type, data_bytes=32))
    refused(path, f"tensor 'w' has unknown ggml type {ggml_type}")


def test_row_not_a_multiple_of_the_block_size(tmp_path: Path) -> None:
    path = tensor_file(tmp_path, RawTensor("w", (100, 2), QT.Q4_K, data_bytes=144))
    refused(path, "rows of 100 elements, not a multiple of the Q4_K block size (256)")


def test_duplicate_tensor_name(tmp_path: Path) -> None:
    refused(tensor_file(tmp_path, RawTensor("w", (4,)), RawTensor("w", (4,))), "duplicate tensor name 'w'")


def test_empty_tensor_name(tmp_path: Path) -> None:
    refused(tensor_file(tmp_path, RawTensor("", (4,))), "tensor 0 has an empty name")


def test_tensor_name_length_limit(tmp_path: Path) -> None:
    assert read_gguf(tensor_file(tmp_path, RawTensor("n" * 63, (4,)))).tensors[0].name == "n" * 63
    refused(tensor_file(tmp_path, RawTensor("n" * 64, (4,))), "64-byte name; llama.cpp allows at most 63")


def test_tensor_name_with_nul(tmp_path: Path) -> None:
    refused(tensor_file(tmp_path, RawTensor("blk\0x", (4,))), "contains a NUL byte")


def test_tensor_offset_misaligned(tmp_path: Path) -> None:
    path = tensor_file(tmp_path, RawTensor("a", (4,)), RawTensor("b", (4,), offset=20))
    refused(path, "tensor 'b' offset 20 is not a multiple of the alignment (32)")


def test_overlapping_tensors(tmp_path: Path) -> None:
    path = tensor_file(
        tmp_path, RawTensor("a", (16,)), RawTensor("b", (16,), offset=32), RawTensor("c", (32,), offset=0)
    )
    refused(path, "tensors 'a' (bytes")
    refused(path, "and 'c' (from byte")
    refused(path, "overlap")


def test_tensor_data_not_packed_as_llama_cpp_expects(tmp_path: Path) -> None:
    path = tensor_file(tmp_path, RawTensor("a", (4,)), RawTensor("b", (4,), offset=64))
    refused(path, "tensor 'b' data is at offset 64 of the data section, but llama.cpp expects 32")


def test_tensor_offset_past_the_file(tiny: Path) -> None:
    at = header_layout(tiny).tensor_offset_at["output_norm.weight"]
    refused(
        write(tiny, put_u64(tiny.read_bytes(), at, 2**64 - 32)), "tensor 'output_norm.weight' data (offset"
    )


def test_file_cut_inside_the_tensor_data(tiny: Path) -> None:
    summary = read_gguf(tiny)
    last = summary.tensors[-1]
    write(tiny, tiny.read_bytes()[: last.offset + 10])
    refused(
        tiny,
        f"tensor 'output_norm.weight' data (offset {last.offset}, {last.n_bytes} bytes) runs past the end "
        f"of the file ({last.offset + 10} bytes)",
    )


def test_file_cut_between_header_and_data(tiny: Path) -> None:
    layout = header_layout(tiny)
    assert layout.header_end < layout.data_offset  # the writer padded the header
    write(tiny, tiny.read_bytes()[: layout.header_end + 1])
    refused(tiny, f"tensor data would start at byte {layout.data_offset}, past the end of the file")


def test_file_cut_inside_the_tensor_infos(tiny: Path) -> None:
    cut = header_layout(tiny).tensor_type_at["blk.0.attn_q.weight"] + 1
    write(tiny, tiny.read_bytes()[:cut])
    refused(tiny, "type of tensor 'blk.0.attn_q.weight'")


# --- properties: any bytes give a summary or a GGUFError, quickly and in bounded memory ---------------


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, object, Path]:
    """The tiny file's bytes, its layout, and a scratch path each example overwrites."""
    folder = tmp_path_factory.mktemp("gguf_property")
    path = write_tiny_gguf(folder / "tiny.gguf", chat_template=TEMPLATE, extra_kv={"test.ints": [1, 2, 3]})
    return path.read_bytes(), header_layout(path), folder / "mutant.gguf"


def check_any_bytes(path: Path, data: bytes) -> GGUFSummary | GGUFError:
    """read_gguf returns a sane summary or raises a one-line GGUFError, fast and in bounded memory."""
    path.write_bytes(data)
    start = time.perf_counter()
    tracemalloc.start()
    try:
        try:
            result: GGUFSummary | GGUFError = read_gguf(path)
        except GGUFError as exc:
            result = exc
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - start < 5
    # The mapped file is not Python memory; everything else is bounded by the file's own bytes.
    assert peak < len(data) + MiB
    if isinstance(result, GGUFError):
        assert str(result).startswith(f"{path}: ") and "\n" not in str(result)
    else:
        assert result.data_offset <= result.file_size == len(data)
        for tensor in result.tensors:
            assert result.data_offset <= tensor.offset
            assert tensor.offset + tensor.n_bytes <= result.file_size
    return result


u64_values = st.one_of(
    st.sampled_from(
        [0, 1, 2, 3, 24, 63, 64, 65, 255, 8064, 2**31, 2**32, 2**62, 2**63 - 1, 2**63, 2**64 - 1]
    ),
    st.integers(0, 2**64 - 1),
)
PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=8))
def test_any_header_byte_overwrite(sample: tuple, edits: list[tuple[int, int]]) -> None:
    data, layout, path = sample
    mutant = bytearray(data)
    for position, value in edits:
        mutant[position % layout.data_offset] = value
    check_any_bytes(path, bytes(mutant))


@PROPERTY
@given(cut=st.integers(0, 10**6))
def test_any_truncation(sample: tuple, cut: int) -> None:
    data, _, path = sample
    result = check_any_bytes(path, data[: cut % (len(data) + 1)])
    assert isinstance(result, GGUFSummary) == (cut % (len(data) + 1) == len(data))


@PROPERTY
@given(edits=st.lists(st.tuples(st.integers(0, 10**6), u64_values), min_size=1, max_size=3))
def test_any_count_or_length_overwrite(sample: tuple, edits: list[tuple[int, int]]) -> None:
    data, layout, path = sample
    mutant = data
    for index, value in edits:
        mutant = put_u64(mutant, layout.u64_fields[index % len(layout.u64_fields)], value)
    check_any_bytes(path, mutant)


@PROPERTY
@given(
    n_tensors=st.integers(0, 4),
    n_kv=st.integers(0, 4),
    body=st.binary(max_size=600),
)
def test_any_body_after_a_valid_preamble(sample: tuple, n_tensors: int, n_kv: int, body: bytes) -> None:
    _, _, path = sample
    check_any_bytes(path, b"GGUF" + struct.pack("<IQQ", 3, n_tensors, n_kv) + body)
