"""The KVWorld world model in PyTorch: the same function as the C++ engine (docs/design.md).

Shapes: B batch, F frames per chunk, H×W pixels, p patch, N = F·(H/p)·(W/p) tokens, D hidden,
heads × hd = D. Frames are HWC floats in [-1, 1]. Module names are the safetensors tensor names the engine
loads (engine/src/weights.cpp `expected_tensors`).
"""
from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from autoencoder import DOWNSAMPLE, Autoencoder, AutoencoderConfig

NUM_ACTION_LABELS = 81
CAMERA_DIM = 5


@dataclass
class ModelConfig:
    name: str = "kvworld"
    height: int = 128
    width: int = 128
    patch: int = 8
    chunk_frames: int = 4
    fps: int = 16
    hidden: int = 384
    depth: int = 6
    heads: int = 3
    head_dim: int = 128
    mlp_hidden: int = 1152
    time_freq_dim: int = 256
    rope_axes: Tuple[int, int, int] = (32, 48, 48)
    # A learned absolute embedding of the patch position in the frame, added to the patch embeddings
    # ("pos_embed" [tokens_per_frame, hidden]). Why: RoPE only tells attention the relative offsets, so without
    # it the model cannot tell the top of the frame from the bottom and, once a long rollout's context is
    # damaged, can paint the ground above the sky.
    absolute_position: bool = False
    rope_theta: float = 10000.0
    norm_eps: float = 1e-6
    steps: int = 4
    shift: float = 1.0
    cache_t: float = 0.0
    source_previous: bool = False  # flow source x_1 = previous chunk's last frame + source_sigma * noise
    source_sigma: float = 1.0
    # With source_previous: each frame's copy of the source is first turned from the previous chunk's last camera
    # to the frame's own (yaw and pitch; warp_previous below, engine/src/source_warp.h).
    warp_source: bool = False
    # With warp_source, > 0 also moves the source with the camera's horizontal displacement: the pixels below the
    # horizon taken for flat ground this far below the camera, those above for infinitely far. 0: rotation only.
    warp_eye_height: float = 0.0
    guidance: float = 1.0  # motion guidance of the engine's sampler (1 = off); inference only
    guidance_min_t: float = 0.0  # guidance only at the steps with t >= this (engine ModelConfig.guidance_min_t)
    window: int = 3
    recall: int = 2
    recall_first: bool = True  # chunk 0 always takes a recall slot (engine ModelConfig.recall_first)
    motion: Dict[str, float] = field(default_factory=lambda: {
        "move_per_frame": 0.25, "turn_max_deg": 3.0, "pitch_limit_deg": 60.0, "hfov_deg": 90.0})
    weights: List[str] = field(default_factory=lambda: ["model.safetensors"])
    # With an autoencoder the transformer, the flow source and the sampler work on its latent grid (h x w x C,
    # h = height / 8) instead of pixels (docs/design.md "The latent space").
    autoencoder: AutoencoderConfig = field(default_factory=AutoencoderConfig)

    # The grid diffusion runs on: pixels, or the autoencoder's latents.
    @property
    def grid_height(self) -> int:
        return self.height // DOWNSAMPLE if self.autoencoder.enabled else self.height

    @property
    def grid_width(self) -> int:
        return self.width // DOWNSAMPLE if self.autoencoder.enabled else self.width

    @property
    def grid_channels(self) -> int:
        return self.autoencoder.latent_channels if self.autoencoder.enabled else 3

    @property
    def grid_shape(self) -> Tuple[int, int, int]:
        return self.grid_height, self.grid_width, self.grid_channels

    @property
    def clip(self) -> float:
        """Finished chunks are clamped to [-clip, clip]: pixels to [-1, 1], latents to the config's latent_clip."""
        return self.autoencoder.latent_clip if self.autoencoder.enabled else 1.0

    @property
    def patch_rows(self) -> int:
        return self.grid_height // self.patch

    @property
    def patch_cols(self) -> int:
        return self.grid_width // self.patch

    @property
    def tokens_per_frame(self) -> int:
        return self.patch_rows * self.patch_cols

    @property
    def tokens_per_chunk(self) -> int:
        return self.tokens_per_frame * self.chunk_frames

    @property
    def patch_dim(self) -> int:
        return self.grid_channels * self.patch * self.patch

    @staticmethod
    def from_json(text: str) -> "ModelConfig":
        j = json.loads(text)
        assert j.get("format") == "kvworld-model" and j.get("version") == 1, "not a kvworld-model v1 config"
        c = ModelConfig()
        for k in ("name", "height", "width", "patch", "chunk_frames", "fps", "hidden", "depth", "heads", "head_dim",
                  "mlp_hidden", "time_freq_dim", "rope_theta", "norm_eps"):
            if k in j:
                setattr(c, k, j[k])
        c.rope_axes = tuple(j["rope_axes"])
        c.absolute_position = bool(j.get("absolute_position", False))
        c.autoencoder = AutoencoderConfig.from_json(j.get("autoencoder"))
        assert not j.get("cumulative_motion", False), "cumulative_motion is no longer supported"
        c.steps, c.shift, c.cache_t = j["sampler"]["steps"], j["sampler"]["shift"], j["sampler"]["cache_t"]
        c.source_previous = j["sampler"].get("source", "noise") == "previous"
        c.source_sigma = float(j["sampler"].get("source_sigma", 1.0))
        c.warp_source = bool(j["sampler"].get("warp_source", False))
        c.warp_eye_height = float(j["sampler"].get("warp_eye_height", 0.0))
        c.guidance = float(j["sampler"].get("guidance", 1.0))
        c.guidance_min_t = float(j["sampler"].get("guidance_min_t", 0.0))
        c.window, c.recall = j["context"]["window"], j["context"]["recall"]
        c.recall_first = bool(j["context"].get("recall_first", True))
        c.motion = dict(j["motion"])
        c.weights = list(j.get("weights", ["model.safetensors"]))
        assert c.heads * c.head_dim == c.hidden and sum(c.rope_axes) == c.head_dim
        return c

    def to_json(self) -> str:
        j = {"format": "kvworld-model", "version": 1, "name": self.name, "height": self.height, "width": self.width,
             "patch": self.patch, "chunk_frames": self.chunk_frames, "fps": self.fps, "hidden": self.hidden,
             "depth": self.depth, "heads": self.heads, "head_dim": self.head_dim, "mlp_hidden": self.mlp_hidden,
             "time_freq_dim": self.time_freq_dim, "rope_axes": list(self.rope_axes), "rope_theta": self.rope_theta,
             "norm_eps": self.norm_eps, **({"absolute_position": True} if self.absolute_position else {}),
             **({"autoencoder": self.autoencoder.to_json()} if self.autoencoder.enabled else {}),
             "sampler": {"steps": self.steps, "shift": self.shift, "cache_t": self.cache_t,
                         "source": "previous" if self.source_previous else "noise", "source_sigma": self.source_sigma,
                         "guidance": self.guidance,
                         **({"guidance_min_t": self.guidance_min_t} if self.guidance_min_t > 0 else {}),
                         **({"warp_source": True} if self.warp_source else {}),
                         **({"warp_eye_height": self.warp_eye_height} if self.warp_eye_height > 0 else {})},
             "context": {"window": self.window, "recall": self.recall, **({} if self.recall_first else {"recall_first": False})},
             "motion": self.motion,
             "weights": self.weights}
        return json.dumps(j, indent=2) + "\n"


