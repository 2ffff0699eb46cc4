// kvworld-cli eval: the quality table and the quality bar on held-out worlds. The flags and the model are the
// CLI's; the evaluation is the lab's library (eval/, kvworld/eval/evaluation.h says what each mode measures).
#include <cstdlib>

#include "cli_common.h"

namespace kvw::cli {

void EvalFlags::add_to(CLI::App* cmd) {
    cmd->add_option("--out", out_dir, "Output folder (eval.json, eval.md)")
        ->required()
        ->check(non_empty_path());
    cmd->add_option(
           "--mode", mode,
           "grid, quality, all (both), world-change (the simulator alone: its windows against its "
           "start), revisit (memory of places: revisited poses against their earlier frames), "
           "paired (the grid's settings forked from one BF16 context: the cache's differences alone), or "
           "memory (revisit episodes: the returning chunk with and without the earlier view in its context)")
        ->check(CLI::IsMember({"grid", "quality", "all", "world-change", "revisit", "paired", "memory"}));
    cmd->add_option("--traces", options.traces,
                    "Held-out traces: the grid's; quality: 4x one-chunk worlds, /2 long rollouts; "
                    "world-change and revisit: long traces; memory: 4x revisit episodes")
        ->check(CLI::Range(1, 1000));
    cmd->add_option("--frames", options.frames, "Generated frames per grid trace")
        ->check(CLI::Range(1, 100000));
    cmd->add_option("--long-frames", options.long_frames,
                    "Frames of the long rollouts (1920 = 2 minutes at 16 fps)")
        ->check(CLI::Range(1, 1000000));
    cmd->add_option("--bits", bits, "Bitwidths of the grid");
    cmd->add_option("--groups", groups, "Group sizes of the grid");
    cmd->add_option("--layouts", layouts, "Key layouts of the grid");
    cmd->add_option("--corrections", corrections, "Corrections of the grid");
    cmd->add_option("--correction-below-ts", correction_max_ts,
                    "Noise-level limits each correction of the grid runs at (1: every pass, the paper's); "
                    "revisit, memory: one value, for their quantized caches");
    cmd->add_option("--reconstructions", reconstructions,
                    "Reconstructions of the grid: midpoint, calibrated (2- and 4-bit settings with off or "
                    "taylor)");
    cmd->add_option(
        "--rotations", rotations,
        "Rotations of the grid: none, hadamard (codes in the token layout; not with the exact "
        "correction on rotated keys, nor calibrated levels); revisit, memory: one value, for their "
        "quantized caches");
    cmd->add_option("--paired-context-chunks", options.paired_context_chunks,
                    "paired: chunks of the simulator's frames the BF16 context is built from")
        ->check(CLI::Range(1, 62));
    cmd->add_option("--paired-chunks", options.paired_chunks,
                    "paired: chunks each setting generates (the first: one chunk after the given context)")
        ->check(CLI::Range(1, 10000));
    cmd->add_flag("--full-grid", options.full_grid, "Every key bits x value bits pair (default: equal bits)");
    cmd->add_option("--world-base", options.world_base, "First held-out world seed (training uses 1000..)");
    cmd->add_option("--resample-pool", options.resample_pool,
                    "world-change: replay each trace's actions in this many other worlds and score the ones "
                    "whose start looks "
                    "most alike (and as many at random) against the trace (0: off)")
        ->check(CLI::Range(0, 100000));
    cmd->add_option("--resample-nearest", options.resample_nearest,
                    "world-change: resampled worlds scored per trace, nearest and random each")
        ->check(CLI::Range(1, 1000));
    cmd->add_option("--resample-base", options.resample_base,
                    "world-change: first world seed of the pool (0: world base + 50,000,000)");
    cmd->add_option_function<std::string>(
        "--revisit-bits",
        [this](const std::string& value) {
            options.revisit_bits =
                value == "none" ? std::vector<int>{} : parse_int_list(value, "revisit-bits");
        },
        "revisit, memory: caches compared, by bits (16: BF16; 8, 4, 2: g64 per token, taylor, with the one "
        "value of --rotations and --correction-below-ts: hadamard and 0.75 give the app's 2-bit preset; "
        "default 16,4,2), or none (the simulator's side alone: the ceiling and the survey)");
    cmd->add_option("--concurrent", options.concurrent,
                    "quality, revisit, paired: worlds run at once, each session on its own thread (0: one; "
                    "the figures do not depend on it)")
        ->check(CLI::Range(0, 64));
    cmd->add_option("--revisit-survey", options.revisit_survey,
                    "revisit: traces of the survey of how often the policy revisits (poses only; 0: none)")
        ->check(CLI::Range(0, 100000));
}

eval::EvalOptions EvalFlags::parse() const {
    eval::EvalOptions parsed = options;
    parsed.out_dir = out_dir;
    parsed.mode = eval::parse_eval_mode(mode);
    parsed.bits = parse_int_list(bits, "bits", {16, 8, 4, 2});
    parsed.groups = parse_int_list(groups, "groups", {32, 64, 128});
    parsed.key_layouts.clear();
    for (const std::string& layout : split_list(layouts, "layouts"))
        parsed.key_layouts.push_back(parse_key_layout(layout));
    parsed.corrections.clear();
    for (const std::string& correction : split_list(corrections, "corrections"))
        parsed.corrections.push_back(parse_correction(correction));
    parsed.reconstructions.clear();
    for (const std::string& r : split_list(reconstructions, "reconstructions"))
        parsed.reconstructions.push_back(parse_reconstruction(r));
    parsed.rotations.clear();
    for (const std::string& r : split_list(rotations, "rotations"))
        parsed.rotations.push_back(parse_rotation(r));
    parsed.correction_max_ts.clear();
    for (const std::string& t : split_list(correction_max_ts, "correction-below-ts")) {
        char* end = nullptr;
        const float value = std::strtof(t.c_str(), &end);
        if (t.empty() || *end != '\0' || !(value >= 0.f && value <= 1.f))
            throw Error("--correction-below-ts: \"" + t + "\" is not a noise level in [0, 1]");
        parsed.correction_max_ts.push_back(value);
    }
    return parsed;
}

int run_eval(const SessionFlags& session_flags, const EvalFlags& eval_flags) {
    const eval::EvalOptions options = eval_flags.parse();
    eval::check_eval_options(options);  // before the model loads
    const std::shared_ptr<Model> model = load_model(session_flags);
    eval::run_eval(model, session_flags.params(model->config(), 1), options);
    return 0;
}

}  // namespace kvw::cli
