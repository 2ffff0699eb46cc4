// The sections of eval.json, one per part of the evaluation (evaluation.h says what each measures), and
// eval.md made from them.
#pragma once

#include <memory>

#include "kvworld/eval/evaluation.h"
#include "report_json.h"

namespace kvw::eval {

// Quality (1): one chunk after a ground-truth context; adds "one_chunk", "one_chunk_actions",
// "one_chunk_walking" and "one_chunk_seams".
void add_one_chunk_report(json& report, const std::shared_ptr<Model>& model, const SessionParams& base,
                          const EvalOptions& options);

// Quality (2) and (3): long rollouts under the playing policy; adds "rollouts" (each window with its
// "seams"), "rollout_bar", "rollout_seams", "actions", "actions_patch_grid_removed" and "walking".
void add_long_rollout_report(json& report, const std::shared_ptr<Model>& model, const SessionParams& base,
                             const EvalOptions& options);

// The grid's settings after the BF16 row: bits (equal key and value bits unless full_grid) x groups x key
// layouts x corrections x the correction's noise-level limits; corrections other than off only where the keys
// are quantized, limits below 1 only where something is corrected.
std::vector<CacheSettings> grid_settings(const EvalOptions& options);

// The paired comparison of cache settings on identical contexts: the "paired" section.
json paired_report(const std::shared_ptr<Model>& model, const SessionParams& base,
                   const EvalOptions& options);

// The grid of cache settings against the BF16 cache: the "grid" section.
json cache_grid_report(const std::shared_ptr<Model>& model, const SessionParams& base,
                       const EvalOptions& options);

// The simulator alone on the long rollouts' kind of trace: the "world_change" section.
json world_change_report(const EvalOptions& options, const ModelConfig& config);

// Memory of places at several caches, recall on and off, against the simulator: the "revisit" section.
json revisit_report(const std::shared_ptr<Model>& model, const SessionParams& base,
                    const EvalOptions& options);

// Memory of places one chunk at a time (revisit episodes, the returning chunk with and without the earlier
// view of the place in its context): the "memory" section.
json memory_report(const std::shared_ptr<Model>& model, const SessionParams& base,
                   const EvalOptions& options);

// eval.md: the tables of whichever sections the report has.
std::string markdown_report(const json& report, const std::string& model_name, BackendKind backend);

}  // namespace kvw::eval
