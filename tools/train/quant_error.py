"""Why the Jensen correction leaves stolen attention behind with keys quantized per channel: the rounding error of
real keys against the uniform error the correction assumes (README, "Quality under cache compression").

On held-out simulator episodes, the shipped model's cache-pass keys (bf16, before RoPE, as the engine caches them)
are quantized as the engine does (engine/src/quant.{h,cpp}: min-max groups, fp16 offset rounded down, fp16 step
rounded up; token layout: groups of g channels; channel layout: blocks of g tokens, one step per RoPE pair, an
offset per channel). For the queries of a later chunk's noisy pass it reports, per layer and layout:
  - the error's second moment against the uniform model's, E[e^2] / E[step^2 / 12];
  - the part of it that is systematic: the squared mean error of each (token block, channel) over E[e^2];
  - the actual inflation of the cache's softmax mass, LSE(s_hat) - LSE(s) over the cached keys (mean over
    queries and heads), what the Taylor correction predicts, LSE(s + b) - LSE(s), and what is left after it,
    LSE(s_hat - b) - LSE(s);
  - the actual inflation again with only the error's (block, channel) means added to the keys, and with only the
    error around them.
Runs on the CPU: python3 tools/train/quant_error.py DATA MODEL_DIR [--bits 2 --group 128]
(DATA: `kvworld-sim dataset --out DATA --episodes 4 --frames 32 --seed-base 1800000`, worlds not trained on).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import context as ctxpol  # noqa: E402
import model as M  # noqa: E402
import train  # noqa: E402


def f16_down(x: np.ndarray) -> np.ndarray:
    h = x.astype(np.float16)
    return np.where(h.astype(np.float32) > x, np.nextafter(h, np.float16(-np.inf)), h).astype(np.float32)


def f16_up(x: np.ndarray) -> np.ndarray:
    h = x.astype(np.float16)
    return np.where(h.astype(np.float32) < x, np.nextafter(h, np.float16(np.inf)), h).astype(np.float32)


def quantize(k: np.ndarray, bits: int, group: int, channel: bool):
    """k [heads, T, hd] float32 -> (dequantized like k, step of every element like k)."""
    levels = float((1 << bits) - 1)
    H, T, hd = k.shape
    if not channel:
        x = k.reshape(H, T, hd // group, group)
        off = f16_down(x.min(-1, keepdims=True))
        step = f16_up((x.max(-1, keepdims=True) - off) / levels)
    else:
        assert T % group == 0
        x = k.reshape(H, T // group, group, hd)  # blocks of tokens
        off = f16_down(x.min(2, keepdims=True))  # [H, B, 1, hd]
        step_c = f16_up((x.max(2, keepdims=True) - off) / levels)
        pair = np.maximum(step_c[..., 0::2], step_c[..., 1::2])  # one step per RoPE pair: the larger range
        step = np.repeat(pair, 2, axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        code = np.where(step > 0, np.clip(np.floor((x - off) / step + 0.5), 0, levels), 0)
    deq = off + step * code
    return deq.reshape(H, T, hd), np.broadcast_to(step, x.shape).reshape(H, T, hd)


def lse(x: torch.Tensor) -> torch.Tensor:
    return torch.logsumexp(x, dim=-1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data")
    ap.add_argument("model_dir")
    ap.add_argument("--bits", type=int, default=2)
    ap.add_argument("--group", type=int, default=128)
    ap.add_argument("--chunk", type=int, default=6, help="the chunk whose queries are measured (context full)")
    ap.add_argument("--t", type=float, default=0.5, help="noise level of that chunk's pass")
    ap.add_argument("--json", help="write the table here")
    args = ap.parse_args()
    torch.manual_seed(0)
    cfg = M.ModelConfig.from_json(open(os.path.join(args.model_dir, "model.json")).read())
    model = M.KVWorldModel(cfg)
    sd = M.load_model_folder(args.model_dir)  # int8 weights dequantized
    model.load_state_dict({k: v.float() for k, v in sd.items()})
    model.eval()
    data = train.EpisodeData(args.data, cfg, torch.device("cpu"), cfg.window, cfg.recall)
    rope = M.RopeTables(cfg, 64 * cfg.chunk_frames)
    Fr, alpha = cfg.chunk_frames, 1.0 / math.sqrt(cfg.head_dim)
    layouts = {"token": False, "channel": True}
    acc = {lay: [dict(e2=0.0, u2=0.0, sys2=0.0, n=0, actual=0.0, taylor=0.0, left=0.0, sys_only=0.0, res_only=0.0, q=0)
                 for _ in range(cfg.depth)] for lay in layouts}
    for e in range(data.E):
        frames = data.frames[e].float().div(127.5).sub(1.0)
        chunk_poses = data.poses[e, Fr - 1::Fr]
        entries = []
        with torch.no_grad():
            for c in range(args.chunk):  # cache passes of the ground-truth chunks
                ctx_list, _ = ctxpol.choose_context(c, chunk_poses, cfg.window, cfg.recall, cfg.motion["hfov_deg"], cfg.recall_first)
                sl = slice(c * Fr, (c + 1) * Fr)
                _, _, entry = M.forward_with_cache(model, rope, frames[sl][None], torch.zeros(1, Fr), data.labels[e:e + 1, sl],
                                                   data.cam[e:e + 1, sl], [entries[i] for i in ctx_list], write=True)
                entries.append(entry)
            c = args.chunk
            ctx_list, _ = ctxpol.choose_context(c, chunk_poses, cfg.window, cfg.recall, cfg.motion["hfov_deg"], cfg.recall_first)
            ctx = [entries[i] for i in ctx_list]
            sl = slice(c * Fr, (c + 1) * Fr)
            x_t = (1 - args.t) * frames[sl][None] + args.t * (cfg.source_sigma * torch.randn(1, Fr, cfg.height, cfg.width, 3)
                                                                 + frames[c * Fr - 1][None, None])
            # The noisy pass through the inference code, keeping every layer's query.
            queries = []
            M.forward_with_cache(model, rope, x_t, torch.full((1, Fr), args.t), data.labels[e:e + 1, sl], data.cam[e:e + 1, sl],
                                 ctx, layer_hook=lambda l, q: queries.append(q))
            cur = rope.chunk_factors(len(ctx))
            slot_f = [rope.chunk_factors(s) for s in range(len(ctx))]
            for l, q in enumerate(queries):
                qr = M.apply_rope(q, *cur)[0]  # [H, N, hd]
                k_ctx = [ent.k[l][0] for ent in ctx]  # unrotated [H, Nc, hd] each
                s_exact = alpha * qr @ torch.cat([M.apply_rope(kc, *slot_f[s]) for s, kc in enumerate(k_ctx)], 1).transpose(-1, -2)
                for lay, channel in layouts.items():
                    steps, kq, k_sys, k_res = [], [], [], []
                    a = acc[lay][l]
                    for s, kc in enumerate(k_ctx):
                        kn = kc.numpy()
                        d, st = quantize(kn, args.bits, args.group, channel)
                        err = d - kn
                        a["e2"] += float((err ** 2).sum())
                        a["u2"] += float((st ** 2 / 12).sum())
                        a["n"] += err.size
                        # systematic part: the mean error of every (block of `group` tokens, channel)
                        Hh, T, hd = err.shape
                        blockmean = err.reshape(Hh, T // args.group, args.group, hd).mean(2)
                        a["sys2"] += float((blockmean ** 2).sum() * args.group)
                        sys_err = np.repeat(blockmean, args.group, axis=1).reshape(Hh, T, hd)
                        kq.append(M.apply_rope(torch.from_numpy(d), *slot_f[s]))
                        k_sys.append(M.apply_rope(torch.from_numpy((kn + sys_err).astype(np.float32)), *slot_f[s]))
                        k_res.append(M.apply_rope(torch.from_numpy((d - sys_err).astype(np.float32)), *slot_f[s]))
                        steps.append(torch.from_numpy(np.ascontiguousarray(st)))
                    s_hat = alpha * qr @ torch.cat(kq, 1).transpose(-1, -2)
                    st = torch.cat(steps, 1)  # [H, Nc, hd]: every element's step
                    # Taylor bias per (query, key): alpha^2 / 24 * sum_c step_c^2 * u_c^2 with u the rotated query;
                    # steps are shared by rotation pairs, so sum over a pair of u_c^2 equals that of q_c^2.
                    q2 = (q[0] ** 2)  # [H, N, hd] unrotated
                    b = (alpha ** 2 / 24.0) * (q2 @ (st ** 2).transpose(-1, -2))  # [H, N, Nc]
                    base = lse(s_exact)
                    a["actual"] += float((lse(s_hat) - base).sum())
                    a["taylor"] += float((lse(s_exact + b) - base).sum())
                    a["left"] += float((lse(s_hat - b) - base).sum())
                    # the same error split: only its (block, channel) means, and only what is left around them
                    a["sys_only"] += float((lse(alpha * qr @ torch.cat(k_sys, 1).transpose(-1, -2)) - base).sum())
                    a["res_only"] += float((lse(alpha * qr @ torch.cat(k_res, 1).transpose(-1, -2)) - base).sum())
                    a["q"] += base.numel()
    rows = []
    print(f"INT{args.bits} g{args.group}, {data.E} episodes, queries of chunk {args.chunk} at t = {args.t}")
    print("layout   layer  E[e^2]/E[step^2/12]  systematic  log-inflation actual  taylor predicts  left after taylor"
          "  from block means only  from the rest only")
    for lay in layouts:
        for l in range(cfg.depth):
            a = acc[lay][l]
            row = {"layout": lay, "layer": l, "second_moment_ratio": a["e2"] / a["u2"], "systematic_fraction": a["sys2"] / a["e2"],
                   "log_inflation_actual": a["actual"] / a["q"], "log_inflation_taylor": a["taylor"] / a["q"],
                   "log_inflation_left": a["left"] / a["q"], "log_inflation_block_means_only": a["sys_only"] / a["q"],
                   "log_inflation_rest_only": a["res_only"] / a["q"]}
            rows.append(row)
            print(f"{lay:8s} {l:5d}  {row['second_moment_ratio']:19.3f}  {row['systematic_fraction']:10.3f}  "
                  f"{row['log_inflation_actual']:+20.4f}  {row['log_inflation_taylor']:+15.4f}  {row['log_inflation_left']:+17.4f}"
                  f"  {row['log_inflation_block_means_only']:+21.4f}  {row['log_inflation_rest_only']:+18.4f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"bits": args.bits, "group": args.group, "episodes": data.E, "chunk": args.chunk, "t": args.t, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
