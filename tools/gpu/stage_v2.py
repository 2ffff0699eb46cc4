"""Stages a v2 model folder from what a tools/gpu/v2_run.sh call brought back, for kvworld-cli convert-weights.

    python3 tools/gpu/stage_v2.py --base assets/models/v2 --dit OUT/dit [--ae OUT/ae] [--config C] --out STAGE

--dit: the transformer's fp32 shards (dit-*.safetensors) and train_state.json; --ae: the autoencoder's fp32 shards
and train_ae_state.json (a decoder-only run), else the base folder's autoencoder tensors are copied as stored
(int8 codes, scales and bf16 biases: their bytes unchanged). STAGE gets model.json (the base's config, or --config's,
with the new weights list), the shards and both training states. No PyTorch: safetensors is a JSON header and raw bytes.
tools/gpu/commit_v2.sh runs this, converts to int8 and replaces the committed folder.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import struct
import sys

AE = "autoencoder."


def read_header(path: str):
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) != 8:
            sys.exit(f"{path}: not a safetensors file (shorter than its header length)")
        n = struct.unpack("<Q", head)[0]
        if n > 100 << 20:
            sys.exit(f"{path}: header of {n} bytes is not plausible")
        try:
            header = json.loads(f.read(n))
        except ValueError as e:
            sys.exit(f"{path}: header is not JSON ({e})")
    return header, 8 + n


def tensor_names(path: str):
    header, _ = read_header(path)
    return [k for k in header if k != "__metadata__"]


def copy_tensors(sources, keep, out_path: str):
    """Writes the tensors of `sources` whose names pass keep() into one safetensors file, bytes unchanged."""
    entries, blobs, offset = {}, [], 0
    for path in sources:
        header, base = read_header(path)
        with open(path, "rb") as f:
            for name in sorted(k for k in header if k != "__metadata__" and keep(k)):
                info = header[name]
                begin, end = info["data_offsets"]
                f.seek(base + begin)
                blob = f.read(end - begin)
                if len(blob) != end - begin:
                    sys.exit(f"{path}: tensor {name} runs past the end of the file")
                entries[name] = {"dtype": info["dtype"], "shape": info["shape"],
                                 "data_offsets": [offset, offset + len(blob)]}
                blobs.append(blob)
                offset += len(blob)
    if not entries:
        sys.exit(f"no tensors to write into {out_path}")
    header = json.dumps(entries, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)  # the data starts 8-byte aligned
    with open(out_path, "wb") as f:
        f.write(struct.pack("<Q", len(header)))
        f.write(header)
        for blob in blobs:
            f.write(blob)
    return len(entries)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True, help="the committed model folder (config, and the autoencoder by default)")
    ap.add_argument("--dit", required=True, help="fp32 transformer shards and train_state.json ($OUT/dit)")
    ap.add_argument("--ae", help="fp32 autoencoder shards and train_ae_state.json ($OUT/ae)")
    ap.add_argument("--config", help="the config the transformer was trained with (train.py --config), when it is "
                                     "not the base's: a deeper stack (--grow-depth) or another sampler. Taken as "
                                     "it is: trainer flags that change the config (--warp-source, "
                                     "--warp-eye-height) must be in it")
    ap.add_argument("--out", required=True, help="staging folder (created; must not exist)")
    args = ap.parse_args()

    with open(os.path.join(args.base, "model.json")) as f:
        config = json.load(f)
    base_files = [os.path.join(args.base, w) for w in config["weights"]]
    if args.config:
        with open(args.config) as f:
            trained = json.load(f)
        if trained.get("autoencoder") != config.get("autoencoder"):
            sys.exit(f"{args.config}: another autoencoder than {args.base}'s: the latents would not match")
        config = {**trained, "weights": config["weights"]}
    dit_files = sorted(glob.glob(os.path.join(args.dit, "dit-*.safetensors")))
    if not dit_files:
        sys.exit(f"{args.dit}: no dit-*.safetensors")
    blocks = set()
    for p in dit_files:
        names = tensor_names(p)
        stray = [k for k in names if k.startswith(AE)]
        if stray:
            sys.exit(f"{p}: holds autoencoder tensors ({stray[0]}): not a transformer shard")
        blocks |= {int(k.split(".")[1]) for k in names if k.startswith("blocks.")}
    if len(blocks) != config["depth"]:  # e.g. a grown model staged without its --config
        sys.exit(f"{args.dit}: {len(blocks)} transformer blocks against the config's depth {config['depth']}"
                 f"{'' if args.config else ' (pass --config: the config the transformer was trained with)'}")
    ae_files = sorted(glob.glob(os.path.join(args.ae, "*.safetensors"))) if args.ae else []
    if args.ae and not ae_files:
        sys.exit(f"{args.ae}: no safetensors")
    os.makedirs(args.out)
    weights = []
    for p in dit_files:
        shutil.copy(p, args.out)
        weights.append(os.path.basename(p))
    if ae_files:
        # train_ae.py names its tensors without the prefix or with it: the model folder needs it
        n = 0
        for i, p in enumerate(ae_files):
            name = f"autoencoder-{i + 1:02d}.safetensors"
            names = tensor_names(p)
            if all(k.startswith(AE) for k in names):
                shutil.copy(p, os.path.join(args.out, name))
                n += len(names)
            else:
                sys.exit(f"{p}: tensors without the '{AE}' prefix ({names[0]}); export with train_ae.py --export")
            weights.append(name)
        ae_state = os.path.join(args.ae, "train_ae_state.json")
    else:
        n = copy_tensors(base_files, lambda k: k.startswith(AE), os.path.join(args.out, "autoencoder.safetensors"))
        weights.append("autoencoder.safetensors")
        ae_state = os.path.join(args.base, "train_ae_state.json")
    config["weights"] = weights
    # The base's cache calibration belongs to its weights, not to these (kvworld-cli calibrate makes a new one)
    if config.pop("cache_calibration", None) is not None:
        print("stage_v2: the base's cache calibration is not carried over to the new weights")
    with open(os.path.join(args.out, "model.json"), "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
        f.write("\n")
    shutil.copy(os.path.join(args.dit, "train_state.json"), args.out)
    if os.path.exists(ae_state):
        shutil.copy(ae_state, os.path.join(args.out, "train_ae_state.json"))
    print(f"staged {args.out}: {len(dit_files)} transformer shards, {n} autoencoder tensors"
          f" ({'new' if ae_files else 'from ' + args.base})")


if __name__ == "__main__":
    main()
