// kvworld-cli memory: plan KV-cache memory for our model or a peer preset at any format.
#include <cstdio>
#include <nlohmann/json.hpp>
#include <tuple>

#include "cli_common.h"
#include "kvworld/fileio.h"
#include "kvworld/planner.h"

namespace kvw::cli {

using json = nlohmann::json;

int run_memory(const std::string& model_dir, const std::string& config_path, const std::string& preset,
               bool all, const std::string& bits_list, const std::string& groups_list,
               const std::string& layout, const std::string& resolution, double budget_gb,
               const std::string& json_out) {
    std::vector<PeerModel> models;
    if (!model_dir.empty() || !config_path.empty()) {
        const ModelConfig cfg =
            load_model_config(config_path.empty() ? std::filesystem::path(model_dir) / "model.json"
                                                  : std::filesystem::path(config_path));
        models.push_back(peer_from_config(cfg, parameter_count(cfg) * 2 / 1e9));
    }
    if (!preset.empty() || all) {
        const std::vector<PeerModel> presets = load_peer_presets(default_presets_dir());
        bool found = false;
        for (const PeerModel& p : presets)
            if (all || p.id == preset) {
                models.push_back(p);
                found = true;
            }
        if (!found) {
            std::string names;
            for (const PeerModel& p : presets) names += " " + p.id;
            throw Error("unknown preset \"" + preset + "\"; presets:" + names);
        }
    }
    if (models.empty()) throw Error("give --model DIR, --config FILE, --preset NAME or --all-presets");
    int height = 0, width = 0;  // 0: each model's native resolution
    if (!resolution.empty()) std::tie(height, width) = parse_resolution(resolution, "resolution");
    const std::vector<int> bits = parse_int_list(bits_list, "bits", {16, 8, 4, 2}),
                           groups = parse_int_list(groups_list, "groups", {32, 64, 128});
    const KeyLayout kl = parse_key_layout(layout);
    json out = json::array();
    for (const PeerModel& m : models) {
        const int h = height ? height : m.height, w = width ? width : m.width;
        // The resolution against this model (below one token, or beyond the planner's range) is an error of
        // the command, not of one format: checked at BF16, which every head size takes.
        try {
            (void)plan_memory(m, CacheSettings{}, h, w, budget_gb * 1e9);
        } catch (const Error& e) {
            throw Error(std::string("--resolution: ") + e.what());
        }
        std::printf(
            "\n%s: %d layers, %d KV heads x %d, %lld tokens per latent frame at %dx%d, chunk %d / context %d "
            "latent frames%s\n",
            m.name.c_str(), m.layers, m.kv_heads, m.head_dim,
            static_cast<long long>(m.tokens_per_latent_frame(h, w)), h, w, m.chunk_latent_frames,
            m.context_latent_frames, m.kv_branches > 1 ? ", 2 cached branches" : "");
        std::printf("  %-24s %9s %12s %12s %11s %13s", "format", "bits/elem", "per chunk", "context",
                    "s per GB", "attn scratch");
        if (budget_gb > 0) std::printf(" %14s", ("s in " + format_bytes(budget_gb * 1e9)).c_str());
        std::printf("\n");
        for (int b : bits)
            for (int g : (b == 16 ? std::vector<int>{64} : groups)) {
                const CacheSettings s{b, b, g, b == 16 ? KeyLayout::Token : kl, Correction::Taylor};
                PlanRow r;
                try {
                    r = plan_memory(m, s, h, w, budget_gb * 1e9);
                } catch (const Error& e) {
                    std::printf("  %-24s (%s)\n", s.label().c_str(), e.what());
                    continue;
                }
                std::string label = b == 16 ? "BF16"
                                            : "INT" + std::to_string(b) + " g" + std::to_string(g) +
                                                  (kl == KeyLayout::Channel ? " kchan" : "");
                std::printf("  %-24s %9.2f %12s %12s %11.1f %13s", label.c_str(), r.bits_per_element,
                            format_bytes(static_cast<double>(r.chunk_bytes)).c_str(),
                            format_bytes(static_cast<double>(r.context_bytes)).c_str(), r.seconds_per_gb,
                            format_bytes(static_cast<double>(r.attention_scratch_bytes)).c_str());
                if (budget_gb > 0) std::printf(" %14.1f", r.seconds_fit);
                std::printf("\n");
                out.push_back({{"model", m.id},
                               {"format", label},
                               {"bits", b},
                               {"group", g},
                               {"height", h},
                               {"width", w},
                               {"bits_per_element", r.bits_per_element},
                               {"chunk_bytes", r.chunk_bytes},
                               {"context_bytes", r.context_bytes},
                               {"seconds_per_gb", r.seconds_per_gb},
                               {"seconds_fit", r.seconds_fit},
                               {"attention_scratch_bytes", r.attention_scratch_bytes},
                               {"weights_gb", m.weights_gb}});
            }
    }
    if (!json_out.empty()) write_file_atomic(json_out, out.dump(1) + "\n");
    return 0;
}

}  // namespace kvw::cli
