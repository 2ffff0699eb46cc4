"""PyTorch's scaled_dot_product_attention forced to its cuDNN and its flash (FlashAttention-2) backend, bf16,
non-causal, at the shapes of `kvworld-cli bench-attention`, timed with CUDA events in the same device run: the
attention people run today, which `bench-attention --baseline FILE` sets its rows against.
Usage: python3 tools/bench/sdpa_baseline.py [--json OUT] [--iters N]
A backend this PyTorch or GPU lacks is reported and left out of the JSON (bench-attention then prints "-")."""
import argparse
import json

import torch
import torch.nn.functional as F

# The names bench-attention gives its shapes (eval/src/attention_bench.cpp), so that rows match.
SHAPES = [("default (3x128, 1024 q, 6144 k)", 3, 128, 1024, 6144),
          ("HY-WorldPlay-8B (16x128, 6240 q, 37440 k)", 16, 128, 6240, 37440)]


def backend_context(name):
    """A context manager that allows only backend `name` ("cudnn" or "flash"), or None if unavailable."""
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # PyTorch < 2.3: only flash can be forced
        if name != "flash":
            return None
        return lambda: torch.backends.cuda.sdp_kernel(enable_flash=True, enable_math=False,
                                                      enable_mem_efficient=False)
    member = {"cudnn": "CUDNN_ATTENTION", "flash": "FLASH_ATTENTION"}[name]
    if not hasattr(SDPBackend, member):
        return None
    return lambda: sdpa_kernel(getattr(SDPBackend, member))


def time_sdpa(ctx, heads, hd, nq, nk, iters):
    q = torch.randn(1, heads, nq, hd, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(1, heads, nk, hd, device="cuda", dtype=torch.bfloat16)
    v = torch.randn(1, heads, nk, hd, device="cuda", dtype=torch.bfloat16)
    with ctx():
        for _ in range(3):
            F.scaled_dot_product_attention(q, k, v)
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        for _ in range(iters):
            F.scaled_dot_product_attention(q, k, v)
        e1.record()
        torch.cuda.synchronize()
    return e0.elapsed_time(e1) / iters


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json")
    ap.add_argument("--iters", type=int, default=50)
    args = ap.parse_args()
    rows = []
    print(f"{'shape':44s} {'attention':24s} {'ms':>9s} {'TFLOP/s':>9s}   (PyTorch {torch.__version__}, "
          f"{torch.cuda.get_device_name()})")
    for name, heads, hd, nq, nk in SHAPES:
        for backend in ("cudnn", "flash"):
            ctx = backend_context(backend)
            label = f"PyTorch SDPA {backend} bf16"
            if ctx is None:
                print(f"{name:44s} {label:24s} not in this PyTorch")
                continue
            try:
                ms = time_sdpa(ctx, heads, hd, nq, nk, args.iters)
            except RuntimeError as e:  # e.g. no cuDNN kernel for this GPU or shape
                print(f"{name:44s} {label:24s} unavailable: {str(e).splitlines()[0][:80]}")
                continue
            tflops = 4.0 * nq * nk * hd * heads / (ms * 1e-3) / 1e12
            rows.append({"shape": name, "backend": backend, "ms": ms, "tflops": tflops,
                         "torch": torch.__version__, "gpu": torch.cuda.get_device_name()})
            print(f"{name:44s} {label:24s} {ms:9.3f} {tflops:9.1f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
