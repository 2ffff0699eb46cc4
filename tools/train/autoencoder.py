"""The latent autoencoder (docs/design.md "The latent space"): 256x256 RGB frames <-> a 32x32xC latent grid.

Module names are the safetensors tensor names the engine loads (prefix "autoencoder." inside a model):
encoder.conv_in, encoder.res0, encoder.down0, ..., decoder.conv_out, latent_mean, latent_std. Activations are
NCHW here (PyTorch's convolutions); the engine runs the same layers channels-last.

Shapes: frames [B, H, W, 3] in [-1, 1] (HWC, as the rest of the trainer); latents [B, h, w, C], h = H/8,
normalised per channel with latent_mean / latent_std.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List

import torch
import torch.nn as nn
import torch.nn.functional as F

DOWNSAMPLE = 8


@dataclass
class AutoencoderConfig:
    latent_channels: int = 0  # C; 0: no autoencoder
    channels: List[int] = field(default_factory=lambda: [32, 64, 128, 256])  # full, 1/2, 1/4, 1/8 resolution
    groups: int = 8
    latent_clip: float = 1.0  # the sampler clamps finished latents to +-latent_clip

    @property
    def enabled(self) -> bool:
        return self.latent_channels > 0

    @staticmethod
    def from_json(j) -> "AutoencoderConfig":
        if not j:
            return AutoencoderConfig()
        return AutoencoderConfig(int(j["latent_channels"]), [int(c) for c in j.get("channels", [32, 64, 128, 256])],
                                 int(j.get("groups", 8)), float(j.get("latent_clip", 1.0)))

    def to_json(self):
        return {"latent_channels": self.latent_channels, "channels": list(self.channels), "groups": self.groups,
                "latent_clip": self.latent_clip}


class ResBlock(nn.Module):
    """y = x + conv2(silu(norm2(conv1(silu(norm1(x))))))"""

    def __init__(self, c: int, groups: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, c, eps=1e-6)
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, c, eps=1e-6)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return x + self.conv2(F.silu(self.norm2(self.conv1(F.silu(self.norm1(x))))))


class Up(nn.Module):
    """Nearest 2x, then a 3x3 convolution (its weights are the module's: "up2.weight", "up2.bias")."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(cout, cin, 3, 3))
        self.bias = nn.Parameter(torch.empty(cout))
        conv = nn.Conv2d(cin, cout, 3, padding=1)  # PyTorch's default init
        with torch.no_grad():
            self.weight.copy_(conv.weight)
            self.bias.copy_(conv.bias)

    def forward(self, x):
        return F.conv2d(F.interpolate(x, scale_factor=2, mode="nearest"), self.weight, self.bias, padding=1)


class Encoder(nn.Module):
    def __init__(self, cfg: AutoencoderConfig):
        super().__init__()
        c0, c1, c2, c3 = cfg.channels
        g = cfg.groups
        self.conv_in = nn.Conv2d(3, c0, 3, padding=1)
        self.res0 = ResBlock(c0, g)
        self.down0 = nn.Conv2d(c0, c1, 3, stride=2, padding=1)
        self.res1 = ResBlock(c1, g)
        self.down1 = nn.Conv2d(c1, c2, 3, stride=2, padding=1)
        self.res2 = ResBlock(c2, g)
        self.down2 = nn.Conv2d(c2, c3, 3, stride=2, padding=1)
        self.res3a = ResBlock(c3, g)
        self.res3b = ResBlock(c3, g)
        self.norm_out = nn.GroupNorm(g, c3, eps=1e-6)
        self.conv_out = nn.Conv2d(c3, cfg.latent_channels, 3, padding=1)

    def forward(self, x):  # [B, 3, H, W] -> [B, C, H/8, W/8]
        x = self.res0(self.conv_in(x))
        x = self.res1(self.down0(x))
        x = self.res2(self.down1(x))
        x = self.res3b(self.res3a(self.down2(x)))
        return self.conv_out(F.silu(self.norm_out(x)))


class Decoder(nn.Module):
    def __init__(self, cfg: AutoencoderConfig):
        super().__init__()
        c0, c1, c2, c3 = cfg.channels
        g = cfg.groups
        self.conv_in = nn.Conv2d(cfg.latent_channels, c3, 3, padding=1)
        self.res3a = ResBlock(c3, g)
        self.res3b = ResBlock(c3, g)
        self.up2 = Up(c3, c2)
        self.res2 = ResBlock(c2, g)
        self.up1 = Up(c2, c1)
        self.res1 = ResBlock(c1, g)
        self.up0 = Up(c1, c0)
        self.res0 = ResBlock(c0, g)
        self.norm_out = nn.GroupNorm(g, c0, eps=1e-6)
        self.conv_out = nn.Conv2d(c0, 3, 3, padding=1)

    def forward(self, z):  # [B, C, h, w] -> [B, 3, 8h, 8w]
        x = self.res3b(self.res3a(self.conv_in(z)))
        x = self.res2(self.up2(x))
        x = self.res1(self.up1(x))
        x = self.res0(self.up0(x))
        return self.conv_out(F.silu(self.norm_out(x)))


class Autoencoder(nn.Module):
    def __init__(self, cfg: AutoencoderConfig):
        super().__init__()
        assert cfg.enabled and all(c % cfg.groups == 0 for c in cfg.channels)
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        # Per-channel statistics of the raw latents over the training frames (set after training).
        self.latent_mean = nn.Parameter(torch.zeros(cfg.latent_channels), requires_grad=False)
        self.latent_std = nn.Parameter(torch.ones(cfg.latent_channels), requires_grad=False)

    def encode_raw(self, frames: torch.Tensor) -> torch.Tensor:
        """[B, H, W, 3] in [-1, 1] -> raw latents [B, C, h, w]."""
        return self.encoder(frames.permute(0, 3, 1, 2))

    def decode_raw(self, z: torch.Tensor) -> torch.Tensor:
        """raw latents [B, C, h, w] -> frames [B, H, W, 3] (unclamped)."""
        return self.decoder(z).permute(0, 2, 3, 1)

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """[B, H, W, 3] -> normalised latents [B, h, w, C] (what the transformer sees)."""
        z = self.encode_raw(frames)
        mean = self.latent_mean.to(z.dtype).view(1, -1, 1, 1)
        std = self.latent_std.to(z.dtype).view(1, -1, 1, 1)
        return ((z - mean) / std).permute(0, 2, 3, 1)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """normalised latents [B, h, w, C] -> frames [B, H, W, 3] (unclamped)."""
        z = latents.permute(0, 3, 1, 2)
        z = z * self.latent_std.to(z.dtype).view(1, -1, 1, 1) + self.latent_mean.to(z.dtype).view(1, -1, 1, 1)
        return self.decode_raw(z)


def image_gradients(x: torch.Tensor):
    """x [B, H, W, 3] -> horizontal and vertical neighbour differences."""
    return x[:, :, 1:] - x[:, :, :-1], x[:, 1:] - x[:, :-1]


def reconstruction_loss(rec: torch.Tensor, target: torch.Tensor, grad_weight: float):
    """L1 + MSE on pixels, plus L1 on image gradients (weight grad_weight): a pixel loss alone rewards blur
    (shared/reference/latent-probe.md); the gradient term asks for the simulator's edges."""
    l1 = (rec - target).abs().mean()
    mse = (rec - target).pow(2).mean()
    loss = l1 + mse
    if grad_weight > 0:
        (rx, ry), (tx, ty) = image_gradients(rec), image_gradients(target)
        loss = loss + grad_weight * ((rx - tx).abs().mean() + (ry - ty).abs().mean())
    return loss, mse


def edge_energy(x: torch.Tensor) -> torch.Tensor:
    """Mean absolute horizontal + vertical luma gradient of frames [B, H, W, 3] in [-1, 1] (per batch)."""
    y = (0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2])
    return (y[:, :, 1:] - y[:, :, :-1]).abs().mean() + (y[:, 1:] - y[:, :-1]).abs().mean()
