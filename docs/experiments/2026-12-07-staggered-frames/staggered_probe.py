#!/usr/bin/env python3
"""Does a chunk's later frames walk if they are decided after its earlier ones? (issue 19 item 4; a PyTorch probe)

Within a chunk the first frame walks at about the simulator's rate and frames 1-3 at about half of it. Frame 0 is
next to a clean frame, the context's last, which it moves by one step; frames 1-3 are denoised at the same noise
level as the frames they follow. This probe samples one chunk after a ground-truth context (chunks 0..K-2 given,
chunk K-1 sampled, the engine's procedure as train.rollout_chunks runs it) with the shipped schedule (lag 0) and
with staggered ones (frame_lag L: frame f runs the same steps L*f passes after frame 0), on the same episodes and
noise, and measures:
  - PSNR of the sampled chunk against the simulator (pooled over its frames), and of repeating the last context
    frame: the margin;
  - on the chunks that walk straight forward (or back) in all four frames, the zoom of every frame pair
    (context's last -> frame 0, frame k-1 -> frame k) with the eval's estimator (walking_source_study.py), for the
    model and for the simulator, on the pairs where the simulator's own zoom shows the walk (|zoom - 1| > 0.004).
The model was trained with one noise level a chunk, so the staggered schedules are out of its training
distribution: what they show without training is a lower bound. The transformer runs in bf16 autocast, as in
training's rollouts (the eval runs it in fp32 on the CPU and in bf16 GEMMs on CUDA); the decoder in fp32. Pair 0
compares the model's frame 0 with the simulator's last context frame, as the eval does.

    kvworld-sim dataset --out D --episodes 512 --frames 16 --seed-base 140000 --width 256 --height 256
    python3 staggered_probe.py --model assets/models/v2 --data D --lags 0,1,2 --out result.json

--rollout: only chunk 0 given, every later chunk sampled from the model's own (episodes of, say, 480 frames: 30 s);
the zoom of every pair of every straight-walking chunk c >= 1 (pair 0: chunk c-1's last generated frame -> frame 0),
beside the simulator's on the same actions. No PSNR (the rollout leaves the simulator's frames).

    kvworld-sim dataset --out R --episodes 32 --frames 480 --seed-base 141000 --width 256 --height 256
    python3 staggered_probe.py --model assets/models/v2 --data R --lags 0,1,2 --rollout --batch 32 --out rollouts.json
"""
import argparse
import importlib.util
import json
import math
import os
import sys
import time
import traceback

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..", "..")
sys.path.insert(0, os.path.join(ROOT, "tools", "train"))
import model as M  # noqa: E402
import train as T  # noqa: E402

_spec = importlib.util.spec_from_file_location(
    "walking_source_study",
    os.path.join(ROOT, "docs", "experiments", "2026-12-05-self-context-and-composition", "walking_source_study.py"))
W = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(W)


def straight_walk(actions: np.ndarray):
    """actions [F, 5] of one chunk -> +1 (straight forward), -1 (straight back) or 0 (as walking_source_study)."""
    straight = (np.all(np.abs(actions[:, 3]) < 1e-3) and np.all(np.abs(actions[:, 1]) < 1e-3)
                and np.all(np.abs(actions[:, 4]) < 1e-3))
    if not straight:
        return 0
    for sign in (1.0, -1.0):
        if np.all(sign * actions[:, 0] > 0.5):
            return int(sign)
    return 0


def interval(d: np.ndarray):
    """95% bootstrap interval of the mean of per-world differences d (4,000 resamples of the worlds, seed 0)."""
    rng = np.random.default_rng(0)
    boot = [rng.choice(d, len(d)).mean() for _ in range(4000)]
    return tuple(np.percentile(boot, [2.5, 97.5]))


def pair_zooms(seqs: torch.Tensor) -> np.ndarray:
    """seqs [n, F + 1, H, W, 3] (0..255, any device and dtype): each run's previous frame, then its F frames ->
    the eval's zoom of every consecutive pair [n, F], in calls of at most 192 pairs (CPU, float64)."""
    n, Fr = seqs.shape[0], seqs.shape[1] - 1
    lum = lambda a: W.luma(a.reshape(-1, *a.shape[2:]).cpu().numpy().astype(np.uint8))  # noqa: E731
    out = [W.estimate_zoom(lum(seqs[i:i + 48, :-1]), lum(seqs[i:i + 48, 1:])).reshape(-1, Fr)
           for i in range(0, n, 48)]
    return np.concatenate(out, 0) if out else np.zeros((0, Fr))


