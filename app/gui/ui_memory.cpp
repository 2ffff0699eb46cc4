// Memory: the overlay (device or host memory, the KV cache now, per layer and over time, the budget and
// how long play can go on) and the planner window (peer models' caches against real cards).
#include <imgui.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include "app.h"
#include "ui_style.h"

namespace kvw::gui {

namespace {

// MemTotal / MemAvailable from /proc/meminfo, and this process's resident set.
struct HostMemory {
    double total = 0, available = 0, rss = 0;
};

HostMemory read_host_memory() {
    HostMemory m;
    std::ifstream meminfo("/proc/meminfo");
    std::string key;
    double value = 0;
    std::string unit;
    while (meminfo >> key >> value >> unit) {
        if (key == "MemTotal:") m.total = value * 1024;
        if (key == "MemAvailable:") m.available = value * 1024;
    }
    std::ifstream statm("/proc/self/statm");
    double pages_total = 0, pages_resident = 0;
    if (statm >> pages_total >> pages_resident) m.rss = pages_resident * 4096;
    return m;
}

}  // namespace

void App::refresh_gpu_memory(double now) {
    if (now - gpu_memory_at_ < 1.0) return;
    gpu_memory_at_ = now;
    render::GpuMemoryInfo info;
    if (render::query_gpu_memory(&info, &gpu_memory_error_))
        gpu_memory_ = info;
    else
        gpu_memory_.reset();
}

void App::draw_memory_overlay() {
    const GuiController& world = *controller_;
    const std::vector<PaneView>& panes = world.panes();
    // A column on the left of the world (the world re-centres beside it), like the controls panel.
    const ImGuiIO& io = ImGui::GetIO();
    ImGui::SetNextWindowPos(ImVec2(0, menu_height_));
    ImGui::SetNextWindowSize(ImVec2(memory_width_, io.DisplaySize.y - menu_height_ - status_height_));
    ImGui::PushStyleVar(ImGuiStyleVar_WindowRounding, 0);
    const bool open =
        ImGui::Begin("##memory", nullptr,
                     ImGuiWindowFlags_NoTitleBar | ImGuiWindowFlags_NoResize | ImGuiWindowFlags_NoMove |
                         ImGuiWindowFlags_NoSavedSettings | ImGuiWindowFlags_NoCollapse);
    ImGui::PopStyleVar();
    if (!open) {
        ImGui::End();
        return;
    }
    if (show_hud_) {
        draw_hud_contents();
        ImGui::Separator();
    }
    ui::section_title("MEMORY");
    ImGui::SameLine(ImGui::GetWindowWidth() - 84);
    if (ImGui::SmallButton("Planner...")) show_planner_ = !show_planner_;
    const float bar_w = ImGui::GetContentRegionAvail().x;

    // Device (or host) memory.
    if (world.backend() == BackendKind::Cuda) {
        refresh_gpu_memory(now_);
        if (gpu_memory_) {
            const double used = static_cast<double>(gpu_memory_->total_bytes - gpu_memory_->free_bytes);
            ImGui::Text("GPU %s", gpu_memory_->device_name.c_str());
            ui::muted_wrapped("%s used of %s, %s free", format_bytes(used).c_str(),
                              format_bytes(static_cast<double>(gpu_memory_->total_bytes)).c_str(),
                              format_bytes(static_cast<double>(gpu_memory_->free_bytes)).c_str());
            ui::stacked_bar(ImVec2(bar_w, 8), {{used, ui::color::kWeights}},
                            static_cast<double>(gpu_memory_->total_bytes));
        } else {
            ImGui::TextColored(ui::color::vec(ui::color::kWarn), "GPU memory unknown: %s",
                               gpu_memory_error_.c_str());
        }
    } else {
        const HostMemory host = read_host_memory();
        ImGui::Text("CPU backend: host memory");
        ui::muted_wrapped("%s available of %s; this process %s", format_bytes(host.available).c_str(),
                          format_bytes(host.total).c_str(), format_bytes(host.rss).c_str());
        ui::stacked_bar(ImVec2(bar_w, 8), {{host.total - host.available, ui::color::kWeights}}, host.total);
    }
    if (world.model())
        ImGui::TextDisabled("Model weights %s",
                            format_bytes(static_cast<double>(world.model()->weight_bytes)).c_str());
    ImGui::Separator();

    if (panes.empty() || !panes[0].last || !world.config()) {
        ImGui::TextDisabled("The cache fills as chunks are generated.");
        ImGui::End();
        return;
    }
    const ChunkMetrics& m = *panes[0].last;
    const CacheSettings running = panes[0].applied.cache;
    const double budget = panes[0].applied.context.budget_bytes;
    const double total = static_cast<double>(m.cache_bytes.total());
    const uint64_t chunk_bytes = Session::predict_cache_bytes(*world.config(), running, 1).total();

    ImGui::Text("KV cache %s", format_bytes(total).c_str());
    ImGui::SameLine();
    const double stored = chunk_bytes ? total / static_cast<double>(chunk_bytes) : 0;
    ImGui::TextDisabled("%s, %.0f chunk%s", running.label().c_str(), std::round(stored),
                        std::round(stored) == 1 ? "" : "s");
    const double scale = budget > 0 ? std::max(budget, total) * 1.05 : std::max(total * 1.25, 1.0);
    ui::stacked_bar(ImVec2(bar_w, 12),
                    {{static_cast<double>(m.cache_bytes.codes), ui::color::kAccent},
                     {static_cast<double>(m.cache_bytes.metadata), ui::color::kMetadata}},
                    scale, budget > 0 ? budget : -1);
    ui::legend(ui::color::kAccent,
               ("codes " + format_bytes(static_cast<double>(m.cache_bytes.codes))).c_str());
    ImGui::SameLine(0, 14);
    ui::legend(ui::color::kMetadata,
               ("metadata " + format_bytes(static_cast<double>(m.cache_bytes.metadata))).c_str());
    if (budget > 0) {
        ImGui::SameLine(0, 14);
        ui::legend(ui::color::kBudget, ("budget " + format_bytes(budget)).c_str());
    }

    // How long the current setting lasts.
    const double chunk_seconds = world.config()->chunk_seconds();
    if (budget > 0) {
        const double left = seconds_left(budget, m.cache_bytes.total(), chunk_bytes, chunk_seconds);
        ImGui::Text("%s of play left", format_seconds(left).c_str());
        ImGui::SameLine();
        ui::muted_wrapped("before the budget starts evicting (%s per chunk of %.2f s)",
                          format_bytes(static_cast<double>(chunk_bytes)).c_str(), chunk_seconds);
        if (!m.evicted_chunks.empty() || m.window_truncated)
            ImGui::TextColored(ui::color::vec(ui::color::kWarn), "Evicting%s",
                               m.window_truncated ? ": the budget cuts into the window" : "");
    } else if (gpu_memory_ && world.backend() == BackendKind::Cuda) {
        const double left =
            seconds_left(static_cast<double>(gpu_memory_->free_bytes), 0, chunk_bytes, chunk_seconds);
        ImGui::Text("%s of play fit in free GPU memory", format_seconds(left).c_str());
        ui::muted_wrapped("No budget: the cache keeps every chunk (%s each).",
                          format_bytes(static_cast<double>(chunk_bytes)).c_str());
    } else {
        ui::muted_wrapped(
            "No budget: the cache keeps every chunk (%s per %.2f s). Set one under Context to see how long "
            "play lasts.",
            format_bytes(static_cast<double>(chunk_bytes)).c_str(), chunk_seconds);
    }

    // Per layer.
    if (!m.layer_bytes.empty()) {
        ImGui::Spacing();
        ui::section_title("PER LAYER");
        double most = 1;
        for (const CacheBytes& b : m.layer_bytes) most = std::max(most, static_cast<double>(b.total()));
        const size_t layers = m.layer_bytes.size();
        const size_t shown = std::min<size_t>(layers, 24);
        for (size_t l = 0; l < shown; ++l) {
            const size_t index = layers <= shown ? l : l * layers / shown;
            const CacheBytes& b = m.layer_bytes[index];
            ImGui::TextDisabled("%2zu", index);
            ImGui::SameLine(28);
            ui::stacked_bar(ImVec2(bar_w - 28, 6),
                            {{static_cast<double>(b.codes), ui::color::kAccent},
                             {static_cast<double>(b.metadata), ui::color::kMetadata}},
                            most * 1.05);
        }
    }

    // Over time, with the budget line.
    if (!world.cache_timeline_mb().empty()) {
        ImGui::Spacing();
        ui::section_title("CACHE PER CHUNK (MB)");
        std::vector<float> v(world.cache_timeline_mb().begin(), world.cache_timeline_mb().end());
        const float top =
            std::max(*std::max_element(v.begin(), v.end()), static_cast<float>(budget / 1e6)) * 1.1f;
        const ImVec2 p = ImGui::GetCursorScreenPos();
        const ImVec2 size(bar_w, 56);
        char overlay[48];
        std::snprintf(overlay, sizeof overlay, "%.3f MB", v.back());
        ImGui::PlotLines("##timeline", v.data(), static_cast<int>(v.size()), 0, overlay, 0.0f, top, size);
        if (budget > 0 && top > 0) {
            const float y = p.y + size.y * (1.0f - static_cast<float>(budget / 1e6) / top);
            ImGui::GetWindowDrawList()->AddLine(ImVec2(p.x, y), ImVec2(p.x + size.x, y), ui::color::kBudget,
                                                1.5f);
        }
    }

    // A/B: every pane's cache now.
    if (panes.size() > 1) {
        ImGui::Spacing();
        ui::section_title("PANES");
        double most = 1;
        for (const PaneView& p : panes)
            if (p.last) most = std::max(most, static_cast<double>(p.last->cache_bytes.total()));
        for (size_t i = 0; i < panes.size(); ++i) {
            if (!panes[i].last) continue;
            const CacheBytes& b = panes[i].last->cache_bytes;
            ui::legend(ui::color::pane(static_cast<int>(i)), panes[i].applied.cache.label().c_str());
            ImGui::SameLine(170);
            ImGui::TextDisabled("%9s", format_bytes(static_cast<double>(b.total())).c_str());
            ImGui::SameLine(250);
            ui::stacked_bar(ImVec2(bar_w - 250, 8),
                            {{static_cast<double>(b.codes), ui::color::kAccent},
                             {static_cast<double>(b.metadata), ui::color::kMetadata}},
                            most * 1.05);
        }
    }
    ImGui::End();
}

void App::draw_planner() {
    const GuiController& world = *controller_;
    const ImGuiIO& io = ImGui::GetIO();
    ImGui::SetNextWindowPos(ImVec2((world_x0_ + world_x1_) * 0.5f, (world_y0_ + world_y1_) * 0.5f),
                            ImGuiCond_Appearing, ImVec2(0.5f, 0.5f));
    ImGui::SetNextWindowSize(ImVec2(std::min(640.0f, io.DisplaySize.x - 40), 0), ImGuiCond_Appearing);
    ImGui::SetNextWindowBgAlpha(1.0f);  // a window of its own, not an overlay: nothing shows through
    if (!ImGui::Begin("Memory planner", &show_planner_,
                      ImGuiWindowFlags_NoSavedSettings | ImGuiWindowFlags_AlwaysAutoResize)) {
        ImGui::End();
        return;
    }
    note_window("planner", true);
    // Models: the peer presets and the model running here.
    std::vector<PeerModel> models = presets_;
    if (world.config())
        models.insert(
            models.begin(),
            peer_from_config(*world.config(), world.model() ? world.model()->weight_bytes / 1e9 : 0));
    if (models.empty()) {
        ImGui::TextColored(ui::color::vec(ui::color::kBad), "No presets: %s", presets_error_.c_str());
        ImGui::End();
        return;
    }
    planner_model_ = std::clamp(planner_model_, 0, static_cast<int>(models.size()) - 1);
    const PeerModel& model = models[static_cast<size_t>(planner_model_)];
    const float column = 110;
    ui::form_label("Model", column);
    ImGui::SetNextItemWidth(-1);
    if (ImGui::BeginCombo("##model", model.name.c_str())) {
        for (size_t i = 0; i < models.size(); ++i)
            if (ImGui::Selectable(models[i].name.c_str(), static_cast<int>(i) == planner_model_))
                planner_model_ = static_cast<int>(i);
        ImGui::EndCombo();
    }
    if (!model.notes.empty()) {
        ImGui::PushTextWrapPos(ImGui::GetCursorPosX() + 600);
        ImGui::TextDisabled("%s", model.notes.c_str());
        ImGui::PopTextWrapPos();
    }
    struct Resolution {
        const char* name;
        int height, width;
    };
    const Resolution resolutions[] = {{"native", 0, 0},
                                      {"480p (480x832)", 480, 832},
                                      {"720p (720x1280)", 720, 1280},
                                      {"1080p (1088x1920)", 1088, 1920}};
    planner_resolution_ = std::clamp(planner_resolution_, 0, 3);
    ui::form_label("Resolution", column);
    ImGui::SetNextItemWidth(-1);
    char native[64];
    std::snprintf(native, sizeof native, "native (%dx%d)", model.height, model.width);
    const char* current = planner_resolution_ == 0 ? native : resolutions[planner_resolution_].name;
    if (ImGui::BeginCombo("##res", current)) {
        for (int i = 0; i < 4; ++i)
            if (ImGui::Selectable(i == 0 ? native : resolutions[i].name, i == planner_resolution_))
                planner_resolution_ = i;
        ImGui::EndCombo();
    }
    ui::form_label("Seconds", column);
    ImGui::SetNextItemWidth(-1);
    ImGui::SliderFloat("##seconds", &planner_seconds_, 1.0f, 3600.0f, "%.0f s of history",
                       ImGuiSliderFlags_Logarithmic);
    ui::form_label("Key bits", column);
    ui::segmented("pk", &planner_cache_.key_bits, {{16, "BF16"}, {8, " 8 "}, {4, " 4 "}, {2, " 2 "}});
    ui::form_label("Value bits", column);
    ui::segmented("pv", &planner_cache_.value_bits, {{16, "BF16"}, {8, " 8 "}, {4, " 4 "}, {2, " 2 "}});
    ui::form_label("Group", column);
    ui::segmented("pg", &planner_cache_.group, {{32, " 32 "}, {64, " 64 "}, {128, "128"}});
    int layout = static_cast<int>(planner_cache_.key_layout);
    ui::form_label("Key layout", column);
    if (ui::segmented("pl", &layout, {{0, "token"}, {1, "channel"}}))
        planner_cache_.key_layout = static_cast<KeyLayout>(layout);
    ImGui::Separator();

    PlannerResult plan;
    try {
        const Resolution& r = resolutions[planner_resolution_];
        plan =
            plan_for_seconds(model, planner_cache_, r.height, r.width, planner_seconds_, planner_cards_gb());
    } catch (const std::exception& e) {
        ImGui::TextColored(ui::color::vec(ui::color::kBad), "%s", e.what());
        ImGui::End();
        return;
    }
    ImGui::Text("%.2f bits per element", plan.row.bits_per_element);
    ImGui::SameLine(0, 20);
    ImGui::Text("%s per chunk (%.2f s)", format_bytes(static_cast<double>(plan.row.chunk_bytes)).c_str(),
                plan.chunk_seconds);
    ImGui::SameLine(0, 20);
    ImGui::Text("context %s", format_bytes(static_cast<double>(plan.row.context_bytes)).c_str());
    ImGui::Text("%.0f s of history = %d chunk%s = ", planner_seconds_, plan.chunks,
                plan.chunks == 1 ? "" : "s");
    ImGui::SameLine(0, 0);
    ImGui::TextColored(ui::color::vec(ui::color::kAccent), "%s of cache",
                       format_bytes(plan.history_gb * kBytesPerGB).c_str());
    ImGui::SameLine(0, 0);
    ImGui::Text("  + %s weights", format_bytes(model.weights_gb * kBytesPerGB).c_str());
    ImGui::TextDisabled("CUDA attention scratch %s",
                        format_bytes(static_cast<double>(plan.row.attention_scratch_bytes)).c_str());
    if (ImGui::IsItemHovered())
        ImGui::SetTooltip(
            "The composition path's bf16 copy of one layer's context (queries, keys with the correction's\n"
            "columns, values), held beside the cache while a layer attends. Like the activations, it is\n"
            "not in the card bars below.");
    ImGui::Spacing();

    // Cards: weights and cache stacked against the card's capacity.
    const double widest = std::max(planner_cards_gb().back(), model.weights_gb + plan.history_gb);
    const float label_w = 70, fit_w = 190;
    const float bar_w = std::max(120.0f, ImGui::GetContentRegionAvail().x - label_w - fit_w);
    for (const CardFit& card : plan.cards) {
        ImGui::AlignTextToFramePadding();
        ImGui::Text("%4.0f GB", card.card_gb);
        ImGui::SameLine(label_w);
        ui::stacked_bar(ImVec2(bar_w, ImGui::GetFrameHeight() - 6),
                        {{card.weights_gb, ui::color::kWeights},
                         {card.cache_gb, card.fits ? ui::color::kAccent : ui::color::kBad}},
                        widest, card.card_gb);
        ImGui::SameLine(label_w + bar_w + 10);
        if (card.fits)
            ImGui::TextColored(ui::color::vec(ui::color::kGood), "fits");
        else
            ImGui::TextColored(ui::color::vec(ui::color::kBad), "too big");
        ImGui::SameLine();
        ImGui::TextDisabled("max %s", format_seconds(card.seconds_fit).c_str());
    }
    ui::legend(ui::color::kWeights, "weights (bf16)");
    ImGui::SameLine(0, 14);
    ui::legend(ui::color::kAccent, "KV cache");
    ImGui::SameLine(0, 14);
    ui::legend(ui::color::kBudget, "card capacity");
    ImGui::End();
}

}  // namespace kvw::gui
