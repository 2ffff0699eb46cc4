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

// The shipped default model (assets/models/default), or the tiny model when the default is missing.
// `note` says which and why.
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

// Image quality metrics (RGB8, same size).
double psnr(const Image& a, const Image& b);           // of 8-bit RGB; 99 dB (the cap) for identical images
double ssim(const Image& a, const Image& b);           // mean SSIM of luma, 11x11 Gaussian window (sigma 1.5)
double squared_error(const Image& a, const Image& b);  // summed over every channel value

// Camera motion estimated from two consecutive frames (the evaluation's action-following measure), on luma
// with any pattern locked to a `grid`-pixel grid removed first (grid 0: none). Why: the model draws its
// frames in 8x8 patches, and seams or shading that stay at the same place on the screen pull a matcher
// towards "no motion" (seams darkened by 15% on the simulator's frames measured a turn at 65-78% of its true
// rate and 44% of the forward zoom; with the pattern removed, 100% of both). The same estimator runs on the
// simulator's frames, which it leaves as they are. Horizontal shift in pixels (+ = content moved right; a yaw
// to the right moves content left): the best integer shift of the central band, refined with a parabola.
double estimate_shift(const Image& a, const Image& b, int grid);
// Zoom about the image centre (> 1: content grows, the camera moved forward), in steps of 0.002.
double estimate_zoom(const Image& a, const Image& b, int grid);
// Luma [height * width] divided by the frame's mean grid-cell pattern relative to its mean (the average of
// its grid x grid cells, over that average's mean): what darkens or brightens every cell of the grid at the
// same place, such as patch seams, is gone; a frame without such a pattern keeps its luma up to sampling
// noise.
std::vector<double> luma_without_grid_pattern(const Image& img, int grid);

// PSNR of a set of frame pairs from their pooled squared error. Why: a mean of per-pair (or per-trace) dB is
// dominated by a pair of identical frames, whose PSNR is the 99 dB cap — e.g. a held-out trace whose camera
// stands still, where repeating the last frame is exact. Throws kvw::Error on a size mismatch or when empty.
class PooledPsnr {
  public:
    void add(const Image& a, const Image& b);
    double mse() const;
    double psnr() const;  // 99 dB when every pair is identical, like psnr()

  private:
    double squared_error_ = 0, values_ = 0;
};

}  // namespace kvw::frontend
