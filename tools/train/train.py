"""Trains the KVWorld world model on simulator episodes (run on the GPU machine; see tools/train/README.md).

Teacher forcing with noise-augmented context, matching the engine's inference exactly:
- every episode is K chunks of F frames; chunk c attends to the *clean-pass* K/V of the chunks the engine's
  context policy gives it (window W, recall of chunk 0 and by field-of-view overlap, slots in the same
  order with the same reassigned time positions — context.py) plus its own K/V;
- the clean pass of chunk c sees the ground-truth chunk lightly noised (tau ~ 0 or U[0, tau_max], the time
  embedding says tau), attending to its own context exactly like the engine's cache pass;
- the noisy pass of chunk c (c >= 1) sees x_t = (1 - t) x0 + t eps and predicts x0 (x-prediction);
  the loss is the flow-matching velocity error (x0_hat - x0) / max(t, 0.05), i.e. v-loss.
Gradients flow through the clean pass, so the cached representation is trained for its use as context.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
import torch._dynamo  # noqa: F401 (its config, set for --compile; PyTorch 2 has it)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import context as ctxpol  # noqa: E402
import model as M  # noqa: E402

try:
    _sdpa = F.scaled_dot_product_attention
except AttributeError:  # PyTorch < 2.0 (the CPU smoke test on a Debian machine)
    def _sdpa(q, k, v):
        w = torch.softmax((q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1]), dim=-1)
        return w @ v


# ---------------------------------------------------------------------------------------------------
# Data

class EpisodeData:
    """A kvworld-sim dataset on the training device: frames uint8 [E, T, H, W, 3], labels, camera vectors,
    and the recalled chunks of every (episode, chunk) under the context policy."""

    def __init__(self, path: str, cfg: M.ModelConfig, device, window: int, recall: int, max_episodes: int = 0,
                 autoencoder=None, holdout: int = 0):
        with open(os.path.join(path, "meta.json")) as f:
            meta = json.load(f)
        E, T, H, W = meta["episodes"], meta["frames"], meta["height"], meta["width"]
        if max_episodes:
            E = min(E, max_episodes)
        assert (H, W) == (cfg.height, cfg.width), f"dataset is {H}x{W}, model {cfg.height}x{cfg.width}"
        assert T % cfg.chunk_frames == 0, "episode length must be a multiple of chunk_frames"
        self.E, self.T, self.K = E, T, T // cfg.chunk_frames
        self.latent = cfg.autoencoder.enabled
        frames = np.memmap(os.path.join(path, "frames.u8"), dtype=np.uint8, mode="r", shape=(E, T, H, W, 3))
        if not self.latent:
            self.frames = torch.from_numpy(np.array(frames)).to(device)
            self.pixels = self.frames  # the simulator's frames, for evaluation
        else:
            # The frozen encoder once over every frame, a slice of episodes at a time (the pixels of a long
            # 256x256 dataset do not fit on the device): latents [E, T, h, w, C] in bf16.
            assert autoencoder is not None, "a latent model needs its autoencoder to encode the dataset"
            h, w, C = cfg.grid_shape
            self.frames = torch.empty(E, T, h, w, C, dtype=torch.bfloat16, device=device)
            step = max(1, 4096 // T)
            with torch.no_grad(), torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16,
                                                 enabled=torch.device(device).type == "cuda"):
                for e0 in range(0, E, step):
                    px = torch.from_numpy(np.array(frames[e0:e0 + step])).to(device)
                    x = px.reshape(-1, H, W, 3).float().div_(127.5).sub_(1.0)
                    for b0 in range(0, x.shape[0], 256):
                        z = autoencoder.encode(x[b0:b0 + 256])
                        self.frames.view(-1, h, w, C)[e0 * T + b0:e0 * T + b0 + z.shape[0]] = z.to(torch.bfloat16)
            # The held-out episodes keep their pixels: quality is measured against the simulator, not against
            # the autoencoder's reconstruction of it.
            self.pixels = torch.from_numpy(np.array(frames[E - holdout:])).to(device) if holdout else None
            self.pixel_base = E - holdout
        del frames
        actions = np.fromfile(os.path.join(path, "actions.f32"), dtype=np.float32, count=E * T * 5).reshape(E, T, 5)
        poses = np.fromfile(os.path.join(path, "poses.f32"), dtype=np.float32, count=E * T * 5).reshape(E, T, 5)
        tm = cfg.motion["turn_max_deg"]
        self.labels = torch.from_numpy(M.action_label(actions, tm)).to(device)
        self.cam = torch.from_numpy(M.camera_vector(actions, tm)).to(device)
        # Motion guidance's negative (the movement keys released, turns kept), for rollouts sampled as the engine
        # samples them with guidance != 1.
        neg = M.motion_guidance_negative(actions)
        self.labels_neg = torch.from_numpy(M.action_label(neg, tm)).to(device)
        self.cam_neg = torch.from_numpy(M.camera_vector(neg, tm)).to(device)
        self.actions, self.poses = actions, poses
        # Per-chunk loss weights [E, K] (kvworld-sim dataset --revisit writes loss_mask.u8: chunks that follow a
        # jump in time are context only); None: every chunk is trained.
        self.layout = meta.get("layout", "walk")
        self.loss_mask = None
        mask_path = os.path.join(path, "loss_mask.u8")
        if os.path.exists(mask_path):
            full_e = meta["episodes"]
            mask = np.fromfile(mask_path, dtype=np.uint8)
            assert mask.size == full_e * self.K, f"{mask_path}: {mask.size} bytes, expected {full_e} x {self.K}"
            self.loss_mask = torch.from_numpy(mask.reshape(full_e, self.K)[:E].astype(np.float32)).to(device)
        self.camera = torch.from_numpy(np.ascontiguousarray(poses)).to(device)  # [E, T, 5] x, y, z, yaw, pitch (deg)
        # Recalled chunks per (episode, chunk): [E, K, recall] (-1 where fewer), vectorised over episodes.
        chunk_poses = poses[:, cfg.chunk_frames - 1::cfg.chunk_frames]  # [E, K, 5] pose of each chunk's last frame
        self.recall_idx = np.full((E, self.K, max(recall, 1)), -1, dtype=np.int64)
        for c in range(self.K):
            cands = list(range(0, max(0, c - window)))
            slots, chosen = recall, []
            if slots > 0 and cfg.recall_first and cands and cands[0] == 0:
                chosen.append(np.zeros(E, np.int64))
                cands, slots = cands[1:], slots - 1
            if slots > 0 and cands:
                scores = np.stack([fov_overlap_batch(chunk_poses[:, c], chunk_poses[:, i], cfg.motion["hfov_deg"])
                                   for i in cands], axis=1)  # [E, n]
                order = np.argsort(-scores, axis=1, kind="stable")  # stable: ties keep the older chunk first
                for s in range(min(slots, len(cands))):
                    chosen.append(np.asarray(cands)[order[:, s]])
            if chosen:
                rec = np.sort(np.stack(chosen, axis=1), axis=1)  # recalled listed oldest first
                self.recall_idx[:, c, :rec.shape[1]] = rec
        self.recall_idx_t = torch.from_numpy(self.recall_idx).to(device)

    def grid(self, idx) -> torch.Tensor:
        """Episodes `idx` as the model's grid, float: pixels in [-1, 1] or normalised latents [.., T, h, w, C]."""
        x = self.frames[idx]
        return x.float() if self.latent else x.float().div_(127.5).sub_(1.0)

    def pixel_frames(self, e: int) -> torch.Tensor:
        """The simulator's frames of episode e, uint8 [T, H, W, 3] (held-out episodes only for latent models)."""
        return self.pixels[e] if not self.latent else self.pixels[e - self.pixel_base]