def sample(args, cfg, model, data, rope_f, dev, idx, b0: int, given: int, lag: int) -> torch.Tensor:
    """Episodes idx (the batch starting at episode b0) through train.rollout_chunks: the first `given` chunks the
    simulator's, the rest sampled with frame_lag `lag`, the shipped guidance; the same noise for every lag.
    Returns the latents [B, K, F, h, w, C]."""
    K, Fr = data.K, cfg.chunk_frames
    x0 = data.grid(idx).view(len(idx), K, Fr, *cfg.grid_shape)
    g = torch.Generator(device=dev)
    g.manual_seed(args.seed * 100003 + b0)
    noise = torch.randn(x0.shape, device=dev, generator=g)
    with torch.no_grad(), torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
        return T.rollout_chunks(model, rope_f, x0, data.labels[idx], data.cam[idx], data.recall_idx_t[idx],
                                cfg.window, cfg.recall, noise, 0, cfg.guidance,
                                (data.labels_neg[idx], data.cam_neg[idx]), data.camera[idx],
                                given=given, frame_lag=lag)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="model folder (model.json, weights with the autoencoder)")
    ap.add_argument("--data", required=True, help="kvworld-sim dataset (256x256, frames a multiple of 4)")
    ap.add_argument("--lags", default="0,1,2")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", required=True, help="result JSON")
    ap.add_argument("--rollout", action="store_true", help="sample every chunk after chunk 0 (see above)")
    args = ap.parse_args()
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    t0 = time.time()
    with open(os.path.join(args.model, "model.json")) as f:
        cfg = M.ModelConfig.from_json(f.read())
    model = M.KVWorldModel(cfg).to(dev)
    sd = {k: v.float() for k, v in M.load_model_folder(args.model).items() if not k.startswith("autoencoder.")}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not k.startswith("autoencoder.")]
    assert not missing and not unexpected, (missing, unexpected)
    T.load_autoencoder(model.autoencoder, args.model)
    model.eval()
    meta = json.load(open(os.path.join(args.data, "meta.json")))
    E = meta["episodes"]
    data = T.EpisodeData(args.data, cfg, dev, cfg.window, cfg.recall, 0, model.autoencoder, holdout=E)
    K, Fr = data.K, cfg.chunk_frames
    rope = M.RopeTables(cfg, 64 * Fr)
    rope_f = T.SlotFactors([rope.chunk_factors(s, dev) for s in range(cfg.window + cfg.recall + 1)])
    print(f"{E} episodes x {K} chunks, model {args.model}, guidance {cfg.guidance} from t {cfg.guidance_min_t}, "
          f"{cfg.steps} steps; loaded in {time.time() - t0:.1f}s", flush=True)
    if args.rollout:
        return rollouts(args, cfg, model, data, rope_f, dev)
    last = (K - 1) * Fr
    gt = data.pixels[:, last:last + Fr].float()  # [E, F, H, W, 3] the sampled chunk's simulator frames
    prev_px = data.pixels[:, last - 1].float()  # the context's last frame
    walk = np.array([straight_walk(data.actions[e, last:last + Fr]) for e in range(E)])
    sel = np.nonzero(walk != 0)[0]
    # the simulator's zoom per pair on the walking chunks, once
    sim_zoom = dict(zip(sel.tolist(), pair_zooms(torch.cat([prev_px[sel][:, None], gt[sel]], 1))))
    print(f"{len(sel)} chunks walk straight ({int((walk > 0).sum())} forward, {int((walk < 0).sum())} back)",
          flush=True)
    results = {"model": args.model, "data": args.data, "episodes": E, "chunks": K, "walking_chunks": len(sel),
               "lags": []}
    for lag in [int(v) for v in args.lags.split(",")]:
        try:
            t1 = time.time()
            gen_px = torch.empty_like(gt)
            for b0 in range(0, E, args.batch):
                idx = torch.arange(b0, min(E, b0 + args.batch), device=dev)
                out = sample(args, cfg, model, data, rope_f, dev, idx, b0, K - 1, lag)
                lat = out[:, K - 1].float().reshape(-1, *cfg.grid_shape)
                with torch.no_grad():  # decoded in fp32, as the eval decodes
                    px = model.autoencoder.decode(lat).float()
                gen_px[b0:b0 + len(idx)] = ((px.view(len(idx), Fr, *px.shape[1:]) + 1) * 127.5).round().clamp(0, 255)
            mse = (gen_px - gt).pow(2).mean().item()
            mse_rep = (prev_px[:, None].expand_as(gt) - gt).pow(2).mean().item()
            psnr = 10 * math.log10(255 ** 2 / mse)
            psnr_rep = 10 * math.log10(255 ** 2 / mse_rep)
            per_world = (10 * torch.log10(255 ** 2 / (gen_px - gt).pow(2).mean(dim=(1, 2, 3, 4)))).cpu().numpy()
            zooms = {d: [[] for _ in range(Fr)] for d in ("forward", "back")}
            gen_zoom = pair_zooms(torch.cat([prev_px[sel][:, None], gen_px[sel]], 1))
            for e, zm in zip(sel, gen_zoom):
                zs = sim_zoom[int(e)]
                d = "forward" if walk[e] > 0 else "back"
                for k in range(Fr):
                    if walk[e] * (zs[k] - 1) > 0.004:
                        zooms[d][k].append((zm[k], zs[k]))
            row = {"frame_lag": lag, "passes": cfg.steps + lag * (Fr - 1), "psnr": psnr, "psnr_repeat_last": psnr_rep,
                   "margin": psnr - psnr_rep, "per_world_psnr": per_world.tolist(), "seconds": time.time() - t1}
            for d in ("forward", "back"):
                row[d] = [{"pair": k, "pairs": len(zooms[d][k]),
                           "model_zoom": float(np.mean([z[0] for z in zooms[d][k]])) if zooms[d][k] else None,
                           "simulator_zoom": float(np.mean([z[1] for z in zooms[d][k]])) if zooms[d][k] else None,
                           "ratio_of_means": (float(np.mean([z[0] for z in zooms[d][k]])) - 1)
                           / (float(np.mean([z[1] for z in zooms[d][k]])) - 1) if zooms[d][k] else None}
                          for k in range(Fr)]
            results["lags"].append(row)
            fw = " ".join(f"{r['model_zoom']:.4f}/{r['simulator_zoom']:.4f}({r['pairs']})" if r["pairs"] else "-"
                          for r in row["forward"])
            print(f"lag {lag}: {row['passes']} passes, PSNR {psnr:.2f} dB, repeat-last {psnr_rep:.2f}, margin "
                  f"{psnr - psnr_rep:+.2f}; forward zoom model/simulator by pair: {fw}; {row['seconds']:.0f}s",
                  flush=True)
        except Exception:  # one schedule failing must not lose the others' figures
            traceback.print_exc()
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)
    if len(results["lags"]) > 1 and results["lags"][0]["frame_lag"] == 0:
        base = np.array(results["lags"][0]["per_world_psnr"])
        for row in results["lags"][1:]:
            d = np.array(row["per_world_psnr"]) - base
            lo, hi = interval(d)
            row["per_world_vs_lag0"] = [float(d.mean()), float(lo), float(hi)]
            print(f"lag {row['frame_lag']} against lag 0, per world: {d.mean():+.3f} dB [{lo:+.3f}, {hi:+.3f}]")
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)


