#include "context_policy.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <string>

#include "kvworld/error.h"

namespace kvw {

namespace {

struct Basis {
    float fx, fy, fz;  // forward
    float rx, rz;      // right (horizontal)
    float ux, uy, uz;  // up
};
Basis camera_basis(const CameraPose& p) {
    const float yaw = p.yaw_deg * kDegToRad, pitch = p.pitch_deg * kDegToRad;
    const float sy = std::sin(yaw), cy = std::cos(yaw), sp = std::sin(pitch), cp = std::cos(pitch);
    return Basis{sy * cp, sp, cy * cp, cy, -sy, -sy * sp, cp, -cy * sp};
}

}  // namespace

float fov_overlap(const CameraPose& a, const CameraPose& b, const MotionParams& motion) {
    // Square frames: the vertical field of view equals the horizontal one.
    const float half = 0.5f * motion.hfov_deg * kDegToRad;
    const float tan_half = std::tan(half);
    constexpr int kGrid = 5;
    constexpr float kDepths[] = {2.f, 5.f, 10.f, 20.f};
    constexpr float kMaxDepth = 25.f;
    const Basis ba = camera_basis(a), bb = camera_basis(b);
    int seen = 0, total = 0;
    for (int iy = 0; iy < kGrid; ++iy)
        for (int ix = 0; ix < kGrid; ++ix) {
            // Image-plane coordinates in [-tan_half, tan_half].
            const float px = tan_half * (2.f * (ix + 0.5f) / kGrid - 1.f);
            const float py = tan_half * (2.f * (iy + 0.5f) / kGrid - 1.f);
            for (float depth : kDepths) {
                const float wx = a.x + depth * (ba.fx + px * ba.rx + py * ba.ux);
                const float wy = a.y + depth * (ba.fy + py * ba.uy);
                const float wz = a.z + depth * (ba.fz + px * ba.rz + py * ba.uz);
                const float dx = wx - b.x, dy = wy - b.y, dz = wz - b.z;
                const float zf = dx * bb.fx + dy * bb.fy + dz * bb.fz;
                ++total;
                if (zf <= 0.05f || zf > kMaxDepth) continue;
                const float xr = dx * bb.rx + dz * bb.rz;
                const float yu = dx * bb.ux + dy * bb.uy + dz * bb.uz;
                if (std::fabs(xr) <= tan_half * zf && std::fabs(yu) <= tan_half * zf) ++seen;
            }
        }
    return static_cast<float>(seen) / static_cast<float>(total);
}

ContextChoice choose_context(int current, const std::vector<StoredChunk>& stored, const CameraPose& pose,
                             const ContextSettings& s, const MotionParams& motion) {
    ContextChoice choice;
    const int window_start = current - s.window;
    std::vector<const StoredChunk*> candidates;
    for (const StoredChunk& c : stored) {
        if (c.index >= current) continue;
        if (c.index >= window_start)
            choice.window.push_back(c.index);
        else
            candidates.push_back(&c);
    }
    int slots = s.recall;
    if (slots > 0 && s.recall_first && !candidates.empty() && candidates.front()->index == 0) {
        choice.recalled.push_back(0);
        candidates.erase(candidates.begin());
        --slots;
    }
    if (slots > 0 && !candidates.empty()) {
        std::vector<std::pair<float, int>> scored;
        for (const StoredChunk* c : candidates)
            scored.emplace_back(fov_overlap(pose, c->pose, motion), c->index);
        // Highest overlap first; ties go to the older chunk.
        std::sort(scored.begin(), scored.end(), [](const auto& x, const auto& y) {
            return x.first != y.first ? x.first > y.first : x.second < y.second;
        });
        for (int i = 0; i < slots && i < static_cast<int>(scored.size()); ++i)
            choice.recalled.push_back(scored[static_cast<size_t>(i)].second);
    }
    std::sort(choice.recalled.begin(), choice.recalled.end());
    choice.context = choice.recalled;
    choice.context.insert(choice.context.end(), choice.window.begin(), choice.window.end());
    return choice;
}

EvictionResult evict_for_budget(int current, std::vector<StoredChunk>& stored, const CameraPose& pose,
                                uint64_t new_bytes, const ContextSettings& s, const MotionParams& motion) {
    EvictionResult r;
    auto total = [&] {
        uint64_t t = 0;
        for (const StoredChunk& c : stored) t += c.bytes;
        return t;
    };
    const uint64_t budget = s.budget_bytes > 0 ? static_cast<uint64_t>(s.budget_bytes) : 0;
    if (budget && new_bytes > budget)
        throw Error("cache budget of " + std::to_string(budget) + " bytes cannot hold a single chunk (" +
                    std::to_string(new_bytes) + " bytes at these settings)");
    for (;;) {
        r.choice = choose_context(current, stored, pose, s, motion);
        if (!budget || total() + new_bytes <= budget) return r;
        const std::set<int> in_context(r.choice.context.begin(), r.choice.context.end());
        auto victim = stored.end();
        for (auto it = stored.begin(); it != stored.end(); ++it)
            if (!in_context.count(it->index) && !(s.recall_first && s.recall > 0 && it->index == 0)) {
                victim = it;
                break;
            }
        if (victim == stored.end())
            for (auto it = stored.begin(); it != stored.end(); ++it)
                if (it->index != 0) {
                    victim = it;
                    if (std::find(r.choice.window.begin(), r.choice.window.end(), it->index) !=
                        r.choice.window.end())
                        r.window_truncated = true;
                    break;
                }
        if (victim == stored.end()) victim = stored.begin();
        r.evicted.push_back(victim->index);
        stored.erase(victim);
    }
}

}  // namespace kvw
