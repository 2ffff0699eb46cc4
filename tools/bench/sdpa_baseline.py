"""PyTorch's scaled_dot_product_attention (flash backend, bf16) at the shapes of `kvworld-cli
bench-attention`, timed with CUDA events in the same device run: the baseline of the README's table.
Usage: python3 tools/bench/sdpa_baseline.py [--json OUT]"""
import argparse
import json

import torch
import torch.nn.functional as F

SHAPES = [("default (3x128, 1024 q, 6144 k)", 3, 128, 1024, 6144),
          ("HY-WorldPlay-8B (16x128, 6240 q, 37440 k)", 16, 128, 6240, 37440)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json")
    ap.add_argument("--iters", type=int, default=50)
    args = ap.parse_args()
    rows = []
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
        ctx = lambda: sdpa_kernel(SDPBackend.FLASH_ATTENTION)  # noqa: E731
    except ImportError:
        ctx = lambda: torch.backends.cuda.sdp_kernel(enable_flash=True, enable_math=False, enable_mem_efficient=False)  # noqa: E731
    for name, heads, hd, nq, nk in SHAPES:
        q = torch.randn(1, heads, nq, hd, device="cuda", dtype=torch.bfloat16)
        k = torch.randn(1, heads, nk, hd, device="cuda", dtype=torch.bfloat16)
        v = torch.randn(1, heads, nk, hd, device="cuda", dtype=torch.bfloat16)
        with ctx():
            for _ in range(3):
                F.scaled_dot_product_attention(q, k, v)
            e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            e0.record()
            for _ in range(args.iters):
                F.scaled_dot_product_attention(q, k, v)
            e1.record()
            torch.cuda.synchronize()
        ms = e0.elapsed_time(e1) / args.iters
        tflops = 4.0 * nq * nk * hd * heads / (ms * 1e-3) / 1e12
        rows.append({"shape": name, "format": "PyTorch SDPA flash bf16", "ms": ms, "tflops": tflops,
                     "torch": torch.__version__})
        print(f"{name:44s} {'PyTorch SDPA flash bf16':24s} {ms:9.3f} {tflops:9.1f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