# ---------------------------------------------------------------------------------------------------
# Positions

class RopeTables:
    """cos/sin per axis [position, pair] computed in float64 exactly as engine/src/rope.cpp."""

    def __init__(self, cfg: ModelConfig, max_time: int):
        self.cfg = cfg
        self.tables = []
        for dims, npos in zip(cfg.rope_axes, (max_time, cfg.patch_rows, cfg.patch_cols)):
            i = np.arange(dims // 2, dtype=np.float64)
            freq = np.power(np.float64(np.float32(cfg.rope_theta)), -2.0 * i / dims)
            ang = np.arange(npos, dtype=np.float64)[:, None] * freq[None, :]
            self.tables.append((torch.from_numpy(np.cos(ang).astype(np.float32)),
                                torch.from_numpy(np.sin(ang).astype(np.float32))))

    def factors(self, t: torch.Tensor, r: torch.Tensor, c: torch.Tensor, device=None):
        """cos, sin [N, hd/2] for tokens at (t, r, c)."""
        cos = torch.cat([self.tables[a][0][p] for a, p in enumerate((t, r, c))], dim=-1)
        sin = torch.cat([self.tables[a][1][p] for a, p in enumerate((t, r, c))], dim=-1)
        return cos.to(device), sin.to(device)

    def chunk_factors(self, slot: int, device=None):
        """Factors for every token of a chunk sitting at context slot `slot` (time = slot·F + frame)."""
        cfg = self.cfg
        j = torch.arange(cfg.tokens_per_chunk)
        f = j // cfg.tokens_per_frame
        r = (j % cfg.tokens_per_frame) // cfg.patch_cols
        c = j % cfg.patch_cols
        return self.factors(slot * cfg.chunk_frames + f, r, c, device)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [..., N, hd], interleaved pairs (2i, 2i+1); cos/sin [N, hd/2]."""
    x0, x1 = x[..., 0::2], x[..., 1::2]
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], dim=-1).flatten(-2)


def timestep_sinusoid(t: torch.Tensor, dim: int) -> torch.Tensor:
    """[..] -> [.., dim]: [cos(1000 t w_i), sin(1000 t w_i)], w_i = exp(-ln(1e4) i / (dim/2)), in float64."""
    half = dim // 2
    freq = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float64, device=t.device) / half)
    arg = 1000.0 * t.to(torch.float64)[..., None] * freq
    return torch.cat([torch.cos(arg), torch.sin(arg)], dim=-1).to(torch.float32)


# ---------------------------------------------------------------------------------------------------
# Patches

def patchify(frames: torch.Tensor, p: int) -> torch.Tensor:
    """[B, F, H, W, 3] -> [B, N, p*p*3], patch vector in (py, px, c) order."""
    B, Fr, H, W, C = frames.shape
    x = frames.reshape(B, Fr, H // p, p, W // p, p, C).permute(0, 1, 2, 4, 3, 5, 6)
    return x.reshape(B, Fr * (H // p) * (W // p), p * p * C)


def unpatchify(tokens: torch.Tensor, cfg: ModelConfig) -> torch.Tensor:
    """[B, N, p*p*c] -> [B, F, grid_height, grid_width, c]."""
    B = tokens.shape[0]
    p, hp, wp, c = cfg.patch, cfg.patch_rows, cfg.patch_cols, cfg.grid_channels
    x = tokens.reshape(B, cfg.chunk_frames, hp, wp, p, p, c).permute(0, 1, 2, 4, 3, 5, 6)
    return x.reshape(B, cfg.chunk_frames, cfg.grid_height, cfg.grid_width, c)


# ---------------------------------------------------------------------------------------------------
# Modules

class RMSNormWeight(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype) * self.weight.to(x.dtype)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        D = cfg.hidden
        self.mod_offset = nn.Parameter(torch.randn(6, D) / math.sqrt(D))
        self.qkv = nn.Linear(D, 3 * D)
        self.q_norm = RMSNormWeight(cfg.head_dim, cfg.norm_eps)
        self.k_norm = RMSNormWeight(cfg.head_dim, cfg.norm_eps)
        self.proj = nn.Linear(D, D)
        self.fc1 = nn.Linear(D, cfg.mlp_hidden)
        self.fc2 = nn.Linear(cfg.mlp_hidden, D)


def layer_norm(x: torch.Tensor, eps: float) -> torch.Tensor:
    return F.layer_norm(x, (x.shape[-1],), eps=eps)


class KVWorldModel(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        D, P, T = cfg.hidden, cfg.patch_dim, cfg.time_freq_dim
        self.patch_embed = nn.Linear(P, D)
        if cfg.absolute_position:
            self.pos_embed = nn.Parameter(torch.zeros(cfg.tokens_per_frame, D))  # zero: starts as without it
        self.time_embed = nn.Sequential(nn.Linear(T, D), nn.SiLU(), nn.Linear(D, D))
        self.action_embed = nn.Embedding(NUM_ACTION_LABELS, D)
        self.camera_embed = nn.Sequential(nn.Linear(CAMERA_DIM, D), nn.SiLU(), nn.Linear(D, D))
        self.modulation = nn.Linear(D, 6 * D)
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.depth)])
        self.final_modulation = nn.Linear(D, 2 * D)
        self.final_proj = nn.Linear(D, P)
        self.reset_parameters()
        if cfg.autoencoder.enabled:
            # Trained on its own (train_ae.py) and frozen while the transformer trains: the latent space the
            # transformer learns must not move under it.
            self.autoencoder = Autoencoder(cfg.autoencoder)
            self.autoencoder.requires_grad_(False)

    def reset_parameters(self):
        # adaLN-zero: modulation starts at zero (every block the identity), the output head at zero.
        nn.init.normal_(self.action_embed.weight, std=0.02)
        for lin in (self.modulation, self.final_modulation, self.final_proj):
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    # -- pieces shared by inference and training ---------------------------------------------------
    def embed_patches(self, patches: torch.Tensor) -> torch.Tensor:
        """patches [B, n * tokens_per_frame, patch_dim] (whole frames) -> embeddings [B, n * tokens_per_frame, D]:
        the patch embedding plus, with absolute_position, the embedding of each patch's place in its frame."""
        x = self.patch_embed(patches)
        if self.cfg.absolute_position:
            frames = x.shape[-2] // self.cfg.tokens_per_frame
            x = x + self.pos_embed.to(x.dtype).repeat(frames, 1)
        return x

    def conditioning(self, t: torch.Tensor, labels: torch.Tensor, cam: torch.Tensor):
        """t [B, F] (noise level per frame), labels [B, F], cam [B, F, 5] -> mod [B, F, 6D], fmod [B, F, 2D]."""
        c = self.time_embed(timestep_sinusoid(t, self.cfg.time_freq_dim).to(cam.dtype))
        c = c + self.action_embed(labels) + self.camera_embed(cam)
        c = F.silu(c)
        return self.modulation(c), self.final_modulation(c)

    def per_token(self, m: torch.Tensor) -> torch.Tensor:
        """[B, F, k] -> [B, N, k]: every token takes its frame's row."""
        return m.repeat_interleave(self.cfg.tokens_per_frame, dim=1)

    def block_qkv(self, blk: Block, x: torch.Tensor, mod_tok: torch.Tensor):
        """x [B, N, D] -> q, k, v [B, heads, N, hd] (q, k normed, not rotated) and the block's other terms."""
        cfg = self.cfg
        B, N, D = x.shape
        sh1, sc1, g1, sh2, sc2, g2 = (mod_tok + blk.mod_offset.reshape(-1)).chunk(6, dim=-1)
        h = layer_norm(x, cfg.norm_eps) * (1 + sc1) + sh1
        q, k, v = blk.qkv(h).view(B, N, 3, cfg.heads, cfg.head_dim).unbind(2)
        q, k = blk.q_norm(q), blk.k_norm(k)
        return q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), (g1, sh2, sc2, g2)

    def block_finish(self, blk: Block, x: torch.Tensor, attn: torch.Tensor, terms) -> torch.Tensor:
        """attn [B, heads, N, hd] -> the block's output x."""
        g1, sh2, sc2, g2 = terms
        B, _, N, _ = attn.shape
        x = x + g1 * blk.proj(attn.transpose(1, 2).reshape(B, N, -1))
        h = layer_norm(x, self.cfg.norm_eps) * (1 + sc2) + sh2
        return x + g2 * blk.fc2(F.gelu(blk.fc1(h), approximate="tanh"))

    def output(self, x: torch.Tensor, fmod_tok: torch.Tensor) -> torch.Tensor:
        sh, sc = fmod_tok.chunk(2, dim=-1)
        return unpatchify(self.final_proj(layer_norm(x, self.cfg.norm_eps) * (1 + sc) + sh), self.cfg)


