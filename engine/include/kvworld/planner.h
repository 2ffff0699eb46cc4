// The memory planner: KV-cache bytes of any model (ours or a peer preset from config/models/) at any
// cache format, resolution and length, by the same exact accounting the engine's cache allocates.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "kvworld/config.h"
#include "kvworld/data_root.h"  // data_root(), which callers of the planner also use
#include "kvworld/kvworld.h"

namespace kvw {

struct PeerModel {
    std::string id, name;
    int layers = 0, hidden = 0, heads = 0, kv_heads = 0, head_dim = 0;
    int height = 0, width = 0;  // native resolution (pixels)
    int vae_spatial = 1, vae_temporal = 1, patch = 1;
    double fps = 16;                // video frames per second
    int chunk_latent_frames = 1;    // latent frames generated per chunk
    int context_latent_frames = 1;  // latent frames held in the KV cache for one chunk
    int kv_branches = 1;            // cached K/V copies (HY-WorldPlay keeps two positional branches)
    double weights_gb = 0;          // bf16 weights, for the card chart
    std::string notes, source;

    int64_t tokens_per_latent_frame(int h, int w) const;  // at resolution h x w
};

PeerModel parse_peer(const std::string& json_text, const std::string& source);
std::vector<PeerModel> load_peer_presets(const std::filesystem::path& dir);  // every *.json, sorted by id
PeerModel peer_from_config(const ModelConfig& config, double weights_gb);

struct PlanRow {
    CacheSettings settings;
    double bits_per_element = 0;          // codes + metadata, K and V together
    uint64_t bytes_per_latent_frame = 0;  // all layers, branches, K and V
    uint64_t chunk_bytes = 0;
    uint64_t context_bytes = 0;  // the cache one chunk attends to
    double seconds_per_gb = 0;   // seconds of video history per GB of cache
    double seconds_fit = 0;      // seconds of video whose whole history fits the budget (0 = no budget)
    // Beside the cache on CUDA: the composition path's bf16 rows of one layer's context and the current chunk
    // (queries, keys with the correction's columns, values; one cached branch), which the attention reads
    // (docs/design.md "The composition path"). Not part of the cache's bytes above.
    uint64_t attention_scratch_bytes = 0;
};

// `height`/`width` 0 = native. `budget_bytes` 0 = none. Throws kvw::Error for a format the head size does not
// take, a resolution below one token or beyond the planner's range, or a model of non-positive sizes.
PlanRow plan_memory(const PeerModel& model, const CacheSettings& settings, int height, int width,
                    double budget_bytes);

// The folder holding the peer presets: data_root()/config/models.
std::filesystem::path default_presets_dir();

}  // namespace kvw
