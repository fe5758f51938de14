"""Split a real GGUF into shards the way llama.cpp's gguf-split does, with gguf-py's writer.

`split_gguf(path, out_dir, shards)` copies every metadata entry and tensor of `path` into
`STEM-00001-of-0000N.gguf` ...; the writer puts all metadata in the first shard and gives every shard
the `split.no`, `split.count` and `split.tensors.count` keys that llama.cpp reads to find the others.
"""

from __future__ import annotations

from pathlib import Path

import gguf


def split_gguf(path: Path, out_dir: Path, shards: int, stem: str | None = None) -> list[Path]:
    """Write `path` as `shards` files in `out_dir`; return their paths, first shard first."""
    reader = gguf.GGUFReader(path)
    arch = reader.get_field(gguf.Keys.General.ARCHITECTURE)
    assert arch is not None, f"{path} names no architecture"
    per_shard = -(-len(reader.tensors) // shards)
    out_dir.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(
        out_dir / f"{stem or path.stem}.gguf", arch.contents(), split_max_tensors=per_shard
    )
    _copy(reader, writer)
    written = writer.format_shard_names(writer.path)
    _write(writer)
    assert len(written) == shards, f"the writer made {len(written)} shards, not {shards}"
    return written


def untie_output(path: Path, out: Path) -> Path:
    """A copy of `path`, a model whose output layer is its token embeddings, with an `output.weight`
    of its own (the embeddings' values): llama.cpp then loads that tensor as the output layer."""
    reader = gguf.GGUFReader(path)
    arch = reader.get_field(gguf.Keys.General.ARCHITECTURE)
    assert arch is not None, f"{path} names no architecture"
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(out, arch.contents())
    _copy(reader, writer)
    (embeddings,) = [t for t in reader.tensors if t.name == "token_embd.weight"]
    writer.add_tensor(
        "output.weight", embeddings.data, raw_shape=embeddings.data.shape, raw_dtype=embeddings.tensor_type
    )
    _write(writer)
    return out


def _copy(reader: gguf.GGUFReader, writer: gguf.GGUFWriter) -> None:
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name == gguf.Keys.General.ARCHITECTURE:
            continue  # the header's own fields, and the architecture the writer adds itself
        vtype = field.types[0]
        sub_type = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(name, field.contents(), vtype, sub_type=sub_type)
    for tensor in reader.tensors:
        writer.add_tensor(tensor.name, tensor.data, raw_shape=tensor.data.shape, raw_dtype=tensor.tensor_type)


def _write(writer: gguf.GGUFWriter) -> None:
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
