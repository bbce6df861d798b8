#!/usr/bin/python3
"""safetensors_torch.py - PyTorch's side of the safetensors interop test.

Run with Debian's python (/usr/bin/python3, python3-torch 1.13); the
`safetensors` package is not available, so the format is read and written
here with json, struct and torch alone, following the reference
implementation (huggingface/safetensors):

  write PATH   writes the tensors of TABLE the way the official library does:
               tensors ordered by dtype (widest first) then name, compact JSON
               with raw UTF-8, header padded with spaces to a multiple of 8,
               no __metadata__.
  check PATH   reads a file (as whisker writes it) into torch tensors and
               checks it holds exactly the tensors of TABLE with the pattern
               values, exactly the metadata of METADATA, a data section that
               starts at a multiple of 64 and tensors that tile it exactly.
               Exit 0 and "ok: ..." when it does, 1 and the reason otherwise.

tests/test_safetensors.c holds the same TABLE, pattern and METADATA; change
them together. tests/fixtures/torch_written.safetensors is `write`'s output.
"""
import json
import math
import struct
import sys

import torch

# (name, safetensors dtype, shape); a tensor's position is its pattern seed.
TABLE = [
    ("conv1.weight", "F32", (4, 3, 3, 3)),
    ("bn1.running_var", "F64", (4,)),
    ("bn1.num_batches_tracked", "I64", ()),
    ("fc.weight", "F16", (5, 4)),
    ("fc.bias", "BF16", (5,)),
    ("mask", "BOOL", (6,)),
    ("lut", "U8", (10,)),
    ("idx", "I32", (3, 2)),
    ("empty", "F32", (0, 4)),
    ("scale", "F32", ()),
]

METADATA = {
    "whisker.architecture": '[{"op":"conv2d","params":{"out":4,"k":3},"inputs":["x"]}]',
    "quotes": 'say "hi" \\ back\\slash',
    "lines": "line1\nline2\ttab\r\x01end",
    "unicode": "\u00dcn\u00efc\u00f6d\u00e9 \u732b \U0001F408",
}

TORCH_DTYPES = {
    "BOOL": torch.bool, "U8": torch.uint8, "I8": torch.int8, "I16": torch.int16,
    "F16": torch.float16, "BF16": torch.bfloat16, "I32": torch.int32,
    "F32": torch.float32, "F64": torch.float64, "I64": torch.int64,
}
# The reference's Dtype declaration order; its writer sorts by it, widest first.
DTYPE_RANK = ["BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "I16", "U16", "F16", "BF16",
              "I32", "U32", "F32", "F64", "I64", "U64"]


def expected(seed, dtype, shape):
    """Pattern: base(i) = (7 i + 3 seed) mod 23 - 11, exact in every dtype."""
    i = torch.arange(math.prod(shape), dtype=torch.int64)
    raw = (i * 7 + seed * 3) % 23
    base = raw - 11
    if dtype in ("F32", "F64", "F16", "BF16"):
        t = (base.to(torch.float64) * 0.5).to(TORCH_DTYPES[dtype])
    elif dtype == "I64":
        t = base * 4294967311
    elif dtype == "I32":
        t = (base * 65537).to(torch.int32)
    elif dtype == "U8":
        t = (raw * 11).to(torch.uint8)
    elif dtype == "BOOL":
        t = raw % 2 == 1
    else:
        raise ValueError(dtype)
    return t.reshape(shape)


def tensor_bytes(t):
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    return t.contiguous().numpy().tobytes()


def write(path):
    items = [(name, dtype, expected(k, dtype, shape)) for k, (name, dtype, shape)
             in enumerate(TABLE)]
    items.sort(key=lambda it: (-DTYPE_RANK.index(it[1]), it[0]))
    header, chunks, offset = {}, [], 0
    for name, dtype, t in items:
        b = tensor_bytes(t)
        header[name] = {"dtype": dtype, "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(b)]}
        chunks.append(b)
        offset += len(b)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(chunks))


def load(path):
    """(tensors, metadata, data start) of a file, checked as the reference does."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", None)
    body = data[8 + n:]
    pos = 0
    for name, info in sorted(header.items(), key=lambda kv: tuple(kv[1]["data_offsets"])):
        begin, end = info["data_offsets"]
        if begin != pos:
            raise ValueError(f"{name}: starts at {begin}, expected {pos}")
        pos = end
    if pos != len(body):
        raise ValueError(f"tensors cover {pos} of {len(body)} data bytes")
    tensors = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        dtype = TORCH_DTYPES[info["dtype"]]
        if end == begin:
            t = torch.empty(info["shape"], dtype=dtype)
        else:
            t = torch.frombuffer(bytearray(body[begin:end]), dtype=dtype)
        tensors[name] = (info["dtype"], t.reshape(info["shape"]))
    return tensors, meta, 8 + n


def check(path):
    tensors, meta, data_start = load(path)
    problems = []
    if data_start % 64:
        problems.append(f"data section starts at byte {data_start}, not a multiple of 64")
    names = {name for name, _, _ in TABLE}
    for extra in sorted(set(tensors) - names):
        problems.append(f"unexpected tensor {extra!r}")
    for k, (name, dtype, shape) in enumerate(TABLE):
        if name not in tensors:
            problems.append(f"missing tensor {name!r}")
            continue
        got_dtype, t = tensors[name]
        want = expected(k, dtype, shape)
        if got_dtype != dtype or tuple(t.shape) != tuple(shape):
            problems.append(f"{name}: {got_dtype} {tuple(t.shape)}, expected {dtype} {shape}")
        elif not torch.equal(t, want):
            problems.append(f"{name}: values differ: {t.flatten()[:8]} vs {want.flatten()[:8]}")
    if meta != METADATA:
        problems.append(f"metadata {meta!r}, expected {METADATA!r}")
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1
    print(f"ok: {len(tensors)} tensors, {len(meta)} metadata")
    return 0


def main(argv):
    if len(argv) != 3 or argv[1] not in ("write", "check"):
        print("usage: safetensors_torch.py write|check PATH", file=sys.stderr)
        return 2
    if argv[1] == "write":
        write(argv[2])
        return 0
    return check(argv[2])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
