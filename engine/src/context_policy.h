// Which cached chunks the current chunk attends to (window + recall by field-of-view overlap) and which
// chunks a byte budget evicts (docs/design.md "Context and temporal reframing"). Pure logic: the
// training pipeline (tools/train/context.py) implements the same rules, and tests pin them down.
#pragma once

#include <cstdint>
#include <vector>

#include "kvworld/actions.h"
#include "kvworld/kvworld.h"

namespace kvw {

struct StoredChunk {
    int index = 0;
    CameraPose pose;     // pose at the chunk's last frame
    uint64_t bytes = 0;  // cache bytes of the chunk (all layers)
};

struct ContextChoice {
    std::vector<int> context;  // chunk indices in slot order: recalled (oldest first), then the window
    std::vector<int> recalled;
    std::vector<int> window;
};

// Fraction of sample points in a's view frustum (a fixed grid of directions × depths) that b also sees.
float fov_overlap(const CameraPose& a, const CameraPose& b, const MotionParams& motion);

// `stored` sorted by index; `current` is the index of the chunk about to be generated, `pose` its pose.
ContextChoice choose_context(int current, const std::vector<StoredChunk>& stored, const CameraPose& pose,
                             const ContextSettings& settings, const MotionParams& motion);

struct EvictionResult {
    std::vector<int> evicted;  // chunk indices, in eviction order
    bool window_truncated = false;
    ContextChoice choice;  // the context after eviction
};

// Evicts (from `stored`, in place) until stored bytes + new_chunk_bytes fit the budget (0 = unlimited).
// Order: chunks outside the coming context (and not chunk 0 when recall_first), oldest first; then the
// context's oldest chunk other than chunk 0; then chunk 0. Throws kvw::Error if even an empty cache
// cannot hold the new chunk.
EvictionResult evict_for_budget(int current, std::vector<StoredChunk>& stored, const CameraPose& pose,
                                uint64_t new_chunk_bytes, const ContextSettings& settings,
                                const MotionParams& motion);

}  // namespace kvw
