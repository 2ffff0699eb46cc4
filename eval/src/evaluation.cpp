#include "kvworld/eval/evaluation.h"

#include <cstdio>

#include "kvworld/fileio.h"
#include "report_sections.h"

namespace kvw::eval {

EvalMode parse_eval_mode(const std::string& name) {
    if (name == "grid") return EvalMode::Grid;
    if (name == "quality") return EvalMode::Quality;
    if (name == "all") return EvalMode::All;
    if (name == "world-change") return EvalMode::WorldChange;
    if (name == "revisit") return EvalMode::Revisit;
    if (name == "paired") return EvalMode::Paired;
    if (name == "memory") return EvalMode::Memory;
    throw Error("eval: unknown mode \"" + name +
                "\" (grid, quality, all, world-change, revisit, paired, memory)");
}

void check_eval_options(const EvalOptions& options) {
    if (options.resample_pool > 0 && options.mode != EvalMode::WorldChange)
        throw Error("eval: --resample-pool is a world-change option (--mode world-change)");
    for (int bits : options.revisit_bits)
        if (bits != 16 && bits != 8 && bits != 4 && bits != 2)
            throw Error("eval: --revisit-bits takes 16, 8, 4 and 2 (or none)");
    if ((options.mode == EvalMode::Revisit || options.mode == EvalMode::Memory) &&
        (options.rotations.size() != 1 || options.correction_max_ts.size() != 1))
        throw Error(
            "eval: --mode revisit and memory take one --rotations and one --correction-below-ts value (each "
            "quantized cache of --revisit-bits runs with them)");
    for (float t : options.correction_max_ts)
        if (!(t >= 0.f && t <= 1.f)) throw Error("eval: --correction-below-ts takes noise levels in [0, 1]");
    if (options.mode == EvalMode::Paired && (options.paired_context_chunks < 1 || options.paired_chunks < 1))
        throw Error("eval: --paired-context-chunks and --paired-chunks must be at least 1");
}

void run_eval(const std::shared_ptr<Model>& model, const SessionParams& base, const EvalOptions& options) {
    check_eval_options(options);
    const ModelConfig& c = model->config();
    std::filesystem::create_directories(options.out_dir);
    json report;
    report["model"] = c.name;
    report["backend"] = to_string(model->backend());
    report["world_seed_base"] = options.world_base;
    report["motion_guidance"] = base.sampler.guidance > 0 ? base.sampler.guidance : c.guidance;
    report["motion_guidance_min_t"] = c.guidance_min_t;  // guided steps: those at t >= this
    const bool quality = options.mode == EvalMode::Quality || options.mode == EvalMode::All;
    const bool grid = options.mode == EvalMode::Grid || options.mode == EvalMode::All;
    if (quality) {
        add_one_chunk_report(report, model, base, options);
        add_long_rollout_report(report, model, base, options);
    }
    if (options.mode == EvalMode::WorldChange) report["world_change"] = world_change_report(options, c);
    if (options.mode == EvalMode::Revisit) report["revisit"] = revisit_report(model, base, options);
    if (grid) report["grid"] = cache_grid_report(model, base, options);
    if (options.mode == EvalMode::Paired) report["paired"] = paired_report(model, base, options);
    if (options.mode == EvalMode::Memory) report["memory"] = memory_report(model, base, options);
    write_file_atomic(options.out_dir / "eval.json", report.dump(1) + "\n");
    write_file_atomic(options.out_dir / "eval.md", markdown_report(report, c.name, model->backend()));
    std::printf("wrote %s/eval.json and eval.md\n", options.out_dir.c_str());
}

}  // namespace kvw::eval
