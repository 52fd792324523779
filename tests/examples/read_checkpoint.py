"""Reads a trident GPT-2 checkpoint with json + numpy only and checks it against the
Hugging Face GPT-2 names and shapes. Usage: read_checkpoint.py FILE L H C T V"""
import json
import struct
import sys

import numpy as np

path, L, H, C, T, V = sys.argv[1], *map(int, sys.argv[2:])
with open(path, "rb") as f:
    data = f.read()
(n,) = struct.unpack("<Q", data[:8])
header = json.loads(data[8:8 + n])
meta = header.pop("__metadata__")
body = data[8 + n:]

expected = {"wte.weight": (V, C), "wpe.weight": (T, C), "ln_f.weight": (C,), "ln_f.bias": (C,)}
for i in range(L):
    p = f"h.{i}."
    expected.update({p + "ln_1.weight": (C,), p + "ln_1.bias": (C,), p + "attn.c_attn.weight": (C, 3 * C),
                     p + "attn.c_attn.bias": (3 * C,), p + "attn.c_proj.weight": (C, C), p + "attn.c_proj.bias": (C,),
                     p + "ln_2.weight": (C,), p + "ln_2.bias": (C,), p + "mlp.c_fc.weight": (C, 4 * C),
                     p + "mlp.c_fc.bias": (4 * C,), p + "mlp.c_proj.weight": (4 * C, C), p + "mlp.c_proj.bias": (C,)})
for prefix in ("", "optimizer.exp_avg.", "optimizer.exp_avg_sq."):
    for name, shape in expected.items():
        entry = header[prefix + name]
        assert entry["dtype"] == "F32", (name, entry)
        assert tuple(entry["shape"]) == shape, (prefix + name, entry["shape"], shape)
        begin, end = entry["data_offsets"]
        array = np.frombuffer(body[begin:end], dtype="<f4").reshape(shape)
        assert np.all(np.isfinite(array)), prefix + name
assert len(header) == 3 * len(expected), len(header)
# GPT-2 initialisation survives two small steps: LayerNorm gains near 1, weights near std 0.02.
assert abs(np.frombuffer(body[slice(*header["ln_f.weight"]["data_offsets"])], "<f4").mean() - 1) < 0.05
wte = np.frombuffer(body[slice(*header["wte.weight"]["data_offsets"])], "<f4")
assert 0.015 < wte.std() < 0.03, wte.std()
assert meta["step"] == "2" and json.loads(meta["config"]) == {"layers": L, "heads": H, "hidden": C, "seq": T, "vocab": V}
print(f"numpy read {len(header)} tensors; step {meta['step']}; config {meta['config']}")
