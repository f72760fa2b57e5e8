"""PostgreSQL binary COPY encoding of Arrow record batches, vectorised with numpy.

    with cursor.copy("COPY t (a, b) FROM STDIN (FORMAT binary)") as copy:
        copy.write(HEADER)
        for batch in batches:
            for chunk in encode(batch):
                copy.write(chunk)
        copy.write(TRAILER)

Binary COPY skips the server's text parsing of floats and timestamps, the costly part of a
CSV load. Rows are grouped by the byte length of their string fields, so that each group is a
fixed-width record matrix filled by column slices (no per-row Python); the order of rows in
the output therefore differs from the batch's, which a heap table keyed afterwards ignores.
Supported column types: utf8 strings, float64, int64, timestamp[us] (UTC) and date32; nulls
are refused (the prediction contract has none).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
TRAILER = struct.pack(">h", -1)
_PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 in µs since the Unix epoch
_PG_EPOCH_DAYS = 10_957


def _fixed(column: pa.Array) -> np.ndarray:
    """Big-endian bytes of a fixed-width column, shape (rows, width)."""
    kind = column.type
    numbers = column.cast(pa.int32() if pa.types.is_date32(kind) else pa.int64()) \
        if pa.types.is_timestamp(kind) or pa.types.is_date32(kind) else column
    plain = numbers.to_numpy(zero_copy_only=False)
    if pa.types.is_float64(kind):
        values = plain.astype(">f8")
    elif pa.types.is_int64(kind):
        values = plain.astype(">i8")
    elif pa.types.is_timestamp(kind) and kind.unit == "us":
        values = (plain - _PG_EPOCH_US).astype(">i8")
    elif pa.types.is_date32(kind):
        values = (plain - _PG_EPOCH_DAYS).astype(">i4")
    else:
        raise TypeError(f"binary COPY encoding does not support column type {kind}")
    shaped: np.ndarray = values.view(np.uint8).reshape(len(column), values.dtype.itemsize)
    return shaped


def _string_lengths(column: pa.Array) -> np.ndarray:
    """Byte length of each string of a utf8 column."""
    lengths: np.ndarray = pc.binary_length(column).to_numpy(zero_copy_only=False)
    return lengths.astype(np.int64)


def _string_bytes(column: pa.Array, width: int) -> np.ndarray:
    """The bytes of a utf8 column whose strings are all `width` long, shape (rows, width)."""
    offsets = np.frombuffer(column.buffers()[1], dtype=np.int32)[column.offset:]
    start = int(offsets[0])
    data = np.frombuffer(column.buffers()[2] or b"", dtype=np.uint8)
    return data[start:start + width * len(column)].reshape(len(column), width)


def _is_string(column: pa.Array) -> bool:
    return bool(pa.types.is_string(column.type) or pa.types.is_large_string(column.type))


def _encode_group(columns: list[pa.Array], widths: list[int]) -> np.ndarray:
    """Rows whose string fields have the given byte widths, as one fixed-width record matrix."""
    sizes = [w if _is_string(c) else _fixed_width(c) for c, w in zip(columns, widths, strict=True)]
    template = bytearray(struct.pack(">h", len(columns)))
    slots: list[tuple[pa.Array, int, int]] = []
    for column, size in zip(columns, sizes, strict=True):
        template += struct.pack(">i", size)
        slots.append((column, len(template), size))
        template += bytes(size)
    out = np.empty((len(columns[0]), len(template)), dtype=np.uint8)
    out[:] = np.frombuffer(bytes(template), np.uint8)  # field count and lengths: constant here
    for column, pos, size in slots:
        if size:
            out[:, pos:pos + size] = (
                _string_bytes(column, size) if _is_string(column) else _fixed(column))
    return out


def _view(records: np.ndarray) -> memoryview:
    """The record matrix as one flat byte buffer (no copy)."""
    return memoryview(records.data).cast("B")


def _fixed_width(column: pa.Array) -> int:
    return 4 if pa.types.is_date32(column.type) else 8


def encode(batch: pa.RecordBatch) -> Iterator[memoryview]:
    """The batch's rows as binary COPY tuples (no header or trailer), one chunk per width group."""
    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        if column.null_count:
            raise ValueError(f"binary COPY: column {name} has null values")
    columns = [c.cast(pa.string()) if pa.types.is_large_string(c.type) else c
               for c in batch.columns]
    strings = [i for i, c in enumerate(columns) if _is_string(c)]
    if batch.num_rows == 0:
        return
    if not strings:
        yield _view(_encode_group(columns, [0] * len(columns)))
        return
    lengths = np.stack([_string_lengths(columns[i]) for i in strings], axis=1)
    if (lengths == lengths[0]).all():  # the usual case: ids of one length, one group
        keys, groups = lengths[:1], np.zeros(len(lengths), dtype=np.int64)
    else:
        flat = np.ravel_multi_index(lengths.T, [int(m) + 1 for m in lengths.max(axis=0)])
        _, first, groups = np.unique(flat, return_index=True, return_inverse=True)
        keys = lengths[first]
    for g, key in enumerate(keys):
        if len(keys) == 1:
            part = columns
        else:
            take = pa.array(np.flatnonzero(groups == g))
            part = [c.take(take) for c in columns]
        widths = [0] * len(columns)
        for i, width in zip(strings, key, strict=True):
            widths[i] = int(width)
        yield _view(_encode_group(part, widths))