def fov_overlap_batch(a: np.ndarray, b: np.ndarray, hfov_deg: float) -> np.ndarray:
    """context.fov_overlap for arrays of poses [n, 5] (float64 here; selection ties are rare)."""
    tan_half = math.tan(0.5 * hfov_deg * math.pi / 180.0)
    def basis(p):
        yaw, pitch = np.radians(p[:, 3]), np.radians(p[:, 4])
        sy, cy, sp, cp = np.sin(yaw), np.cos(yaw), np.sin(pitch), np.cos(pitch)
        return (sy * cp, sp, cy * cp), (cy, -sy), (-sy * sp, cp, -cy * sp)
    (fa, ra, ua), (fb, rb, ub) = basis(a), basis(b)
    seen = np.zeros(len(a))
    total = 0
    for iy in range(5):
        for ix in range(5):
            px = tan_half * (2.0 * (ix + 0.5) / 5 - 1.0)
            py = tan_half * (2.0 * (iy + 0.5) / 5 - 1.0)
            for depth in (2.0, 5.0, 10.0, 20.0):
                wx = a[:, 0] + depth * (fa[0] + px * ra[0] + py * ua[0])
                wy = a[:, 1] + depth * (fa[1] + py * ua[1])
                wz = a[:, 2] + depth * (fa[2] + px * ra[1] + py * ua[2])
                dx, dy, dz = wx - b[:, 0], wy - b[:, 1], wz - b[:, 2]
                zf = dx * fb[0] + dy * fb[1] + dz * fb[2]
                xr = dx * rb[0] + dz * rb[1]
                yu = dx * ub[0] + dy * ub[1] + dz * ub[2]
                ok = (zf > 0.05) & (zf <= 25.0) & (np.abs(xr) <= tan_half * zf) & (np.abs(yu) <= tan_half * zf)
                seen += ok
                total += 1
    return seen / total


def load_autoencoder(ae, folder: str):
    """Loads the autoencoder of a model folder or of train_ae.py's export (int8 weights dequantized)."""
    sd = {k: v.float() for k, v in M.autoencoder_tensors(M.load_model_folder(folder)).items()}
    ae.load_state_dict(sd)
    print(f"autoencoder from {folder} ({len(sd)} tensors)", flush=True)


# ---------------------------------------------------------------------------------------------------
# The teacher-forced forward

def source_views(camera: torch.Tensor, Fr: int):
    """camera [B, K*Fr, 5] (the episode's poses: x, y, z, yaw, pitch; degrees) -> for chunks 1..K-1 the change from
    the previous chunk's last camera to each frame's (engine/src/source_warp.cpp view_change, what the engine's
    session gives warp_source): yaw [B, K-1, Fr] (wrapped), pitch_from [B, K-1], pitch_to [B, K-1, Fr], and the
    horizontal displacement along the frame's forward and right axes, forward, right [B, K-1, Fr]."""
    B = camera.shape[0]
    cp = camera.double().view(B, -1, Fr, 5)
    src, dst = cp[:, :-1, -1], cp[:, 1:]
    dyaw = dst[..., 3] - src[:, :, None, 3]
    dyaw = dyaw - 360.0 * torch.round(dyaw / 360.0)
    dx, dz = dst[..., 0] - src[:, :, None, 0], dst[..., 2] - src[:, :, None, 2]
    yaw = dst[..., 3] * (math.pi / 180.0)
    forward = dx * torch.sin(yaw) + dz * torch.cos(yaw)
    right = dx * torch.cos(yaw) - dz * torch.sin(yaw)
    return dyaw.float(), src[..., 4].float(), dst[..., 4].float(), forward.float(), right.float()


def warp_chunk_source(prev: torch.Tensor, views, c: int, cfg) -> torch.Tensor:
    """prev [B, H, W, 3] (chunk c-1's last frame), views from source_views -> chunk c's flow sources without
    noise [B, Fr, H, W, 3] (model.warp_previous with the config's eye height)."""
    yaw, pf, pt, fwd, right = (v[:, c - 1] for v in views)
    return M.warp_previous(prev, yaw, pf, pt, cfg.motion["hfov_deg"], fwd, right, cfg.warp_eye_height)


def warped_sources(prev: torch.Tensor, views, cfg) -> torch.Tensor:
    """prev [B, K-1, H, W, 3] (each chunk's source frame), views from source_views -> [B, K-1, Fr, H, W, 3]."""
    B, Kc = prev.shape[:2]
    flat = [v.reshape(B * Kc, *v.shape[2:]) for v in views]
    w = M.warp_previous(prev.reshape(B * Kc, *prev.shape[2:]), flat[0], flat[1], flat[2], cfg.motion["hfov_deg"],
                        flat[3], flat[4], cfg.warp_eye_height)
    return w.view(B, Kc, *w.shape[1:])


class SlotFactors(list):
    """RoPE factors of the context slots: rope_f[s] = (cos, sin) [N, hd/2] of slot s (RopeTables.chunk_factors),
    and stacked(n) = (cos, sin) [n, N, hd/2] of slots 0..n-1, for rotating a whole context in one call."""

    def __init__(self, factors):
        super().__init__(factors)
        self._cos = torch.stack([f[0] for f in factors])
        self._sin = torch.stack([f[1] for f in factors])

    def stacked(self, n: int):
        return self._cos[:n], self._sin[:n]


def context_kv(k_chunks, v_chunks, recall_idx, c: int, window: int, recall: int, rope_f: SlotFactors):
    """The K/V chunk c attends to before its own, in slot order: the recalled chunks (per episode, oldest first),
    then the window, keys rotated to their slots. k_chunks/v_chunks [B, heads, K', N, hd] (keys unrotated);
    recall_idx [B, K, M]. Returns (keys, values, the current chunk's slot), keys and values as one-tensor lists
    ([B, heads, n*N, hd]; empty without context): one gather and one rotation for the whole context, the trainer
    being bound by kernel launches."""
    n_win, n_rec = min(window, c), min(recall, max(0, c - window))
    n = n_win + n_rec
    if n == 0:
        return [], [], 0
    B, H, _, N, hd = k_chunks.shape
    dev = k_chunks.device
    # each episode's chunk for every slot: its recalled chunks, then the window (the same for all)
    idx = torch.cat([recall_idx[:, c, :n_rec].to(dev),
                     torch.arange(c - n_win, c, device=dev).expand(B, n_win)], dim=1)  # [B, n]
    rows = torch.arange(B, device=dev)[:, None]
    k = k_chunks[rows, :, idx].transpose(1, 2)  # [B, H, n, N, hd]
    v = v_chunks[rows, :, idx].transpose(1, 2)
    k = M.apply_rope(k, *rope_f.stacked(n)).reshape(B, H, n * N, hd)
    return [k], [v.reshape(B, H, n * N, hd)], n


