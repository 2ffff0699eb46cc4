# How close each flow-source warp brings the previous chunk's last frame to the frames it is the source of
# (docs/experiments/2026-12-05-v2-steps-2060-2740.md). Usage: python3 flow_source_depth_floor_study.py DATASET
import sys, math, json, numpy as np, torch
sys.path.insert(0, "/work/main/tools/train")
import model as M
import train as T

data = sys.argv[1]
meta = json.load(open(f"{data}/meta.json"))
E, F, H, W = meta["episodes"], meta["frames"], meta["height"], meta["width"]
frames = np.fromfile(f"{data}/frames.u8", dtype=np.uint8).reshape(E, F, H, W, 3)
actions = np.fromfile(f"{data}/actions.f32", dtype=np.float32).reshape(E, F, 5)
poses = np.fromfile(f"{data}/poses.f32", dtype=np.float32).reshape(E, F, 5)
Fr, hfov = 4, 90.0
K = F // Fr

def warp(prev, views, eye, depth_floor):
    yaw, pf, pt, fwd, right = views
    if depth_floor is None:
        return M.warp_previous(prev, yaw, pf, pt, hfov, fwd, right, eye)
    # the same warp with every pixel at most `depth_floor` away: w = max(w_ground, 1 / depth_floor)
    B = prev.shape[0]; Frn = yaw.shape[1]
    deg = math.pi / 180.0
    focal = 0.5 * W / math.tan(0.5 * hfov * deg)
    limit = 85.0 * deg
    f64 = torch.float64
    u = ((torch.arange(W, dtype=f64) + 0.5 - 0.5 * W) / focal).view(1, 1, 1, W)
    hor_from = (0.5 * H + focal * torch.tan(pf.double() * deg)).view(B, 1, 1, 1)
    hor_to = (0.5 * H + focal * torch.tan(pt.double() * deg)).view(B, Frn, 1, 1)
    dy = torch.arange(H, dtype=f64).view(1, 1, H, 1) + 0.5 - hor_to
    w = torch.maximum(dy.clamp(min=0.0) / (eye * focal), torch.full_like(dy, 1.0 / depth_floor))
    px = u + right.double().view(B, Frn, 1, 1) * w
    pz = (1.0 + fwd.double().view(B, Frn, 1, 1) * w).clamp(min=0.05)
    px, pz = torch.broadcast_tensors(px, pz, torch.zeros(B, Frn, H, W, dtype=f64))[:2]
    a_s = (torch.atan2(px, pz) + yaw.double().view(B, Frn, 1, 1) * deg).clamp(-limit, limit)
    sx = (0.5 * W + focal * torch.tan(a_s)).float() - 0.5
    sy = (hor_from + dy / (torch.hypot(px, pz) * torch.cos(a_s))).float() - 0.5
    fx, fy = torch.floor(sx), torch.floor(sy)
    wx, wy = (sx - fx)[..., None], (sy - fy)[..., None]
    x0, y0 = fx.long(), fy.long()
    flat = prev.reshape(B, H * W, 3)
    def at(xi, yi):
        idx = (yi.clamp(0, H - 1) * W + xi.clamp(0, W - 1)).reshape(B, -1, 1).expand(-1, -1, 3)
        return torch.gather(flat, 1, idx).reshape(*xi.shape, 3)
    a, b, c, d = at(x0, y0), at(x0 + 1, y0), at(x0, y0 + 1), at(x0 + 1, y0 + 1)
    top, bottom = a + wx * (b - a), c + wx * (d - c)
    return top + wy * (bottom - top)

variants = [("repeat", None, None), ("turned", 0.0, None), ("turned+ground (shipped)", 2.5, None)] + \
           [(f"+ floor {d}", 2.5, float(d)) for d in (8, 16, 32, 64, 128)]
# per variant, per frame index, per class: squared error sums and counts
res = {v[0]: {cls: np.zeros((Fr, 2)) for cls in ("forward", "back", "strafe", "standing", "turning", "all")} for v in variants}
cam = torch.from_numpy(poses)
views_all = T.source_views(cam, Fr)  # each [E, K-1, Fr] / [E, K-1]
for e0 in range(0, E, 20):
    sl = slice(e0, min(E, e0 + 20))
    x = torch.from_numpy(frames[sl]).float()  # [B, F, H, W, 3]
    B = x.shape[0]
    for c in range(1, K):
        prev = x[:, c * Fr - 1]
        tgt = x[:, c * Fr:(c + 1) * Fr]
        v = tuple(t[sl][:, c - 1] for t in views_all)
        act = actions[sl, c * Fr:(c + 1) * Fr]  # [B, Fr, 5]
        # each frame's class from its chunk's accumulated command so far (the source is f+1 frames back)
        for name, eye, floor in variants:
            if name == "repeat":
                out = prev[:, None].expand_as(tgt)
            else:
                out = warp(prev, v, eye if eye else 0.0, floor) if eye else M.warp_previous(prev, *v[:3], hfov)
            se = ((out - tgt) ** 2).mean(dim=(2, 3, 4)).numpy()  # [B, Fr]
            for b in range(B):
                for f in range(Fr):
                    a = act[b, :f + 1].mean(0)
                    turning = abs(a[3]) > 0.5 or abs(a[4]) > 0.5
                    if turning: cls = "turning"
                    elif a[0] > 0.5: cls = "forward"
                    elif a[0] < -0.5: cls = "back"
                    elif abs(a[1]) > 0.5: cls = "strafe"
                    elif np.abs(a[:2]).max() < 0.1: cls = "standing"
                    else: cls = None
                    for k in ([cls] if cls else []) + ["all"]:
                        res[name][k][f] += (se[b, f], 1)
    print(f"episodes {e0}..{sl.stop}", file=sys.stderr, flush=True)

def psnr(mse): return 10 * math.log10(255 ** 2 / max(mse, 1e-9))
for cls in ("forward", "back", "strafe", "turning", "standing", "all"):
    n = int(res["repeat"][cls][:, 1].sum())
    print(f"\n{cls} ({n} frames): PSNR of the source against the frame, by frame in the chunk (pooled MSE)")
    for name, _, _ in variants:
        r = res[name][cls]
        cells = "  ".join(f"f{f}: {psnr(r[f,0]/max(r[f,1],1)):6.2f}" for f in range(Fr))
        tot = psnr(r[:, 0].sum() / max(r[:, 1].sum(), 1))
        print(f"  {name:26s} {cells}   all {tot:6.2f}")
