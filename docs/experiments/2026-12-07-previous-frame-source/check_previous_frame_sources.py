"""Checks train.py's previous_frame_sources before a training call spends minutes on it (run from the repository root on
the GPU machine, a few seconds): every frame's previous-frame source is the frame before it, moved by that one step.
1. Frames filled with their own index: frame g's source is the constant g - 1 whatever the cameras.
2. Random frames and cameras: frame g's source equals model.warp_previous of frame g - 1 with the view change
   source_views gives for the two cameras alone."""
import sys

import torch

sys.path.insert(0, "tools/train")
import model as M  # noqa: E402
import train as T  # noqa: E402

cfg = M.ModelConfig.from_json(open("config/model-v2.json").read())
B, K, Fr, H, W, C = 2, 3, cfg.chunk_frames, 32, 32, 8
g = torch.Generator().manual_seed(0)
cam = torch.zeros(B, K * Fr, 5)
cam[..., 0] = torch.cumsum(torch.randn(B, K * Fr, generator=g) * 0.3, 1)
cam[..., 2] = torch.cumsum(torch.randn(B, K * Fr, generator=g) * 0.3, 1)
cam[..., 3] = torch.cumsum(torch.randn(B, K * Fr, generator=g) * 3.0, 1)
cam[..., 4] = torch.randn(B, K * Fr, generator=g) * 2.0

index = torch.arange(K * Fr, dtype=torch.float32).view(1, K, Fr, 1, 1, 1).expand(B, K, Fr, H, W, C)
w = T.previous_frame_sources(index.contiguous(), cam, cfg)
want = index[:, 1:] - 1.0
assert w.shape == want.shape, (w.shape, want.shape)
err1 = (w - want).abs().max().item()
print(f"1. constant frames: max error {err1:.2e}")
assert err1 < 1e-4

x = torch.randn(B, K, Fr, H, W, C, generator=g)
w = T.previous_frame_sources(x, cam, cfg)
flat = x.reshape(B, K * Fr, H, W, C)
err2 = 0.0
for frame in range(Fr, K * Fr):
    views = T.source_views(cam[:, frame - 1:frame + 1], 1)  # one chunk of one frame, then the next
    one = T.warped_sources(flat[:, frame - 1:frame], views, cfg)[:, 0, 0]
    err2 = max(err2, (w[:, frame // Fr - 1, frame % Fr] - one).abs().max().item())
print(f"2. random frames and cameras: max difference from a one-step warp {err2:.2e}")
assert err2 < 1e-5
moved = (w[:, :, 1:] - x[:, 1:, :-1]).abs().mean().item()
print(f"   (the warp moves them: mean change {moved:.3f})")
assert moved > 1e-3
print("previous_frame_sources: OK")
