"""Trains the latent autoencoder (autoencoder.py; docs/design.md "The latent space") on simulator frames.

Run on the GPU machine (tools/gpu/v2_run.sh). Resumable in pieces: the checkpoint (weights, optimizer, EMA, step,
log) stays on the machine while it is warm; --export writes the EMA weights in fp32 as safetensors shards of at
most 15 MiB (what the device tool can bring back), which --init takes to continue on a fresh machine (the
optimizer restarts there; the log says so).

Loss: L1 + MSE + --grad-weight x L1 of image gradients (sharpness: a pixel loss alone rewards blur). Reported on
held-out worlds: PSNR, and the edge energy of the reconstructions over the simulator's (1.0 = as sharp).
After training, the per-channel mean and standard deviation of the raw latents over training frames are stored
as latent_mean / latent_std (the transformer sees normalised latents).

--adv-weight W > 0 adds an adversarial term (a PatchGAN critic with spectral norm, hinge loss, trained beside the
autoencoder and never exported), weighted W times the ratio of the reconstruction loss's gradient to its own at
the decoder's last layer (as taming-transformers and Stable Diffusion's autoencoder do). Why: the losses above
leave the decoder's frames at about 0.81 of the simulator's edge energy, and a decoder trained alone on them did
not get sharper (docs/experiments/2026-12-06-decoder-and-retrieval.md); the critic asks for the detail a pixel
loss averages away. Its term joins after --adv-start steps of this run (at once when the critic resumes from the
checkpoint), the critic training from the first.

--decoder-only trains the decoder alone from --init: the encoder, and with it the latent space and its
latent_mean / latent_std, stay exactly as they were, so a transformer trained on those latents keeps working
with the new decoder (a sharper decoder for a trained model).
"""
from __future__ import annotations

import argparse
import copy
import glob
import json
import math
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import autoencoder as A  # noqa: E402
import model as M  # noqa: E402


def load_frames(path: str, max_episodes: int):
    """A kvworld-sim dataset's frames, uint8 [E * T, H, W, 3] (memory-mapped)."""
    with open(os.path.join(path, "meta.json")) as f:
        meta = json.load(f)
    E, T, H, W = meta["episodes"], meta["frames"], meta["height"], meta["width"]
    if max_episodes:
        E = min(E, max_episodes)
    frames = np.memmap(os.path.join(path, "frames.u8"), dtype=np.uint8, mode="r", shape=(E * T, H, W, 3))
    return frames, E, T


def to_unit(x: torch.Tensor) -> torch.Tensor:
    return x.float().div_(127.5).sub_(1.0)


