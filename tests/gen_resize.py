#!/usr/bin/python3
"""Reference for mae_model_resize: PyTorch's bicubic resampling (align_corners=False) of a learned
position table from a 4x4 grid to 3x5, and the float64 sin-cos table of a 3x5 grid.
Writes tests/data/resize.safetensors. Run with Debian's python3-torch: /usr/bin/python3 tests/gen_resize.py"""
import json, os, struct
import numpy as np
import torch
import torch.nn.functional as F

def sincos(dim, gh, gw):
    q = dim // 4
    omega = 1.0 / 10000 ** (np.arange(q, dtype=np.float64) / q)
    rows = [np.zeros(dim)]
    for i in range(gh):
        for j in range(gw):
            rows.append(np.concatenate([np.sin(j * omega), np.cos(j * omega),
                                        np.sin(i * omega), np.cos(i * omega)]))
    return np.stack(rows).astype(np.float32)

def write(path, tensors, meta):
    header, blobs, off = {"__metadata__": meta}, [], 0
    for name, arr in tensors.items():
        b = np.ascontiguousarray(arr, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))

torch.manual_seed(7)
dim, gh, gw, nh, nw = 8, 4, 4, 3, 5
learned = torch.randn(1 + gh * gw, dim, dtype=torch.float32)
grid = learned[1:].reshape(1, gh, gw, dim).permute(0, 3, 1, 2).double()
out = F.interpolate(grid, size=(nh, nw), mode="bicubic", align_corners=False)
out = out.permute(0, 2, 3, 1).reshape(nh * nw, dim)
resized = torch.cat([learned[:1].double(), out]).float()
write(os.path.join(os.path.dirname(__file__), "data", "resize.safetensors"),
      {"learned": learned.numpy(), "learned_3x5": resized.numpy(), "sincos_3x5": sincos(dim, nh, nw)},
      {"dim": str(dim), "from": "4x4", "to": "3x5"})
