"""A latent model folder with another autoencoder: MODEL_DIR's weights with every autoencoder.* tensor taken from
AE_DIR (train_ae.py's --export, or a folder holding autoencoder.safetensors) instead, written to OUT_DIR.

Why: train_ae.py --decoder-only gives a new decoder for an already trained transformer (same encoder, same latent
statistics); the engine evaluates the pair as one model folder. Refuses an autoencoder whose encoder or latent
statistics differ from the model's, since the transformer would then see latents it was not trained on (pass
--allow-new-encoder to swap a whole autoencoder anyway).

    python3 tools/train/swap_autoencoder.py MODEL_DIR AE_DIR OUT_DIR
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model as M  # noqa: E402

PREFIX = "autoencoder."


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir")
    ap.add_argument("ae_dir")
    ap.add_argument("out_dir")
    ap.add_argument("--allow-new-encoder", action="store_true")
    args = ap.parse_args()
    with open(os.path.join(args.model_dir, "model.json")) as f:
        config = json.load(f)
    new_ae = {}
    for path in sorted(glob.glob(os.path.join(args.ae_dir, "*.safetensors"))):
        new_ae.update({(k if k.startswith(PREFIX) else PREFIX + k): v for k, v in M.load_safetensors(path).items()})
    if not new_ae:
        sys.exit(f"{args.ae_dir}: no safetensors files")
    old = M.load_model_folder(args.model_dir)
    old_ae = {k: v for k, v in old.items() if k.startswith(PREFIX)}
    raw = {}  # as stored: a tensor stored as int8 codes has a scale beside it and is compared no closer
    for path in glob.glob(os.path.join(args.model_dir, "*.safetensors")):
        raw.update(M.load_safetensors(path))
    int8 = {k for k in old_ae if k + M.INT8_SCALE_SUFFIX in raw}
    if sorted(old_ae) != sorted(new_ae):
        sys.exit(f"{args.ae_dir}: its tensors are not the autoencoder of {args.model_dir} "
                 f"({len(new_ae)} against {len(old_ae)})")
    if not args.allow_new_encoder:
        for k in old_ae:
            if k.startswith(PREFIX + "decoder."):
                continue
            same = (torch.allclose(old_ae[k].float(), new_ae[k].float(), rtol=0, atol=raw[k + M.INT8_SCALE_SUFFIX].abs().max().item())
                    if k in int8 else torch.equal(old_ae[k].float(), new_ae[k].float()))
            if not same:
                sys.exit(f"{args.ae_dir}: {k} differs from the model's: the transformer was trained on other "
                         "latents (--allow-new-encoder to swap anyway)")
    if os.path.exists(args.out_dir):
        sys.exit(f"{args.out_dir} exists")
    os.makedirs(args.out_dir + ".tmp")
    names = []
    for name in config["weights"]:  # the model's own files, less their autoencoder tensors
        kept = {k: v for k, v in M.load_safetensors(os.path.join(args.model_dir, name)).items()
                if not k.startswith(PREFIX)}
        if kept:
            M.save_safetensors(os.path.join(args.out_dir + ".tmp", name), kept)
            names.append(name)
    M.save_safetensors(os.path.join(args.out_dir + ".tmp", "autoencoder.safetensors"),
                       {k: v.float() for k, v in new_ae.items()})
    names.append("autoencoder.safetensors")
    config["weights"] = names
    # Files model.json names besides the weights. The cache calibration stays valid: only the decoder changes
    # (v2_run.sh's --decoder-only runs), so the transformer's keys and values are the same.
    for extra in ("cache_calibration",):
        if isinstance(config.get(extra), str):
            shutil.copy(os.path.join(args.model_dir, config[extra]), os.path.join(args.out_dir + ".tmp", config[extra]))
    with open(os.path.join(args.out_dir + ".tmp", "model.json"), "w") as f:
        json.dump(config, f, indent=1)
    os.replace(args.out_dir + ".tmp", args.out_dir)
    print(f"wrote {args.out_dir}: {', '.join(names)} (autoencoder from {args.ae_dir})")


if __name__ == "__main__":
    main()