@torch.no_grad()
def rollout_chunks(model: M.KVWorldModel, rope_f, x0, labels, cam, recall_idx, window: int, recall: int,
                   noise: torch.Tensor, steps: int = 0, guidance: float = 1.0, negative=None,
                   camera: torch.Tensor = None, given: int = 1, frame_lag: int = 0) -> torch.Tensor:
    """The engine's autoregressive procedure batched over episodes (model.generate_chunk for every chunk): chunk 0
    is the given start context (its cache pass only); chunks 1..K-1 are sampled with `steps` Euler steps (0: the
    config's) from the flow source (source_sigma * noise, plus the previous *generated* chunk's last frame for source "previous"),
    each followed by its cache pass at t = cache_t, and every chunk attends to the cache-pass K/V of the chunks the
    context policy gives it (recall_idx, then the window), with the engine's slot positions.
    x0 [B, K, F, H, W, 3] (only chunks < given are read); labels [B, K*F]; cam [B, K*F, 5]; recall_idx [B, K, M];
    noise like x0 (chunk c's flow-source noise). Returns [B, K, F, H, W, 3]: chunk 0 = x0's, the rest generated.
    Motion guidance (guidance != 1; `negative` = (labels, cam) with the movement released, like labels/cam): every
    step at t >= cfg.guidance_min_t of a chunk whose negative differs from its command in some episode also runs
    the negative and uses x0 = x0_negative + guidance * (x0 - x0_negative), as the engine does (rows whose chunk
    does not move get x0_negative == x0, so the mix leaves them as they are). warp_source: camera [B, K*F, 5] (the episode's
    poses) moves each chunk's source to its frames' cameras. given: how many leading chunks are x0's (the start
    context; their cache passes only). frame_lag L > 0: a staggered schedule (a probe, not the engine's): frame f of
    a chunk runs the same `steps` times L*f global steps after frame 0 (n + L*(F-1) model passes a chunk), so that
    the later frames are decided after the earlier ones; each pass gives every frame its own t.
    Why: at inference the context is the model's own output; training on it (with ground-truth targets) teaches
    the model to pull its own drift back instead of carrying it on (exposure bias; cf. self forcing)."""
    cfg = model.cfg
    dev = x0.device
    B, K, Fr, N = x0.shape[0], x0.shape[1], cfg.chunk_frames, cfg.tokens_per_chunk
    Hh, hd = cfg.heads, cfg.head_dim
    out = torch.empty_like(x0)
    out[:, :given] = x0[:, :given]
    kcache, vcache = [None] * cfg.depth, [None] * cfg.depth  # per layer [B, heads, K, N, hd], keys unrotated
    # the current chunk's context per layer, gathered and rotated once for its steps and its cache pass (set in
    # the chunk loop below: the cache holds chunks < c, written by chunk c-1's cache pass)
    context = []

    def forward(x: torch.Tensor, t: float, c: int, write: bool, cond=None) -> torch.Tensor:
        sl = slice(c * Fr, (c + 1) * Fr)
        lab, cm = cond if cond is not None else (labels, cam)
        tt = t.expand(B, Fr) if torch.is_tensor(t) else torch.full((B, Fr), t, device=dev)  # t: float or [Fr]
        mod, fmod = model.conditioning(tt, lab[:, sl], cm[:, sl])
        mod_tok, fmod_tok = model.per_token(mod), model.per_token(fmod)
        h = model.embed_patches(M.patchify(x, cfg.patch))
        for l, blk in enumerate(model.blocks):
            q, k, v, terms = model.block_qkv(blk, h, mod_tok)  # [B, heads, N, hd]
            ks, vs, slot = context[l]
            cos, sin = rope_f[slot]
            a = _sdpa(M.apply_rope(q, cos, sin), torch.cat(ks + [M.apply_rope(k, cos, sin)], dim=2),
                      torch.cat(vs + [v], dim=2))
            if write:
                if kcache[l] is None:
                    kcache[l] = torch.empty(B, Hh, K, N, hd, device=dev, dtype=k.dtype)
                    vcache[l] = torch.empty(B, Hh, K, N, hd, device=dev, dtype=v.dtype)
                kcache[l][:, :, c] = k
                vcache[l][:, :, c] = v
            h = model.block_finish(blk, h, a, terms)
        return model.output(h, fmod_tok).to(x.dtype)

    steps = steps or cfg.steps
    ts = M.sampler_times(steps, cfg.shift)
    warp = cfg.source_previous and cfg.warp_source
    if warp:
        assert camera is not None, "warp_source needs the episode's camera"
        views = source_views(camera, Fr)
    for c in range(K):
        context = [context_kv(kcache[l], vcache[l], recall_idx, c, window, recall, rope_f) if c else ([], [], 0)
                   for l in range(cfg.depth)]
        if c >= given:
            x = cfg.source_sigma * noise[:, c]
            if warp:
                x = x + warp_chunk_source(out[:, c - 1, -1], views, c, cfg)
            elif cfg.source_previous:
                x = x + out[:, c - 1, -1:]
            sl = slice(c * Fr, (c + 1) * Fr)
            guided = guidance != 1.0 and negative is not None and bool(
                (negative[1][:, sl] != cam[:, sl]).any() or (negative[0][:, sl] != labels[:, sl]).any())
            if frame_lag == 0:
                for s in range(steps):
                    x0p = forward(x, ts[s], c, False)
                    if guided and ts[s] >= cfg.guidance_min_t - 1e-6:
                        x0n = forward(x, ts[s], c, False, negative)
                        x0p = x0n + guidance * (x0p - x0n)
                    x = x + (ts[s + 1] - ts[s]) * (x - x0p) / ts[s]
            else:
                ts_t = torch.tensor(ts, device=dev, dtype=torch.float32)
                lag = torch.arange(Fr, device=dev) * frame_lag
                frame_view = (1, Fr) + (1,) * (x.dim() - 2)
                for j in range(steps + frame_lag * (Fr - 1)):
                    # frame f at its step j - L*f: waiting at t = 1 before it starts, done at t = 0 after
                    t_now = ts_t[(j - lag).clamp(0, steps)]
                    t_next = ts_t[(j + 1 - lag).clamp(0, steps)]
                    x0p = forward(x, t_now, c, False)
                    on = t_now >= cfg.guidance_min_t - 1e-6
                    if guided and bool(on.any()):
                        x0n = forward(x, t_now, c, False, negative)
                        x0p = torch.where(on.view(frame_view), x0n + guidance * (x0p - x0n), x0p)
                    rate = torch.where(t_next < t_now, (t_next - t_now) / t_now.clamp(min=1e-6), torch.zeros_like(t_now))
                    x = x + rate.view(frame_view).to(x.dtype) * (x - x0p)
            out[:, c] = x.clamp(-cfg.clip, cfg.clip)
        if c < K - 1:
            # cache_t > 0 would noise the cache pass as the engine does; the shipped configs use 0.
            forward(out[:, c], cfg.cache_t, c, True)
    return out


