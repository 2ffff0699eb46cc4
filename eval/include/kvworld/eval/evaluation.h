// The evaluation behind kvworld-cli eval: the quality table and the quality bar on held-out worlds.
//
// grid    : every cache setting of a grid against the unquantized (BF16) cache on the same traces, seeds and
//           actions: PSNR/SSIM against the reference output and against the simulator's ground truth,
//           Delta P_S per layer, effective bits per element, cache bytes.
// quality : (1) one chunk after a ground-truth context, PSNR vs ground truth and vs repeating the last
//           context frame; (2) long rollouts under the playing policy: mean, contrast and edge energy of the
//           frames against the simulator's over the same trace (rollout_bar.h); (3) actions followed: camera
//           motion estimated from the generated frames (horizontal shift for yaw, zoom for forward) against
//           the commanded motion (motion.h), and walking forward, back and to the sides against the
//           simulator's own walking on the same frame pairs (walking.h). Both (1) and (2) also report the
//           seam index, how visible the token grid is against the simulator's frames (token_grid.h). Bar 2 is
//           read per 30-s window (strict) and over the whole trace, and scored for a baseline too: a model
//           that kept its start context's statistics forever (what the simulator's scene change alone costs a
//           model that does not invent the terrain it walks into).
// world-change : the simulator alone, over many more traces of the same kind: how often its own windows leave
//           the bar's tolerance of its start context (the scene-keeping baseline over more worlds). With
//           resample_pool, each trace's actions are also replayed in other worlds, and those whose start
//           looks most like the trace's are scored against it as the bar scores the model: what a model that
//           invented the unseen world as faithfully as the simulator itself, but not the same world, would
//           score.
// paired  : every setting of the grid (and each correction at each noise-level limit) forked from one BF16
//           session that was given `paired_context_chunks` chunks of the simulator's frames: identical
//           context, positions and noise, so differences are the cache's alone. One chunk and a rollout of
//           `paired_chunks` against the BF16 fork (PSNR with intervals over worlds, the gain of each
//           correction over the same format uncorrected) and Delta P_S per layer and denoising step.
// revisit : memory of places (revisit.h): `traces` long rollouts at the revisit_bits caches, with recall on
//           and off, each frame that comes back to a pose seen at least 10 s earlier against that earlier
//           frame; the simulator's frames give the ceiling, recall off the floor. And a survey of how often
//           the policy's traces revisit, from their poses alone.
// memory  : the same question one chunk at a time, free of rollout drift: 4 x `traces` revisit episodes of
// the
//           simulator (the start, the earlier view of a place >= 10 s before the return, the three chunks
//           before it) given as ground truth at each revisit_bits cache; the returning chunk generated from
//           forks of that cache with the earlier view in its context, without it, and with recall off,
//           against the simulator's (PSNR with intervals over worlds, the view's gain paired).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "kvworld/kvworld.h"

namespace kvw::eval {

enum class EvalMode { Grid, Quality, All, WorldChange, Revisit, Paired, Memory };  // All: grid and quality
// "grid" | "quality" | "all" | "world-change" | "revisit" | "paired" | "memory"
EvalMode parse_eval_mode(const std::string& name);

struct EvalOptions {
    std::filesystem::path out_dir;  // eval.json and eval.md are written here (created when missing)
    EvalMode mode = EvalMode::All;
    // Held-out traces: the grid's; quality: 4x as many one-chunk worlds, half as many long rollouts (at least
    // one); world-change and revisit: long traces (revisit: the quality mode's long rollouts are its first).
    int traces = 4;
    int frames = 48;         // generated frames per grid trace
    int long_frames = 1920;  // frames of a long rollout (2 minutes at 16 fps)
    // The grid: every bits x groups x key layouts x corrections (corrections only with quantized keys).
    std::vector<int> bits = {8, 4, 2};
    std::vector<int> groups = {32, 64, 128};
    std::vector<KeyLayout> key_layouts = {KeyLayout::Token, KeyLayout::Channel};
    std::vector<Correction> corrections = {Correction::Off, Correction::Taylor, Correction::Exact};
    // The correction's noise-level limits (CacheSettings::correction_max_t) each correction is run at
    // (revisit and memory: one value, for their quantized caches).
    std::vector<float> correction_max_ts = {1.f};
    // What codes stand for (CacheSettings::reconstruction); calibrated only where a tensor has 2 or 4 bits
    // and the correction is off or taylor.
    std::vector<Reconstruction> reconstructions = {Reconstruction::Midpoint};
    // Whether codes are rotated (CacheSettings::rotated); only where something is stored per token, not with
    // the exact correction on rotated keys nor with calibrated levels (revisit and memory: one value, for
    // their quantized caches).
    std::vector<bool> rotations = {false};
    bool full_grid = false;        // every key bits x value bits pair, not only equal bits
    uint64_t world_base = 900000;  // first held-out world seed (training uses 1000..)
    // world-change only: each long trace's actions replayed in resample_pool other worlds (seeds
    // resample_base + 7919 j); the resample_nearest whose start context looks most like the trace's, and as
    // many drawn at random, are scored against the trace's own windows. 0: off.
    int resample_pool = 0;
    int resample_nearest = 8;
    uint64_t resample_base = 0;  // 0: world_base + 50,000,000
    // revisit and memory: the caches compared, by bits (16: BF16; 8, 4, 2: keys and values at those bits,
    // groups of 64 per token, the Taylor correction at t <= the one value of correction_max_ts, codes rotated
    // as the one value of rotations says; none: the simulator's side alone); revisit only: the traces of the
    // revisit survey (0: none).
    std::vector<int> revisit_bits = {16, 4, 2};
    int revisit_survey = 32;
    // paired only: chunks of the simulator's frames given to the BF16 session that every setting forks from,
    // and chunks each setting then generates (the first: one chunk after a ground-truth context).
    int paired_context_chunks = 4;
    int paired_chunks = 8;
    // quality, revisit and paired: worlds whose sessions run at once, each on its own thread (0: one). The
    // figures do not depend on it. Not yet 4 by default on CUDA: the first GPU run at 4 (2026-12-05) failed,
    // one session's graph capture invalidated by another's release of memory (fixed since; GpuConcurrent
    // tests).
    int concurrent = 0;
};

// Throws kvw::Error when the options do not go together (before any model is loaded).
void check_eval_options(const EvalOptions& options);

// Runs the evaluation of `options.mode` with `model`, printing progress lines, and writes
// options.out_dir/eval.json and eval.md. `base`: the session parameters every rollout starts from (context,
// sampler); each comparison sets its own cache settings and the trace's noise seed.
void run_eval(const std::shared_ptr<Model>& model, const SessionParams& base, const EvalOptions& options);

}  // namespace kvw::eval
