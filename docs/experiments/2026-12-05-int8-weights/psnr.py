#!/usr/bin/env python3
"""PSNR (pooled MSE over frames, 8-bit RGB) of the int8 run against the bf16 run, and of each against the
simulator, per chunk of 4 generated frames. Frames decoded to raw RGB by ffmpeg (no numpy here)."""
import glob, math, os, subprocess, sys

G = "/tmp/kvw-int8-gen"
CONTEXT, CHUNK = 4, 4

def frames(folder):
    files = sorted(glob.glob(os.path.join(folder, "*.png")))
    out = []
    for f in files:
        raw = subprocess.run(["ffmpeg", "-v", "error", "-i", f, "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                             check=True, capture_output=True).stdout
        out.append(raw)
    return out

def psnr(mse):
    return 99.0 if mse <= 0 else 10 * math.log10(255 * 255 / mse)

def mse(a, b):
    assert len(a) == len(b)
    return sum((x - y) * (x - y) for x, y in zip(a, b)) / len(a)

rows = []
for trace in sorted(glob.glob(f"{G}/trace_*.json")):
    w = trace.split("_")[-1][:-5]
    if not os.path.exists(f"{G}/int8_{w}/metrics.json"):
        continue
    b, q, gt = frames(f"{G}/bf16_{w}/frames"), frames(f"{G}/int8_{w}/frames"), frames(f"{G}/bf16_{w}/ground_truth")
    gen = range(CONTEXT, len(b))
    for c in range((len(b) - CONTEXT) // CHUNK):
        idx = list(gen)[c * CHUNK:(c + 1) * CHUNK]
        m_bq = sum(mse(b[i], q[i]) for i in idx) / len(idx)
        m_bg = sum(mse(b[i], gt[i]) for i in idx) / len(idx)
        m_qg = sum(mse(q[i], gt[i]) for i in idx) / len(idx)
        rows.append((w, c + 1, m_bq, m_bg, m_qg))
        print(f"world {w} chunk {c + 1}: int8 vs bf16 {psnr(m_bq):.2f} dB; vs simulator: bf16 {psnr(m_bg):.2f}, "
              f"int8 {psnr(m_qg):.2f} dB", flush=True)
for c in sorted({r[1] for r in rows}):
    sel = [r for r in rows if r[1] == c]
    avg = lambda k: sum(r[k] for r in sel) / len(sel)
    print(f"chunk {c}, {len(sel)} worlds (pooled MSE): int8 vs bf16 {psnr(avg(2)):.2f} dB; vs simulator: "
          f"bf16 {psnr(avg(3)):.2f}, int8 {psnr(avg(4)):.2f} dB")