def attention(q, k, v, n_cached: int = 0, want_p_cache: bool = False):
    """Plain softmax attention in fp32 (reference / parity). q [B,h,Nq,hd], k/v [B,h,Nk,hd]."""
    alpha = 1.0 / math.sqrt(q.shape[-1])
    w = torch.softmax(alpha * q @ k.transpose(-1, -2), dim=-1)
    p_cache = w[..., :n_cached].sum(-1).mean() if want_p_cache else None
    return w @ v, p_cache


# ---------------------------------------------------------------------------------------------------
# Inference with a bf16 ("16-bit") cache: the reference the C++ CPU backend must reproduce.

class CacheEntry:
    def __init__(self, k: List[torch.Tensor], v: List[torch.Tensor]):
        self.k, self.v = k, v  # per layer [B, heads, N, hd], rounded to bf16, keys not rotated


def round_bf16(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.bfloat16).to(torch.float32)


@torch.no_grad()
def forward_with_cache(model: KVWorldModel, rope: RopeTables, frames, t, labels, cam,
                       context: Sequence[CacheEntry], write: bool = False, layer_hook=None):
    """One forward of the current chunk attending to `context` (slot order). Returns (x0, p_cache per layer,
    CacheEntry of this chunk if write). layer_hook(l, q) sees every layer's query [B, heads, N, hd] (normed,
    not rotated) for analyses (quant_error.py)."""
    cfg = model.cfg
    dev = frames.device
    mod, fmod = model.conditioning(t, labels, cam)
    mod_tok, fmod_tok = model.per_token(mod), model.per_token(fmod)
    x = model.embed_patches(patchify(frames, cfg.patch))
    n_ctx = len(context)
    cur_cos, cur_sin = rope.chunk_factors(n_ctx, dev)
    ctx_factors = [rope.chunk_factors(s, dev) for s in range(n_ctx)]
    p_cache, new_k, new_v = [], [], []
    for l, blk in enumerate(model.blocks):
        q, k, v, terms = model.block_qkv(blk, x, mod_tok)
        if layer_hook is not None:
            layer_hook(l, q)
        if write:
            new_k.append(round_bf16(k))
            new_v.append(round_bf16(v))
        ks = [apply_rope(e.k[l], *ctx_factors[s]) for s, e in enumerate(context)] + [apply_rope(k, cur_cos, cur_sin)]
        vs = [e.v[l] for e in context] + [v]
        a, pc = attention(apply_rope(q, cur_cos, cur_sin), torch.cat(ks, 2), torch.cat(vs, 2),
                          n_cached=n_ctx * cfg.tokens_per_chunk, want_p_cache=True)
        p_cache.append(float(pc))
        x = model.block_finish(blk, x, a, terms)
    x0 = model.output(x, fmod_tok)
    return x0, p_cache, (CacheEntry(new_k, new_v) if write else None)


