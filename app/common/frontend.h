// What the CLI and the GUI share on top of the engine: start contexts from traces (simulator or image),
// settings <-> JSON, metrics JSON, video writing through ffmpeg, and the default model location.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "kvworld/kvworld.h"
#include "kvworld/sim.h"
#include "kvworld/trace.h"

namespace kvw::frontend {

// The default model: the 256x256 latent model (assets/models/v2), else the smaller 128x128 pixel model
// (assets/models/default), else the tiny test model when neither is there. `note` says which and why.
std::filesystem::path default_model_dir(std::string* note = nullptr);

// The start context for `trace` at the model's resolution: the last chunk_frames of the trace's context
// frames, rendered by the simulator (or the trace's start image repeated), with their actions and poses.
struct StartContext {
    std::vector<Image> frames;
    std::vector<FrameAction> actions;
    std::vector<CameraPose> poses;
    int first_generated_frame = 0;  // index into trace.actions of the first generated frame
};
StartContext make_start_context(const Trace& trace, const ModelConfig& config,
                                const std::filesystem::path& trace_dir = {});

// Simulator parameters matching a model (resolution, motion units).
sim::SimParams sim_params_for(const ModelConfig& config);

std::string settings_json(const SessionParams& params);  // one JSON object
std::string chunk_metrics_json(const ChunkMetrics& m, int indent = -1);

// ffmpeg on PATH?
bool have_ffmpeg();
// Encodes numbered PNGs (pattern like "frame_%05d.png" inside dir) to an MP4 atomically. Returns false
// with `why` when ffmpeg is missing or fails (the PNGs remain either way).
bool encode_mp4(const std::filesystem::path& dir, const std::string& pattern, int fps, int start_number,
                const std::filesystem::path& out, std::string* why);

// A run's output folder as one unit. Everything is written into a fresh hidden folder beside `target`
// (`staging()`), which replaces the target only at commit(): an interrupted or failed run leaves an earlier
// output as it was, and a finished one never mixes its files with an earlier run's (old frames in the new
// video, an old video beside new metrics).
class OutputFolder {
  public:
    // Refuses, with kvw::Error naming the folder, a target that is not a folder, or one that holds anything
    // unless `overwrite` and it holds nothing but the entries a run writes (`run_entries`): what the user
    // made there is never replaced. Removes the staging folders of earlier runs that were killed.
    OutputFolder(const std::filesystem::path& target, bool overwrite, std::vector<std::string> run_entries);
    ~OutputFolder();  // removes the staging folder unless committed
    OutputFolder(const OutputFolder&) = delete;
    OutputFolder& operator=(const OutputFolder&) = delete;

    const std::filesystem::path& staging() const { return staging_; }
    const std::filesystem::path& target() const { return target_; }
    // Puts the staging folder in the target's place (exchanged in one rename where the file system can) and
    // removes the earlier output. Throws kvw::Error naming the target.
    void commit();

  private:
    void check_target() const;
    std::filesystem::path target_, staging_;
    bool overwrite_;
    std::vector<std::string> run_entries_;
    bool committed_ = false;
};

// Image quality (RGB8, same size): what the app's A/B meter shows. The evaluation's metrics (SSIM, PSNR
// pooled over frames, motion estimates) are the lab's (eval/include/kvworld/eval/image_metrics.h).
double psnr(const Image& a, const Image& b);           // of 8-bit RGB; 99 dB (the cap) for identical images
double squared_error(const Image& a, const Image& b);  // summed over every channel value
double psnr_of_mse(double mse);  // of a mean squared error of 8-bit values; the same cap

}  // namespace kvw::frontend
