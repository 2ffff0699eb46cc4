// Action traces: what the GUI records and kvworld-cli replays (docs/design.md "Trace").
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "kvworld/actions.h"

namespace kvw {

struct Trace {
    static constexpr int kVersion = 1;
    int fps = 16;
    uint64_t world_seed = 0;
    uint64_t noise_seed = 0;
    CameraPose start_pose;
    int context_frames = 4;                  // leading actions rendered by the simulator as ground truth
    std::optional<MotionParams> motion;      // motion units when recorded (else the model's)
    std::optional<std::string> start_image;  // PNG used as the start context instead of the simulator
    std::string settings_json;               // cache settings when recorded (informational), may be empty
    std::string note;
    std::vector<FrameAction> actions;  // one per frame, context first

    int generated_frames() const { return static_cast<int>(actions.size()) - context_frames; }
};

Trace parse_trace(const std::string& json_text, const std::string& source);
Trace load_trace(const std::filesystem::path& path);
std::string trace_to_json(const Trace& trace);
void save_trace(const std::filesystem::path& path, const Trace& trace);  // atomic

// Dead-reckoned poses of every frame of the trace (no terrain): pose_f = integrate(pose_{f-1}, action_f).
std::vector<CameraPose> dead_reckon(const CameraPose& start, const std::vector<FrameAction>& actions,
                                    const MotionParams& motion);

}  // namespace kvw
