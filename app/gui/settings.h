// What the user sets in the UI, and how it becomes engine parameters.
//
// Every pane runs the same world: one set of context, sampler and seed settings (SharedSettings) drives all
// sessions so that A/B panes differ only in their cache format. The main view has one pane; the A/B view
// has 2-4, the first optionally a BF16 reference.
#pragma once

#include <array>
#include <string>
#include <vector>

#include "kvworld/kvworld.h"

namespace kvw::gui {

// The correction's noise-level limit the app's corrected 2-bit caches use, calibrated on training worlds (the
// best of 1, 0.75, 0.5, 0.25 in the paired evaluation of INT2 g128 on worlds 100000 + 7919 i; docs/quality.md
// "The correction on identical contexts").
inline constexpr float kBestCorrectionMaxT = 0.75f;

struct SharedSettings {
    ContextSettings context;
    SamplerSettings sampler;
    uint64_t seed = 0;  // noise seed

    bool operator==(const SharedSettings&) const = default;
};

struct AbSettings {
    static constexpr int kMaxPanes = 4;
    bool enabled = false;
    int panes = 3;          // 2..4, the reference included
    bool reference = true;  // the first pane is a BF16 cache: PSNR and stolen mass are measured against it
    // With the reference: each compared cache also generates every chunk from the reference's own context
    // (one more chunk per pane; worker.h, Step::same_context), so PSNR and stolen mass are also measured on
    // an identical context (the paired evaluation's measure), beside the drifting rollouts'.
    bool same_context = true;
    std::array<CacheSettings, kMaxPanes> cache;  // compared panes in order (the reference is not stored here)

    static AbSettings defaults();
    int compared_panes() const { return reference ? panes - 1 : panes; }
    bool operator==(const AbSettings&) const = default;
};

struct PaneSpec {
    CacheSettings cache;  // as configured
    bool reference = false;
    bool operator==(const PaneSpec&) const = default;
};

// The panes the worker runs: the main cache alone, or the A/B set.
std::vector<PaneSpec> pane_specs(const CacheSettings& main_cache, const AbSettings& ab);

// The correction has one state: each cache's own mode. It acts on quantized keys only, so a cache with
// BF16 keys runs (and is shown) without it, whatever mode was last chosen for it.
bool correction_applies(const CacheSettings& cache);
CacheSettings effective_cache(const CacheSettings& configured);

SessionParams session_params(const PaneSpec& pane, const SharedSettings& shared, bool keep_device_frames);

// The presets of the Esc menu: what people compare first.
struct CachePreset {
    const char* name;
    CacheSettings cache;
};
const std::vector<CachePreset>& cache_presets();  // BF16, INT4, INT2 rotated + correction (the best 2-bit)

// A seed people can read and type back (9 digits) from std::random_device.
uint64_t random_seed();

// Short label for a pane: CacheSettings::label() with "reference" for the BF16 reference.
std::string pane_label(const PaneSpec& pane);
// A cache label (CacheSettings::label()) and shorter forms of it, longest first, for places too narrow for
// the whole: "K2/V2 g64 rotated taylor t<=0.75", "K2/V2 g64 rot taylor t<=.75", "K2/V2 rot taylor t<=.75".
std::vector<std::string> label_forms(const std::string& label);

}  // namespace kvw::gui
