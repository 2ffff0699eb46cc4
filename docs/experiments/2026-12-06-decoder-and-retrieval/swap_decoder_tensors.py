# v2 with the adversarial run's decoder: the v2 shards less their autoencoder.decoder.* tensors (bytes as stored),
# plus the new decoder's tensors in fp32 (as evaluated on CUDA), in one folder for convert-weights.
import json, struct, sys, os, shutil
src, ae_files, out = sys.argv[1], sys.argv[2].split(","), sys.argv[3]
def read(path):
    raw = open(path, "rb").read(); n = struct.unpack("<Q", raw[:8])[0]
    h = json.loads(raw[8:8 + n]); data = raw[8 + n:]
    return {k: (v["dtype"], v["shape"], data[v["data_offsets"][0]:v["data_offsets"][1]]) for k, v in h.items() if k != "__metadata__"}
def write(path, tensors):
    h, off, blobs = {}, 0, []
    for k in sorted(tensors):
        dt, shape, b = tensors[k]; h[k] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(b)]}; off += len(b); blobs.append(b)
    hj = json.dumps(h, separators=(",", ":")).encode(); hj += b" " * ((8 - len(hj) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hj))); f.write(hj); [f.write(b) for b in blobs]
os.makedirs(out)
cfg = json.load(open(os.path.join(src, "model.json")))
names = []
for name in cfg["weights"]:
    t = {k: v for k, v in read(os.path.join(src, name)).items() if not k.startswith("autoencoder.decoder.")}
    write(os.path.join(out, name), t); names.append(name)
new = {}
for f in ae_files: new.update({k: v for k, v in read(f).items() if k.startswith("autoencoder.decoder.")})
old = set()
for name in cfg["weights"]:
    old |= {k for k in read(os.path.join(src, name)) if k.startswith("autoencoder.decoder.") and not k.endswith(".scale")}
assert set(new) == old, (sorted(set(new) ^ old))[:5]
write(os.path.join(out, "decoder.safetensors"), new); names.append("decoder.safetensors")
cfg["weights"] = names
shutil.copy(os.path.join(src, cfg["cache_calibration"]), out)
json.dump(cfg, open(os.path.join(out, "model.json"), "w"), indent=2)
print("wrote", out, names, len(new), "decoder tensors")