def sampler_times(steps: int, shift: float) -> List[float]:
    """Same float32 values as engine sampler_times (computed in double, rounded)."""
    out = []
    for i in range(steps + 1):
        u = 1.0 - i / steps
        out.append(float(np.float32(shift * u / (1.0 + (shift - 1.0) * u))))
    return out


# ---------------------------------------------------------------------------------------------------
# Noise: Philox4x32-10 + Box-Muller, the engine's counter-based stream (engine/src/util/rng.h).

def philox4x32_10(c0, c1, c2, c3, k0: int, k1: int):
    M0, M1, W0, W1 = 0xD2511F53, 0xCD9E8D57, 0x9E3779B9, 0xBB67AE85
    mask = np.uint64(0xFFFFFFFF)
    c = [np.asarray(x, dtype=np.uint64) for x in (c0, c1, c2, c3)]
    for rnd in range(10):
        if rnd > 0:
            k0 = (k0 + W0) & 0xFFFFFFFF
            k1 = (k1 + W1) & 0xFFFFFFFF
        p0 = np.uint64(M0) * c[0]
        p1 = np.uint64(M1) * c[2]
        hi0, lo0 = p0 >> np.uint64(32), p0 & mask
        hi1, lo1 = p1 >> np.uint64(32), p1 & mask
        c = [hi1 ^ c[1] ^ np.uint64(k0), lo1, hi0 ^ c[3] ^ np.uint64(k1), lo0]
    return c


