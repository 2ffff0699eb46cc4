"""Checks that training sees exactly what inference does: the teacher-forced prediction of chunk c (clean
context, tau = 0) equals the engine procedure's forward of chunk c over a cache filled by cache passes
(forward_with_cache), up to the bf16 rounding the inference cache applies. Run: python3 check_consistency.py DATA"""
import sys

import numpy as np
import torch

import context as ctxpol
import model as M
import train


def main():
    data_dir = sys.argv[1]
    torch.manual_seed(0)
    cfg = M.ModelConfig.from_json(open(sys.argv[2] if len(sys.argv) > 2 else "../../config/model-tiny.json").read())
    data = train.EpisodeData(data_dir, cfg, torch.device("cpu"), cfg.window, cfg.recall)
    model = M.KVWorldModel(cfg)
    with torch.no_grad():  # randomise (the training init zeroes the head)
        for name, p in model.named_parameters():
            p.add_(torch.randn_like(p) * 0.05)
    model.eval()
    rope = M.RopeTables(cfg, 64 * cfg.chunk_frames)
    rf = train.SlotFactors([rope.chunk_factors(s) for s in range(cfg.window + cfg.recall + 1)])
    e, K, Fr = 0, data.K, cfg.chunk_frames
    x0 = data.frames[e:e + 1].float().div(127.5).sub(1.0).view(1, K, Fr, cfg.height, cfg.width, 3)
    t = torch.full((1, K), 0.6)
    tau = torch.zeros(1, K)
    e1 = torch.zeros_like(x0)
    e2 = torch.randn_like(x0)
    cam_e = data.camera[e:e + 1]
    views = train.source_views(cam_e, Fr)  # warp_source: chunk c's frames moved from chunk c-1's last camera
    with torch.no_grad():
        pred = train.teacher_forced_predict(model, rf, x0, data.labels[e:e + 1], data.cam[e:e + 1],
                                            data.recall_idx_t[e:e + 1], cfg.window, cfg.recall, t, tau, e1, e2,
                                            camera=cam_e)
    # Inference: cache passes of the ground-truth chunks, then the forward of each noisy chunk.
    chunk_poses = data.poses[e, Fr - 1::Fr]
    entries, worst = [], 0.0
    for c in range(K):
        ctx_list, _ = ctxpol.choose_context(c, chunk_poses, cfg.window, cfg.recall, cfg.motion["hfov_deg"], cfg.recall_first)
        assert ctx_list == ([int(i) for i in data.recall_idx[e, c] if i >= 0] + list(range(max(0, c - cfg.window), c))), \
            (c, ctx_list, data.recall_idx[e, c])
        ctx = [entries[i] for i in ctx_list]
        sl = slice(c * Fr, (c + 1) * Fr)
        lab, cam = data.labels[e:e + 1, sl], data.cam[e:e + 1, sl]
        if c >= 1:
            prev = x0[:, c - 1, -1:]
            if cfg.source_previous and cfg.warp_source:
                prev = train.warp_chunk_source(x0[:, c - 1, -1], views, c, cfg)
            source = cfg.source_sigma * e2[:, c] + (prev if cfg.source_previous else 0)
            xt = (1 - 0.6) * x0[:, c] + 0.6 * source
            out, _, _ = M.forward_with_cache(model, rope, xt, torch.full((1, Fr), 0.6), lab, cam, ctx)
            err = float((out - pred[:, c - 1]).abs().max())
            worst = max(worst, err)
            print(f"chunk {c}: context {ctx_list}, max |inference - training| = {err:.2e}")
        _, _, entry = M.forward_with_cache(model, rope, x0[:, c], torch.zeros(1, Fr), lab, cam, ctx, write=True)
        entries.append(entry)
    scale = float(pred.abs().mean())
    print(f"worst {worst:.3e} (output scale {scale:.3f}); bf16 cache rounding explains ~1e-2 relative")
    assert worst < 0.05 * max(scale, 1e-3) + 0.02, "training and inference disagree"

    # The rollout that self-context training feeds as context (train.rollout_chunks) must be the engine's
    # autoregressive procedure: generate_chunk chunk after chunk with the same flow-source noise.
    n = Fr * cfg.height * cfg.width * 3
    noise = torch.stack([torch.from_numpy(M.normal_noise(1, c, 0, 0, n)).view(Fr, cfg.height, cfg.width, 3)
                         for c in range(K)])[None]
    for guidance in (1.0, 1.5):  # motion guidance: the negative releases the movement keys
        with torch.no_grad():
            rolled = train.rollout_chunks(model, rf, x0, data.labels[e:e + 1], data.cam[e:e + 1],
                                          data.recall_idx_t[e:e + 1], cfg.window, cfg.recall, noise, 0, guidance,
                                          (data.labels_neg[e:e + 1], data.cam_neg[e:e + 1]), cam_e)
        entries, prev, worst = [], None, 0.0
        for c in range(K):
            ctx_list, _ = ctxpol.choose_context(c, chunk_poses, cfg.window, cfg.recall, cfg.motion["hfov_deg"], cfg.recall_first)
            sl = slice(c * Fr, (c + 1) * Fr)
            neg = (data.labels_neg[e:e + 1, sl], data.cam_neg[e:e + 1, sl])
            moves = bool((neg[1] != data.cam[e:e + 1, sl]).any() or (neg[0] != data.labels[e:e + 1, sl]).any())
            out, _, entry = M.generate_chunk(model, rope, [entries[i] for i in ctx_list], data.labels[e:e + 1, sl],
                                             data.cam[e:e + 1, sl], 1, c, cfg.steps, cfg.shift, cfg.cache_t,
                                             given=x0[:, 0] if c == 0 else None, prev=prev,
                                             guidance=guidance if moves else 1.0, negative=neg,
                                             rotation=tuple(v[:, c - 1] for v in views) if c else None)
            entries.append(entry)
            prev = out[:, -1]
            err = float((out - rolled[:, c]).abs().max())
            worst = max(worst, err)
            print(f"guidance {guidance}, rollout chunk {c} ({'moves' if moves else 'still'}): "
                  f"max |generate_chunk - rollout_chunks| = {err:.2e}")
        assert worst < 0.05, "the training rollout is not the engine's procedure"


if __name__ == "__main__":
    main()