def frame_levels(t: torch.Tensor, Fr: int) -> torch.Tensor:
    """Noise levels per chunk [B, K] or per frame [B, K, F] (staggered chunks) -> per frame [B, K, F]."""
    return t if t.dim() == 3 else t[..., None].expand(*t.shape, Fr)


def teacher_forced_loss(model: M.KVWorldModel, rope_f, data: EpisodeData, idx: torch.Tensor, window: int,
                        recall: int, tau_max: float, gen: torch.Generator, self_fraction: float = 0.0, rollout_steps: int = 0, rollout_guidance: float = 1.0,
                        stagger_fraction: float = 0.0, stagger_slope: float = 0.125):
    """Loss of one batch of whole episodes `idx` [B]. rope_f[s] = (cos, sin) of slot s on the device.
    self_fraction > 0: that fraction of the batch's episodes sees the model's own rollout (rollout_chunks, from
    ground-truth chunk 0 under the episode's actions) as context and flow source, the targets staying the
    ground truth; rollout_steps: its Euler steps (0: the config's sampler); rollout_guidance: its motion guidance.
    stagger_fraction > 0: that fraction (the batch's last episodes, walk batches only) gets staggered noise levels,
    frame f's t = frame 0's + f * stagger_slope within [0, 1], as rollout_chunks' frame_lag L gives them over n
    steps (slope L / n): the later frames noisier than the earlier ones (a probe of 2026-12-07, not the engine's)."""
    cfg = model.cfg
    dev = idx.device
    B, K, Fr = idx.shape[0], data.K, cfg.chunk_frames
    x0 = data.grid(idx).view(B, K, Fr, *cfg.grid_shape)  # [B, K, F, h, w, c]: pixels or latents
    # Noise levels: the noisy stream's t per chunk ~ U[0.02, 1]; the context's tau: half of the chunks
    # exactly clean, the rest U[0, tau_max].
    t = 0.02 + 0.98 * torch.rand(B, K, device=dev, generator=gen)
    tau = torch.rand(B, K, device=dev, generator=gen) * tau_max
    tau = torch.where(torch.rand(B, K, device=dev, generator=gen) < 0.5, torch.zeros_like(tau), tau)
    e1 = torch.randn(x0.shape, device=dev, generator=gen)
    e2 = torch.randn(x0.shape, device=dev, generator=gen)
    n_stagger = int(round(stagger_fraction * B)) if data.layout == "walk" else 0
    if n_stagger > 0:
        # t per frame [B, K, F]: frame 0's level from -(F-1) slope (every frame done) up to 1 (frame 0 starting)
        span = (Fr - 1) * stagger_slope
        first = torch.rand(n_stagger, K, device=dev, generator=gen) * (1.0 + span) - span
        staggered = (first[..., None] + stagger_slope * torch.arange(Fr, device=dev)).clamp(0.0, 1.0)
        t = torch.cat([frame_levels(t[:B - n_stagger], Fr), staggered], dim=0)
    x_ctx = x0
    # A rollout runs the episode's chunks in order; revisit episodes are stored in slot order (jumps in time),
    # so they are always teacher forced.
    n_self = int(round(self_fraction * B)) if data.layout == "walk" else 0
    if n_self > 0:
        sel = slice(0, n_self)  # the batch is drawn at random: its first episodes are a random subset
        was_training = model.training
        model.eval()
        gen_frames = rollout_chunks(model, rope_f, x0[sel], data.labels[idx[sel]], data.cam[idx[sel]],
                                    data.recall_idx_t[idx[sel]], window, recall,
                                    torch.randn(x0[sel].shape, device=dev, generator=gen), rollout_steps,
                                    rollout_guidance, (data.labels_neg[idx[sel]], data.cam_neg[idx[sel]]),
                                    data.camera[idx[sel]])
        model.train(was_training)
        x_ctx = x_ctx.clone()
        x_ctx[sel] = gen_frames.to(x_ctx.dtype)
    x0_hat = teacher_forced_predict(model, rope_f, x0, data.labels[idx], data.cam[idx], data.recall_idx_t[idx],
                                    window, recall, t, tau, e1, e2, x_ctx=x_ctx, camera=data.camera[idx])
    target = x0[:, 1:]
    t_frames = frame_levels(t, Fr)
    # a staggered frame already done (t = 0: its input is its target) teaches nothing: weight 0
    w = torch.where(t_frames[:, 1:] > 0, 1.0 / t_frames[:, 1:].clamp(min=0.2), torch.zeros_like(t_frames[:, 1:]))
    err = (x0_hat - target) * w[..., None, None, None]
    if data.loss_mask is None:
        return err.pow(2).mean(), (x0_hat - target).pow(2).mean()
    # Revisit episodes: only the chunks whose context is the engine's (mask [B, K-1]) count.
    m = data.loss_mask[idx, 1:]
    per_chunk = lambda z: z.pow(2).flatten(2).mean(2)  # [B, K-1]
    denom = m.sum().clamp(min=1.0)
    return (per_chunk(err) * m).sum() / denom, (per_chunk(x0_hat - target) * m).sum() / denom


