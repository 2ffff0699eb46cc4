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
std::string fmt(const char* format, double a, double b) {
    char buf[96];
    std::snprintf(buf, sizeof buf, format, a, b);
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
    draw_start_hint();
    draw_status_bar();
    note_widget("status_bar", 0, world_y1_, io.DisplaySize.x, io.DisplaySize.y);
    draw_toasts(in.now);
    draw_escape_menu();
    draw_browser();
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
        if (ImGui::MenuItem("Open model...")) open_browser(BrowserPurpose::OpenModel);
        if (ImGui::MenuItem("Load trace...", nullptr, false, world.ready()))
            open_browser(BrowserPurpose::LoadTrace);
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
    if (ImGui::BeginMenu("World", world.config().has_value())) {
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
    // Bands of their own, so that nothing is ever drawn over a picture: on top the compact HUD (small
    // windows), at the bottom the footer (held keys, state, recording).
    compact_hud_ = show_hud_ && !show_memory_ && (b.x - a.x < 760 || b.y - a.y < 600);
    const float top = a.y + (compact_hud_ ? compact_hud_height() : 0.0f);
    const float footer_h = ImGui::GetTextLineHeight() + 18;
    float bottom = y1 - footer_h;
    draw_world_footer(bottom, y1);
    if (start_hint_ && world.ready() && world.takes_player_input() && world.state() == RunState::Running) {
        bottom -= footer_h;  // the start hint's band (draw_start_hint), above the footer
        hint_y_ = bottom + 4;
    }
    if (!world.config() || world.state() == RunState::Failed) {
        draw_world_failure(top, bottom);
        return;
    }
    if (!world.playback() || !world.playback()->has_frame()) {
        const Progress p = world.worker_progress();
        const std::string text = p.activity.empty() ? "Starting..." : p.activity + "...";
        centered_text(dl, ImVec2((a.x + b.x) * 0.5f, (top + bottom) * 0.5f), ui::color::kMuted, text.c_str());
        return;
    }
    const Playback& playback = *world.playback();
    const ModelConfig& config = *world.config();
    // A pane enlarged by a click (A/B view) is drawn alone, in the whole area.
    std::vector<int> shown_panes;
    const int pane_count = static_cast<int>(world.panes().size());
    if (ab_view && enlarged_pane_ >= 0 && enlarged_pane_ < pane_count)
        shown_panes.push_back(enlarged_pane_);
    else
        for (int i = 0; i < pane_count; ++i) shown_panes.push_back(i);
    const int n = static_cast<int>(shown_panes.size());
    const float aspect = static_cast<float>(config.width) / config.height;
    const float margin = ab_view ? 8.0f : 0.0f;
    // Where the frames go: the area left of the HUD's column or below it, whichever gives the larger
    // pane; never under it. The HUD's size only grows while it is shown (hud_reserved_*), so the picture
    // does not move sideways when a line of it gets longer.
    struct Region {
        float x0, y0, x1, y1;
    };
    auto pane_size = [&](const Region& r, int* cols, int* rows) {
        const float w = r.x1 - r.x0 - 2 * margin, h = r.y1 - r.y0 - 2 * margin;
        if (w <= 0 || h <= 0) return 0.0f;
        pane_grid(n, w, h, aspect, cols, rows);
        return std::min(w / *cols, h / *rows * aspect);
    };
    Region region{a.x, top, b.x, bottom};
    int cols = 1, rows = 1;
    if (show_hud_ && !compact_hud_ && hud_reserved_w_ > 0) {
        float best = -1;
        for (const Region& r : {Region{a.x + hud_reserved_w_ + 20, top, b.x, bottom},
                                Region{a.x, top + hud_reserved_h_ + 20, b.x, bottom}}) {
            int c = 1, rr = 1;
            const float size = pane_size(r, &c, &rr);
            if (size > best) {
                best = size;
                region = r;
                cols = c;
                rows = rr;
            }
        }
    } else {
        pane_size(region, &cols, &rows);
    }
    const float area_w = region.x1 - region.x0 - 2 * margin, area_h = region.y1 - region.y0 - 2 * margin;
    // Cells as large as the panes and the grid centred as a block (no wide gaps between columns).
    const float gap = ab_view ? 4.0f : 0.0f;
    const float pane_w =
        std::max(1.0f, std::floor(std::min(area_w / cols - 2 * gap, (area_h / rows - 2 * gap) * aspect)));
    const float cell_w = pane_w + 2 * gap, cell_h = pane_w / aspect + 2 * gap;
    const float grid_x = region.x0 + margin + (area_w - cols * cell_w) * 0.5f;
    const float grid_y = region.y0 + margin + (area_h - rows * cell_h) * 0.5f;
    const ChunkEntry& entry = playback.current();
    pane_rects_.clear();
    const ImGuiIO& io = ImGui::GetIO();
    const bool clicked = ab_view && ImGui::IsMouseClicked(ImGuiMouseButton_Left) && !io.WantCaptureMouse;
    bool click_used = false;
    for (int k = 0; k < n; ++k) {
        const int i = shown_panes[static_cast<size_t>(k)];
        const int c = k % cols, r = k / cols;
        const float w = pane_w, h = std::floor(pane_w / aspect);
        const float cx = grid_x + (c + 0.5f) * cell_w, cy = grid_y + (r + 0.5f) * cell_h;
        const ImVec2 p0(std::floor(cx - w * 0.5f), std::floor(cy - h * 0.5f)), p1(p0.x + w, p0.y + h);
        const auto tex = reinterpret_cast<ImTextureID>(
            static_cast<intptr_t>(presenter_.texture(entry.slot, i, playback.frame())));
        dl->AddImage(tex, p0, p1);
        pane_rects_.push_back({p0.x, p0.y, p1.x, p1.y});
        const std::string pane_name = "pane_" + std::to_string(i + 1);
        note_widget(pane_name, p0.x, p0.y, p1.x, p1.y);
        if (!ab_view) continue;
        if (clicked && !click_used && ImGui::IsMouseHoveringRect(p0, p1, false)) {
            // A click enlarges a pane; a click on the enlarged one brings the grid back.
            enlarged_pane_ = enlarged_pane_ == i ? -1 : i;
            click_used = true;
        }
        dl->AddRect(ImVec2(p0.x - 1, p0.y - 1), ImVec2(p1.x + 1, p1.y + 1), ui::color::pane(i), 0, 0, 1.5f);
        const PaneView& pane = world.panes()[static_cast<size_t>(i)];
        // Chips inside their pane only: the longest text that fits, or none.
        const float room = w - 16;
        const std::string label = pane.applied.cache.label();
        std::vector<std::string> candidates;
        if (pane.spec.reference) candidates = {"REFERENCE  " + label, "REF " + label};
        for (const std::string& form : label_forms(label)) candidates.push_back(form);
        candidates.push_back(std::to_string(i + 1));
        const std::string label_text = first_fitting(candidates, room);
        if (!label_text.empty()) {
            const ImRect chip_rect = chip(dl, ImVec2(p0.x + 8, p0.y + 8), ui::color::pane(i), label_text);
            note_widget(pane_name + "/label", chip_rect.Min.x, chip_rect.Min.y, chip_rect.Max.x,
                        chip_rect.Max.y);
        }
        if (i < world.ab_stats().panes() && h > 3 * (ImGui::GetTextLineHeight() + 10) + 16) {
            const PaneSeries& s = world.ab_stats().series(i);
            std::string psnr, delta, short_psnr;
            const bool same = !s.same_psnr.empty() && std::isfinite(s.same_psnr.back());
            if (!s.psnr.empty() && std::isfinite(s.psnr.back())) {
                // On the reference's context first (the paired measure), then along the pane's own rollout.
                psnr = same
                           ? fmt("PSNR %.1f dB same context, %.1f rollout", s.same_psnr.back(), s.psnr.back())
                           : fmt("PSNR %.1f dB", s.psnr.back());
                short_psnr = same ? fmt("PSNR %.1f / %.1f dB", s.same_psnr.back(), s.psnr.back()) : psnr;
            }
            const std::vector<float>& dps = same ? s.same_delta_ps : s.delta_ps;
            if (!dps.empty() && std::isfinite(dps.back()))
                delta = std::string(ui::delta_ps_name()) + fmt(" %+.4f", dps.back());
            const std::string stats = first_fitting(
                {psnr.empty() || delta.empty() ? psnr + delta : psnr + "   " + delta,
                 short_psnr.empty() || delta.empty() ? short_psnr + delta : short_psnr + "   " + delta, psnr,
                 short_psnr.empty() ? delta : short_psnr},
                room);
            if (!stats.empty()) {
                const ImRect r = chip(dl, ImVec2(p0.x + 8, p1.y - ImGui::GetTextLineHeight() - 18),
                                      ui::color::pane(i), stats);
                note_widget(pane_name + "/stats", r.Min.x, r.Min.y, r.Max.x, r.Max.y);
            }
        }
    }
    if (clicked && !click_used && enlarged_pane_ >= 0 &&
        ImGui::IsMouseHoveringRect(ImVec2(a.x, top), ImVec2(b.x, bottom), false))
        enlarged_pane_ = -1;
}

std::string App::first_fitting(const std::vector<std::string>& candidates, float width) const {
    for (const std::string& text : candidates)
        if (!text.empty() && ImGui::CalcTextSize(text.c_str()).x + 16 <= width) return text;
    return "";
}

void App::draw_world_failure(float top, float bottom) {
    // The way out of a model that cannot be read (a bad --model): say why and offer another one.
    const GuiController& world = *controller_;
    const std::string text = world.fatal_error().empty() ? "No model" : world.fatal_error();
    const float width = std::min(world_x1_ - world_x0_ - 40, 620.0f);
    ImGui::SetNextWindowPos(ImVec2((world_x0_ + world_x1_) * 0.5f, (top + bottom) * 0.5f), ImGuiCond_Always,
                            ImVec2(0.5f, 0.5f));
    ImGui::SetNextWindowSize(ImVec2(width, 0));
    if (ImGui::Begin("##failure", nullptr, kOverlayFlags & ~ImGuiWindowFlags_AlwaysAutoResize)) {
        ImGui::PushStyleColor(ImGuiCol_Text, ui::color::vec(ui::color::kBad));
        ImGui::TextWrapped("%s", text.c_str());
        ImGui::PopStyleColor();
        ImGui::Spacing();
        if (ImGui::Button("Open model...")) open_browser(BrowserPurpose::OpenModel);
        if (world.config()) {
            ImGui::SameLine();
            if (ImGui::Button("Restart the world")) controller_->restart_world();
        }
        note_window("failure");
    }
    ImGui::End();
}

void App::draw_world_footer(float y0, float y1) {
    // Left: the keys held and queued for the next chunk; centre: paused / replaying / generating;
    // right: the video being recorded. Each one a chip in the band, so none covers a picture.
    const GuiController& world = *controller_;
    // Under any window (help, menus): the band itself is kept free of the layout's other elements.
    ImDrawList* dl = ImGui::GetBackgroundDrawList();
    const float line = ImGui::GetTextLineHeight();
    const float chip_y = y0 + (y1 - y0 - line - 10) * 0.5f;
    float left = world_x0_ + 10, right = world_x1_ - 10;
    if (video_.recording()) {
        const std::string rec = "REC " + std::to_string(video_.frames()) + " frames";
        const float w = ImGui::CalcTextSize(rec.c_str()).x + 22;
        const ImRect r = chip(dl, ImVec2(right - w, chip_y), ui::color::kBad, rec);
        note_widget("recording_badge", r.Min.x, r.Min.y, r.Max.x, r.Max.y);
        right = r.Min.x - 10;
    }
    if (world.ready() && world.takes_player_input()) {
        const InputTimeline& input = world.input_timeline();
        const std::string held = held_keys_text(input.latest().held);
        const std::string queued = held_keys_text(input.pending());
        if (!held.empty() || !queued.empty()) {
            // Which keys the next chunk will carry: on a slow backend the player sees the input is kept.
            std::string text = "held: " + (held.empty() ? std::string("-") : held);
            if (!queued.empty()) {
                text += "   next chunk: " + queued;
                const double waited = now_ - input.pending_since();
                if (waited >= 1.0) text += fmt(" (%.0f s of input)", waited);
            }
            const std::string fitted = first_fitting({text, "next: " + queued, held}, (right - left) * 0.5f);
            if (!fitted.empty()) {
                const ImRect r = chip(dl, ImVec2(left, chip_y), ui::color::kAccent, fitted);
                note_widget("input_strip", r.Min.x, r.Min.y, r.Max.x, r.Max.y);
                left = r.Max.x + 10;
            }
        }
    }
    std::string state;
    ImU32 color = ui::color::kWarn;
    const Playback* playback = world.playback();
    const bool generating =
        (world.stalled() && world.stall_since() >= 0 && now_ - world.stall_since() > 0.12) ||
        world.restart_pending() || world.state() == RunState::Loading;
    if (playback && playback->paused()) {
        state = "PAUSED  " + keymap_.keymap.describe(Command::Pause) + " play  " +
                keymap_.keymap.describe(Command::Step) + " step";
    } else if (generating) {
        const Progress p = world.worker_progress();
        const double waited = world.stall_since() >= 0 ? now_ - world.stall_since() : 0;
        state = (p.activity.empty() ? std::string("waiting for the worker") : p.activity) +
                fmt("...  %.1f s", waited);
        if (p.total > 0)
            state +=
                "  " + p.stage + " " + std::to_string(p.done) + "/" + std::to_string(p.total) +
                (p.panes > 1 ? "  pane " + std::to_string(p.pane + 1) + "/" + std::to_string(p.panes) : "");
        color = ui::color::kMuted;
    } else if (world.replaying()) {
        state = "REPLAYING TRACE  " + std::to_string(world.replay_position()) + " / " +
                std::to_string(world.replay_length()) + " frames";
        color = ui::color::kAccent;
    }
    if (!state.empty()) {
        const std::string fitted = first_fitting({state, state.substr(0, state.find("  "))}, right - left);
        if (!fitted.empty()) {
            const float w = ImGui::CalcTextSize(fitted.c_str()).x + 22;
            const float x = std::clamp((world_x0_ + world_x1_ - w) * 0.5f, left, right - w);
            const ImRect r = chip(dl, ImVec2(x, chip_y), color, fitted);
            note_widget("state", r.Min.x, r.Min.y, r.Max.x, r.Max.y);
        }
    }
}

float App::compact_hud_height() const {
    // ImGui makes no window smaller than the style's minimum: reserve what it will draw.
    return std::max(ImGui::GetTextLineHeight() + 14, ImGui::GetStyle().WindowMinSize.y);
}

void App::draw_hud(const FrameInput&) {
    if (show_memory_) {
        // The memory column is open: the HUD is its first section instead of floating over the frames.
        hud_reserved_w_ = hud_reserved_h_ = 0;
        return;
    }
    if (compact_hud_) {
        // A small window: one line in a band of its own above the frames.
        const GuiController& world = *controller_;
        ImGui::SetNextWindowPos(ImVec2(world_x0_, world_y0_), ImGuiCond_Always);
        ImGui::SetNextWindowSize(ImVec2(world_x1_ - world_x0_, compact_hud_height()));
        ImGui::PushStyleVar(ImGuiStyleVar_WindowPadding, ImVec2(10, 6));
        ImGui::PushStyleVar(ImGuiStyleVar_WindowRounding, 0);
        if (ImGui::Begin("##hud", nullptr, kOverlayFlags & ~ImGuiWindowFlags_AlwaysAutoResize)) {
            std::string line = fmt("UI %.0f fps", ui_fps_.mean());
            if (!world.generated_fps().empty())
                line += fmt("   generated %.1f fps", world.generated_fps().last());
            if (!world.chunk_ms_history().empty())
                line += fmt("   chunk %.0f ms", world.chunk_ms_history().back());
            if (!world.latency_ms().empty()) line += fmt("   latency %.0f ms", world.latency_ms().last());
            line += presenter_.last_upload_interop() ? "   CUDA-GL interop" : "   host upload";
            ImGui::TextUnformatted(
                first_fitting({line, line.substr(0, line.find("   latency"))}, world_x1_ - world_x0_ - 4)
                    .c_str());
            note_window("hud");
        }
        ImGui::End();
        ImGui::PopStyleVar(2);
        return;
    }
    const float pad = 10;
    ImGui::SetNextWindowPos(ImVec2(world_x0_ + pad, world_y0_ + pad), ImGuiCond_Always);
    // A fixed width (the height follows the rows): the frames beside it stay where they are.
    ImGui::SetNextWindowSize(ImVec2(23 * ImGui::GetFontSize(), 0));
    ImGui::SetNextWindowBgAlpha(0.80f);
    if (!ImGui::Begin("##hud", nullptr, kOverlayFlags & ~ImGuiWindowFlags_AlwaysAutoResize)) {
        ImGui::End();
        return;
    }
    draw_hud_contents();
    // Reserved space only grows while the HUD is shown: the frames beside it do not move with its text.
    hud_reserved_w_ = std::max(hud_reserved_w_, ImGui::GetWindowWidth());
    hud_reserved_h_ = std::max(hud_reserved_h_, ImGui::GetWindowHeight());
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
        row("Attention");
        ImGui::TextDisabled("%s", panes[0].last->attention_path.c_str());
    }
    row("Latency");
    if (world.latency_ms().empty())
        ImGui::TextDisabled("  --");
    else
        ImGui::Text("%5.0f ms  (mean %.0f)", world.latency_ms().last(), world.latency_ms().mean());
    if (ImGui::IsItemHovered())
        ImGui::SetTooltip(
            "Action to frame: from the end of the stretch of input an action was made from\n"
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
        ImGui::PushStyleColor(ImGuiCol_Text, ImGui::GetStyleColorVec4(ImGuiCol_TextDisabled));
        ImGui::TextWrapped("(%s)", reason.c_str());
        ImGui::PopStyleColor();
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
    // Right: presentation path and gamepad; the middle gets what is left, so texts never run into each
    // other: the newest message (errors in red; all recent ones on hover), else the model note.
    std::string right = presenter_.last_upload_interop() ? "CUDA-GL interop" : "host upload";
    if (!gamepad_status_.empty()) right = gamepad_status_ + "   |   " + right;
    const float right_w = ImGui::CalcTextSize(right.c_str()).x;
    const float room = io.DisplaySize.x - right_w - 34 - ImGui::GetCursorPosX();
    auto elided = [&](const std::string& text) {
        if (ImGui::CalcTextSize(text.c_str()).x <= room) return text;
        std::string cut = text;
        while (!cut.empty() && ImGui::CalcTextSize((cut + "...").c_str()).x > room) cut.pop_back();
        return cut.empty() ? cut : cut + "...";
    };
    if (!toasts_.empty()) {
        const Toast& newest = toasts_.back();
        const std::string text = elided(newest.text);
        ImGui::TextColored(ui::color::vec(newest.error ? ui::color::kBad : ui::color::kAccent), "%s",
                           text.c_str());
        if (ImGui::IsItemHovered()) {
            ImGui::BeginTooltip();
            ImGui::PushTextWrapPos(std::min(640.0f, io.DisplaySize.x * 0.8f));
            for (const Toast& t : toasts_) {
                if (t.error)
                    ImGui::TextColored(ui::color::vec(ui::color::kBad), "%s", t.text.c_str());
                else
                    ImGui::TextUnformatted(t.text.c_str());
            }
            ImGui::PopTextWrapPos();
            ImGui::EndTooltip();
        }
        note_widget("status_bar/notifications", ImGui::GetItemRectMin().x, ImGui::GetItemRectMin().y,
                    ImGui::GetItemRectMax().x, ImGui::GetItemRectMax().y);
    } else if (world.model_note().rfind("NOTE", 0) == 0) {
        ImGui::TextColored(
            ui::color::vec(ui::color::kWarn), "%s",
            elided("No trained model in assets/models: the tiny random test model shows no world").c_str());
        if (ImGui::IsItemHovered()) ImGui::SetTooltip("%s", world.model_note().c_str());
    } else {
        ImGui::TextDisabled("%s", elided(world.model_note()).c_str());
        if (ImGui::IsItemHovered()) ImGui::SetTooltip("%s", world.model_note().c_str());
    }
    ImGui::SameLine(std::max(ImGui::GetCursorPosX() + 20, io.DisplaySize.x - right_w - 14));
    ImGui::TextDisabled("%s", right.c_str());
    ImGui::End();
}

void App::draw_toasts(double now) {
    // Messages live in the status bar (draw_status_bar): they never cover the world or a panel. They stay 8 s
    // (errors 20 s): of the wall clock when a person plays, of the world's time (video frames shown) in a
    // scripted run, whose screenshots must not depend on how fast the machine generates (on a loaded CPU a
    // chunk of the A/B view took longer than a message's life).
    const GuiController& world = *controller_;
    const double fps = world.config() ? world.config()->fps : 16.0;
    const auto age = [&](const Toast& t) {
        return world.scripted() ? (frames_shown_ - t.shown_frame) / fps : now - t.shown_at;
    };
    while (!toasts_.empty() && age(toasts_.front()) > (toasts_.front().error ? 20.0 : 8.0))
        toasts_.pop_front();
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
            const std::pair<const char*, const char*> more[] = {
                {"Esc", "Menu: resume, cache presets, settings, quit"},
                {"F11", "Full screen"},
                {"1-4 / click", "A/B view: enlarge a pane (again: all panes)"},
            };
            for (const auto& [key, what] : more) {
                ImGui::TableNextColumn();
                ImGui::TextColored(ui::color::vec(ui::color::kAccent), "%s", key);
                ImGui::TableNextColumn();
                ImGui::TextWrapped("%s", what);
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
            ImGui::TableSetupColumn("PSNR vs reference (dB): same context / rollout");
            ImGui::TableSetupColumn(
                (std::string(ui::delta_ps_name()) + " stolen attention mass: same context / rollout")
                    .c_str());
        } else {
            ImGui::TableSetupColumn("P_S: attention mass on cached keys (mean over layers)");
        }
        ImGui::TableHeadersRow();
        for (int i = 0; i < world.ab_stats().panes(); ++i) {
            if (i == ref) continue;
            const PaneSeries& s = world.ab_stats().series(i);
            ImGui::TableNextRow();
            ImGui::TableNextColumn();
            // the longest form that fits the column less the legend's swatch, else the shortest
            const std::vector<std::string> forms = label_forms(s.label);
            const std::string fitting =
                first_fitting(forms, ImGui::GetContentRegionAvail().x - ImGui::GetTextLineHeight());
            ui::legend(ui::color::pane(i), (fitting.empty() ? forms.back() : fitting).c_str());
            ImGui::PushStyleColor(ImGuiCol_PlotLines, ui::color::vec(ui::color::pane(i)));
            auto plot_line = [&](const char* id, const std::vector<float>& v, const char* format, float h) {
                std::vector<float> finite;
                for (float x : v) finite.push_back(std::isfinite(x) ? x : 0.f);
                char overlay[64];
                std::snprintf(overlay, sizeof overlay, format, finite.back());
                ImGui::PlotLines(id, finite.data(), static_cast<int>(finite.size()), 0, overlay, FLT_MAX,
                                 FLT_MAX, ImVec2(ImGui::GetContentRegionAvail().x, h));
            };
            // One cell: the same-context series above the rollout's when it was measured, else the rollout's.
            auto plot = [&](const char* id, const std::vector<float>& rollout, const std::vector<float>& same,
                            const char* format, const char* same_format, const char* rollout_format) {
                ImGui::TableNextColumn();
                if (rollout.empty()) {
                    ImGui::TextDisabled("waiting for the first chunk");
                    return;
                }
                if (same.empty()) {
                    plot_line(id, rollout, format, plot_h);
                    return;
                }
                const float half = std::max(18.0f, plot_h / 2 - ImGui::GetStyle().ItemSpacing.y / 2);
                ImGui::PushID(id);
                plot_line("##same", same, same_format, half);
                plot_line("##rollout", rollout, rollout_format, half);
                ImGui::PopID();
            };
            ImGui::PushID(i);
            if (have_ref) {
                plot("##psnr", s.psnr, s.same_psnr, "%.2f dB", "same context %.2f dB", "rollout %.2f dB");
                plot("##dps", s.delta_ps, s.same_delta_ps, "%+.5f", "same context %+.5f", "rollout %+.5f");
            } else {
                plot("##ps", s.p_s, {}, "%.4f", "", "");
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
        if (!world.recorder().exact_replay()) {
            ImGui::PushStyleColor(ImGuiCol_Text, ui::color::vec(ui::color::kWarn));
            ImGui::TextWrapped("Not an exact replay: %s", world.recorder().divergence().c_str());
            ImGui::PopStyleColor();
        }
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