def normal_noise(seed: int, chunk: int, step: int, domain: int, count: int) -> np.ndarray:
    idx = np.arange(count, dtype=np.uint64)
    r = philox4x32_10(idx >> np.uint64(1), np.full(count, chunk, np.uint64), np.full(count, step, np.uint64),
                      np.full(count, domain, np.uint64), seed & 0xFFFFFFFF, (seed >> 32) & 0xFFFFFFFF)
    u1 = (r[0].astype(np.float64) + 1.0) * 2.0 ** -32
    u2 = r[1].astype(np.float64) * 2.0 ** -32
    rad = np.sqrt(-2.0 * np.log(u1))
    z = np.where(idx % 2 == 1, rad * np.sin(2 * np.pi * u2), rad * np.cos(2 * np.pi * u2))
    return z.astype(np.float32)


def warp_previous(prev: torch.Tensor, yaw_deg: torch.Tensor, pitch_from_deg: torch.Tensor, pitch_to_deg: torch.Tensor,
                  hfov_deg: float, forward: Optional[torch.Tensor] = None, right: Optional[torch.Tensor] = None,
                  eye_height: float = 0.0) -> torch.Tensor:
    """The flow source moved to each frame's camera (sampler warp_source; engine/src/source_warp.h warp_maps, the
    same arithmetic). prev [B, H, W, 3]; yaw_deg [B, F] (target - source, wrapped), pitch_from_deg [B], pitch_to_deg
    [B, F]; forward, right [B, F] (the target camera's displacement from the source's, world units, in the
    target's axes; used when eye_height > 0) -> [B, F, H, W, 3]. A pixel u = (x + 0.5 - W/2)/f, dy = y + 0.5 -
    horizon_to has inverse ground depth w = max(dy, 0) / (eye_height f) (0 above the horizon: infinitely far);
    seen from the source position (X, Z) = (u + right w, max(1 + forward w, 0.05)); a_s = atan2(X, Z) + yaw
    (within 85 degrees); x_s = W/2 + f tan(a_s), y_s = horizon_from + dy / (hypot(X, Z) cos a_s); bilinear,
    border repeated. For the simulator's camera (column ray caster, pitch shifts the horizon) the rotation is exact."""
    B, H, W, C = prev.shape
    Fr = yaw_deg.shape[1]
    dev = prev.device
    deg = math.pi / 180.0
    focal = 0.5 * W / math.tan(0.5 * hfov_deg * deg)
    limit = 85.0 * deg
    f64 = torch.float64
    u = ((torch.arange(W, device=dev, dtype=f64) + 0.5 - 0.5 * W) / focal).view(1, 1, 1, W)
    hor_from = (0.5 * H + focal * torch.tan(pitch_from_deg.double() * deg)).view(B, 1, 1, 1)
    hor_to = (0.5 * H + focal * torch.tan(pitch_to_deg.double() * deg)).view(B, Fr, 1, 1)
    dy = torch.arange(H, device=dev, dtype=f64).view(1, 1, H, 1) + 0.5 - hor_to  # [B, F, H, 1]
    if eye_height > 0 and forward is not None:
        w = dy.clamp(min=0.0) / (eye_height * focal)
        px = u + right.double().view(B, Fr, 1, 1) * w  # [B, F, H, W]
        pz = (1.0 + forward.double().view(B, Fr, 1, 1) * w).clamp(min=0.05)
    else:
        px, pz = u, torch.ones((), device=dev, dtype=f64)
    px, pz = torch.broadcast_tensors(px, pz, torch.zeros(B, Fr, H, W, device=dev, dtype=f64))[:2]
    a_s = (torch.atan2(px, pz) + yaw_deg.double().view(B, Fr, 1, 1) * deg).clamp(-limit, limit)
    sx = (0.5 * W + focal * torch.tan(a_s)).float() - 0.5
    sy = (hor_from + dy / (torch.hypot(px, pz) * torch.cos(a_s))).float() - 0.5
    fx, fy = torch.floor(sx), torch.floor(sy)
    wx, wy = (sx - fx)[..., None], (sy - fy)[..., None]
    x0, y0 = fx.long(), fy.long()
    flat = prev.reshape(B, H * W, C)

    def at(xi, yi):
        idx = (yi.clamp(0, H - 1) * W + xi.clamp(0, W - 1)).reshape(B, -1, 1).expand(-1, -1, C)
        return torch.gather(flat, 1, idx).reshape(*xi.shape, C)

    a, b, c, d = at(x0, y0), at(x0 + 1, y0), at(x0, y0 + 1), at(x0 + 1, y0 + 1)
    top, bottom = a + wx * (b - a), c + wx * (d - c)
    return top + wy * (bottom - top)


