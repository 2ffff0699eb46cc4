"""Deepens a model folder the way train.py --grow-depth does (no PyTorch): the init's blocks at
floor(i*depth/init_depth), the new blocks copies of the block before them with proj and fc2 zero (the identity)."""
import json, os, struct, sys, shutil
import numpy as np
src, out, depth = sys.argv[1], sys.argv[2], int(sys.argv[3])
cfg = json.load(open(os.path.join(src, "model.json")))
DT = {"F32": np.float32, "I8": np.int8, "BF16": np.uint16, "F16": np.float16}
tensors = {}
for w in cfg["weights"]:
    with open(os.path.join(src, w), "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]; h = json.loads(f.read(n)); base = 8 + n
        for k, info in h.items():
            if k == "__metadata__": continue
            f.seek(base + info["data_offsets"][0])
            b = f.read(info["data_offsets"][1] - info["data_offsets"][0])
            tensors[k] = (info["dtype"], info["shape"], b)
d0 = cfg["depth"]
place = [i * depth // d0 for i in range(d0)]
new = {}
for k, v in tensors.items():
    if k.startswith("blocks."):
        i = int(k.split(".")[1]); rest = k.split(".", 2)[2]
        new[f"blocks.{place[i]}.{rest}"] = v
    else:
        new[k] = v
for j in range(depth):
    if j in place: continue
    prev = max(p for p in place if p < j)
    for k, v in list(new.items()):
        if k.startswith(f"blocks.{prev}."):
            rest = k.split(".", 2)[2]
            if rest.startswith(("proj.", "fc2.")):
                if rest.endswith(".scale"): continue
                dt, shape, b = v
                new[f"blocks.{j}.{rest}"] = ("F32", shape, np.zeros(shape, np.float32).tobytes())
            else:
                new[f"blocks.{j}.{rest}"] = v
os.makedirs(out, exist_ok=True)
entries, blobs, off = {}, [], 0
for k in sorted(new):
    dt, shape, b = new[k]
    entries[k] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(b)]}; blobs.append(b); off += len(b)
hdr = json.dumps(entries).encode(); hdr += b" " * (-len(hdr) % 8)
with open(os.path.join(out, "model.safetensors"), "wb") as f:
    f.write(struct.pack("<Q", len(hdr))); f.write(hdr); [f.write(b) for b in blobs]
cfg["depth"] = depth; cfg["weights"] = ["model.safetensors"]; cfg.pop("cache_calibration", None)
json.dump(cfg, open(os.path.join(out, "model.json"), "w"), indent=2)
print("grown", d0, "->", depth, "at", place, len(new), "tensors")
