"""Writes the PyTorch side of the C++ parity test (tests/test_parity.cpp).

A tiny randomly initialised model (config/model-tiny.json) is exported to tests/data/tiny/ in float32,
and tests/data/parity_tiny.safetensors records inputs and PyTorch outputs:
  single.*  : one forward pass of a chunk with no context (x0 prediction, unclamped)
  ctx.*     : one forward pass of chunk 1 attending to the cached chunk 0
  rollout.* : the engine's procedure over three chunks (ground-truth chunk 0, then two sampled chunks
              through the bf16 cache, Euler, fixed seed), frames and P_S per layer
  guided.*  : rollout chunk 2 again with motion guidance 2.5 (negative: the movement released)
  abspos.*  : the single forward again with an absolute patch-position embedding (absolute_position: true)
  warp.*    : rollout chunk 1 again with the flow source moved to each frame's camera (warp_source: true,
              warp_eye_height > 0: turned and walked)
Run from the repository root:  python3 tools/train/parity.py
"""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model as M  # noqa: E402


def main():
    root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
    torch.manual_seed(20261129)
    np.random.seed(20261129)
    torch.set_num_threads(1)
    with open(os.path.join(root, "config", "model-tiny.json")) as f:
        cfg = M.ModelConfig.from_json(f.read())
    model = M.KVWorldModel(cfg)
    # Randomise everything (the training init zeroes the modulation and output head, which would make the
    # parity check trivial).
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("_norm.weight"):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            elif p.dim() == 2 and "embed" not in name:
                p.copy_(torch.randn_like(p) * (0.6 / np.sqrt(p.shape[1])))
            else:
                p.copy_(torch.randn_like(p) * 0.1)
    model.eval()
    out_dir = os.path.join(root, "tests", "data", "tiny")
    M.export_model(model, out_dir, dtype=torch.float32)

    rope = M.RopeTables(cfg, 64 * cfg.chunk_frames)
    Fr, H, W = cfg.chunk_frames, cfg.height, cfg.width
    tm = cfg.motion["turn_max_deg"]

    def random_actions():
        a = np.zeros((Fr, 5), np.float32)
        a[:, 0:3] = np.random.choice([-1.0, 0.0, 1.0, 0.5], size=(Fr, 3))
        a[:, 3:5] = np.random.uniform(-tm, tm, size=(Fr, 2)).astype(np.float32)
        return a

    def cond(a):
        labels = torch.from_numpy(M.action_label(a, tm))[None]
        cam = torch.from_numpy(M.camera_vector(a, tm))[None]
        return labels, cam

    rec = {}
    # single forward, no context
    x = torch.randn(1, Fr, H, W, 3) * 0.7
    a = random_actions()
    labels, cam = cond(a)
    t = torch.full((1, Fr), 0.7)
    x0, _, _ = M.forward_with_cache(model, rope, x, t, labels, cam, [])
    rec.update({"single.x": x[0], "single.t": torch.tensor([0.7]), "single.actions": torch.from_numpy(a),
                "single.labels": labels[0].float(), "single.x0": x0[0]})

    # rollout through the bf16 cache
    seed = 987654321
    context = torch.rand(1, Fr, H, W, 3) * 2 - 1
    acts = [random_actions() for _ in range(3)]
    steps, shift, cache_t = 3, 1.0, 0.0
    entries = []
    _, pc0, e0 = M.generate_chunk(model, rope, [], *cond(acts[0]), seed, 0, steps, shift, cache_t, given=context)
    entries.append(e0)
    # one forward with context (chunk 1 position, arbitrary input)
    xc = torch.randn(1, Fr, H, W, 3) * 0.7
    lab1, cam1 = cond(acts[1])
    x0c, pcc, _ = M.forward_with_cache(model, rope, xc, torch.full((1, Fr), 0.5), lab1, cam1, entries)
    rec.update({"ctx.x": xc[0], "ctx.x0": x0c[0], "ctx.p_cache": torch.tensor(pcc, dtype=torch.float32)})
    f1, pc1, e1 = M.generate_chunk(model, rope, entries, lab1, cam1, seed, 1, steps, shift, cache_t,
                                   prev=context[:, -1])
    # the same chunk 1 with the source warped: per frame yaw (target - source), the source's pitch, the frame's
    yaw_w = torch.tensor([[2.5, -4.0, 6.0, 8.0][:Fr]])
    pitch_from_w, pitch_to_w = torch.tensor([3.0]), torch.tensor([[3.0, 4.5, -2.0, 6.0][:Fr]])
    # pitch, and the displacement along the frame's forward and right axes over ground warp_eye_height below
    fwd_w, right_w = torch.tensor([[0.25, 0.5, 0.75, 1.0][:Fr]]), torch.tensor([[0.0, -0.25, 0.25, 0.5][:Fr]])
    model.cfg.warp_source, model.cfg.warp_eye_height = True, 2.0
    f1w, _, _ = M.generate_chunk(model, rope, entries, lab1, cam1, seed, 1, steps, shift, cache_t, prev=context[:, -1],
                                 rotation=(yaw_w, pitch_from_w, pitch_to_w, fwd_w, right_w))
    model.cfg.warp_source, model.cfg.warp_eye_height = False, 0.0
    rec.update({"warp.yaw": yaw_w[0], "warp.pitch_from": pitch_from_w, "warp.pitch_to": pitch_to_w[0],
                "warp.forward": fwd_w[0], "warp.right": right_w[0], "warp.eye_height": torch.tensor([2.0]),
                "warp.frames1": f1w[0]})
    entries.append(e1)
    f2, pc2, _ = M.generate_chunk(model, rope, entries, *cond(acts[2]), seed, 2, steps, shift, cache_t,
                                  prev=f1[:, -1])
    # the same chunk 2 with motion guidance (the negative releases the movement keys)
    guidance = 2.5
    f2g, pc2g, _ = M.generate_chunk(model, rope, entries, *cond(acts[2]), seed, 2, steps, shift, cache_t,
                                    prev=f1[:, -1], guidance=guidance, negative=cond(M.motion_guidance_negative(acts[2])))
    rec.update({"guided.frames2": f2g[0], "guided.p_cache2": torch.tensor(pc2g, dtype=torch.float32),
                "guided.guidance": torch.tensor([guidance])})
    rec.update({
        "rollout.context": context[0], "rollout.actions0": torch.from_numpy(acts[0]),
        "rollout.actions1": torch.from_numpy(acts[1]), "rollout.actions2": torch.from_numpy(acts[2]),
        "rollout.frames1": f1[0], "rollout.frames2": f2[0],
        "rollout.p_cache1": torch.tensor(pc1, dtype=torch.float32),
        "rollout.p_cache2": torch.tensor(pc2, dtype=torch.float32),
        "rollout.seed_lo": torch.tensor([float(seed & 0xFFFF)]), "rollout.seed_hi": torch.tensor([float(seed >> 16)]),
        "rollout.steps": torch.tensor([float(steps)]),
        "rollout.noise_head": torch.from_numpy(M.normal_noise(seed, 1, 0, 0, 64)),
    })
    # The same weights plus an absolute position embedding (drawn last: the records above are unchanged).
    import copy
    cfg_pos = copy.deepcopy(cfg)
    cfg_pos.absolute_position = True
    model_pos = M.KVWorldModel(cfg_pos)
    pos = torch.randn(cfg.tokens_per_frame, cfg.hidden) * 0.5
    model_pos.load_state_dict({**model.state_dict(), "pos_embed": pos})
    model_pos.eval()
    x0p, _, _ = M.forward_with_cache(model_pos, rope, x, t, labels, cam, [])
    rec.update({"abspos.pos_embed": pos, "abspos.x0": x0p[0]})
    M.save_safetensors(os.path.join(root, "tests", "data", "parity_tiny.safetensors"),
                       {k: v.contiguous().float() for k, v in rec.items()})
    print("wrote", out_dir, "and tests/data/parity_tiny.safetensors;",
          "single |x0| mean %.3f, rollout P_S %s" % (float(x0.abs().mean()), [round(p, 4) for p in pc2]))


if __name__ == "__main__":
    main()