@torch.no_grad()
def generate_chunk(model, rope, context: List[CacheEntry], labels, cam, seed: int, chunk_index: int,
                   steps: int, shift: float, cache_t: float, given: Optional[torch.Tensor] = None,
                   prev: Optional[torch.Tensor] = None, guidance: float = 1.0, negative=None, rotation=None):
    """The engine's per-chunk procedure: Euler sampling (unless `given`) from x_1 = source_sigma * noise
    (+ `prev`, the previous chunk's last frame [1, H, W, 3], when the config's source is "previous"), then
    the cache pass. Returns (frames [1, F, H, W, 3] in [-1, 1], p_cache per layer, CacheEntry).
    Motion guidance (guidance != 1): `negative` = (labels, cam) of the same frames with the movement released;
    every step at t >= cfg.guidance_min_t uses x0 = x0_negative + guidance * (x0 - x0_negative) (P_S from the
    commanded pass).
    warp_source: `rotation` = (yaw_deg [1, F], pitch_from_deg [1], pitch_to_deg [1, F][, forward [1, F], right
    [1, F]]) moves `prev` to each frame's camera (the translation with cfg.warp_eye_height > 0)."""
    cfg = model.cfg
    dev = labels.device
    shape = (1, cfg.chunk_frames, *cfg.grid_shape)
    n = int(np.prod(shape))
    p_mean = None
    if given is None:
        x = cfg.source_sigma * torch.from_numpy(normal_noise(seed, chunk_index, 0, 0, n)).reshape(shape).to(dev)
        if cfg.source_previous and prev is not None:
            x = x + (warp_previous(prev, *rotation[:3], cfg.motion["hfov_deg"], *rotation[3:],
                                   eye_height=cfg.warp_eye_height)
                     if cfg.warp_source and rotation is not None
                     else prev[:, None])
        ts = sampler_times(steps, shift)
        p_mean = [0.0] * cfg.depth
        for s in range(steps):
            t = torch.full((1, cfg.chunk_frames), ts[s], device=dev)
            x0, pc, _ = forward_with_cache(model, rope, x, t, labels, cam, context)
            if guidance != 1.0 and ts[s] >= cfg.guidance_min_t - 1e-6:
                x0n, _, _ = forward_with_cache(model, rope, x, t, negative[0], negative[1], context)
                x0 = x0n + guidance * (x0 - x0n)
            p_mean = [a + b / steps for a, b in zip(p_mean, pc)]
            x = x + (ts[s + 1] - ts[s]) * (x - x0) / ts[s]
        x0 = x.clamp(-cfg.clip, cfg.clip)
    else:
        x0 = given
    xc = x0
    if cache_t > 0:
        eps = torch.from_numpy(normal_noise(seed, chunk_index, 0, 1, n)).reshape(shape).to(dev)
        xc = (1 - cache_t) * x0 + cache_t * eps
    t = torch.full((1, cfg.chunk_frames), cache_t, device=dev)
    _, pc, entry = forward_with_cache(model, rope, xc, t, labels, cam, context, write=True)
    return x0, (p_mean if p_mean is not None else pc), entry


