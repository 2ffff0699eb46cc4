// kvworld-cli: the KVWorld engine without a window — generate from a trace, plan memory, benchmark.
#include <CLI/CLI.hpp>
#include <cstdio>

#include "cli_common.h"
#include "kvworld/fileio.h"
#include "kvworld/planner.h"

int main(int argc, char** argv) {
    using namespace kvw;
    CLI::App app{"kvworld-cli: play a KV-cache-quantized video world model headless"};
    app.require_subcommand(1);

    cli::SessionFlags gen_flags;
    std::string trace, out;
    int max_frames = -1;
    bool ground_truth = false, no_video = false, overwrite = false;
    auto* gen = app.add_subcommand(
        "generate", "Generate frames from an action trace (PNG, MP4 with ffmpeg, metrics.json)");
    gen_flags.add_to(gen);
    gen->add_option("--trace", trace, "Action trace (JSON, see README)")
        ->required()
        ->check(CLI::ExistingFile);
    gen->add_option("--out", out,
                    "Output folder: created, or an empty one, or with --overwrite an earlier run's (replaced "
                    "as a whole once the run has finished)")
        ->required()
        ->check(cli::non_empty_path());
    gen->add_option("--frames", max_frames, "Generate at most this many frames after the context")
        ->check(CLI::NonNegativeNumber);
    gen->add_flag("--ground-truth", ground_truth,
                  "Also render the simulator's frames for the trace into OUT/ground_truth");
    gen->add_flag("--no-video", no_video, "Skip the MP4");
    gen->add_flag("--overwrite", overwrite, "Replace an earlier run's output in --out");

    std::string mem_model, mem_config, preset, bits = "16,8,4,2", groups = "32,64,128", layout = "token",
                                               resolution, mem_json;
    bool all_presets = false;
    double budget_gb = 0;
    auto* mem = app.add_subcommand("memory", "KV-cache memory plan for a model config or peer presets");
    mem->add_option("--model", mem_model, "Model folder");
    mem->add_option("--config", mem_config, "Model config (model.json)");
    mem->add_option("--preset", preset, "Peer preset id (config/models/*.json)");
    mem->add_flag("--all-presets", all_presets, "Every peer preset");
    mem->add_option("--bits", bits, "Comma-separated bitwidths (16,8,4,2)");
    mem->add_option("--groups", groups, "Comma-separated group sizes (32,64,128)");
    mem->add_option("--key-layout", layout, "token or channel")->check(CLI::IsMember({"token", "channel"}));
    mem->add_option("--resolution", resolution, "HEIGHTxWIDTH (default: native)");
    mem->add_option("--budget-gb", budget_gb, "Cache budget: seconds of video whose history fits")
        ->check(cli::finite_range(0, 1e9));
    mem->add_option("--json", mem_json, "Also write the table as JSON")->check(cli::non_empty_path());

    std::string bench_backend = "cpu", bench_model, bench_configs = "tiny,default", bench_json;
    int bench_chunks = 3;
    auto* bench =
        app.add_subcommand("bench", "Time chunks and forwards per cache format against BF16 in the same run");
    bench->add_option("--backend", bench_backend, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}));
    bench->add_option("--model", bench_model, "Model folder (default: --configs)");
    bench->add_option("--configs", bench_configs,
                      "Comma-separated: tiny, default (the 128x128 model's config: its trained weights when "
                      "present, else random)");
    bench->add_option("--chunks", bench_chunks, "Measured chunks per format")->check(CLI::Range(1, 1000));
    bench->add_option("--json", bench_json, "Also write the results as JSON")->check(cli::non_empty_path());

    cli::SessionFlags eval_session_flags;
    cli::EvalFlags eval_flags;
    auto* eval = app.add_subcommand(
        "eval",
        "Quality table (cache grid vs BF16 and ground truth) and the quality bar, on held-out worlds");
    eval_session_flags.add_to(eval);
    eval_flags.add_to(eval);

    std::string ba_shapes = "default,hy-worldplay-8b", ba_json, ba_baseline, ba_formats;
    int ba_iters = 20, ba_block_shape = -1;
    auto* bench_attn =
        app.add_subcommand("bench-attention", "Time the fused attention kernel per cache format (CUDA)");
    bench_attn->add_option("--shapes", ba_shapes, "default, hy-worldplay-8b");
    bench_attn->add_option("--iters", ba_iters, "Timed launches per format")->check(CLI::Range(1, 10000));
    bench_attn->add_option("--formats", ba_formats,
                           "Only these cache formats, comma-separated labels as the table prints them (e.g. "
                           "\"K2/V2 g128 taylor\"); BF16 always runs. For profiling one format under ncu");
    bench_attn
        ->add_option(
            "--block-shape", ba_block_shape,
            "Kernel block shape: 0 (8 warps x 16 rows), 1 (4 x 16), 2 (4 x 32); -1: the kernel's choice")
        ->check(CLI::Range(-1, 2));
    bench_attn->add_option("--json", ba_json, "Also write the results as JSON")->check(cli::non_empty_path());
    bench_attn
        ->add_option("--baseline", ba_baseline,
                     "JSON of tools/bench/sdpa_baseline.py from the same device run: adds the speed against "
                     "PyTorch SDPA's cuDNN and flash backends at each shape")
        ->check(CLI::ExistingFile);

    cli::SessionFlags cal_flags;
    int cal_worlds = 16, cal_given = 2, cal_generated = 2;
    uint64_t cal_world_base = 100000;
    auto* cal = app.add_subcommand("calibrate",
                                   "Calibrate the cache's reconstruction points on simulator worlds (BF16 "
                                   "sessions) and write them beside "
                                   "the model's weights (cache_calibration.json, named in model.json)");
    cal->add_option("--model", cal_flags.model_dir,
                    "Model folder (default: assets/models/v2, else assets/models/default)");
    cal->add_option("--backend", cal_flags.backend, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}));
    cal->add_option("--worlds", cal_worlds, "Simulator worlds")->check(CLI::Range(1, 10000));
    cal->add_option("--world-base", cal_world_base,
                    "First world seed (worlds world_base + 7919 i; the evaluation uses 900000 on)");
    cal->add_option("--given-chunks", cal_given, "Chunks of the simulator's frames each session starts from")
        ->check(CLI::Range(1, 62));
    cal->add_option("--chunks", cal_generated, "Chunks each session then generates")
        ->check(CLI::Range(0, 62));

    std::string info_model;
    auto* info = app.add_subcommand("info", "Describe a model folder");
    info->add_option("--model", info_model,
                     "Model folder (default: assets/models/v2, else assets/models/default)");

    std::string init_config, init_out, init_dtype = "BF16";
    uint64_t init_seed = 1;
    auto* init = app.add_subcommand("init-model", "Write a randomly initialised model (benchmarks, tests)");
    init->add_option("--config", init_config, "Model config")->required()->check(CLI::ExistingFile);
    init->add_option("--out", init_out, "Output folder")->required()->check(cli::non_empty_path());
    init->add_option("--seed", init_seed, "Seed");
    init->add_option("--dtype", init_dtype, "F32, F16 or BF16")->check(CLI::IsMember({"F32", "F16", "BF16"}));

    std::string convert_model, convert_out, convert_dtype;
    auto* convert = app.add_subcommand(
        "convert-weights",
        "Write a model folder's model into a new folder with its weights as int8 (per-row scales) or bf16");
    convert->add_option("--model", convert_model, "Model folder to convert")
        ->required()
        ->check(CLI::ExistingDirectory);
    convert->add_option("--out", convert_out, "New model folder (created, or an empty one)")
        ->required()
        ->check(cli::non_empty_path());
    convert
        ->add_option(
            "--dtype", convert_dtype,
            "int8: matrices and kernels as int8 codes with one scale per output channel, the rest as "
            "stored; bf16: every tensor bf16")
        ->required()
        ->check(CLI::IsMember({"int8", "bf16"}));

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    }
    try {
        if (*gen)
            return cli::run_generate(gen_flags, trace, out, max_frames, ground_truth, !no_video, overwrite);
        if (*mem)
            return cli::run_memory(mem_model, mem_config, preset, all_presets, bits, groups, layout,
                                   resolution, budget_gb, mem_json);
        if (*eval) return cli::run_eval(eval_session_flags, eval_flags);
        if (*cal) return cli::run_calibrate(cal_flags, cal_worlds, cal_world_base, cal_given, cal_generated);
        if (*bench_attn)
            return cli::run_bench_attention(ba_shapes, ba_iters, ba_block_shape, ba_json, ba_baseline,
                                            ba_formats);
        if (*bench)
            return cli::run_bench(bench_backend, bench_model, bench_configs, bench_chunks, bench_json);
        if (*convert) return cli::run_convert_weights(convert_model, convert_out, convert_dtype);
        if (*info) {
            cli::SessionFlags f;
            f.model_dir = info_model;
            auto m = cli::load_model(f);
            const ModelConfig& c = m->config();
            std::printf(
                "%s: %dx%d frames, patch %d, %d frames a chunk at %d fps; D=%d, %d blocks, %d heads x %d, "
                "MLP %d; positions: 3D RoPE%s; actions: per frame\n",
                c.name.c_str(), c.height, c.width, c.patch, c.chunk_frames, c.fps, c.hidden, c.depth, c.heads,
                c.head_dim, c.mlp_hidden, c.absolute_position ? " + absolute patch embedding" : "");
            if (c.autoencoder.enabled()) {
                const AutoencoderConfig& ae = c.autoencoder;
                std::printf(
                    "latent grid %dx%dx%d (autoencoder widths %d, %d, %d, %d, %d groups; latents clamped to "
                    "+-%g); a token covers %dx%d pixels\n",
                    c.grid_height(), c.grid_width(), c.grid_channels(), ae.channels[0], ae.channels[1],
                    ae.channels[2], ae.channels[3], ae.groups, ae.latent_clip, c.patch_pixels(),
                    c.patch_pixels());
            }
            std::printf(
                "parameters %.2f M (%.1f MB as loaded on %s); %d tokens a chunk; defaults: %d steps, motion "
                "guidance %s, window %d, recall %d%s%s\n",
                m->parameter_count() / 1e6, m->weight_bytes() / 1e6, to_string(m->backend()),
                c.tokens_per_chunk(), c.steps,
                c.guidance == 1.f        ? "off"
                : c.guidance_min_t > 0.f ? (std::to_string(c.guidance).substr(0, 4) + " from t " +
                                            std::to_string(c.guidance_min_t).substr(0, 4))
                                               .c_str()
                                         : std::to_string(c.guidance).substr(0, 4).c_str(),
                c.window, c.recall, c.recall_first ? "" : " (by field-of-view overlap only)",
                !c.warp_source ? ""
                : c.warp_eye_height > 0.f
                    ? (", flow source turned and walked to each frame's camera (ground " +
                       std::to_string(c.warp_eye_height).substr(0, 4) + " below)")
                          .c_str()
                    : ", flow source turned to each frame's camera");
            const WeightFilesSummary disk = summarize_weight_files(m->directory());
            std::string dtypes;
            for (const auto& [dtype, count] : disk.tensors_by_dtype)
                dtypes += (dtypes.empty() ? "" : ", ") + std::to_string(count) + " " + dtype;
            std::printf("weights on disk: %s in %zu file%s (tensors: %s)%s\n",
                        format_bytes(static_cast<double>(disk.bytes_on_disk)).c_str(), c.weight_files.size(),
                        c.weight_files.size() == 1 ? "" : "s", dtypes.c_str(),
                        disk.int8_parameters
                            ? (": int8 weights with per-row scales, " +
                               std::to_string(disk.int8_parameters * 100 /
                                              (disk.int8_parameters + disk.float_parameters)) +
                               "% of the parameters, dequantized to fp32 at load")
                                  .c_str()
                            : "");
            return 0;
        }
        if (*init) {
            const ModelConfig cfg = load_model_config(init_config);
            write_random_model(cfg, init_out, init_seed, init_dtype);
            std::printf("wrote %s\n", init_out.c_str());
            return 0;
        }
    } catch (const kvw::Cancelled& e) {  // Ctrl-C during a run that stops cleanly (generate)
        std::fprintf(stderr, "%s\n", e.what());
        return 130;
    } catch (const kvw::Error& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
    return 0;
}
