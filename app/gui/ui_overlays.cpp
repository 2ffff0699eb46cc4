// The frame of the UI: menu bar, the world view (one pane or the A/B grid), overlays on it (HUD,
// generating/paused/replay state), the status bar, messages, help and the path prompt.
#include <imgui.h>
#include <imgui_internal.h>  // ImRect

#include <algorithm>
#include <cmath>

#include "app.h"
#include "ui_style.h"

namespace kvw::gui {

namespace {

constexpr ImGuiWindowFlags kOverlayFlags =
    ImGuiWindowFlags_NoDecoration | ImGuiWindowFlags_AlwaysAutoResize | ImGuiWindowFlags_NoSavedSettings |
    ImGuiWindowFlags_NoFocusOnAppearing | ImGuiWindowFlags_NoNav | ImGuiWindowFlags_NoMove;

// Best grid for n panes of aspect `aspect` (w/h) in a w x h area: the one with the largest pane.
void pane_grid(int n, float w, float h, float aspect, int* cols, int* rows) {
    float best = -1;
    for (int c = 1; c <= n; ++c) {
        const int r = (n + c - 1) / c;
        const float cell_w = w / c, cell_h = h / r;
        const float pane_w = std::min(cell_w, cell_h * aspect);
        if (pane_w > best) {
            best = pane_w;
            *cols = c;
            *rows = r;
        }
    }
}

void centered_text(ImDrawList* dl, ImVec2 center, ImU32 col, const char* text) {
    const ImVec2 size = ImGui::CalcTextSize(text);
    dl->AddText(ImVec2(center.x - size.x * 0.5f, center.y - size.y * 0.5f), col, text);
}

// A label chip drawn on top of a pane; returns where it went.
ImRect chip(ImDrawList* dl, ImVec2 pos, ImU32 accent, const std::string& text) {
    const ImVec2 size = ImGui::CalcTextSize(text.c_str());
    const float pad = 5;
    const ImVec2 end(pos.x + size.x + 2 * pad + 6, pos.y + size.y + 2 * pad);
    dl->AddRectFilled(pos, end, IM_COL32(10, 12, 16, 200), 4);
    dl->AddRectFilled(pos, ImVec2(pos.x + 4, pos.y + size.y + 2 * pad), accent, 4,
                      ImDrawFlags_RoundCornersLeft);
    dl->AddText(ImVec2(pos.x + pad + 6, pos.y + pad), IM_COL32(235, 236, 240, 255), text.c_str());
    return ImRect(pos, end);
}

std::string fmt(const char* format, double v) {
    char buf[64];
    std::snprintf(buf, sizeof buf, format, v);
    return buf;
}

}  // namespace

float App::ab_strip_height() const {
    const GuiController& world = *controller_;
    // Room for a plot row per compared pane, never more than a third of the world area.
    const int rows = std::max(
        1, static_cast<int>(world.panes().size()) - (world.ab_stats().reference_index() >= 0 ? 1 : 0));
    const float wanted = 2.2f * ImGui::GetFrameHeightWithSpacing() + rows * 46.0f;
    return std::clamp(wanted, 120.0f, (world_y1_ - world_y0_) * 0.34f);
}

void App::draw_ui(const FrameInput& in) {
    const ImGuiIO& io = ImGui::GetIO();
    widgets_.clear();
    draw_menu_bar();
    note_widget("menu_bar", 0, 0, io.DisplaySize.x, menu_height_);
    status_height_ = ImGui::GetFrameHeight() + 12;
    panel_width_ = show_panel_ ? std::clamp(io.DisplaySize.x * 0.28f, 340.0f, 440.0f) : 0.0f;
    memory_width_ = show_memory_ ? std::clamp(io.DisplaySize.x * 0.25f, 300.0f, 400.0f) : 0.0f;
    world_x0_ = memory_width_;
    world_y0_ = menu_height_;
    world_x1_ = io.DisplaySize.x - panel_width_;
    world_y1_ = io.DisplaySize.y - status_height_;
    draw_world(in);
    if (show_panel_) {
        draw_controls_panel();
        note_widget("controls_panel", world_x1_, world_y0_, io.DisplaySize.x, world_y1_);
    }
    if (show_hud_) draw_hud(in);
    if (show_memory_) {
        draw_memory_overlay();
        note_widget("memory_panel", 0, world_y0_, memory_width_, world_y1_);
    }
    if (show_planner_) draw_planner();
    draw_input_strip();
    draw_status_bar();
    note_widget("status_bar", 0, world_y1_, io.DisplaySize.x, io.DisplaySize.y);
    draw_toasts(in.now);
    if (show_help_) draw_help();
    draw_path_popup();
}

void App::draw_menu_bar() {
    GuiController& world = *controller_;
    if (!ImGui::BeginMainMenuBar()) return;
    menu_height_ = ImGui::GetWindowSize().y;
    ImGui::PushStyleColor(ImGuiCol_Text, ui::color::vec(ui::color::kAccent));
    ImGui::TextUnformatted("KVWorld");
    ImGui::PopStyleColor();
    ImGui::Spacing();
    const Keymap& k = keymap_.keymap;
    if (ImGui::BeginMenu("File")) {
        if (ImGui::MenuItem("Load trace...")) {
            path_prompt_ = PathPrompt::LoadTrace;
            path_buffer_ = (out_dir() / "trace.json").string();
        }
        if (ImGui::MenuItem("Save trace...", nullptr, false, world.recorder().active())) {
            path_prompt_ = PathPrompt::SaveTrace;
            path_buffer_ = (out_dir() / (timestamp_name("trace") + ".json")).string();
        }
        ImGui::Separator();
        if (ImGui::MenuItem("Screenshot", k.describe(Command::Screenshot).c_str())) take_screenshot();
        if (ImGui::MenuItem(video_.recording() ? "Stop video" : "Record video",
                            k.describe(Command::ToggleVideo).c_str()))
            toggle_video();
        ImGui::Separator();
        if (ImGui::MenuItem("Quit")) quit_requested_ = true;
        ImGui::EndMenu();
    }
    if (ImGui::BeginMenu("World")) {
        const bool paused = world.paused();
        if (ImGui::MenuItem(paused ? "Play" : "Pause", k.describe(Command::Pause).c_str()))
            world.set_paused(!paused);
        if (ImGui::MenuItem("Step one chunk", k.describe(Command::Step).c_str(), false, paused))
            world.step_one_chunk();
        if (ImGui::MenuItem("Restart", k.describe(Command::Reset).c_str())) world.restart_world();
        if (ImGui::MenuItem("New random world")) world.new_world(std::nullopt);
        ImGui::Separator();
        using Correction = GuiController::CorrectionState;
        const Correction correction = world.correction_state();
        if (ImGui::MenuItem("Correction", k.describe(Command::ToggleCorrection).c_str(),
                            correction == Correction::On, correction != Correction::NothingToCorrect))
            world.toggle_correction();
        ImGui::EndMenu();
    }
    if (ImGui::BeginMenu("View")) {
        ImGui::MenuItem("Controls panel", k.describe(Command::TogglePanel).c_str(), &show_panel_);
        ImGui::MenuItem("Performance HUD", k.describe(Command::ToggleHud).c_str(), &show_hud_);
        ImGui::MenuItem("Memory overlay", k.describe(Command::ToggleMemory).c_str(), &show_memory_);
        ImGui::MenuItem("Memory planner", nullptr, &show_planner_);
        bool ab = world.ab().enabled;
        if (ImGui::MenuItem("A/B compare", k.describe(Command::ToggleAb).c_str(), &ab))
            world.set_ab_enabled(ab);
        ImGui::Separator();
        const render::Filter filter = presenter_.filter();
        if (ImGui::MenuItem("Nearest filtering", nullptr, filter == render::Filter::Nearest))
            presenter_.set_filter(render::Filter::Nearest);
        if (ImGui::MenuItem("Linear filtering", nullptr, filter == render::Filter::Linear))
            presenter_.set_filter(render::Filter::Linear);
        ImGui::EndMenu();
    }
    if (ImGui::BeginMenu("Help")) {
        ImGui::MenuItem("Keys and concepts", k.describe(Command::ToggleHelp).c_str(), &show_help_);
        ImGui::EndMenu();
    }
    // Right side: what runs where.
    std::string right = std::string(to_string(world.backend())) + " backend";
    if (world.config()) right = world.config()->name + "  |  " + right;
    const float w = ImGui::CalcTextSize(right.c_str()).x;
    ImGui::SameLine(ImGui::GetWindowWidth() - w - 16);
    ImGui::TextDisabled("%s", right.c_str());
    ImGui::EndMainMenuBar();
}

void App::draw_world(const FrameInput&) {
    const GuiController& world = *controller_;
    ImDrawList* dl = ImGui::GetBackgroundDrawList();
    const ImVec2 a(world_x0_, world_y0_), b(world_x1_, world_y1_);
    dl->AddRectFilled(a, b, ui::color::kWorldBackground);
    float y1 = world_y1_;
    const bool ab_view = world.ab().enabled && world.panes().size() > 1;
    if (ab_view) {
        y1 = world_y1_ - ab_strip_height();
        draw_ab_plots();
    }
    if (!world.config() || world.state() == RunState::Failed) {
        centered_text(dl, ImVec2((a.x + b.x) * 0.5f, (a.y + y1) * 0.5f), ui::color::kBad,
                      world.fatal_error().empty() ? "No model" : world.fatal_error().c_str());
        return;
    }
    if (!world.playback() || !world.playback()->has_frame()) {
        const Progress p = world.worker_progress();
        const std::string text = p.activity.empty() ? "Starting..." : p.activity + "...";
        centered_text(dl, ImVec2((a.x + b.x) * 0.5f, (a.y + y1) * 0.5f), ui::color::kMuted, text.c_str());
        return;
    }
    const Playback& playback = *world.playback();
    const ModelConfig& config = *world.config();
    // State banner on the world: paused or replaying. In the A/B grid it gets its own band on top.
    const float mid = (a.x + b.x) * 0.5f;
    std::string banner;
    ImU32 banner_color = ui::color::kWarn;
    if (playback.paused()) {
        banner = "PAUSED   " + keymap_.keymap.describe(Command::Pause) + " play   " +
                 keymap_.keymap.describe(Command::Step) + " step one chunk";
    } else if (world.replaying()) {
        banner = "REPLAYING TRACE   " + std::to_string(world.replay_position()) + " / " +
                 std::to_string(world.replay_length()) + " frames";
        banner_color = ui::color::kAccent;
    }
    const float banner_band = !banner.empty() && ab_view ? ImGui::GetTextLineHeight() + 24 : 0;

    const int n = static_cast<int>(world.panes().size());
    const float aspect = static_cast<float>(config.width) / config.height;
    const float margin = ab_view ? 8.0f : 0.0f;
    // Where the frames go: the whole area (the HUD then overlays them), or the area beside or below the
    // HUD when that costs the frames little; whichever gives the largest pane, preferring not to overlap.
    struct Region {
        float x0, y0, x1, y1;
    };
    auto pane_size = [&](const Region& r, int* cols, int* rows) {
        const float w = r.x1 - r.x0 - 2 * margin, h = r.y1 - r.y0 - 2 * margin;
        if (w <= 0 || h <= 0) return 0.0f;
        pane_grid(n, w, h, aspect, cols, rows);
        return std::min(w / *cols, h / *rows * aspect);
    };
    Region region{a.x, a.y + banner_band, b.x, y1};
    int cols = 1, rows = 1;
    const float full = pane_size(region, &cols, &rows);
    if (show_hud_ && hud_width_ > 0) {
        // Frames a little smaller but fully visible beat frames under the HUD.
        float best = 0.8f * full;
        for (const Region& r : {Region{a.x + hud_width_ + 16, a.y + banner_band, b.x, y1},
                                Region{a.x, a.y + std::max(banner_band, hud_height_ + 16), b.x, y1}}) {
            int c = 1, rr = 1;
            const float size = pane_size(r, &c, &rr);
            if (size > best) {
                best = size;
                region = r;
                cols = c;
                rows = rr;
            }
        }
    }
    const float area_w = region.x1 - region.x0 - 2 * margin, area_h = region.y1 - region.y0 - 2 * margin;
    // Cells as large as the panes and the grid centred as a block (no wide gaps between columns).
    const float gap = ab_view ? 4.0f : 0.0f;
    const float pane_w = std::min(area_w / cols - 2 * gap, (area_h / rows - 2 * gap) * aspect);
    const float cell_w = pane_w + 2 * gap, cell_h = pane_w / aspect + 2 * gap;
    const float grid_x = region.x0 + margin + (area_w - cols * cell_w) * 0.5f;
    const float grid_y = region.y0 + margin + (area_h - rows * cell_h) * 0.5f;
    const ChunkEntry& entry = playback.current();
    pane_rects_.clear();
    for (int i = 0; i < n; ++i) {
        const int c = i % cols, r = i / cols;
        const float w = pane_w, h = pane_w / aspect;
        const float cx = grid_x + (c + 0.5f) * cell_w, cy = grid_y + (r + 0.5f) * cell_h;
        const ImVec2 p0(std::floor(cx - w * 0.5f), std::floor(cy - h * 0.5f)),
            p1(p0.x + std::floor(w), p0.y + std::floor(h));
        const auto tex = reinterpret_cast<ImTextureID>(
            static_cast<intptr_t>(presenter_.texture(entry.slot, i, playback.frame())));
        dl->AddImage(tex, p0, p1);
        pane_rects_.push_back({p0.x, p0.y, p1.x, p1.y});
        const std::string pane_name = "pane_" + std::to_string(i + 1);
        note_widget(pane_name, p0.x, p0.y, p1.x, p1.y);
        if (!ab_view) continue;
        dl->AddRect(ImVec2(p0.x - 1, p0.y - 1), ImVec2(p1.x + 1, p1.y + 1), ui::color::pane(i), 0, 0, 1.5f);
        const PaneView& pane = world.panes()[static_cast<size_t>(i)];
        const ImRect label = chip(
            dl, ImVec2(p0.x + 8, p0.y + 8), ui::color::pane(i),
            pane.spec.reference ? "REFERENCE  " + pane.applied.cache.label() : pane.applied.cache.label());
        note_widget(pane_name + "/label", label.Min.x, label.Min.y, label.Max.x, label.Max.y);
        if (i < world.ab_stats().panes()) {
            const PaneSeries& s = world.ab_stats().series(i);
            std::string stats;
            if (!s.psnr.empty() && std::isfinite(s.psnr.back())) stats += fmt("PSNR %.1f dB", s.psnr.back());
            if (!s.delta_ps.empty() && std::isfinite(s.delta_ps.back()))
                stats += (stats.empty() ? "" : "   ") + std::string(ui::delta_ps_name()) +
                         fmt(" %+.4f", s.delta_ps.back());
            if (!stats.empty()) {
                const ImRect r = chip(dl, ImVec2(p0.x + 8, p1.y - ImGui::GetTextLineHeight() - 18),
                                      ui::color::pane(i), stats);
                note_widget(pane_name + "/stats", r.Min.x, r.Min.y, r.Max.x, r.Max.y);
            }
        }
    }

    if (!banner.empty()) {
        const ImVec2 size = ImGui::CalcTextSize(banner.c_str());
        const ImVec2 p(mid - size.x * 0.5f - 12, a.y + 12);
        dl->AddRectFilled(p, ImVec2(p.x + size.x + 24, p.y + size.y + 12), IM_COL32(10, 12, 16, 210), 6);
        dl->AddText(ImVec2(p.x + 12, p.y + 6), banner_color, banner.c_str());
        note_widget("banner", p.x, p.y, p.x + size.x + 24, p.y + size.y + 12);
    }
    if (video_.recording()) {
        const std::string rec = "REC  " + std::to_string(video_.frames()) + " frames";
        const ImVec2 size = ImGui::CalcTextSize(rec.c_str());
        const ImVec2 p(b.x - size.x - 40, a.y + 12);
        dl->AddRectFilled(p, ImVec2(p.x + size.x + 30, p.y + size.y + 12), IM_COL32(10, 12, 16, 210), 6);
        if (std::fmod(now_, 1.0) < 0.6)
            dl->AddCircleFilled(ImVec2(p.x + 12, p.y + 6 + size.y * 0.5f), 5, ui::color::kBad);
        dl->AddText(ImVec2(p.x + 22, p.y + 6), ui::color::kBad, rec.c_str());
        note_widget("recording_badge", p.x, p.y, p.x + size.x + 30, p.y + size.y + 12);
    }
    const bool generating_visible =
        (world.stalled() && world.stall_since() >= 0 && now_ - world.stall_since() > 0.12) ||
        world.restart_pending();
    if ((generating_visible || world.state() == RunState::Loading) && !show_help_) {
        const Progress p = world.worker_progress();
        ImGui::SetNextWindowPos(ImVec2(mid, y1 - 16), ImGuiCond_Always, ImVec2(0.5f, 1.0f));
        ImGui::SetNextWindowBgAlpha(0.85f);
        if (ImGui::Begin("##generating", nullptr, kOverlayFlags | ImGuiWindowFlags_NoInputs)) {
            const double waited = world.stall_since() >= 0 ? now_ - world.stall_since() : 0;
            ImGui::Text("%s...", p.activity.empty() ? "Waiting for the worker" : p.activity.c_str());
            ImGui::SameLine();
            ImGui::TextDisabled("%.1f s", waited);
            if (world.restart_pending())
                ImGui::TextColored(ui::color::vec(ui::color::kWarn),
                                   "then: %s (continuing from the newest frames)",
                                   world.pending_restart_reason().c_str());
            float fraction = 0;
            std::string overlay;
            if (p.total > 0) {
                fraction = (static_cast<float>(p.pane) + static_cast<float>(p.done) / p.total) /
                           std::max(1, p.panes);
                overlay = p.stage + " " + std::to_string(p.done) + "/" + std::to_string(p.total);
                if (p.panes > 1)
                    overlay += "   pane " + std::to_string(p.pane + 1) + "/" + std::to_string(p.panes);
            }
            ImGui::ProgressBar(fraction, ImVec2(280, 0), overlay.c_str());
            note_window("progress");
        }
        ImGui::End();
    }
}

void App::draw_input_strip() {
    const GuiController& world = *controller_;
    if (!world.ready() || !world.takes_player_input()) return;
    const InputTimeline& input = world.input_timeline();
    const std::string held = held_keys_text(input.latest().held);
    const std::string queued = held_keys_text(input.pending());
    if (held.empty() && queued.empty()) return;
    // Which keys the next chunk will carry, so that on a slow backend the player sees the input is kept.
    std::string text = "held: " + (held.empty() ? std::string("-") : held);
    if (!queued.empty()) {
        text += "    next chunk: " + queued;
        const double waited = now_ - input.pending_since();
        if (waited >= 1.0) text += fmt("  (%.0f s of input)", waited);
    }
    const bool ab_view = world.ab().enabled && world.panes().size() > 1;
    const float bottom = ab_view ? world_y1_ - ab_strip_height() : world_y1_;
    ImDrawList* dl = ImGui::GetForegroundDrawList();
    const float line = ImGui::GetTextLineHeight();
    const ImRect r = chip(dl, ImVec2(world_x0_ + 10, bottom - line - 20), ui::color::kAccent, text);
    note_widget("input_strip", r.Min.x, r.Min.y, r.Max.x, r.Max.y);
}

void App::draw_hud(const FrameInput&) {
    if (show_memory_) {
        // The memory column is open: the HUD is its first section instead of floating over the frames.
        hud_width_ = hud_height_ = 0;
        return;
    }
    const float pad = 10;
    ImGui::SetNextWindowPos(ImVec2(world_x0_ + pad, world_y0_ + pad), ImGuiCond_Always);
    ImGui::SetNextWindowBgAlpha(0.80f);
    if (!ImGui::Begin("##hud", nullptr, kOverlayFlags)) {
        ImGui::End();
        return;
    }
    draw_hud_contents();
    hud_width_ = ImGui::GetWindowWidth();
    hud_height_ = ImGui::GetWindowHeight();
    note_window("hud");
    ImGui::End();
}

void App::draw_hud_contents() {
    const GuiController& world = *controller_;
    const std::vector<PaneView>& panes = world.panes();
    const std::optional<ModelConfig>& config = world.config();
    ui::section_title("PERFORMANCE");
    ImGui::PushFont(ui::mono_font());
    const float col = ImGui::CalcTextSize("Generated ").x + 6;
    auto row = [&](const char* label) {
        ImGui::TextDisabled("%s", label);
        ImGui::SameLine(col);
    };
    row("UI");
    ImGui::Text("%5.0f fps", ui_fps_.mean());
    if (config) {
        row("Video");
        ImGui::Text("%5d fps  frame %d", config->fps,
                    world.playback() ? std::max(0, world.playback()->frames_shown() - 1) : 0);
    }
    row("Generated");
    if (world.generated_fps().empty()) {
        ImGui::TextDisabled("  --");
    } else {
        const double fps = world.generated_fps().last();
        const ImU32 c = config && fps >= config->fps ? ui::color::kGood : ui::color::kWarn;
        ImGui::TextColored(ui::color::vec(c), "%5.1f fps", fps);
        if (panes.size() > 1) {
            ImGui::SameLine();
            ImGui::TextDisabled("(%zu panes)", panes.size());
        }
    }
    if (!panes.empty() && panes[0].last && panes[0].last->chunk > 0) {
        const StageTimes& t = panes[0].last->times;
        row("Chunk");
        ImGui::Text("%5.0f ms", t.total_ms);
        ImGui::SameLine();
        const double other = std::max(0.0, t.total_ms - t.denoise_ms - t.cache_pass_ms - t.decode_ms);
        ImGui::SetCursorPosY(ImGui::GetCursorPosY() + ImGui::GetTextLineHeight() * 0.3f);
        ui::stacked_bar(ImVec2(110, ImGui::GetTextLineHeight() * 0.5f),
                        {{t.denoise_ms, ui::color::kAccent},
                         {t.cache_pass_ms, ui::color::kMetadata},
                         {t.decode_ms, ui::color::kDecode},
                         {other, ui::color::kWeights}},
                        t.total_ms);
        ImGui::Dummy(ImVec2(col - 8, 0));
        ImGui::SameLine(col);
        ui::legend(ui::color::kAccent, ("den " + fmt("%.0f", t.denoise_ms)).c_str());
        ImGui::SameLine(0, 8);
        ui::legend(ui::color::kMetadata, ("cache " + fmt("%.0f", t.cache_pass_ms)).c_str());
        ImGui::SameLine(0, 8);
        ui::legend(ui::color::kDecode, ("dec " + fmt("%.1f", t.decode_ms)).c_str());
        if (ImGui::IsItemHovered())
            ImGui::SetTooltip(
                "ms per chunk by stage: denoise (all sampling steps), cache pass (writes the chunk's K/V), "
                "decode (frames to RGB)");
    }
    row("Latency");
    if (world.latency_ms().empty())
        ImGui::TextDisabled("  --");
    else
        ImGui::Text("%5.0f ms  (mean %.0f)", world.latency_ms().last(), world.latency_ms().mean());
    if (ImGui::IsItemHovered())
        ImGui::SetTooltip(
            "Action to frame: from the moment an action is sampled (one per shown frame)\n"
            "to the moment the frame generated from it is on screen. By design one chunk\n"
            "(%d frames = %.0f ms) plus any generation overrun.",
            world.frames_per_chunk(), config ? 1000.0 * config->chunk_seconds() : 0.0);
    ImGui::PopFont();
    row("Path");
    const bool interop = presenter_.last_upload_interop();
    if (interop) {
        ImGui::TextColored(ui::color::vec(ui::color::kGood), "CUDA-GL interop");
    } else {
        const std::string reason = host_upload_reason();
        ImGui::TextUnformatted("host upload");
        ImGui::SameLine(0, 4);
        ImGui::TextDisabled("(%s)", reason.c_str());
    }
    if (world.chunk_ms_history().size() > 1) {
        std::vector<float> v(world.chunk_ms_history().begin(), world.chunk_ms_history().end());
        ImGui::PlotLines("##chunkms", v.data(), static_cast<int>(v.size()), 0, nullptr, 0.0f, FLT_MAX,
                         ImVec2(ImGui::GetContentRegionAvail().x, 28));
        if (ImGui::IsItemHovered()) ImGui::SetTooltip("ms per chunk, last %zu chunks", v.size());
    }
}

void App::draw_status_bar() {
    const GuiController& world = *controller_;
    const ImGuiIO& io = ImGui::GetIO();
    ImGui::SetNextWindowPos(ImVec2(0, io.DisplaySize.y - status_height_));
    ImGui::SetNextWindowSize(ImVec2(io.DisplaySize.x, status_height_));
    ImGui::PushStyleVar(ImGuiStyleVar_WindowRounding, 0);
    ImGui::PushStyleVar(ImGuiStyleVar_WindowPadding, ImVec2(10, 6));
    ImGui::PushStyleColor(ImGuiCol_WindowBg, ImVec4(0.07f, 0.08f, 0.10f, 1.0f));
    ImGui::Begin("##status", nullptr, kOverlayFlags & ~ImGuiWindowFlags_AlwaysAutoResize);
    ImGui::PopStyleColor();
    ImGui::PopStyleVar(2);
    const Progress p = world.worker_progress();
    if (world.state() == RunState::Failed)
        ui::state_chip(ui::color::kBad, "STOPPED");
    else if (world.state() == RunState::Loading)
        ui::state_chip(ui::color::kWarn, "LOADING");
    else if (world.stalled())
        ui::state_chip(ui::color::kWarn, "GENERATING");
    else if (world.paused())
        ui::state_chip(ui::color::kWarn, "PAUSED");
    else
        ui::state_chip(ui::color::kGood, "PLAYING");
    ImGui::SameLine(0, 14);
    if (world.playback() && world.playback()->has_frame() && world.config()) {
        const double t =
            static_cast<double>(std::max(0, world.playback()->frames_shown() - 1)) / world.config()->fps;
        ImGui::Text("chunk %d   %d:%04.1f", world.playback()->current().chunk, static_cast<int>(t / 60),
                    std::fmod(t, 60.0));
        ImGui::SameLine(0, 14);
    }
    if (p.busy) {
        float fraction = p.total > 0 ? (static_cast<float>(p.pane) + static_cast<float>(p.done) / p.total) /
                                           std::max(1, p.panes)
                                     : 0;
        ImGui::ProgressBar(fraction, ImVec2(140, ImGui::GetTextLineHeight() + 2),
                           p.stage.empty() ? "" : p.stage.c_str());
        ImGui::SameLine(0, 8);
        ImGui::TextDisabled(
            "%s%s", p.activity.c_str(),
            world.restart_pending() ? (", then " + world.pending_restart_reason()).c_str() : "");
        ImGui::SameLine(0, 14);
    }
    const bool tiny_note = world.model_note().rfind("NOTE", 0) == 0;
    if (tiny_note) {
        ImGui::TextColored(ui::color::vec(ui::color::kWarn),
                           "No trained default model: the tiny random test model shows no world");
        if (ImGui::IsItemHovered()) ImGui::SetTooltip("%s", world.model_note().c_str());
    } else {
        ImGui::TextDisabled("%s", world.model_note().c_str());
    }
    // Right: presentation path and gamepad.
    std::string right = presenter_.last_upload_interop() ? "CUDA-GL interop" : "host upload";
    if (!gamepad_status_.empty()) right = gamepad_status_ + "   |   " + right;
    const float w = ImGui::CalcTextSize(right.c_str()).x;
    ImGui::SameLine(std::max(ImGui::GetCursorPosX() + 20, io.DisplaySize.x - w - 14));
    ImGui::TextDisabled("%s", right.c_str());
    ImGui::End();
}

void App::draw_toasts(double now) {
    while (!toasts_.empty() && now - toasts_.front().shown_at > (toasts_.front().error ? 14.0 : 6.0))
        toasts_.pop_front();
    if (toasts_.empty()) return;
    ImGui::SetNextWindowPos(ImVec2(world_x1_ - 12, world_y1_ - 12), ImGuiCond_Always, ImVec2(1, 1));
    ImGui::SetNextWindowBgAlpha(0.92f);
    ImGui::PushStyleVar(ImGuiStyleVar_WindowPadding, ImVec2(12, 8));
    if (ImGui::Begin("##toasts", nullptr, kOverlayFlags)) {
        ImGui::PushTextWrapPos(ImGui::GetCursorPosX() + std::min(520.0f, (world_x1_ - world_x0_) * 0.6f));
        for (const Toast& t : toasts_) {
            ui::state_chip(t.error ? ui::color::kBad : ui::color::kAccent, "");
            ImGui::SameLine(0, 2);
            if (t.error)
                ImGui::TextColored(ui::color::vec(ui::color::kBad), "%s", t.text.c_str());
            else
                ImGui::TextWrapped("%s", t.text.c_str());
        }
        ImGui::PopTextWrapPos();
        if (ImGui::IsWindowHovered() && ImGui::IsMouseClicked(ImGuiMouseButton_Left)) toasts_.clear();
        note_window("notifications");
    }
    ImGui::End();
    ImGui::PopStyleVar();
}

void App::draw_help() {
    const ImGuiIO& io = ImGui::GetIO();
    ImGui::SetNextWindowPos(ImVec2(io.DisplaySize.x * 0.5f, io.DisplaySize.y * 0.5f), ImGuiCond_Always,
                            ImVec2(0.5f, 0.5f));
    ImGui::SetNextWindowSize(ImVec2(std::min(860.0f, io.DisplaySize.x - 40), 0));
    ImGui::SetNextWindowSizeConstraints(ImVec2(0, 0), ImVec2(FLT_MAX, io.DisplaySize.y - 60));
    ImGui::SetNextWindowBgAlpha(1.0f);
    ImGui::SetNextWindowFocus();  // above the panels and overlays while open
    if (!ImGui::Begin("KVWorld help", &show_help_,
                      ImGuiWindowFlags_NoCollapse | ImGuiWindowFlags_NoSavedSettings |
                          ImGuiWindowFlags_NoResize | ImGuiWindowFlags_NoMove)) {
        ImGui::End();
        return;
    }
    if (ImGui::BeginTable("##help", 2, ImGuiTableFlags_SizingStretchProp | ImGuiTableFlags_BordersInnerV)) {
        ImGui::TableSetupColumn("keys", ImGuiTableColumnFlags_WidthStretch, 0.42f);
        ImGui::TableSetupColumn("concepts", ImGuiTableColumnFlags_WidthStretch, 0.58f);
        ImGui::TableNextColumn();
        ui::section_title("CONTROLS");
        const Keymap& k = keymap_.keymap;
        if (ImGui::BeginTable("##keys", 2, ImGuiTableFlags_RowBg)) {
            ImGui::TableSetupColumn("key", ImGuiTableColumnFlags_WidthFixed, 92);
            for (int c = 0; c < kCommandCount; ++c) {
                ImGui::TableNextColumn();
                ImGui::TextColored(ui::color::vec(ui::color::kAccent), "%s",
                                   k.describe(static_cast<Command>(c)).c_str());
                ImGui::TableNextColumn();
                ImGui::TextUnformatted(command_title(static_cast<Command>(c)));
            }
            ImGui::TableNextColumn();
            ImGui::TextColored(ui::color::vec(ui::color::kAccent), "Right mouse");
            ImGui::TableNextColumn();
            ImGui::TextUnformatted("Hold and move to look");
            ImGui::TableNextColumn();
            ImGui::TextColored(ui::color::vec(ui::color::kAccent), "Gamepad");
            ImGui::TableNextColumn();
            ImGui::TextWrapped("Left stick move, right stick look, triggers rise/sink");
            ImGui::EndTable();
        }
        ImGui::TextDisabled("Keys from %s", keymap_.path.string().c_str());
        if (!keymap_.error.empty())
            ImGui::TextColored(ui::color::vec(ui::color::kBad), "%s", keymap_.error.c_str());
        ImGui::TextDisabled("Gamepad: %s", gamepad_status_.c_str());
        ImGui::TableNextColumn();
        ui::section_title("WHAT YOU ARE LOOKING AT");
        ImGui::PushTextWrapPos(0);
        ImGui::TextUnformatted(
            "A video diffusion model generates this world chunk by chunk from your actions. Its memory of "
            "earlier chunks is a KV cache; here it is quantized to 8, 4 or 2 bits per value (groups of "
            "channels "
            "share a step and an offset: the metadata).");
        ImGui::Spacing();
        ImGui::TextUnformatted(
            "Jensen bias: rounding noise on a cached key makes exp(score) larger on average, so old chunks "
            "steal "
            "attention from the current one. The correction subtracts the expected excess from every cached "
            "key's score (taylor: a quadratic estimate; exact: log sinh(x)/x per channel).");
        ImGui::Spacing();
        ImGui::Text(
            "%s: attention mass on cached keys minus the BF16 reference's, averaged over layers. Above "
            "zero = stolen by quantization noise.",
            ui::delta_ps_name());
        ImGui::Spacing();
        ImGui::TextUnformatted(
            "Actions: the keys are read every UI frame; what was held or tapped since the previous chunk "
            "request (bottom left: held / next chunk) becomes the next chunk's actions, however long the "
            "chunk takes. Latency (HUD) is sample-to-display time: one chunk plus any generation overrun. "
            "Every "
            "setting applies from the next chunk; A/B panes run the same actions and noise in lockstep.");
        ImGui::PopTextWrapPos();
        ImGui::EndTable();
    }
    note_window("help", true);
    ImGui::End();
}

void App::draw_ab_plots() {
    const GuiController& world = *controller_;
    const float height = ab_strip_height();
    ImGui::SetNextWindowPos(ImVec2(world_x0_, world_y1_ - height));
    ImGui::SetNextWindowSize(ImVec2(world_x1_ - world_x0_, height));
    ImGui::PushStyleVar(ImGuiStyleVar_WindowRounding, 0);
    ImGui::Begin("##abplots", nullptr,
                 ImGuiWindowFlags_NoDecoration | ImGuiWindowFlags_NoSavedSettings | ImGuiWindowFlags_NoMove);
    ImGui::PopStyleVar();
    const int ref = world.ab_stats().reference_index();
    const bool have_ref = ref >= 0;
    ui::section_title(have_ref ? "A/B AGAINST THE BF16 REFERENCE (per chunk)"
                               : "A/B (no reference pane: attention mass on the cache)");
    const float plot_h = std::max(40.0f, (height - 3 * ImGui::GetFrameHeightWithSpacing()) /
                                                 std::max(1, world.ab_stats().panes() - (have_ref ? 1 : 0)) -
                                             4);
    const int columns = have_ref ? 3 : 2;
    if (ImGui::BeginTable("##ab", columns,
                          ImGuiTableFlags_SizingStretchProp | ImGuiTableFlags_BordersInnerV)) {
        ImGui::TableSetupColumn("Pane", ImGuiTableColumnFlags_WidthFixed, 190);
        if (have_ref) {
            ImGui::TableSetupColumn("PSNR vs reference (dB)");
            ImGui::TableSetupColumn((std::string(ui::delta_ps_name()) + " stolen attention mass").c_str());
        } else {
            ImGui::TableSetupColumn("P_S: attention mass on cached keys (mean over layers)");
        }
        ImGui::TableHeadersRow();
        for (int i = 0; i < world.ab_stats().panes(); ++i) {
            if (i == ref) continue;
            const PaneSeries& s = world.ab_stats().series(i);
            ImGui::TableNextRow();
            ImGui::TableNextColumn();
            ui::legend(ui::color::pane(i), s.label.c_str());
            ImGui::PushStyleColor(ImGuiCol_PlotLines, ui::color::vec(ui::color::pane(i)));
            auto plot = [&](const char* id, const std::vector<float>& v, const char* format) {
                ImGui::TableNextColumn();
                if (v.empty()) {
                    ImGui::TextDisabled("waiting for the first chunk");
                    return;
                }
                std::vector<float> finite;
                for (float x : v) finite.push_back(std::isfinite(x) ? x : 0.f);
                char overlay[48];
                std::snprintf(overlay, sizeof overlay, format, finite.back());
                ImGui::PlotLines(id, finite.data(), static_cast<int>(finite.size()), 0, overlay, FLT_MAX,
                                 FLT_MAX, ImVec2(ImGui::GetContentRegionAvail().x, plot_h));
            };
            ImGui::PushID(i);
            if (have_ref) {
                plot("##psnr", s.psnr, "%.2f dB");
                plot("##dps", s.delta_ps, "%+.5f");
            } else {
                plot("##ps", s.p_s, "%.4f");
            }
            ImGui::PopID();
            ImGui::PopStyleColor();
        }
        ImGui::EndTable();
    }
    note_window("ab_table");
    ImGui::End();
}

void App::draw_path_popup() {
    const GuiController& world = *controller_;
    const char* title = path_prompt_ == PathPrompt::SaveTrace ? "Save trace" : "Load trace";
    if (path_prompt_ != PathPrompt::None && !ImGui::IsPopupOpen(title)) ImGui::OpenPopup(title);
    ImGui::SetNextWindowSize(ImVec2(560, 0));
    if (!ImGui::BeginPopupModal(title, nullptr, ImGuiWindowFlags_NoResize | ImGuiWindowFlags_NoSavedSettings))
        return;
    if (path_prompt_ == PathPrompt::SaveTrace) {
        ImGui::TextWrapped(
            "Every action since the world started (%d generated frames) with its seeds and start pose.",
            world.recorder().generated_frames());
        if (!world.recorder().exact_replay())
            ImGui::TextColored(ui::color::vec(ui::color::kWarn), "Not an exact replay: %s",
                               world.recorder().divergence().c_str());
    } else {
        ImGui::TextWrapped("A kvworld trace (JSON). The world restarts from it and replays its actions.");
    }
    ImGui::SetNextItemWidth(-1);
    if (ImGui::IsWindowAppearing()) ImGui::SetKeyboardFocusHere();
    char buffer[1024];
    std::snprintf(buffer, sizeof buffer, "%s", path_buffer_.c_str());
    const bool enter =
        ImGui::InputText("##path", buffer, sizeof buffer, ImGuiInputTextFlags_EnterReturnsTrue);
    path_buffer_ = buffer;
    const bool ok =
        ImGui::Button(path_prompt_ == PathPrompt::SaveTrace ? "Save" : "Load", ImVec2(100, 0)) || enter;
    ImGui::SameLine();
    const bool cancel = ImGui::Button("Cancel", ImVec2(100, 0));
    if (ok) {
        if (path_prompt_ == PathPrompt::SaveTrace)
            controller_->save_trace(path_buffer_);
        else
            controller_->load_trace(path_buffer_);
    }
    if (ok || cancel || path_prompt_ == PathPrompt::None) {
        path_prompt_ = PathPrompt::None;
        ImGui::CloseCurrentPopup();
    }
    note_window("path_prompt", true);
    ImGui::EndPopup();
}

}  // namespace kvw::gui