def teacher_forced_predict(model, rope_f, x0, labels, cam, recall_idx, window: int, recall: int, t, tau, e1, e2,
                           x_ctx=None, camera=None):
    """x0 [B, K, F, H, W, 3] clean chunks; labels [B, K*F]; cam [B, K*F, 5]; recall_idx [B, K, M]; t [B, K] or per
    frame [B, K, F], tau [B, K];
    e1, e2 noise like x0; x_ctx: what the clean passes and the flow source see (x0 unless augmented);
    camera [B, K*F, 5]: the episode's poses, for warp_source. Returns the x0 predictions of chunks 1..K-1 from their noisy versions
    [B, K-1, F, H, W, 3], every chunk attending to the clean-pass K/V of its context as in the engine."""
    cfg = model.cfg
    dev = x0.device
    B, K, Fr, N, D = x0.shape[0], x0.shape[1], cfg.chunk_frames, cfg.tokens_per_chunk, cfg.hidden
    Hh, hd = cfg.heads, cfg.head_dim
    if x_ctx is None:
        x_ctx = x0
    t_frames = frame_levels(t, Fr)
    tb, taub = t_frames[..., None, None, None], tau[..., None, None, None, None]
    x_clean = (1 - taub) * x_ctx + taub * e1
    # Flow source of chunk c: sigma * noise, plus (source "previous") chunk c-1's last frame (teacher forced).
    source = cfg.source_sigma * e2
    if cfg.source_previous and cfg.warp_source:
        # chunk c >= 1: chunk c-1's last frame moved to each of chunk c's cameras; chunk 0's source is unused
        assert camera is not None, "warp_source needs the episode's camera"
        warped = warped_sources(x_ctx[:, :-1, -1], source_views(camera, Fr), cfg)
        source = source + torch.cat([x_ctx[:, :1, :1].expand(-1, -1, Fr, -1, -1, -1), warped], dim=1)
    elif cfg.source_previous:
        prev = torch.cat([x_ctx[:, :1, :1], x_ctx[:, :-1, -1:]], dim=1)  # [B, K, 1, H, W, 3]; chunk 0's is unused
        source = source + prev
    x_noisy = (1 - tb) * x0 + tb * source

    Kc = K - 1  # the last chunk's clean K/V are never attended to: skip its clean pass
    tauf = tau[:, :Kc, None].expand(B, Kc, Fr).reshape(B, Kc * Fr)
    modc, _ = model.conditioning(tauf, labels[:, :Kc * Fr], cam[:, :Kc * Fr])
    modc = model.per_token(modc)
    tf = t_frames[:, 1:].reshape(B, (K - 1) * Fr)
    modn, fmodn = model.conditioning(tf, labels[:, Fr:], cam[:, Fr:])
    modn, fmodn = model.per_token(modn), model.per_token(fmodn)

    xc = model.embed_patches(M.patchify(x_clean[:, :Kc].reshape(B * Kc, Fr, *cfg.grid_shape), cfg.patch))
    xn = model.embed_patches(M.patchify(x_noisy[:, 1:].reshape(B * (K - 1), Fr, *cfg.grid_shape), cfg.patch))
    xc = xc.view(B, Kc * N, D)
    xn = xn.view(B, (K - 1) * N, D)

    for blk in model.blocks:
        qc, kc, vc, termc = model.block_qkv(blk, xc, modc)
        qn, kn, vn, termn = model.block_qkv(blk, xn, modn)
        qc, kc, vc = (z.view(B, Hh, Kc, N, hd) for z in (qc, kc, vc))
        qn, kn, vn = (z.view(B, Hh, K - 1, N, hd) for z in (qn, kn, vn))
        outc, outn = [], []
        for c in range(K):
            ks, vs, slot = context_kv(kc, vc, recall_idx, c, window, recall, rope_f)
            cos, sin = rope_f[slot]
            if c < Kc:
                k_all = torch.cat(ks + [M.apply_rope(kc[:, :, c], cos, sin)], dim=2)
                v_all = torch.cat(vs + [vc[:, :, c]], dim=2)
                outc.append(_sdpa(M.apply_rope(qc[:, :, c], cos, sin), k_all, v_all))
            if c >= 1:
                k_all = torch.cat(ks + [M.apply_rope(kn[:, :, c - 1], cos, sin)], dim=2)
                v_all = torch.cat(vs + [vn[:, :, c - 1]], dim=2)
                outn.append(_sdpa(M.apply_rope(qn[:, :, c - 1], cos, sin), k_all, v_all))
        ac = torch.stack(outc, dim=2).reshape(B, Hh, Kc * N, hd)
        an = torch.stack(outn, dim=2).reshape(B, Hh, (K - 1) * N, hd)
        xc = model.block_finish(blk, xc, ac, termc)
        xn = model.block_finish(blk, xn, an, termn)

    x0_hat = model.output(xn.reshape(B * (K - 1), N, D), fmodn.reshape(B * (K - 1), N, -1))
    return x0_hat.view(B, K - 1, Fr, *cfg.grid_shape).float()


# ---------------------------------------------------------------------------------------------------
# Evaluation: one chunk after a ground-truth context (quality bar 1)

@torch.no_grad()
def eval_one_chunk(model: M.KVWorldModel, data: EpisodeData, episodes, chunk: int, steps: int, device,
                   without: int = -1):
    """PSNR of chunk `chunk` generated after ground-truth chunks 0..chunk-1 (bf16 cache, engine procedure),
    against the ground truth and against repeating the last context frame. without >= 0: that chunk is left out
    of the evaluated chunk's context (a revisit episode's earlier view of the place: what the memory adds)."""
    cfg = model.cfg
    rope = M.RopeTables(cfg, 64 * cfg.chunk_frames)
    psnr_model, psnr_repeat = [], []
    Fr = cfg.chunk_frames
    for e in episodes:
        frames = data.grid(e)  # [T, h, w, c]: pixels or latents
        pixels = data.pixel_frames(e).float()  # [T, H, W, 3] in 0..255: the simulator's
        lab, cam = data.labels[e], data.cam[e]
        entries = []
        chunk_poses = data.poses[e, Fr - 1::Fr]
        for c in range(chunk + 1):
            ctx_list, _ = ctxpol.choose_context(c, chunk_poses, cfg.window, cfg.recall, cfg.motion["hfov_deg"], cfg.recall_first)
            if c == chunk:
                ctx_list = [i for i in ctx_list if i != without]
            ctx = [entries[i] for i in ctx_list]
            sl = slice(c * Fr, (c + 1) * Fr)
            given = frames[sl][None] if c < chunk else None
            prev = frames[c * Fr - 1][None] if c > 0 else None
            rotation = None
            if c > 0 and cfg.warp_source:
                rotation = tuple(v[:, 0] for v in source_views(data.camera[e:e + 1, (c - 1) * Fr:(c + 1) * Fr], Fr))
            out, _, entry = M.generate_chunk(model, rope, ctx, lab[sl][None], cam[sl][None], 1, c, steps, cfg.shift,
                                             cfg.cache_t, given=given, prev=prev, rotation=rotation)
            entries.append(entry)
        gt = pixels[chunk * Fr:(chunk + 1) * Fr]
        gen = out[0] if not cfg.autoencoder.enabled else model.autoencoder.decode(out[0])
        gen = ((gen + 1) * 127.5).round().clamp(0, 255)
        rep = pixels[chunk * Fr - 1][None].expand_as(gt)
        def psnr(a, b):
            mse = (a - b).pow(2).mean().item()
            return 10 * math.log10(255 ** 2 / max(mse, 1e-10))
        psnr_model.append(psnr(gen, gt))
        psnr_repeat.append(psnr(rep, gt))
    return float(np.mean(psnr_model)), float(np.mean(psnr_repeat))


# ---------------------------------------------------------------------------------------------------

