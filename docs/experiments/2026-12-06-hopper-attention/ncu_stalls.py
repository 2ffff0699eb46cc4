#!/usr/bin/env python3
"""The warp-stall summary of an Nsight Compute source page (ncu --import R --page source --print-source sass --csv):
each stall reason's share of all samples, then the instructions with the most samples and the six instructions
before each (a stall at a barrier is charged to the instruction after it).
Usage: ncu_stalls.py ncu_hopper_v3_sass.csv[.gz] [top]"""
import csv, gzip, sys

path = sys.argv[1]
top = int(sys.argv[2]) if len(sys.argv) > 2 else 3
with (gzip.open(path, "rt") if path.endswith(".gz") else open(path)) as f:
    rows = list(csv.reader(f))
header = rows[1]  # rows[0] names the kernel
data = [r for r in rows[2:] if len(r) == len(header)]
col = {name: i for i, name in enumerate(header)}
reasons = [h for h in header if h.startswith("stall_") and "Not Issued" not in h]
samples = col["Warp Stall Sampling (All Samples)"]
num = lambda r, c: float(r[c] or 0)
total = {k: sum(num(r, col[k]) for r in data) for k in reasons}
all_samples = sum(total.values())
print(f"{rows[0][1]}: {all_samples:.0f} samples")
for k, v in sorted(total.items(), key=lambda kv: -kv[1])[:10]:
    print(f"  {k:<24} {100 * v / all_samples:5.1f}%")
for i in sorted(range(len(data)), key=lambda i: -num(data[i], samples))[:top]:
    print(f"{100 * num(data[i], samples) / all_samples:5.1f}% of samples at:")
    for j in range(max(0, i - 6), i + 1):
        print(f"    {num(data[j], samples):8.0f}  {data[j][col['Source']].strip()}")
