#!/usr/bin/env python3
"""The revisit page's per-world figures, from the committed outputs of `kvworld-cli eval --mode revisit`.

Each output prints one line per world as its two rollouts (recall on, then off) finish:
  revisit, LABEL: world I of N (seed S, P frames): model A dB, recall off B dB, simulator C dB
This script
  - pools the first 8, 16 and 32 worlds again (PSNR from the frame-weighted mean squared error, as eval pools)
    and gives the score (model - floor) / (ceiling - floor);
  - pairs worlds across caches: each quantized cache's model against BF16's model, and each cache's model
    against its own recall-off run, with 95% intervals from resampling worlds (4,000 draws, seeded);
  - pairs the app's 2-bit preset with the plain 2-bit cache;
  - checks that the 16-world call's per-world lines equal the 32-world call's first 16.
Usage: python3 revisit_per_world.py   (from any folder; numpy not needed)
"""
import math
import random
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
LINE = re.compile(r"revisit, (.*?): world (\d+) of \d+ \(seed (\d+), (\d+) frames\): model ([\d.\-]+) dB, "
                  r"recall off ([\d.\-]+) dB, simulator ([\d.\-]+) dB")


def parse(name):
    """{(label, seed): (world index, frames, model dB, recall-off dB, simulator dB)}"""
    rows = {}
    for line in (HERE / name).read_text().splitlines():
        m = LINE.match(line)
        if m:
            rows[(m[1], int(m[3]))] = (int(m[2]), int(m[4]), float(m[5]), float(m[6]), float(m[7]))
    return rows


def pooled(rows, i):
    frames = sum(r[1] for r in rows)
    return -10 * math.log10(sum(r[1] * 10 ** (-r[i] / 10) for r in rows) / frames)


def interval(values):
    rng = random.Random(1)
    means = sorted(sum(rng.choice(values) for _ in values) / len(values) for _ in range(4000))
    return sum(values) / len(values), means[100], means[3899]


bf16 = parse("revisit_bf16_32worlds_h100.txt")
quantized = parse("revisit_int4_int2_32worlds_h100.txt")
first16 = parse("revisit_int4_int2_16worlds_h100.txt")
# the app's 2-bit preset (Hadamard-rotated keys, the correction below t = 0.75), run in a later session
preset = parse("revisit_int2_rotated_correction075_32worlds_h100.txt")
both = {**bf16, **quantized, **preset}
labels = sorted({k[0] for k in both})
seeds = sorted({k[1] for k in bf16})

for label in labels:
    for n in (8, 16, 32):
        rows = [v for k, v in both.items() if k[0] == label and v[0] <= n]
        model, floor, ceiling = pooled(rows, 2), pooled(rows, 3), pooled(rows, 4)
        print(f"{label}, first {n} worlds: model {model:.2f}, recall off {floor:.2f}, simulator {ceiling:.2f} dB"
              f" -> {100 * (model - floor) / (ceiling - floor):.0f}% of the way")
for label in labels:
    own = [both[(label, s)][2] - both[(label, s)][3] for s in seeds]
    m, lo, hi = interval(own)
    print(f"{label}: model - recall off per world {m:+.2f} dB [{lo:+.2f}, {hi:+.2f}],"
          f" ahead in {sum(d > 0 for d in own)} of {len(own)}")
    if label != "BF16":
        d = [both[(label, s)][2] - bf16[("BF16", s)][2] for s in seeds]
        m, lo, hi = interval(d)
        print(f"{label}: model - BF16's model per world {m:+.2f} dB [{lo:+.2f}, {hi:+.2f}],"
              f" worse in {sum(x < 0 for x in d)} of {len(d)}")
PRESET, PLAIN = "K2/V2 g64 rotated taylor t<=0.75", "K2/V2 g64 taylor"
d = [both[(PRESET, s)][2] - both[(PLAIN, s)][2] for s in seeds]
m, lo, hi = interval(d)
print(f"{PRESET}: model - {PLAIN}'s model per world {m:+.2f} dB [{lo:+.2f}, {hi:+.2f}],"
      f" ahead in {sum(x > 0 for x in d)} of {len(d)}")
same = sum(1 for k, v in first16.items() if quantized.get(k) == v)
print(f"the 16-world call's per-world lines equal to the 32-world call's: {same} of {len(first16)}")
