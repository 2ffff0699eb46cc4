"""Records the PyTorch autoencoder (autoencoder.py) on random weights of config/model-tiny-latent.json's
autoencoder, for the C++ CPU autoencoder to reproduce (tests/test_parity.cpp, Parity.AutoencoderMatchesPyTorch):
tests/data/parity_autoencoder.safetensors holds the weights ("autoencoder.*"), an input frame [64, 64, 3] in
[-1, 1], its normalised latent [8, 8, C] and the decoding of that latent [64, 64, 3].

    python3 tools/train/parity_autoencoder.py      # CPU is enough (PyTorch >= 1.13)
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import autoencoder as A  # noqa: E402
import model as M  # noqa: E402


def main():
    root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
    with open(os.path.join(root, "config", "model-tiny-latent.json")) as f:
        cfg = M.ModelConfig.from_json(f.read())
    torch.manual_seed(20261204)
    ae = A.Autoencoder(cfg.autoencoder).double()
    with torch.no_grad():  # norms and statistics away from their defaults, so that every term is exercised
        for name, p in ae.named_parameters():
            if "norm" in name:
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.2 * torch.randn_like(p))
        ae.latent_mean.copy_(0.3 * torch.randn_like(ae.latent_mean))
        ae.latent_std.copy_(0.5 + torch.rand_like(ae.latent_std))
        for p in ae.parameters():  # what the fixture stores (float32), the reference computed from in double
            p.copy_(p.float().double())
    ae.eval()
    frame = (torch.rand(1, cfg.height, cfg.width, 3, dtype=torch.float64) * 2 - 1).float().double()
    with torch.no_grad():
        latent = ae.encode(frame)
        decoded = ae.decode(latent)
    rec = {f"autoencoder.{k}": v for k, v in ae.state_dict().items()}
    rec.update({"input": frame[0], "latent": latent[0], "decoded": decoded[0]})
    out = os.path.join(root, "tests", "data", "parity_autoencoder.safetensors")
    M.save_safetensors(out, {k: v.float().contiguous() for k, v in rec.items()})
    print("wrote", out, len(rec), "tensors")


if __name__ == "__main__":
    main()