class PatchCritic(torch.nn.Module):
    """The adversarial term's critic (training only): frames [B, H, W, 3] in [-1, 1] -> logits [B, 1, H/8, W/8],
    one per overlapping patch of 54 pixels (the receptive field). Spectral norm keeps the hinge game stable without a warm-up."""

    def __init__(self, width: int = 64):
        super().__init__()
        sn, c = torch.nn.utils.spectral_norm, width
        act = lambda: torch.nn.LeakyReLU(0.2)  # noqa: E731
        self.net = torch.nn.Sequential(
            sn(torch.nn.Conv2d(3, c, 4, 2, 1)), act(),
            sn(torch.nn.Conv2d(c, 2 * c, 4, 2, 1)), act(),
            sn(torch.nn.Conv2d(2 * c, 4 * c, 4, 2, 1)), act(),
            sn(torch.nn.Conv2d(4 * c, 4 * c, 3, 1, 1)), act(),
            sn(torch.nn.Conv2d(4 * c, 1, 3, 1, 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.permute(0, 3, 1, 2))


@torch.no_grad()
def evaluate(ae: A.Autoencoder, frames: torch.Tensor, batch: int = 32):
    """PSNR (pooled squared error, 8-bit) and edge energy over the simulator's of held-out frames uint8 [n, H, W, 3]."""
    se, n, e_rec, e_sim = 0.0, 0, 0.0, 0.0
    for b0 in range(0, frames.shape[0], batch):
        x = to_unit(frames[b0:b0 + batch])
        rec = ae.decode_raw(ae.encode_raw(x)).clamp(-1, 1)
        rec8 = ((rec + 1) * 127.5).round()
        se += (rec8 - frames[b0:b0 + batch].float()).pow(2).sum().item()
        n += x.numel()
        e_rec += A.edge_energy(rec).item() * x.shape[0]
        e_sim += A.edge_energy(x).item() * x.shape[0]
    return 10 * math.log10(255.0 ** 2 / max(se / n, 1e-12)), e_rec / max(e_sim, 1e-12)


@torch.no_grad()
def latent_statistics(ae: A.Autoencoder, frames: np.ndarray, device, samples: int = 2048, batch: int = 64):
    """Per-channel mean and standard deviation of the raw latents over `samples` frames spread over the dataset."""
    idx = np.linspace(0, frames.shape[0] - 1, min(samples, frames.shape[0])).astype(np.int64)
    s1, s2, n = 0.0, 0.0, 0
    for b0 in range(0, len(idx), batch):
        x = to_unit(torch.from_numpy(np.ascontiguousarray(frames[idx[b0:b0 + batch]])).to(device))
        z = ae.encode_raw(x).double()  # [b, C, h, w]
        s1 = s1 + z.sum(dim=(0, 2, 3))
        s2 = s2 + z.pow(2).sum(dim=(0, 2, 3))
        n += z.shape[0] * z.shape[2] * z.shape[3]
    mean = s1 / n
    std = (s2 / n - mean.pow(2)).clamp(min=1e-12).sqrt()
    return mean.float(), std.float()


def save_shards(tensors, out_dir: str, stem: str, max_bytes: int = 15 << 20):
    """tensors as fp32 safetensors files <stem>-NN.safetensors of at most max_bytes each; returns their names."""
    os.makedirs(out_dir, exist_ok=True)
    for old in glob.glob(os.path.join(out_dir, f"{stem}-*.safetensors")):
        os.remove(old)
    shards, cur, size = [], {}, 0
    for name in sorted(tensors):
        t = tensors[name].detach().float().cpu().contiguous()
        nbytes = t.numel() * 4
        if cur and size + nbytes > max_bytes:
            shards.append(cur)
            cur, size = {}, 0
        cur[name] = t
        size += nbytes
    shards.append(cur)
    names = [f"{stem}-{i + 1:02d}.safetensors" for i in range(len(shards))]
    for name, shard in zip(names, shards):
        M.save_safetensors(os.path.join(out_dir, name), shard)
    return names


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="kvworld-sim dataset folder (frames at the model's resolution)")
    ap.add_argument("--config", required=True, help="a model config with an \"autoencoder\" object")
    ap.add_argument("--ckpt", required=True, help="checkpoint file (resumed from when it exists)")
    ap.add_argument("--init", help="an --export folder of an earlier run (fp32 weights; the optimizer restarts)")
    ap.add_argument("--export", required=True, help="folder for the fp32 EMA weights (autoencoder-NN.safetensors)")
    ap.add_argument("--log", help="training log (JSON)")
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=4e-4)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--total-steps", type=int, default=20000, help="cosine schedule length across resumes")
    ap.add_argument("--grad-weight", type=float, default=1.0, help="weight of the image-gradient L1 term")
    ap.add_argument("--adv-weight", type=float, default=0.0,
                    help="weight of the adversarial term (0: none), times the adaptive ratio at the decoder's last layer")
    ap.add_argument("--adv-start", type=int, default=200,
                    help="steps of this run before the adversarial term joins (none when the critic resumes)")
    ap.add_argument("--critic-lr", type=float, default=2e-4)
    ap.add_argument("--decoder-only", action="store_true",
                    help="train the decoder alone (needs --init): the encoder and the latent statistics stay")
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--holdout", type=int, default=256, help="last frames (other worlds) kept for evaluation")
    ap.add_argument("--max-episodes", type=int, default=0)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    t_start = time.time()
    dev = torch.device(args.device)
    torch.manual_seed(args.seed)
    with open(args.config) as f:
        cfg = M.ModelConfig.from_json(f.read())
    assert cfg.autoencoder.enabled, f"{args.config} has no \"autoencoder\""

    frames_np, E, T = load_frames(args.data, args.max_episodes)
    assert frames_np.shape[1:3] == (cfg.height, cfg.width), "dataset and config resolutions differ"
    n_train = frames_np.shape[0] - args.holdout
    assert n_train > 0
    frames = torch.from_numpy(np.array(frames_np)).to(dev)  # uint8 [n, H, W, 3]
    print(f"data: {frames.shape[0]} frames ({E} episodes x {T}), {n_train} for training, {args.holdout} held out; "
          f"{time.time() - t_start:.1f}s", flush=True)

    ae = A.Autoencoder(cfg.autoencoder).to(dev)
    if args.decoder_only:
        assert args.init or os.path.exists(args.ckpt), "--decoder-only continues a trained autoencoder (--init)"
        ae.encoder.requires_grad_(False)  # before the optimizer is made: it holds the decoder's parameters
    n_params = sum(p.numel() for p in ae.parameters() if p.requires_grad)
    opt = torch.optim.AdamW([p for p in ae.parameters() if p.requires_grad], lr=args.lr, betas=(0.9, 0.99),
                            weight_decay=0.01, **({"fused": True} if dev.type == "cuda" else {}))
    step, log = 0, {"config": cfg.autoencoder.to_json(), "parameters": n_params, "runs": [], "points": []}
    ck = torch.load(args.ckpt, map_location=dev) if os.path.exists(args.ckpt) else None
    if ck is not None:
        ae.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        step, log = ck["step"], ck["log"]
        ema = {k: v.to(dev) for k, v in ck["ema"].items()}
        print(f"resumed at step {step}", flush=True)
    else:
        if args.init:
            sd = {k: v.float() for k, v in M.autoencoder_tensors(M.load_model_folder(args.init)).items()}
            ae.load_state_dict(sd)
            with open(os.path.join(args.init, "train_ae_state.json")) as f:
                state = json.load(f)
            step, log = state["step"], state["log"]
            print(f"initialised from {args.init} at step {step} (the optimizer restarts)", flush=True)
        ema = {k: v.detach().clone().float() for k, v in ae.state_dict().items()}
    critic = opt_critic = None
    if args.adv_weight > 0:
        critic = PatchCritic().to(dev)
        opt_critic = torch.optim.Adam(critic.parameters(), lr=args.critic_lr, betas=(0.5, 0.9))
        if ck is not None and "critic" in ck:
            critic.load_state_dict(ck["critic"])
            opt_critic.load_state_dict(ck["opt_critic"])
    # the step from which the adversarial term counts: a critic resumed from the checkpoint is already trained
    adv_from = step + (0 if ck is not None and "critic" in ck else args.adv_start)
    run = {"start_step": step, "batch": args.batch, "lr": args.lr, "grad_weight": args.grad_weight,
           "adv_weight": args.adv_weight, "adv_start": args.adv_start, "decoder_only": args.decoder_only,
           "frames": n_train, "device": str(dev), "resumed_optimizer": ck is not None,
           "gpu": torch.cuda.get_device_name() if dev.type == "cuda" else "cpu"}
    # decoder-only: the encoder's weights (and the latent statistics) are not averaged either, so that they stay
    # bit for bit what the transformer was trained with
    ema_keys = {k for k in ema if not args.decoder_only or k.startswith("decoder.")}
    if args.decoder_only:
        psnr0, edges0 = evaluate(ae.eval(), frames[n_train:])
        run["eval_before"] = {"psnr": psnr0, "edge_energy_ratio": edges0}
        print(json.dumps({"eval_before": run["eval_before"]}), flush=True)
    gen = torch.Generator(device=dev)
    gen.manual_seed(args.seed * 1000003 + step)
    budget = args.minutes * 60.0
    t_train = time.time()
    ae.train()

    def fresh_totals():  # running sums between log points
        return {"loss": 0.0, "mse": 0.0, "n": 0, "adv": 0.0, "critic": 0.0, "lam": 0.0}

    acc = fresh_totals()
    while time.time() - t_train < budget:
        lr = args.lr * min(1.0, (step + 1) / args.warmup) * (
            0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, step / args.total_steps))))
        for g in opt.param_groups:
            g["lr"] = lr
        idx = torch.randint(0, n_train, (args.batch,), device=dev, generator=gen)
        x = to_unit(frames[idx])
        if torch.rand((), device=dev, generator=gen) < 0.5:  # mirror: the world has no handedness
            x = x.flip(2)
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            with torch.set_grad_enabled(not args.decoder_only):
                z = ae.encode_raw(x)
            rec = ae.decode_raw(z)
        loss, mse = A.reconstruction_loss(rec.float(), x, args.grad_weight)
        total = loss
        if critic is not None and step >= adv_from:
            critic.requires_grad_(False)  # the autoencoder's step does not train the critic
            with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                adv = -critic(rec.float()).float().mean()
            critic.requires_grad_(True)
            # adaptive weight: the two terms' gradients at the decoder's last layer made comparable
            last = ae.decoder.conv_out.weight
            g_rec = torch.autograd.grad(loss, last, retain_graph=True)[0]
            g_adv = torch.autograd.grad(adv, last, retain_graph=True)[0]
            lam = (g_rec.norm() / (g_adv.norm() + 1e-4)).clamp(max=1e4).detach() * args.adv_weight
            total = loss + lam * adv
            acc["adv"] += adv.item()
            acc["lam"] += lam.item()
        opt.zero_grad(set_to_none=True)
        total.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(ae.parameters(), 1.0)
        opt.step()
        if critic is not None:  # hinge loss on the batch's frames against their reconstructions
            with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                real, fake = critic(x), critic(rec.detach().float())
            loss_critic = torch.relu(1 - real.float()).mean() + torch.relu(1 + fake.float()).mean()
            opt_critic.zero_grad(set_to_none=True)
            loss_critic.backward()
            opt_critic.step()
            acc["critic"] += loss_critic.item()
        decay = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for k, v in ae.state_dict().items():
                if k in ema_keys:
                    ema[k].mul_(decay).add_(v.float(), alpha=1 - decay)
        step += 1
        acc["loss"] += loss.item()
        acc["mse"] += mse.item()
        acc["n"] += 1
        if step % 100 == 0:
            pt = {"step": step, "loss": acc["loss"] / acc["n"], "mse": acc["mse"] / acc["n"], "lr": lr,
                  "grad_norm": float(gnorm), "seconds": time.time() - t_train}
            if critic is not None:  # the adversarial term and its weight (0 before it joins), the critic's hinge loss
                pt.update(adv=acc["adv"] / acc["n"], adv_lambda=acc["lam"] / acc["n"], critic=acc["critic"] / acc["n"])
            log["points"].append(pt)
            print(json.dumps(pt), flush=True)
            acc = fresh_totals()
    run["end_step"] = step
    run["train_seconds"] = time.time() - t_train
    ema_ae = copy.deepcopy(ae)
    ema_ae.load_state_dict(ema)
    ema_ae.eval()
    psnr, edges = evaluate(ema_ae, frames[n_train:])
    if args.decoder_only:  # the latent space is the one the transformer learned: its statistics stay
        mean, std = ema_ae.latent_mean.detach().clone(), ema_ae.latent_std.detach().clone()
    else:
        mean, std = latent_statistics(ema_ae, frames_np[:n_train], dev)
        with torch.no_grad():
            ema_ae.latent_mean.copy_(mean)
            ema_ae.latent_std.copy_(std)
    run["eval"] = {"frames": int(frames.shape[0] - n_train), "psnr": psnr, "edge_energy_ratio": edges,
                   "latent_mean": mean.tolist(), "latent_std": std.tolist()}
    print(json.dumps({"eval": run["eval"]}), flush=True)
    log["runs"].append(run)
    state = {"model": ae.state_dict(), "opt": opt.state_dict(), "ema": ema, "step": step, "log": log}
    if critic is not None:
        state.update(critic=critic.state_dict(), opt_critic=opt_critic.state_dict())
    torch.save(state, args.ckpt + ".tmp")
    os.replace(args.ckpt + ".tmp", args.ckpt)
    names = save_shards({f"autoencoder.{k}": v for k, v in ema_ae.state_dict().items()}, args.export, "autoencoder")
    with open(os.path.join(args.export, "train_ae_state.json"), "w") as f:
        json.dump({"step": step, "log": log, "files": names}, f)
    if args.log:
        with open(args.log, "w") as f:
            json.dump(log, f, indent=1)
    print(f"exported {args.export} ({', '.join(names)}); step {step}, {time.time() - t_start:.0f}s in all", flush=True)


if __name__ == "__main__":
    main()
