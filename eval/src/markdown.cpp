// eval.md: the report's sections as prose lines and Markdown tables, read back from eval.json's content.
#include <cmath>
#include <string>

#include "report_sections.h"

namespace kvw::eval {

namespace {

std::string one_chunk_markdown(const json& o) {
    return format(
        "One chunk after a ground-truth context (%d held-out worlds): PSNR %.2f dB over the pooled "
        "squared error, "
        "SSIM %.3f; repeating the last context frame: %.2f dB (margin %+.2f dB). Mean of per-trace dB: "
        "%.2f vs "
        "%.2f; median per-trace margin %+.2f dB; the model is ahead in %d traces; the camera stands "
        "still in %d.\n\n",
        o["traces"].get<int>(), o["psnr_model"].get<double>(), o["ssim_model"].get<double>(),
        o["psnr_repeat_last"].get<double>(), o["margin_db"].get<double>(),
        o["mean_of_trace_psnr_model"].get<double>(), o["mean_of_trace_psnr_repeat_last"].get<double>(),
        o["median_trace_margin_db"].get<double>(), o["traces_model_beats_repeat"].get<int>(),
        o["traces_camera_still"].get<int>());
}

// A row of the rollout table: `from` the window's first second (or "whole"), `check` its bar check with both
// sides' statistics, `kept` the start-kept baseline's verdict (empty for the whole trace).
// The window's seam index ("seams", see token_grid.h), or "" where the check has none (the whole trace).
std::string rollout_row(const json& rollout, const std::string& from, const json& check,
                        const std::string& kept) {
    const std::string seams =
        check.contains("seams") ? format("%.3f", check["seams"]["seam_index"].get<double>()) : "";
    return format("| %llu | %s | %.2f | %.2f | %.2f | %s | %.1f | %.1f | %s |",
                  static_cast<unsigned long long>(rollout["world_seed"].get<uint64_t>()), from.c_str(),
                  check["mean_ratio"].get<double>(), check["contrast_ratio"].get<double>(),
                  check["edge_ratio"].get<double>(), check["within_bar"].get<bool>() ? "yes" : "**no**",
                  check["model"]["contrast"].get<double>(), check["simulator"]["contrast"].get<double>(),
                  seams.c_str()) +
           (kept.empty() ? " |\n" : " " + kept + " |\n");
}

std::string rollouts_markdown(const json& b, const json& rollouts) {
    std::string md = format(
        "Long rollouts: %d of %d windows within ±%.0f%% of the simulator's mean, contrast and edge "
        "energy; %d of %d "
        "worlds entirely; over the whole trace at once, %d of %d worlds. A baseline that kept its start "
        "context's "
        "statistics throughout: %d of %d windows, %d worlds (\"start kept\").\n\n"
        "| world | from s | mean | contrast | edges | within | model contrast | simulator contrast | "
        "seam index | start kept |\n"
        "|---|---|---|---|---|---|---|---|---|---|\n",
        b["windows_within"].get<int>(), b["windows"].get<int>(), 100 * b["tolerance"].get<double>(),
        b["worlds_within"].get<int>(), b["worlds"].get<int>(), b["whole_trace_worlds_within"].get<int>(),
        b["worlds"].get<int>(), b["keep_start_windows_within"].get<int>(), b["windows"].get<int>(),
        b["keep_start_worlds_within"].get<int>());
    for (const json& r : rollouts) {
        for (const json& w : r["windows"])
            md += rollout_row(r, format("%g", w["from_s"].get<double>()), w,
                              w["keep_start"]["within_bar"].get<bool>() ? "yes" : "no");
        md += rollout_row(r, "whole", r["whole_trace"], "");
    }
    return md + "\n";
}

// "a/b c/d ...": windows within the bar of all windows, per window (by_window_within, by_window_total).
std::string by_window(const json& counts) {
    std::string out;
    for (size_t w = 0; w < counts["by_window_total"].size(); ++w)
        out += format("%s%d/%d", w ? " " : "", counts["by_window_within"][w].get<int>(),
                      counts["by_window_total"][w].get<int>());
    return out;
}

std::string resampled_markdown(const json& rs) {
    std::string md = format(
        "Other worlds under the same actions (a pool of %d, %d per trace of each kind), scored "
        "against each trace's "
        "own windows as the bar scores the model:\n\n| worlds | pairs | windows within | pairs "
        "entirely | whole trace "
        "| by window | mean look distance |\n|---|---|---|---|---|---|---|\n",
        rs["pool"].get<int>(), rs["per_trace_scored"].get<int>());
    for (const char* kind : {"nearest", "random"}) {
        const json& t = rs["totals"][kind];
        md += format("| %s | %d | %d of %d | %d | %d | %s | %.4f |\n",
                     kind[0] == 'n' ? "most alike at the start" : "drawn at random", t["pairs"].get<int>(),
                     t["windows_within"].get<int>(), t["windows"].get<int>(), t["pairs_within"].get<int>(),
                     t["whole_trace_pairs_within"].get<int>(), by_window(t).c_str(),
                     t["mean_distance"].get<double>());
    }
    return md + "\n";
}

std::string world_change_markdown(const json& wc) {
    std::string md = format(
        "World change (the simulator alone, %d traces of %.0f s): %d of %d windows keep within ±%.0f%% "
        "of the start "
        "context's mean, contrast and edge energy; %d of %d worlds throughout. By window: %s.\n\n",
        wc["traces"].get<int>(), wc["seconds"].get<double>(), wc["windows_within"].get<int>(),
        wc["windows"].get<int>(), 100 * wc["tolerance"].get<double>(), wc["worlds_within"].get<int>(),
        wc["traces"].get<int>(), by_window(wc).c_str());
    if (wc.contains("resampled")) md += resampled_markdown(wc["resampled"]);
    return md;
}

// Motion by the frame pair's place in its chunk (README "Motion inside a chunk"): turn rate (image shift per
// commanded degree, as a share of the simulator's) and the zoom per frame walking forward.
std::string motion_by_place_markdown(const char* title, const json& by_place) {
    std::string md = std::string(title) +
                     ", by frame pair in the chunk (0: across the chunk boundary):\n\n| pair | pairs | turn "
                     "rate | zoom walking forward, model / simulator |\n|---|---|---|---|\n";
    for (const json& p : by_place) {
        const double sim = p["yaw_shift_slope_simulator"].get<double>();
        const std::string zoom = p["forward_frames"].get<int>() > 0
                                     ? format("%.4f / %.4f", p["zoom_forward_generated"].get<double>(),
                                              p["zoom_forward_simulator"].get<double>())
                                     : "no forward pairs";
        md += format("| %d | %d | %.0f%% | %s |\n", p["frame_in_chunk"].get<int>(), p["pairs"].get<int>(),
                     sim != 0 ? 100 * p["yaw_shift_slope_generated"].get<double>() / sim : 0.0, zoom.c_str());
    }
    return md + "\n";
}

// "1.234 [1.100, 1.300]" of a figure and its interval (null: "n/a"; a figure without an interval, from one
// world: "1.234 (one world)"); `scale` multiplies all three.
std::string with_interval(const char* fmt, const json& value, const json& interval, double scale = 1) {
    const auto one = [&](const json& v) {
        const double x = number_or_nan(v);
        return std::isfinite(x) ? format(fmt, scale * x) : std::string("n/a");
    };
    if (std::isfinite(number_or_nan(value)) && !std::isfinite(number_or_nan(interval[0])))
        return one(value) + " (one world)";
    return one(value) + " [" + one(interval[0]) + ", " + one(interval[1]) + "]";
}

std::string one_chunk_seams_markdown(const json& s) {
    return format(
        "Seam index of the one-chunk predictions (%d worlds, token grid %d px; the model's mean luma "
        "difference across grid boundaries over elsewhere, %.3f, divided by the simulator's on the same "
        "frames, %.3f; bar <= %.2f): **%s**.\n\n",
        s["worlds"].get<int>(), s["token_grid_pixels"].get<int>(), s["model_boundary_ratio"].get<double>(),
        s["simulator_boundary_ratio"].get<double>(), s["bar"].get<double>(),
        with_interval("%.3f", s["seam_index"], s["seam_index_ci95"]).c_str());
}

std::string rollout_seams_markdown(const json& rs) {
    std::string md =
        "Seam index of the long rollouts by window, pooled over the rollouts (interval: resampling "
        "rollouts):\n\n| from s | to s | seam index | model boundary ratio | simulator boundary ratio |\n"
        "|---|---|---|---|---|\n";
    auto row = [](const std::string& from, const std::string& to, const json& w) {
        return format("| %s | %s | %s | %.3f | %.3f |\n", from.c_str(), to.c_str(),
                      with_interval("%.3f", w["seam_index"], w["seam_index_ci95"]).c_str(),
                      w["model_boundary_ratio"].get<double>(), w["simulator_boundary_ratio"].get<double>());
    };
    for (const json& w : rs["windows"])
        md += row(format("%g", w["from_s"].get<double>()), format("%g", w["to_s"].get<double>()), w);
    return md + row("whole", "", rs["whole"]) + "\n";
}

std::string walking_markdown(const char* title, const json& w) {
    const json& t = w["thresholds"];
    std::string md = format(
        "%s (%d worlds): the model's image motion as a fraction of the simulator's on the same frame pairs, "
        "counting only pairs where the simulator's own motion exceeds the threshold (zoom %.4f, lower-half "
        "shift %.2f px; the 99th percentiles of its %d standing pairs: %.4f and %.2f px); ratio of means, "
        "95%% interval resampling worlds. Where nothing is commanded, the model's frames zoom %+.4f "
        "and shift %+.2f px a pair (%d pairs).\n\n"
        "| walk | pairs counted / commanded | worlds | simulator | model | fraction |\n"
        "|---|---|---|---|---|---|\n",
        title, w["worlds"].get<int>(), t["zoom"].get<double>(), t["lower_shift_px"].get<double>(),
        t["standing_pairs"].get<int>(), t["standing_zoom_q99"].get<double>(),
        t["standing_lower_shift_q99"].get<double>(), w["model_standing"]["zoom_minus_1"].get<double>(),
        w["model_standing"]["lower_shift_px"].get<double>(), w["model_standing"]["pairs"].get<int>());
    for (const char* walk : {"forward", "back", "strafe_left", "strafe_right"}) {
        const std::string name = walk;
        const json& d = w["directions"][name];
        const bool zoom = name == "forward" || name == "back";
        md += format("| %s | %d / %d | %d | %s | %s | %s |\n", name.c_str(), d["pairs"].get<int>(),
                     d["commanded_pairs"].get<int>(), d["worlds"].get<int>(),
                     format(zoom ? "%.4f" : "%.2f px", d["simulator_mean"].get<double>()).c_str(),
                     format(zoom ? "%.4f" : "%.2f px", d["model_mean"].get<double>()).c_str(),
                     d["pairs"].get<int>() > 0
                         ? with_interval("%.0f%%", d["fraction"], d["fraction_ci95"], 100).c_str()
                         : "no pairs");
    }
    return md + "\n";
}

std::string revisit_markdown(const json& r) {
    const json& lim = r["limits"];
    std::string md = format(
        "Revisits (%d worlds of %.0f s): %d frames in %d worlds come back within %g units and %g degrees of "
        "a pose seen at least %g s earlier. PSNR of each against that earlier frame of the same rollout, "
        "pooled over the pairs (95%% interval resampling worlds); the simulator's frames give the ceiling "
        "(**%s dB**), the model with recall off the floor.\n\n",
        r["worlds"].get<int>(), r["seconds"].get<double>(), r["pairs"].get<int>(),
        r["worlds_with_pairs"].get<int>(), lim["max_distance"].get<double>(),
        lim["max_angle_deg"].get<double>(), lim["min_seconds"].get<double>(),
        with_interval("%.2f", r["simulator"]["psnr"], r["simulator"]["psnr_ci95"]).c_str());
    if (r["caches"].empty())
        md += "No model rows (`--revisit-bits none`): the simulator's side alone.\n";
    else
        md += "| cache | model dB | recall off dB | floor to ceiling | bar >= 50% |\n|---|---|---|---|---|\n";
    for (const json& c : r["caches"])
        md += format("| %s | %s | %s | %s | %s |\n", c["label"].get<std::string>().c_str(),
                     with_interval("%.2f", c["model"]["psnr"], c["model"]["psnr_ci95"]).c_str(),
                     with_interval("%.2f", c["recall_off"]["psnr"], c["recall_off"]["psnr_ci95"]).c_str(),
                     with_interval("%.0f%%", c["floor_to_ceiling"], c["floor_to_ceiling_ci95"], 100).c_str(),
                     c["within_bar"].get<bool>() ? "yes" : "**no**");
    if (r.contains("survey")) {
        md += format(
            "\nHow often the policy revisits (%d traces of the same kind, poses only):\n\n"
            "| minutes | frames revisiting | share of frames | traces with a revisit |\n|---|---|---|---|\n",
            r["survey"]["traces"].get<int>());
        for (const json& l : r["survey"]["lengths"])
            md += format("| %d | %d | %.1f%% | %d |\n", l["minutes"].get<int>(), l["pairs"].get<int>(),
                         100 * l["share_of_frames"].get<double>(), l["traces_with_pairs"].get<int>());
    }
    return md + "\n";
}

std::string memory_markdown(const json& m) {
    std::string md = format(
        "## Memory of places, one chunk\n\n%d revisit episodes (%d come back within the revisit limits; the "
        "earlier view a median %.0f s before the return), given as the simulator's frames: the start, the "
        "earlier view of the place, the three chunks before the return. The returning chunk is generated "
        "from "
        "forks of that one cache (same positions and noise) with the earlier view in its context, without it "
        "(the start chunk recalled alone) and with recall off; PSNR against the simulator's returning chunk, "
        "pooled over worlds (95%% intervals resampling worlds). Repeating the last given frame: %s dB; the "
        "earlier view itself: %s dB. The ceiling: the returning chunk itself recalled where the view was.\n\n"
        "| cache | with the view dB | without dB | recall off dB | the view adds dB | the returning chunk "
        "recalled adds dB |\n|---|---|---|---|---|---|\n",
        m["worlds"].get<int>(), m["returns_found"].get<int>(),
        number_or_nan(m["median_seconds_since_earlier_view"]),
        with_interval("%.2f", m["repeat_last"]["psnr"], m["repeat_last"]["psnr_ci95"]).c_str(),
        with_interval("%.2f", m["earlier_view_as_is"]["psnr"], m["earlier_view_as_is"]["psnr_ci95"]).c_str());
    for (const json& c : m["caches"])
        md += format(
            "| %s | %s | %s | %s | %s | %s |\n", c["label"].get<std::string>().c_str(),
            with_interval("%.2f", c["with_earlier_view"]["psnr"], c["with_earlier_view"]["psnr_ci95"])
                .c_str(),
            with_interval("%.2f", c["without_earlier_view"]["psnr"], c["without_earlier_view"]["psnr_ci95"])
                .c_str(),
            with_interval("%.2f", c["recall_off"]["psnr"], c["recall_off"]["psnr_ci95"]).c_str(),
            with_interval("%+.2f", c["gain_of_earlier_view"]["db"], c["gain_of_earlier_view"]["ci95"])
                .c_str(),
            with_interval("%+.2f", c["gain_of_answer_recalled"]["db"], c["gain_of_answer_recalled"]["ci95"])
                .c_str());
    return md + "\n";
}

std::string paired_markdown(const json& p) {
    std::string md = format(
        "## Paired comparison of cache settings\n\n%d worlds; every setting forked from one BF16 session "
        "given "
        "%d chunks of the simulator's frames (identical context, positions and noise); PSNR against the BF16 "
        "fork pooled over the worlds, 95%% intervals resampling worlds; gain: over the same format "
        "uncorrected; over the paper's: calibrated or rotated settings over the same format with midpoints, "
        "unrotated, uncorrected (one chunk; rollout); ΔP_S: the first chunk's, mean over steps, the layer "
        "furthest from "
        "0 (negative: the cache under-weighted).\n\n",
        p["worlds"].get<int>(), p["given_chunks"].get<int>());
    md += format(
        "| cache | bits/elem | one chunk vs BF16 (dB) | gain | %d-chunk rollout vs BF16 (dB) | gain | "
        "over the paper's | ΔP_S |\n|---|---|---|---|---|---|---|---|\n",
        p["generated_chunks"].get<int>());
    for (const json& r : p["rows"]) {
        const std::string label = r["label"].get<std::string>();
        if (r["key_bits"].get<int>() == 16 && r["value_bits"].get<int>() == 16) {  // the reference itself
            md += format("| %s | %.2f | reference | | reference | | | 0 |\n", label.c_str(),
                         r["bits_per_element"].get<double>());
            continue;
        }
        const auto gain = [&](const char* key) {
            return r.contains(key) ? with_interval("%+.2f", r[key]["db"], r[key]["ci95"]) : std::string("");
        };
        double furthest = 0;  // the layer's signed Delta P_S furthest from 0
        for (const json& d : r["delta_p_cache"])
            if (std::fabs(d.get<double>()) > std::fabs(furthest)) furthest = d.get<double>();
        const std::string over_paper = r.contains("one_chunk_gain_over_midpoint_uncorrected")
                                           ? gain("one_chunk_gain_over_midpoint_uncorrected") + "; " +
                                                 gain("rollout_gain_over_midpoint_uncorrected")
                                           : std::string("");
        md += format(
            "| %s | %.2f | %s | %s | %s | %s | %s | %+.4f |\n", label.c_str(),
            r["bits_per_element"].get<double>(),
            with_interval("%.2f", r["one_chunk_vs_bf16"]["psnr"], r["one_chunk_vs_bf16"]["ci95"]).c_str(),
            gain("one_chunk_gain_over_uncorrected").c_str(),
            with_interval("%.2f", r["rollout_vs_bf16"]["psnr"], r["rollout_vs_bf16"]["ci95"]).c_str(),
            gain("rollout_gain_over_uncorrected").c_str(), over_paper.c_str(), furthest);
    }
    return md + "\n";
}

std::string grid_markdown(const json& rows) {
    std::string md =
        "| cache | bits/elem | PSNR vs BF16 | SSIM vs BF16 | PSNR vs GT | SSIM vs GT | ΔP_S (mean of "
        "layers) | cache MB |\n"
        "|---|---|---|---|---|---|---|---|\n";
    for (const json& r : rows)
        md += format("| %s | %.2f | %.2f | %.3f | %.2f | %.3f | %+.4f | %.2f |\n",
                     r["label"].get<std::string>().c_str(), r["bits_per_element"].get<double>(),
                     r["psnr_vs_ref"].get<double>(), r["ssim_vs_ref"].get<double>(),
                     r["psnr_vs_gt"].get<double>(), r["ssim_vs_gt"].get<double>(),
                     r["delta_p_cache_mean"].get<double>(), r["cache_bytes"].get<uint64_t>() / 1e6);
    return md;
}

}  // namespace

std::string markdown_report(const json& report, const std::string& model_name, BackendKind backend) {
    std::string md = "# KVWorld evaluation (" + model_name + ", " + to_string(backend) + ")\n\n";
    if (report.contains("one_chunk")) md += one_chunk_markdown(report["one_chunk"]);
    if (report.contains("one_chunk_seams")) md += one_chunk_seams_markdown(report["one_chunk_seams"]);
    if (report.contains("one_chunk_walking"))
        md += walking_markdown("Walking in the chunk predicted after a ground-truth context",
                               report["one_chunk_walking"]);
    if (report.contains("rollout_bar")) md += rollouts_markdown(report["rollout_bar"], report["rollouts"]);
    if (report.contains("rollout_seams")) md += rollout_seams_markdown(report["rollout_seams"]);
    if (report.contains("walking")) md += walking_markdown("Walking in the long rollouts", report["walking"]);
    if (report.contains("revisit")) md += revisit_markdown(report["revisit"]);
    if (report.contains("world_change")) md += world_change_markdown(report["world_change"]);
    if (report.contains("one_chunk_actions") && report["one_chunk_actions"].contains("by_frame_in_chunk"))
        md += motion_by_place_markdown("Motion of the chunk predicted after a ground-truth context",
                                       report["one_chunk_actions"]["by_frame_in_chunk"]);
    if (report.contains("actions") && report["actions"].contains("by_frame_in_chunk"))
        md += motion_by_place_markdown("Motion in the long rollouts", report["actions"]["by_frame_in_chunk"]);
    if (report.contains("grid")) md += grid_markdown(report["grid"]["rows"]);
    if (report.contains("paired")) md += paired_markdown(report["paired"]);
    if (report.contains("memory")) md += memory_markdown(report["memory"]);
    return md;
}

}  // namespace kvw::eval
