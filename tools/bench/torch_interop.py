#!/usr/bin/python3
"""Loads a minidl checkpoint into the PyTorch twin of its model and evaluates it.

Reads the safetensors file by the format's spec alone (8-byte little-endian
header length, JSON header, raw little-endian data) — not through minidl — then
`load_state_dict(strict=True)` into tools/bench/torch_models.py's model of the
same name, and prints PyTorch's test accuracy, which should equal
`minidl eval`'s. This is the check that minidl's weights, names and layouts are
what PyTorch expects.

    /usr/bin/python3 tools/bench/torch_interop.py runs/cnn.safetensors
"""
import gzip
import json
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_models  # noqa: E402

DTYPES = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "I32": np.int32, "I8": np.int8, "BOOL": np.bool_}


def read_safetensors(path):
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    meta = header.pop("__metadata__", {})
    data = blob[8 + n:]
    tensors = {}
    for name, e in header.items():
        begin, end = e["data_offsets"]
        arr = np.frombuffer(data[begin:end], dtype=DTYPES[e["dtype"]]).reshape(e["shape"])
        tensors[name] = torch.from_numpy(arr.copy())
    return tensors, meta


def main():
    path = sys.argv[1]
    data_dir = sys.argv[2] if len(sys.argv) > 2 else "/usr/share/datasets/fashion-mnist"
    tensors, meta = read_safetensors(path)
    model = torch_models.build(meta["arch"])
    weights = {k: v for k, v in tensors.items() if not k.startswith("optimizer.")}
    model.load_state_dict(weights, strict=True)
    model.eval()
    with gzip.open(os.path.join(data_dir, "t10k-images-idx3-ubyte.gz")) as f:
        x = np.frombuffer(f.read(), dtype=np.uint8, offset=16).reshape(-1, 1, 28, 28).astype(np.float32) / 255.0
    with gzip.open(os.path.join(data_dir, "t10k-labels-idx1-ubyte.gz")) as f:
        y = np.frombuffer(f.read(), dtype=np.uint8, offset=8).astype(np.int64)
    x = torch.from_numpy((x - 0.2860) / 0.3530)
    with torch.no_grad():
        pred = torch.cat([model(x[i:i + 500]).argmax(1) for i in range(0, len(x), 500)])
    acc = (pred.numpy() == y).mean()
    print(f"{path}: {meta['arch']}, {len(weights)} tensors loaded strictly into PyTorch {torch.__version__}; "
          f"PyTorch test accuracy {100 * acc:.2f}%")


if __name__ == "__main__":
    main()