def grown_block_places(init_depth: int, depth: int) -> list:
    """Where --grow-depth puts the init's blocks in a stack of `depth`: block i at floor(i * depth / init_depth),
    spread evenly and in order (6 -> 12: 0, 2, ..., 10; the new blocks follow each of them)."""
    assert 0 < init_depth <= depth
    return [i * depth // init_depth for i in range(init_depth)]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="kvworld-sim dataset folder")
    ap.add_argument("--config", required=True, help="model config (config/model-default.json)")
    ap.add_argument("--ckpt", required=True, help="checkpoint file (resumed from when it exists)")
    ap.add_argument("--export", help="export EMA weights + model.json here at the end")
    ap.add_argument("--export-int8", action="store_true",
                    help="--export stores the matrices and kernels as int8 with one scale per output channel "
                         "(docs/design.md \"Int8 weights\"; the engine dequantizes them at load), the rest bf16")
    ap.add_argument("--export-fp32", help="also write the EMA weights in fp32 (dit-NN.safetensors shards of at most "
                                          "15 MiB, the autoencoder left out) and train_state.json here: what --init "
                                          "takes to continue on a fresh machine")
    ap.add_argument("--init", help="start from an exported model folder (fine-tuning) instead of a fresh init")
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--ema", type=float, default=0.999, help="EMA decay of the exported weights")
    ap.add_argument("--log", help="training log (JSON) to write")
    ap.add_argument("--minutes", type=float, default=5.0, help="wall-clock training budget of this run")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=4e-4)
    ap.add_argument("--total-steps", type=int, default=6000, help="schedule length (cosine) across resumes")
    ap.add_argument("--tau-max", type=float, default=0.1)
    ap.add_argument("--self-context", type=float, default=0.0,
                    help="fraction of each batch whose context and flow source are the model's own rollout "
                         "(see rollout_chunks)")
    ap.add_argument("--rollout-steps", type=int, default=0,
                    help="Euler steps of the self-context rollouts (0: the config's sampler; fewer is cheaper)")
    ap.add_argument("--rollout-guidance", type=float, default=0.0,
                    help="motion guidance of the self-context rollouts (0: the config's sampler, 1: off)")
    ap.add_argument("--stagger-fraction", type=float, default=0.0,
                    help="fraction of each walk batch trained with staggered noise levels within a chunk (frame f's t = "
                         "frame 0's + f * --stagger-slope; teacher_forced_loss), for the staggered schedule of "
                         "rollout_chunks' frame_lag (a probe: docs/experiments/2026-12-07-staggered-frames.md)")
    ap.add_argument("--stagger-slope", type=float, default=0.125,
                    help="t between consecutive frames of a staggered chunk (frame_lag / steps: 1/8 for lag 1 of 8)")
    ap.add_argument("--absolute-position", action="store_true",
                    help="add the learned absolute patch-position embedding (model.py ModelConfig.absolute_position); "
                         "with --init from a model without it, it starts at zero")
    ap.add_argument("--warp-source", action="store_true",
                    help="turn each frame's flow source to its camera (model.py ModelConfig.warp_source): the sampler "
                         "option, trained with it (no new weights)")
    ap.add_argument("--warp-eye-height", type=float, default=None,
                    help="with --warp-source (or a config that has it): also move the flow source with the camera's "
                         "horizontal displacement, the pixels below the horizon taken for flat ground this far below "
                         "the camera (ModelConfig.warp_eye_height; 0 = rotation only)")
    ap.add_argument("--new-lr-mult", "--pos-lr-mult", dest="new_lr_mult", type=float, default=10.0,
                    help="learning-rate multiplier of the tensors --init did not have (pos_embed, a grown block's); "
                         "they stay in that group across continuations (the log's new_params): 1 gives them the "
                         "common rate (still without weight decay)")
    ap.add_argument("--grow-depth", action="store_true",
                    help="with --init from a model of fewer blocks than the config's depth: its blocks keep their "
                         "weights, spread evenly over the deeper stack (grown_block_places), and the blocks between "
                         "start as the identity (their output projections zero), so training starts from the "
                         "init's predictions; the new blocks count as new tensors (--new-lr-mult)")
    ap.add_argument("--autoencoder", help="a latent model's trained autoencoder (train_ae.py --export folder)")
    ap.add_argument("--revisit-data", help="a kvworld-sim dataset --revisit folder (memory of places), mixed in")
    ap.add_argument("--revisit-fraction", type=float, default=0.25,
                    help="fraction of the steps whose batch comes from --revisit-data")
    ap.add_argument("--revisit-holdout", type=int, default=32, help="last revisit episodes kept for evaluation")
    ap.add_argument("--holdout", type=int, default=64, help="last episodes (other worlds) kept for evaluation")
    ap.add_argument("--max-episodes", type=int, default=0)
    ap.add_argument("--eval-episodes", type=int, default=32)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--compile", action="store_true",
                    help="torch.compile the blocks' element-wise work (modulation, norms, RoPE) into fused kernels "
                         "(PyTorch 2; the trainer is bound by those bytes, not by its matrix products)")
    ap.add_argument("--profile", help="profile steps 20-24 of this run (torch.profiler) and write the operators' "
                                      "device-time table here (then train on)")
    args = ap.parse_args()
    t_start = time.time()
    dev = torch.device(args.device)
    torch.manual_seed(args.seed)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    with open(args.config) as f:
        cfg = M.ModelConfig.from_json(f.read())
    if args.absolute_position:
        cfg.absolute_position = True
    if args.warp_source:
        assert cfg.source_previous, "--warp-source needs the source \"previous\""
        cfg.warp_source = True
    if args.warp_eye_height is not None:
        assert cfg.warp_source or args.warp_eye_height == 0, "--warp-eye-height needs the warped source"
        cfg.warp_eye_height = args.warp_eye_height
    model = M.KVWorldModel(cfg).to(dev)
    if cfg.autoencoder.enabled:
        assert args.autoencoder, "a latent config needs --autoencoder (train_ae.py's export)"
        load_autoencoder(model.autoencoder, args.autoencoder)
        model.autoencoder.eval()
    data = EpisodeData(args.data, cfg, dev, cfg.window, cfg.recall, args.max_episodes,
                       model.autoencoder if cfg.autoencoder.enabled else None, args.holdout)
    n_train = data.E - args.holdout
    assert n_train > 0
    revisit = None
    if args.revisit_data:
        revisit = EpisodeData(args.revisit_data, cfg, dev, cfg.window, cfg.recall, 0,
                              model.autoencoder if cfg.autoencoder.enabled else None, args.revisit_holdout)
        assert revisit.layout == "revisit" and revisit.loss_mask is not None, \
            f"{args.revisit_data}: not a revisit dataset (kvworld-sim dataset --revisit)"
        assert revisit.E > args.revisit_holdout, f"{args.revisit_data}: {revisit.E} episodes, none left to train on"
        print(f"revisit data: {revisit.E} episodes x {revisit.K} chunks, {args.revisit_fraction:.0%} of the steps",
              flush=True)
    # Which steps draw a revisit batch: a host-side generator (a device draw would be read back every step).
    pick = np.random.default_rng(args.seed * 7919 + 17)
    print(f"data: {data.E} episodes x {data.T} frames ({data.K} chunks), {n_train} for training, "
          f"{args.holdout} held out; loaded{' and encoded' if data.latent else ''} in {time.time() - t_start:.1f}s",
          flush=True)

    n_params = sum(p.numel() for p in model.parameters())
    ck = torch.load(args.ckpt, map_location=dev) if os.path.exists(args.ckpt) else None
    new_params = ck["log"].get("new_params", ["pos_embed"] if cfg.absolute_position else []) if ck else []
    init_state = None
    growth = None  # what the log records of a --grow-depth init
    if args.init and ck is None:
        sd = M.load_model_folder(args.init)  # int8 weights dequantized
        own = model.state_dict()
        # A model of another grid (a pixel model's weights for a latent one) shares the transformer: the patch
        # embedding and the output head, whose shapes follow the grid, start fresh (the output head at zero,
        # adaLN-zero) and count as new tensors.
        reshaped = sorted(k for k, v in sd.items() if k in own and tuple(v.shape) != tuple(own[k].shape))
        sd = {k: v.float() for k, v in sd.items() if k not in reshaped and not k.startswith("autoencoder.")}
        init_depth = 1 + max((int(k.split(".")[1]) for k in sd if k.startswith("blocks.")), default=-1)
        grown = []  # the deeper stack's blocks the init did not have (--grow-depth)
        if init_depth != cfg.depth:
            if not (args.grow_depth and init_depth < cfg.depth):
                sys.exit(f"{args.init}: {init_depth} blocks against the config's {cfg.depth} "
                         f"(--grow-depth deepens a model; a shallower one cannot start from it)")
            place = grown_block_places(init_depth, cfg.depth)
            sd = {(f"blocks.{place[int(k.split('.')[1])]}." + k.split(".", 2)[2] if k.startswith("blocks.") else k): v
                  for k, v in sd.items()}
            grown = [j for j in range(cfg.depth) if j not in place]
            growth = {"from_depth": init_depth, "to_depth": cfg.depth, "init_blocks_at": place, "new_blocks": grown}
            print(f"grown from {init_depth} to {cfg.depth} blocks: the init's at {place}, new (the identity) at {grown}",
                  flush=True)
        missing, unexpected = model.load_state_dict(sd, strict=False)
        missing = [k for k in missing if not k.startswith("autoencoder.")]
        grown_tensors = {k for k in missing if k.startswith("blocks.") and int(k.split(".")[1]) in grown}
        # Only newly added tensors may be missing: pos_embed starts at zero (the model starts as the one loaded),
        # the re-shaped ones as initialised, a grown block as the identity: x + gate * 0 through its attention and
        # its MLP, whatever its modulation (the gradient reaches proj and fc2 first, then the rest of the block).
        assert not unexpected and set(missing) <= {"pos_embed"} | set(reshaped) | grown_tensors, (missing, unexpected)
        with torch.no_grad():
            for j in grown:
                for lin in (model.blocks[j].proj, model.blocks[j].fc2):
                    lin.weight.zero_()
                    lin.bias.zero_()
        new_params = sorted(missing)
        print(f"initialised from {args.init} ({len(sd)} tensors; new: {', '.join(new_params) or 'none'})", flush=True)
        state_file = os.path.join(args.init, "train_state.json")
        if os.path.exists(state_file):  # an --export-fp32 folder: the schedule and the log go on
            with open(state_file) as f:
                state = json.load(f)
            init_state = state
            # the init's own new tensors (still growing) and those this run adds (a grown block's)
            new_params = sorted(set(state["log"].get("new_params", [])) | set(new_params))
    ema = {k: v.detach().clone().float() for k, v in model.state_dict().items()}
    # Tensors new beside trained weights start at zero: they get new_lr_mult x the learning rate (and no weight
    # decay) so that a short fine-tuning run can grow them.
    new = [p for n, p in model.named_parameters() if n in new_params and p.requires_grad]
    rest = [p for n, p in model.named_parameters() if n not in new_params and p.requires_grad]
    groups = [{"params": rest, "lr_mult": 1.0}] + ([{"params": new, "lr_mult": args.new_lr_mult, "weight_decay": 0.0}] if new else [])
    opt = torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.99), weight_decay=0.01,
                            **({"fused": True} if dev.type == "cuda" else {}))
    step, log = 0, {"config": json.loads(cfg.to_json()), "parameters": n_params, "runs": [], "points": [],
                    "new_params": new_params}
    if init_state is not None:
        step, log = init_state["step"], init_state["log"]
        log["new_params"] = new_params  # kept in the checkpoint: a resumed run groups the tensors alike
        print(f"continuing at step {step} (the optimizer restarts)", flush=True)
    if growth is not None:  # the log describes the deeper model from here on
        log.setdefault("grown", []).append({"step": step, **growth})
        log["config"], log["parameters"] = json.loads(cfg.to_json()), n_params
    if ck is not None:
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        ema = {k: v.to(dev) for k, v in ck["ema"].items()}
        step, log = ck["step"], ck["log"]
        print(f"resumed at step {step}", flush=True)
    rope = M.RopeTables(cfg, 64 * cfg.chunk_frames)
    rope_f = SlotFactors([rope.chunk_factors(s, dev) for s in range(cfg.window + cfg.recall + 1)])
    rollout_guidance = args.rollout_guidance or cfg.guidance
    gen = torch.Generator(device=dev)
    gen.manual_seed(args.seed * 1000003 + step)
    run = {"start_step": step, "batch": args.batch, "episodes": n_train, "device": str(dev), "lr": args.lr,
           "self_context": args.self_context, "tau_max": args.tau_max,
           "rollout_steps": args.rollout_steps or cfg.steps, "rollout_guidance": rollout_guidance,
           "absolute_position": cfg.absolute_position,
           "warp_source": cfg.warp_source, "warp_eye_height": cfg.warp_eye_height,
           "new_params": new_params, "new_lr_mult": args.new_lr_mult if new_params else None,
           "gpu": torch.cuda.get_device_name() if dev.type == "cuda" else "cpu"}
    if args.compile:
        assert hasattr(torch, "compile"), "--compile needs PyTorch 2"
        # Instance attributes shadow the methods; M.apply_rope is looked up at call time by context_kv and
        # teacher_forced_predict. Static shapes: one graph per distinct (clean, noisy) stream shape.
        plain_apply_rope = M.apply_rope
        # Self-context rollouts and the context's gather call these at more shapes (ranks 4 and 5, every
        # context length) than dynamo's default limit of 8 graphs a function, past which it fell back to eager
        # (2026-12-05, second session): room for all of them.
        dynamo_config = torch._dynamo.config
        for limit in ("recompile_limit", "cache_size_limit"):
            if hasattr(dynamo_config, limit):
                setattr(dynamo_config, limit, 64)
        model.block_qkv = torch.compile(model.block_qkv, dynamic=False)
        model.block_finish = torch.compile(model.block_finish, dynamic=False)
        M.apply_rope = torch.compile(M.apply_rope, dynamic=False)
    run["compile"] = bool(args.compile)
    if args.stagger_fraction > 0:
        run["stagger_fraction"], run["stagger_slope"] = args.stagger_fraction, args.stagger_slope
    # The EMA as two multi-tensor updates a step (one kernel each over every tensor) instead of a loop of small
    # ones; the model's parameters are fp32 (autocast computes in bf16), so they need no copy.
    ema_keys = list(ema.keys())
    live = model.state_dict()
    ema_list = [ema[k] for k in ema_keys]
    live_list = [live[k] if live[k].dtype == torch.float32 else None for k in ema_keys]
    budget = args.minutes * 60.0
    t_train = time.time()
    warmup = args.warmup
    # The warm-up counts from where the optimizer started: a run continued from an exported folder restarts Adam
    # (its moments do not travel), and jumping straight to the schedule's rate with fresh moments set the
    # 2026-12-06 run back (step 3125 worse than the 2764 it started from); a resumed checkpoint keeps its moments.
    warmup_from = step if (init_state is not None and ck is None) else 0
    run["warmup_from"] = warmup_from
    model.train()
    loss_acc, mse_acc, n_acc = 0.0, 0.0, 0
    rv_acc, n_rv = 0.0, 0
    prof = None
    while time.time() - t_train < budget:
        lr = args.lr * min(1.0, (step - warmup_from + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, step / args.total_steps))))
        for g in opt.param_groups:
            g["lr"] = lr * g.get("lr_mult", 1.0)
        on_revisit = revisit is not None and pick.random() < args.revisit_fraction
        src = revisit if on_revisit else data
        n_src = src.E - (args.revisit_holdout if on_revisit else args.holdout)
        idx = torch.randint(0, n_src, (args.batch,), device=dev, generator=gen)
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            loss, mse = teacher_forced_loss(model, rope_f, src, idx, cfg.window, cfg.recall, args.tau_max, gen,
                                            args.self_context, args.rollout_steps, rollout_guidance,
                                            args.stagger_fraction, args.stagger_slope)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        decay = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            torch._foreach_mul_(ema_list, decay)
            torch._foreach_add_(ema_list, [v if v is not None else live[k].float() for k, v in zip(ema_keys, live_list)],
                                alpha=1 - decay)
        step += 1
        if args.profile and prof is None and step - run["start_step"] == 20:
            prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU] +
                                          ([torch.profiler.ProfilerActivity.CUDA] if dev.type == "cuda" else []))
            prof.__enter__()
            t_prof = time.time()
        elif prof is not None and step - run["start_step"] == 25:
            if dev.type == "cuda":
                torch.cuda.synchronize()
            prof.__exit__(None, None, None)
            sort = "self_cuda_time_total" if dev.type == "cuda" else "self_cpu_time_total"
            os.makedirs(os.path.dirname(os.path.abspath(args.profile)), exist_ok=True)
            with open(args.profile, "w") as f:
                f.write(f"5 steps of batch {args.batch} in {time.time() - t_prof:.3f} s wall\n")
                f.write(prof.key_averages().table(sort_by=sort, row_limit=40, max_name_column_width=60))
            print("profile written", args.profile, flush=True)
            prof = False
        # Summed on the device: reading a loss back every step would stall the queue of the next step's work.
        if on_revisit:
            rv_acc, n_rv = rv_acc + mse.detach(), n_rv + 1
        else:
            loss_acc = loss_acc + loss.detach()
            mse_acc = mse_acc + mse.detach()
            n_acc += 1
        if step % 50 == 0:
            loss_acc, mse_acc = float(loss_acc), float(mse_acc)
            pt = {"step": step, "loss": loss_acc / max(n_acc, 1), "mse": mse_acc / max(n_acc, 1), "lr": lr,
                  "grad_norm": float(gnorm), "seconds": time.time() - t_train, "samples": step * args.batch}
            if n_rv:  # the revisit batches' trained chunks (3..5), apart: their MSE is not the walks'
                pt["revisit_mse"], pt["revisit_batches"] = float(rv_acc) / n_rv, n_rv
            log["points"].append(pt)
            print(json.dumps(pt), flush=True)
            loss_acc = mse_acc = rv_acc = 0.0
            n_acc = n_rv = 0
    run["end_step"] = step
    run["train_seconds"] = time.time() - t_train
    if dev.type == "cuda":  # what a larger batch would have to fit in
        run["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
        print(f"peak GPU memory {run['peak_memory_gib']:.1f} GiB at batch {args.batch}", flush=True)
    if args.compile:  # the evaluation and the export below run the plain functions (and deepcopy the model)
        model.__dict__.pop("block_qkv", None)
        model.__dict__.pop("block_finish", None)
        M.apply_rope = plain_apply_rope
    # Evaluate the EMA weights on held-out worlds (one chunk after a ground-truth context) in a copy of the model,
    # so that the checkpoint below keeps the training weights and already holds this run's entry in the log.
    ema_model = copy.deepcopy(model)
    ema_model.load_state_dict({k: v.to(model.state_dict()[k].dtype) for k, v in ema.items()})
    ema_model.eval()
    held = list(range(data.E - args.holdout, data.E))[:args.eval_episodes]
    chunk = min(4, data.K - 1)
    psnr_m, psnr_r = eval_one_chunk(ema_model.float(), data, held, chunk, cfg.steps, dev)
    run["eval"] = {"episodes": len(held), "chunk": chunk, "psnr_model": psnr_m, "psnr_repeat_last": psnr_r}
    if revisit is not None:
        # The returning chunk (5) after its ground-truth context, with and without the earlier view of the place
        # (chunk 1): what the memory adds.
        run["revisit_data"] = {"path": args.revisit_data, "episodes": revisit.E - args.revisit_holdout,
                               "fraction": args.revisit_fraction}
        held_rv = list(range(revisit.E - args.revisit_holdout, revisit.E))
        with_m, rep = eval_one_chunk(ema_model, revisit, held_rv, revisit.K - 1, cfg.steps, dev)
        without_m, _ = eval_one_chunk(ema_model, revisit, held_rv, revisit.K - 1, cfg.steps, dev, without=1)
        run["eval_revisit"] = {"episodes": len(held_rv), "chunk": revisit.K - 1, "psnr_model": with_m,
                               "psnr_without_earlier_view": without_m, "psnr_repeat_last": rep}
        print(json.dumps({"eval_revisit": run["eval_revisit"]}), flush=True)
    print(json.dumps({"eval": run["eval"]}), flush=True)
    log["runs"].append(run)
    os.makedirs(os.path.dirname(os.path.abspath(args.ckpt)), exist_ok=True)
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "ema": ema, "step": step, "log": log},
               args.ckpt + ".tmp")
    os.replace(args.ckpt + ".tmp", args.ckpt)
    if args.export:
        M.export_model(ema_model, args.export, dtype=torch.bfloat16, max_shard_bytes=15 << 20, int8=args.export_int8)
        print("exported", args.export, flush=True)
    if args.export_fp32:
        from train_ae import save_shards
        names = save_shards({k: v for k, v in ema_model.state_dict().items() if not k.startswith("autoencoder.")},
                            args.export_fp32, "dit")
        with open(os.path.join(args.export_fp32, "train_state.json"), "w") as f:
            json.dump({"step": step, "log": log, "files": names}, f)
        print("exported fp32", args.export_fp32, names, flush=True)
    if args.log:
        with open(args.log, "w") as f:
            json.dump(log, f, indent=1)
    print(f"done: step {step}, {time.time() - t_start:.0f}s in all", flush=True)


if __name__ == "__main__":
    main()