def rollouts(args, cfg, model, data, rope_f, dev):
    """--rollout: per lag, the zoom of every pair of the straight-walking chunks of rollouts from chunk 0."""
    E, K, Fr = data.E, data.K, cfg.chunk_frames
    walking = {e: [(c, straight_walk(data.actions[e, c * Fr:(c + 1) * Fr])) for c in range(1, K)] for e in range(E)}
    walking = {e: [(c, w) for c, w in v if w != 0] for e, v in walking.items()}
    n_chunks = sum(len(v) for v in walking.values())
    print(f"rollouts: {E} episodes x {K} chunks, {n_chunks} straight-walking chunks after chunk 0", flush=True)
    # the simulator's zoom per pair of those chunks, once, 48 chunks (192 pairs) a call: {(e, c): (walk, zooms[F])}
    order = [(e, c, w) for e, v in walking.items() for c, w in v]
    sim = {}
    for k0 in range(0, len(order), 48):
        part = order[k0:k0 + 48]
        zs = pair_zooms(torch.stack([data.pixels[e, c * Fr - 1:(c + 1) * Fr] for e, c, _ in part]))
        for (e, c, w), z in zip(part, zs):
            sim[(e, c)] = (w, z)
    results = {"model": args.model, "data": args.data, "episodes": E, "chunks": K, "walking_chunks": n_chunks,
               "mode": "rollout", "lags": []}
    for lag in [int(v) for v in args.lags.split(",")]:
        try:
            t1 = time.time()
            lat = {}  # (e, c) -> latents [F + 1, h, w, C]: chunk c-1's last frame, then chunk c
            for b0 in range(0, E, args.batch):
                idx = torch.arange(b0, min(E, b0 + args.batch), device=dev)
                out = sample(args, cfg, model, data, rope_f, dev, idx, b0, 1, lag)
                for i, e in enumerate(range(b0, b0 + len(idx))):
                    for c, _ in walking[e]:
                        lat[(e, c)] = torch.cat([out[i, c - 1, -1:], out[i, c]], 0).float()
                del out
            keys = list(lat.keys())
            zooms = {"forward": [[] for _ in range(Fr)], "back": [[] for _ in range(Fr)]}
            for k0 in range(0, len(keys), 48):  # decoded 48 chunks (240 frames) at a time, in fp32
                part = keys[k0:k0 + 48]
                with torch.no_grad():
                    px = model.autoencoder.decode(torch.cat([lat[k] for k in part], 0)).float()
                px = ((px + 1) * 127.5).round().clamp(0, 255).view(len(part), Fr + 1, *px.shape[1:])
                zm_all = pair_zooms(px)
                for k, zm in zip(part, zm_all):
                    w, zs = sim[k]
                    d = "forward" if w > 0 else "back"
                    for p in range(Fr):
                        if w * (zs[p] - 1) > 0.004:
                            zooms[d][p].append((float(zm[p]), float(zs[p]), k[0]))
            row = {"frame_lag": lag, "passes": cfg.steps + lag * (Fr - 1), "seconds": time.time() - t1}
            for d in ("forward", "back"):
                row[d] = []
                for p in range(Fr):
                    z = zooms[d][p]
                    m = float(np.mean([a for a, _, _ in z])) if z else None
                    s_ = float(np.mean([b for _, b, _ in z])) if z else None
                    row[d].append({"pair": p, "pairs": len(z), "worlds": len({e for _, _, e in z}), "model_zoom": m,
                                   "simulator_zoom": s_, "ratio_of_means": (m - 1) / (s_ - 1) if z else None})
                allz = [x for p in range(Fr) for x in zooms[d][p]]
                row[d + "_all_pairs"] = ((float(np.mean([a for a, _, _ in allz])) - 1) /
                                         (float(np.mean([b for _, b, _ in allz])) - 1)) if allz else None
                # frames 1-3 (pairs 1..3), pooled and per world (ratio of the world's means), for the page's rule
                later = [x for p in range(1, Fr) for x in zooms[d][p]]
                row[d + "_later_pairs"] = ((float(np.mean([a for a, _, _ in later])) - 1) /
                                           (float(np.mean([b for _, b, _ in later])) - 1)) if later else None
                per_world = {}
                for a, b, e in later:
                    per_world.setdefault(e, []).append((a, b))
                row[d + "_later_pairs_per_world"] = {
                    str(e): (float(np.mean([a for a, _ in v])) - 1) / (float(np.mean([b for _, b in v])) - 1)
                    for e, v in per_world.items()}
            results["lags"].append(row)
            fw = " ".join(f"{r['model_zoom']:.4f}/{r['simulator_zoom']:.4f}({r['pairs']})" if r["pairs"] else "-"
                          for r in row["forward"])
            print(f"rollouts, lag {lag}: forward zoom model/simulator by pair: {fw}; forward pairs of frames 1-3 "
                  f"{100 * (row['forward_later_pairs'] or 0):.0f}%, all forward "
                  f"{100 * (row['forward_all_pairs'] or 0):.0f}%, back {100 * (row['back_all_pairs'] or 0):.0f}%; "
                  f"{row['seconds']:.0f}s", flush=True)
        except Exception:  # one schedule failing must not lose the others' figures
            traceback.print_exc()
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)
    # each lag against lag 0 on frames 1-3's forward pairs, per world (worlds with pairs in both), 95% interval
    if len(results["lags"]) > 1 and results["lags"][0]["frame_lag"] == 0:
        base = results["lags"][0]["forward_later_pairs_per_world"]
        for row in results["lags"][1:]:
            new = row["forward_later_pairs_per_world"]
            d = np.array([new[e] - base[e] for e in new if e in base])
            if len(d) == 0:
                continue
            lo, hi = interval(d)
            row["forward_later_pairs_vs_lag0"] = [float(d.mean()), float(lo), float(hi), int(len(d))]
            print(f"rollouts, lag {row['frame_lag']} against lag 0, frames 1-3 forward, per world: "
                  f"{100 * d.mean():+.1f} points [{100 * lo:+.1f}, {100 * hi:+.1f}] ({len(d)} worlds)", flush=True)
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