# ---------------------------------------------------------------------------------------------------
# Actions (kvworld/actions.h)

def action_label(a: np.ndarray, turn_max_deg: float) -> np.ndarray:
    """a [..., 5] = [forward, right, up, yaw_deg, pitch_deg] -> labels [...]."""
    def sgn(v, thr):
        return np.where(v >= thr, 1, np.where(v <= -thr, -1, 0))
    rot_thr = np.float32(0.25) * np.float32(turn_max_deg)
    t = 3 * (sgn(a[..., 0], 0.25) + 1) + (sgn(a[..., 1], 0.25) + 1)
    r = 3 * (sgn(a[..., 3], rot_thr) + 1) + (sgn(a[..., 4], rot_thr) + 1)
    return (9 * t + r).astype(np.int64)


def motion_guidance_negative(a: np.ndarray) -> np.ndarray:
    """kvworld/actions.h motion_guidance_negative: the movement (forward, right, up) released, turns kept."""
    n = np.array(a, dtype=np.float32, copy=True)
    n[..., 0:3] = 0
    return n


def camera_vector(a: np.ndarray, turn_max_deg: float) -> np.ndarray:
    out = a.astype(np.float32).copy()
    out[..., 3:5] = out[..., 3:5] / np.float32(turn_max_deg)
    return out


# ---------------------------------------------------------------------------------------------------
# safetensors IO without the safetensors package (the format is a u64 header length, JSON, raw data).

_DT = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.int8: "I8"}


def save_safetensors(path: str, tensors: Dict[str, torch.Tensor]):
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        raw = t.view(torch.int16).numpy().tobytes() if t.dtype == torch.bfloat16 else t.numpy().tobytes()
        header[name] = {"dtype": _DT[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - (8 + len(h)) % 8) % 8)
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    import os
    os.replace(path + ".tmp", path)


def load_safetensors(path: str) -> Dict[str, torch.Tensor]:
    with open(path, "rb") as f:
        data = f.read()
    (hl,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + hl])
    base = 8 + hl
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, en = e["data_offsets"]
        raw = data[base + b: base + en]
        if e["dtype"] == "BF16":
            t = torch.from_numpy(np.frombuffer(raw, dtype=np.int16).copy()).view(torch.bfloat16)
        else:
            t = torch.from_numpy(np.frombuffer(raw, dtype={"F32": np.float32, "F16": np.float16,
                                                           "I8": np.int8}[e["dtype"]]).copy())
        out[name] = t.reshape(e["shape"])
    return out


# Int8 weights (docs/design.md "Int8 weights"): a matrix or kernel [rows, ...] stored as I8 codes of its shape
# plus "<name>.scale" [rows], value = code * scale[row]; symmetric, no zero point. The engine's converter
# (kvworld-cli convert-weights) and this export make the same files.
INT8_SCALE_SUFFIX = ".scale"
INT8_MIN_ELEMENTS = 4096  # smaller tensors (mod_offset [6, D], camera_embed.0 [D, 5]) stay float


def stores_int8(shape: Sequence[int]) -> bool:
    """Whether the export stores a tensor of this shape as int8: >= 2-D and at least INT8_MIN_ELEMENTS."""
    return len(shape) >= 2 and math.prod(shape) >= INT8_MIN_ELEMENTS


