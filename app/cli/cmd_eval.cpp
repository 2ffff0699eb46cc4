// kvworld-cli eval: the quality table and the quality bar on held-out worlds. The flags and the model are the
// CLI's; the evaluation is the lab's library (eval/, kvworld/eval/evaluation.h says what each mode measures).
#include "cli_common.h"

namespace kvw::cli {

void EvalFlags::add_to(CLI::App* cmd) {
    cmd->add_option("--out", out_dir, "Output folder (eval.json, eval.md)")
        ->required()
        ->check(non_empty_path());
    cmd->add_option(
           "--mode", mode,
           "grid, quality, all (both), or world-change (the simulator alone: its windows against its start)")
        ->check(CLI::IsMember({"grid", "quality", "all", "world-change"}));
    cmd->add_option("--traces", options.traces,
                    "Held-out traces: the grid's; quality: 4x one-chunk worlds, /2 long rollouts; "
                    "world-change: long traces")
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
