// The side panel: world, cache format, context and sampler, A/B panes, recording and view settings.
// Edits go to the controller (GuiController::set_*), which sends them to the sessions; they apply from the
// next chunk.
#include <imgui.h>
#include <imgui_stdlib.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "app.h"
#include "frontend.h"
#include "ui_style.h"

namespace kvw::gui {

namespace {

const std::vector<std::pair<int, std::string>>& bits_options() {
    static const std::vector<std::pair<int, std::string>> o = {
        {16, "BF16"}, {8, " 8 "}, {4, " 4 "}, {2, " 2 "}};
    return o;
}
const std::vector<std::pair<int, std::string>>& group_options() {
    static const std::vector<std::pair<int, std::string>> o = {{32, " 32 "}, {64, " 64 "}, {128, "128"}};
    return o;
}

bool parse_seed(const char* text, uint64_t* out) {
    char* end = nullptr;
    const unsigned long long v = std::strtoull(text, &end, 10);
    if (end == text || *end != '\0') return false;
    *out = v;
    return true;
}

}  // namespace

void App::draw_cache_editor(const char* id, CacheSettings* cache, bool compact) {
    ImGui::PushID(id);
    const bool any_quantized = cache->key_bits < 16 || cache->value_bits < 16;
    if (compact) {
        // One line per A/B pane: K, V, group, layout, correction.
        auto combo = [](const char* label, int* value,
                        const std::vector<std::pair<int, std::string>>& options, float width,
                        bool enabled = true) {
            ImGui::SetNextItemWidth(width);
            if (!enabled) ImGui::BeginDisabled();
            std::string current;
            for (const auto& [v, name] : options)
                if (v == *value) current = name;
            if (ImGui::BeginCombo(label, current.c_str(), ImGuiComboFlags_NoArrowButton)) {
                for (const auto& [v, name] : options)
                    if (ImGui::Selectable(name.c_str(), v == *value)) *value = v;
                ImGui::EndCombo();
            }
            if (!enabled) ImGui::EndDisabled();
        };
        ImGui::AlignTextToFramePadding();
        ImGui::TextDisabled("K");
        ImGui::SameLine(0, 3);
        combo("##k", &cache->key_bits, bits_options(), 44);
        ImGui::SameLine(0, 6);
        ImGui::TextDisabled("V");
        ImGui::SameLine(0, 3);
        combo("##v", &cache->value_bits, bits_options(), 44);
        ImGui::SameLine(0, 6);
        ImGui::TextDisabled("g");
        ImGui::SameLine(0, 3);
        combo("##g", &cache->group, group_options(), 40, any_quantized);
        ImGui::SameLine(0, 6);
        int layout = static_cast<int>(cache->key_layout);
        combo("##layout", &layout, {{0, "tok"}, {1, "chan"}}, 42, cache->key_bits < 16);
        cache->key_layout = static_cast<KeyLayout>(layout);
        ImGui::SameLine(0, 6);
        // BF16 keys: nothing to correct, so no mode is shown as if it ran.
        const bool corrects = correction_applies(*cache);
        int corr = corrects ? static_cast<int>(cache->correction) : -1;
        combo("##corr", &corr, {{-1, "n/a"}, {0, "off"}, {1, "taylor"}, {2, "exact"}, {3, "measured"}}, 56,
              corrects);
        if (corrects) cache->correction = static_cast<Correction>(corr);
        ImGui::PopID();
        return;
    }
    const float column = 96;
    ui::form_label("Key bits", column);
    ui::segmented("kbits", &cache->key_bits, bits_options());
    ui::form_label("Value bits", column);
    ui::segmented("vbits", &cache->value_bits, bits_options());
    ui::form_label("Group", column);
    ui::segmented("group", &cache->group, group_options(), any_quantized);
    ui::help_marker(
        "Token layout: channels of one token per group (32, 64 or 128 <= head_dim).\n"
        "Channel layout (keys only, KIVI): tokens per block.");
    // A switch the session may refuse: the settings take only if the engine's check finds no problem, else
    // the problem is shown.
    auto take_if_valid = [&](const CacheSettings& wanted) {
        SessionParams check;
        check.cache = wanted;
        const std::optional<std::string> problem =
            controller_->config() ? check_session_params(*controller_->config(), check) : std::nullopt;
        if (problem)
            notify(*problem, true);
        else
            *cache = wanted;
    };
    int layout = static_cast<int>(cache->key_layout);
    ui::form_label("Key layout", column);
    if (ui::segmented("layout", &layout, {{0, "token"}, {1, "channel"}}, cache->key_bits < 16)) {
        CacheSettings wanted = *cache;
        wanted.key_layout = static_cast<KeyLayout>(layout);
        take_if_valid(wanted);  // rotated keys per token refuse the exact correction
    }
    // Rotated codes: each head vector stored per token (keys in the token layout, values) rotated before it
    // is quantized; same bytes.
    int basis = cache->rotated ? 1 : 0;
    ui::form_label("Basis", column);
    if (ui::segmented("basis", &basis, {{0, "plain"}, {1, "rotated"}},
                      cache->key_bits < 16 || cache->value_bits < 16)) {
        CacheSettings wanted = *cache;
        wanted.rotated = basis == 1;
        take_if_valid(wanted);
    }
    ui::help_marker(
        "rotated: each key (token layout) and value is multiplied by a fixed orthogonal matrix (signs and a "
        "Walsh-Hadamard transform) before its codes are made, and rotated back when it is read. The shipped "
        "model's keys have a few large channels that set every group's range; the rotation spreads them, so "
        "the steps shrink. Same bytes.");
    // The one correction control (C switches it too). BF16 keys: greyed with nothing lit.
    const bool corrects = correction_applies(*cache);
    int corr = corrects ? static_cast<int>(cache->correction) : -1;
    ui::form_label("Correction", column);
    if (ui::segmented("corr", &corr, {{0, "off"}, {1, "taylor"}, {2, "exact"}, {3, "measured"}}, corrects)) {
        // measured: the steps are measured per group of a key stored per token
        if (corr == static_cast<int>(Correction::Measured) && cache->key_layout != KeyLayout::Token) {
            notify("the measured correction needs keys per token", true);
        } else {
            CacheSettings wanted = *cache;
            wanted.correction = static_cast<Correction>(corr);
            take_if_valid(wanted);  // the engine's rules: calibrated codes and rotated keys refuse some modes
        }
    }
    if (!corrects) {
        ImGui::SameLine();
        // on the next line, under the buttons, where four modes leave no room beside them
        if (ImGui::GetContentRegionAvail().x < ImGui::CalcTextSize("BF16 keys").x) {
            ImGui::NewLine();
            ImGui::SetCursorPosX(column);  // the form's control column, as form_label's SameLine(column)
        }
        ImGui::TextDisabled("BF16 keys");
    }
    ui::help_marker(
        "Removes the Jensen bias: quantization noise on cached keys inflates their attention on "
        "average. taylor: (a^2/24) sum u^2 D^2 per key; exact: sum log(sinh x / x); measured: taylor on "
        "each group's rounding error measured when the key was written.");
    // The noise-level schedule: only the denoising passes at t <= this are corrected (1: every pass).
    ui::form_label("Correct t <=", column);
    if (!corrects || cache->correction == Correction::Off) ImGui::BeginDisabled();
    ImGui::SetNextItemWidth(120);
    ImGui::SliderFloat("##corr_t", &cache->correction_max_t, 0.f, 1.f, "%.3f");
    if (!corrects || cache->correction == Correction::Off) ImGui::EndDisabled();
    ui::help_marker(
        "The correction's noise-level schedule: passes at noise level t above this run uncorrected "
        "(1 = every pass, the paper's). The early, high-noise steps decide what a chunk keeps.");
    // What 2- and 4-bit codes stand for: midpoints, or the model's calibrated levels
    // (cache_calibration.json).
    const bool low_bits =
        cache->key_bits == 2 || cache->key_bits == 4 || cache->value_bits == 2 || cache->value_bits == 4;
    const bool calibrated_model = controller_->config() && !controller_->config()->cache_calibration.empty();
    int reconstruction = static_cast<int>(cache->reconstruction);
    ui::form_label("Codes", column);
    if (ui::segmented("codes", &reconstruction, {{0, "midpoint"}, {1, "calibrated"}}, low_bits)) {
        CacheSettings wanted = *cache;
        wanted.reconstruction = static_cast<Reconstruction>(reconstruction);
        if (wanted.reconstruction == Reconstruction::Calibrated && !calibrated_model)
            notify("this model has no cache calibration (kvworld-cli calibrate makes one)", true);
        else
            take_if_valid(wanted);
    }
    ui::help_marker(
        "midpoint: a code stands for the middle of its step (the paper's). calibrated: for the mean of the "
        "values it held on the model's calibration worlds, and taylor then adds the bias derived for those "
        "levels (the cache is under-weighted, not over-weighted). 2- and 4-bit codes.");
    ImGui::PopID();
}

void App::draw_controls_panel() {
    const ImGuiIO& io = ImGui::GetIO();
    ImGui::SetNextWindowPos(ImVec2(io.DisplaySize.x - panel_width_, menu_height_));
    ImGui::SetNextWindowSize(ImVec2(panel_width_, io.DisplaySize.y - menu_height_ - status_height_));
    ImGui::PushStyleVar(ImGuiStyleVar_WindowRounding, 0);
    ImGui::Begin("##controls", nullptr,
                 ImGuiWindowFlags_NoTitleBar | ImGuiWindowFlags_NoResize | ImGuiWindowFlags_NoMove |
                     ImGuiWindowFlags_NoSavedSettings | ImGuiWindowFlags_NoCollapse);
    ImGui::PopStyleVar();
    const float column = 96;
    GuiController& world = *controller_;
    const std::optional<ModelConfig>& config = world.config();

    // Without a model config nothing here can act: say what to do instead of offering dead controls.
    if (!config) {
        ImGui::PushStyleColor(ImGuiCol_Text, ui::color::vec(ui::color::kBad));
        ImGui::TextWrapped("No model is loaded.");
        ImGui::PopStyleColor();
        if (ImGui::Button("Open model...")) open_browser(BrowserPurpose::OpenModel);
        ImGui::Separator();
        ImGui::BeginDisabled();
    }
    if (ImGui::CollapsingHeader("World", ImGuiTreeNodeFlags_DefaultOpen)) draw_world_section();

    // ---- KV cache -------------------------------------------------------------------------------
    if (ImGui::CollapsingHeader("KV cache", ImGuiTreeNodeFlags_DefaultOpen)) {
        if (world.ab().enabled) {
            ImGui::TextDisabled("A/B view: each pane has its own cache below.");
        } else {
            CacheSettings cache = world.main_cache();
            draw_cache_editor("main", &cache, false);
            if (!(cache == world.main_cache())) world.set_main_cache(cache);
            if (!world.panes().empty()) {
                const PaneView& running = world.panes()[0];
                ImGui::TextDisabled("Running");
                ImGui::SameLine();
                ImGui::TextColored(ui::color::vec(ui::color::kAccent), "%s",
                                   running.applied.cache.label().c_str());
                const CacheSettings wanted = effective_cache(cache);
                if (!(wanted == running.applied.cache) && world.param_error().empty()) {
                    ImGui::SameLine();
                    ImGui::TextDisabled("-> %s next chunk", wanted.label().c_str());
                }
            }
            if (config) {
                const CacheBytes chunk = Session::predict_cache_bytes(*config, effective_cache(cache), 1);
                const CacheBytes bf16 = Session::predict_cache_bytes(*config, CacheSettings{}, 1);
                const double ratio = chunk.total() ? static_cast<double>(bf16.total()) / chunk.total() : 0.0;
                char versus[48] = "the size of BF16";
                if (ratio >= 1.05) std::snprintf(versus, sizeof versus, "%.1fx smaller than BF16", ratio);
                ui::muted_wrapped("Per chunk %s (codes %s + metadata %s), %s",
                                  format_bytes(static_cast<double>(chunk.total())).c_str(),
                                  format_bytes(static_cast<double>(chunk.codes)).c_str(),
                                  format_bytes(static_cast<double>(chunk.metadata)).c_str(), versus);
            }
        }
        if (!world.param_error().empty()) {
            ImGui::PushStyleColor(ImGuiCol_Text, ui::color::vec(ui::color::kBad));
            ImGui::TextWrapped("%s", world.param_error().c_str());
            ImGui::PopStyleColor();
        }
        ImGui::Spacing();
    }

    // Recording before the longer sections, so that it is in view at 1280x720.
    draw_recording_section();
    draw_ab_section();
    if (ImGui::CollapsingHeader("Context and sampler", ImGuiTreeNodeFlags_DefaultOpen))
        draw_context_section();

    // ---- View -----------------------------------------------------------------------------------
    if (ImGui::CollapsingHeader("View")) {
        int filter = static_cast<int>(presenter_.filter());
        ui::form_label("Filtering", column);
        if (ui::segmented("filter", &filter, {{0, "nearest"}, {1, "linear"}}))
            presenter_.set_filter(static_cast<render::Filter>(filter));
        ImGui::Checkbox("Performance HUD", &show_hud_);
        ImGui::SameLine();
        ImGui::Checkbox("Memory", &show_memory_);
        ImGui::SameLine();
        ImGui::Checkbox("Planner", &show_planner_);
        if (!gl_info_.empty()) ImGui::TextDisabled("GL: %s", gl_info_.c_str());
    }
    if (!config) ImGui::EndDisabled();
    ImGui::End();
}

void App::draw_world_section() {
    const float column = 96;
    const Keymap& k = keymap_.keymap;
    GuiController& world = *controller_;
    if (const std::optional<ModelConfig>& config = world.config()) {
        ImGui::TextUnformatted(config->name.c_str());
        ImGui::SameLine();
        ImGui::TextDisabled("%dx%d, %d frames/chunk, %d fps", config->width, config->height,
                            config->chunk_frames, config->fps);
    }
    int backend = static_cast<int>(world.backend());
    ui::form_label("Backend", column);
    const bool busy = world.busy();
    if (busy) ImGui::BeginDisabled();
    ui::segmented("backend", &backend, {{0, " CPU "}}, true);
    ImGui::SameLine(0, 2);
    const bool cuda_ok = world.cuda_unavailable().empty();
    int cuda_choice = backend;
    ui::segmented("backend_cuda", &cuda_choice, {{1, " CUDA "}}, cuda_ok);
    if (!cuda_ok && ImGui::IsItemHovered(ImGuiHoveredFlags_AllowWhenDisabled))
        ImGui::SetTooltip("CUDA unavailable: %s", world.cuda_unavailable().c_str());
    if (busy) ImGui::EndDisabled();
    if (cuda_choice != backend) backend = cuda_choice;
    if (backend != static_cast<int>(world.backend())) world.switch_backend(static_cast<BackendKind>(backend));
    ui::form_label("World seed", column);
    ImGui::SetNextItemWidth(110);
    ImGui::InputText("##wseed", world_seed_text_, sizeof world_seed_text_, ImGuiInputTextFlags_CharsDecimal);
    ImGui::SameLine(0, 4);
    if (ImGui::Button("Go##wseed")) {
        uint64_t seed = 0;
        if (parse_seed(world_seed_text_, &seed))
            world.new_world(seed);
        else
            notify("The world seed must be a whole number", true);
    }
    ImGui::SameLine(0, 4);
    if (ImGui::Button("Random##wseed")) world.new_world(std::nullopt);
    ui::form_label("Noise seed", column);
    ImGui::SetNextItemWidth(110);
    ImGui::InputText("##nseed", seed_text_, sizeof seed_text_, ImGuiInputTextFlags_CharsDecimal);
    ImGui::SameLine(0, 4);
    if (ImGui::Button("Set##nseed")) {
        uint64_t seed = 0;
        if (parse_seed(seed_text_, &seed))
            world.set_noise_seed(seed);
        else
            notify("The noise seed must be a whole number", true);
    }
    ImGui::SameLine(0, 4);
    if (ImGui::Button("Random##nseed")) world.set_noise_seed(random_seed());
    ui::help_marker(
        "The noise seed changes the sampling noise from the next chunk on; the world seed "
        "(terrain and start) restarts the world.");
    const bool paused = world.paused();
    if (ImGui::Button(paused ? "Play" : "Pause", ImVec2(80, 0))) world.set_paused(!paused);
    ImGui::SameLine();
    if (!paused) ImGui::BeginDisabled();
    if (ImGui::Button("Step", ImVec2(80, 0))) world.step_one_chunk();
    if (!paused) ImGui::EndDisabled();
    ImGui::SameLine();
    if (ImGui::Button("Restart", ImVec2(80, 0))) world.restart_world();
    ImGui::TextDisabled("%s pause  %s step  %s restart", k.describe(Command::Pause).c_str(),
                        k.describe(Command::Step).c_str(), k.describe(Command::Reset).c_str());
    ImGui::Spacing();
}

void App::draw_context_section() {
    const float column = 96;
    GuiController& world = *controller_;
    const std::optional<ModelConfig>& config = world.config();
    ContextSettings context = world.shared().context;
    SamplerSettings sampler = world.shared().sampler;
    ui::form_label("Window", column);
    ImGui::SetNextItemWidth(-1);
    ImGui::SliderInt("##window", &context.window, 0, 16,
                     context.window == 1 ? "%d recent chunk" : "%d recent chunks");
    ui::form_label("Recall", column);
    ImGui::SetNextItemWidth(-1);
    ImGui::SliderInt("##recall", &context.recall, 0, 8,
                     context.recall == 1 ? "%d older chunk" : "%d older chunks");
    ImGui::Dummy(ImVec2(column - 8, 0));
    ImGui::SameLine(column);
    ImGui::Checkbox("always recall the first chunk", &context.recall_first);
    bool limited = context.budget_bytes > 0;
    const double chunk_bytes =
        config ? static_cast<double>(
                     Session::predict_cache_bytes(*config, effective_cache(world.main_cache()), 1).total())
               : 1e6;
    ui::form_label("Budget", column);
    if (ImGui::Checkbox("##budgeton", &limited))
        context.budget_bytes = limited ? std::max(chunk_bytes * 12, 1e6) : 0;
    ImGui::SameLine();
    if (limited) {
        float mb = static_cast<float>(context.budget_bytes / 1e6);
        const float lo = static_cast<float>(chunk_bytes / 1e6), hi = std::max(lo * 500.0f, 1000.0f);
        ImGui::SetNextItemWidth(-1);
        if (ImGui::SliderFloat("##budget", &mb, lo, hi, mb < 10 ? "%.3f MB" : "%.1f MB",
                               ImGuiSliderFlags_Logarithmic))
            context.budget_bytes = std::max<double>(mb, lo) * 1e6;
    } else {
        ImGui::TextDisabled("unlimited");
    }
    const int model_steps = config ? config->steps : 0;
    ui::form_label("Steps", column);
    ImGui::SetNextItemWidth(-1);
    const std::string steps_format =
        sampler.steps == 0 ? "model default (" + std::to_string(model_steps) + ")" : "%d denoising steps";
    ImGui::SliderInt("##steps", &sampler.steps, 0, 50, steps_format.c_str());
    // Motion guidance: 0 = the model's default, 1 = off; values between snap to the nearer of the two.
    const float model_guidance = config ? config->guidance : 1.f;
    ui::form_label("Motion", column);
    ImGui::SetNextItemWidth(-1);
    char default_format[64];
    std::snprintf(default_format, sizeof default_format, "model default (%.1f)", model_guidance);
    const char* guidance_format = sampler.guidance == 0.f   ? default_format
                                  : sampler.guidance == 1.f ? "guidance off"
                                                            : "guidance %.2f";
    if (ImGui::SliderFloat("##guidance", &sampler.guidance, 0.f, 4.f, guidance_format) &&
        sampler.guidance < 1.f)
        sampler.guidance = sampler.guidance < 0.5f ? 0.f : 1.f;
    if (ImGui::IsItemHovered())
        ImGui::SetTooltip(
            "Motion guidance: the noisier denoising steps also predict the chunk with the movement keys "
            "released\n"
            "and extrapolate towards the commanded movement (up to x2 sampling cost while moving;\n"
            "the model's guidance_min_t says from which noise level).");
    if (!(context == world.shared().context)) world.set_context(context);
    if (!(sampler == world.shared().sampler)) world.set_sampler(sampler);
    ImGui::Spacing();
}

void App::draw_ab_section() {
    GuiController& world = *controller_;
    AbSettings ab = world.ab();
    if (!ImGui::CollapsingHeader("A/B compare", ab.enabled ? ImGuiTreeNodeFlags_DefaultOpen : 0)) return;
    ImGui::Checkbox("Compare panes side by side", &ab.enabled);
    ImGui::SameLine();
    ImGui::TextDisabled("(%s)", keymap_.keymap.describe(Command::ToggleAb).c_str());
    const bool enabled = ab.enabled;
    if (!enabled) ImGui::BeginDisabled();
    const float column = 96;
    ui::form_label("Panes", column);
    ui::segmented("panes", &ab.panes, {{2, " 2 "}, {3, " 3 "}, {4, " 4 "}});
    ImGui::Checkbox("BF16 reference pane (PSNR, stolen mass)", &ab.reference);
    if (ab.reference) {
        ImGui::Checkbox("Also on the reference's context", &ab.same_context);
        ui::help_marker(
            "Each compared cache also generates every chunk from the reference's own context, with the same "
            "noise: PSNR and stolen mass on an identical context (what kvworld-cli eval --mode paired "
            "measures), beside those of the pane's own rollout, which drifts away from the reference. One "
            "more chunk per compared pane.");
    }
    ui::muted_wrapped("K, V bits, group, key layout, correction (%s: off/on for every quantized pane)",
                      keymap_.keymap.describe(Command::ToggleCorrection).c_str());
    const int compared = ab.compared_panes();
    for (int i = 0; i < compared; ++i) {
        const int pane_index = i + (ab.reference ? 1 : 0);
        ui::legend(ui::color::pane(pane_index), std::to_string(pane_index + 1).c_str());
        ImGui::SameLine(0, 8);
        draw_cache_editor(("ab" + std::to_string(i)).c_str(), &ab.cache[static_cast<size_t>(i)], true);
    }
    if (!enabled) ImGui::EndDisabled();
    ImGui::TextDisabled("Same actions, same noise, one shared model.");
    ImGui::Spacing();
    if (!(ab == world.ab())) world.set_ab(ab);
}

void App::draw_recording_section() {
    if (!ImGui::CollapsingHeader("Recording", ImGuiTreeNodeFlags_DefaultOpen)) return;
    const TraceRecorder& recorder = controller_->recorder();
    if (recorder.active()) {
        ImGui::Text("Trace: %d generated frames", recorder.generated_frames());
        ImGui::SameLine();
        if (recorder.exact_replay()) {
            ImGui::TextColored(ui::color::vec(ui::color::kGood), "exact replay");
        } else {
            ImGui::TextColored(ui::color::vec(ui::color::kWarn), "not exact");
            if (ImGui::IsItemHovered()) ImGui::SetTooltip("%s", recorder.divergence().c_str());
        }
    }
    if (ImGui::Button("Save trace...", ImVec2(120, 0))) {
        path_prompt_ = PathPrompt::SaveTrace;
        path_buffer_ = (out_dir() / (timestamp_name("trace") + ".json")).string();
    }
    ImGui::SameLine();
    if (ImGui::Button("Load trace...", ImVec2(120, 0))) open_browser(BrowserPurpose::LoadTrace);
    if (ImGui::Button("Screenshot", ImVec2(120, 0))) take_screenshot();
    ImGui::SameLine();
    if (video_.recording()) {
        ImGui::PushStyleColor(ImGuiCol_Button, ImVec4(0.55f, 0.16f, 0.15f, 1));
        if (ImGui::Button("Stop video", ImVec2(120, 0))) toggle_video();
        ImGui::PopStyleColor();
    } else if (ImGui::Button("Record video", ImVec2(120, 0))) {
        toggle_video();
    }
    ui::muted_wrapped("%s screenshot  %s video  %s", keymap_.keymap.describe(Command::Screenshot).c_str(),
                      keymap_.keymap.describe(Command::ToggleVideo).c_str(),
                      frontend::have_ffmpeg() ? "MP4 via ffmpeg" : "PNG frames (no ffmpeg)");
    ImGui::AlignTextToFramePadding();
    ImGui::TextDisabled("Folder");
    ImGui::SameLine();
    ImGui::SetNextItemWidth(-1);
    ImGui::InputText("##outdir", &options_.out_dir);
    if (writer_.pending() > 0) ImGui::TextDisabled("writing %d file(s)...", writer_.pending());
    ImGui::Spacing();
}

}  // namespace kvw::gui