def quantize_rows_int8(w: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per row (the first dim, the rest flattened): scale = max|w_row| / 127 (0 for a row of zeros, which
    decodes to zeros), code = round(w / scale) in [-127, 127] (round half to even, as the engine), so
    |w - code * scale| <= max|w_row| / 254. Returns (codes int8 of w's shape, scales f32 [rows])."""
    assert w.dim() >= 2, f"only matrices and kernels are quantized, not shape {tuple(w.shape)}"
    rows = w.detach().float().cpu().reshape(w.shape[0], -1)
    scale = rows.abs().amax(dim=1) / 127.0
    divisor = torch.where(scale > 0, scale, torch.ones_like(scale))
    codes = torch.round(rows / divisor[:, None]).clamp_(-127, 127).to(torch.int8)
    return codes.reshape(w.shape), scale


def dequantize_int8(sd: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """A state dict with int8 tensors and their scales -> float32 tensors (other tensors as they were).
    Refuses what the engine refuses: a scale without its I8 tensor, an I8 tensor without its scale or 1-D,
    a scale of the wrong shape or dtype, non-finite or negative scales."""
    out = {}
    for name, t in sd.items():
        if name.endswith(INT8_SCALE_SUFFIX):  # no model tensor has such a name: it is a scale
            base = sd.get(name[:-len(INT8_SCALE_SUFFIX)])
            if base is None:
                raise ValueError(f"scale tensor {name!r} has no int8 tensor beside it")
            if base.dtype != torch.int8:
                raise ValueError(f"scale tensor {name!r} scales a {base.dtype} tensor: only int8 tensors have scales")
            continue
        if t.dtype != torch.int8:
            out[name] = t
            continue
        if t.dim() < 2:
            raise ValueError(f"int8 tensor {name!r} has shape {list(t.shape)}: only matrices and kernels may be int8")
        scale = sd.get(name + INT8_SCALE_SUFFIX)
        if scale is None:
            raise ValueError(f"int8 tensor {name!r} has no scale tensor {name + INT8_SCALE_SUFFIX!r}")
        if scale.dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise ValueError(f"scale tensor {name + INT8_SCALE_SUFFIX!r} is {scale.dtype}; a scale is F32, F16 or BF16")
        if tuple(scale.shape) != (t.shape[0],):
            raise ValueError(f"scale tensor {name + INT8_SCALE_SUFFIX!r} has shape {list(scale.shape)}, "
                             f"needs [{t.shape[0]}] (one scale per output channel)")
        scale = scale.float()
        if not torch.isfinite(scale).all() or (scale < 0).any():
            raise ValueError(f"scale tensor {name + INT8_SCALE_SUFFIX!r} holds non-finite or negative values")
        out[name] = (t.float().reshape(t.shape[0], -1) * scale[:, None]).reshape(t.shape)
    return out


def autoencoder_tensors(sd: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The autoencoder's tensors of a state dict, named without the "autoencoder." prefix: a model folder holds the
    transformer's tensors too (only the prefixed ones are the autoencoder's); train_ae.py's export holds the
    autoencoder's alone, with or without the prefix."""
    prefix = "autoencoder."
    prefixed = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    return prefixed if prefixed else dict(sd)


def load_model_folder(folder: str) -> Dict[str, torch.Tensor]:
    """Every tensor of a model folder's safetensors files, int8 ones dequantized to float32."""
    import glob
    import os
    sd = {}
    for f in sorted(glob.glob(os.path.join(folder, "*.safetensors"))):
        sd.update(load_safetensors(f))
    return dequantize_int8(sd)


def export_model(model: KVWorldModel, out_dir: str, dtype: torch.dtype = torch.bfloat16, max_shard_bytes: int = 0,
                 int8: bool = False):
    """Writes model.json and the weights; with max_shard_bytes the weights are split into several
    safetensors files (listed in model.json "weights"), each at most that large (the GPU machine returns
    files of at most 16 MiB). With int8 the matrices and kernels (stores_int8) are written as int8 codes with
    per-row scales, the rest in `dtype`; a tensor and its scale share a file."""
    import os
    os.makedirs(out_dir, exist_ok=True)
    groups = []  # the tensors one model tensor becomes: itself, or its codes and its scale
    for name, v in sorted(model.state_dict().items()):
        if int8 and stores_int8(v.shape):
            codes, scale = quantize_rows_int8(v)
            groups.append({name: codes, name + INT8_SCALE_SUFFIX: scale})
        else:
            groups.append({name: v.detach().to(dtype).cpu()})
    shards, cur, size = [], {}, 0
    for group in groups:
        nbytes = sum(t.numel() * t.element_size() for t in group.values())
        if max_shard_bytes and cur and size + nbytes > max_shard_bytes:
            shards.append(cur)
            cur, size = {}, 0
        cur.update(group)
        size += nbytes
    shards.append(cur)
    if len(shards) == 1:
        names = ["model.safetensors"]
    else:
        names = [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    for name, shard in zip(names, shards):
        save_safetensors(os.path.join(out_dir, name), shard)
    model.cfg.weights = names
    with open(os.path.join(out_dir, "model.json"), "w") as f:
        f.write(model.cfg.to_json())
