// The game-like parts of the UI: the Esc menu (resume, cache presets, settings, help, quit), the small
// file browser (File > Open model, Load trace) and the hint line shown when the world starts.
#include <imgui.h>

#include <algorithm>

#include "app.h"
#include "file_browser.h"
#include "ui_style.h"

namespace kvw::gui {

void App::open_browser(BrowserPurpose purpose) {
    browser_purpose_ = purpose;
    browser_open_ = true;
    browser_selected_.clear();
    // Start where the thing probably is: the running model's parent folder, or the captures folder.
    std::error_code ec;
    if (purpose == BrowserPurpose::OpenModel)
        browser_folder_ = controller_->model_dir().has_parent_path() ? controller_->model_dir().parent_path()
                                                                     : std::filesystem::current_path(ec);
    else
        browser_folder_ =
            std::filesystem::is_directory(out_dir(), ec) ? out_dir() : std::filesystem::current_path(ec);
}

void App::draw_browser() {
    const char* title = browser_purpose_ == BrowserPurpose::OpenModel ? "Open model" : "Load trace";
    if (browser_open_ && !ImGui::IsPopupOpen(title)) ImGui::OpenPopup(title);
    const ImGuiIO& io = ImGui::GetIO();
    ImGui::SetNextWindowSize(ImVec2(std::min(620.0f, io.DisplaySize.x - 40), 0));
    ImGui::SetNextWindowPos(ImVec2(io.DisplaySize.x * 0.5f, io.DisplaySize.y * 0.5f), ImGuiCond_Always,
                            ImVec2(0.5f, 0.5f));
    if (!ImGui::BeginPopupModal(title, nullptr, ImGuiWindowFlags_NoResize | ImGuiWindowFlags_NoSavedSettings))
        return;
    const bool model = browser_purpose_ == BrowserPurpose::OpenModel;
    // Models are folders: their files are of no use here.
    const FolderListing listing = list_folder(browser_folder_, {".json"}, !model);
    ImGui::TextWrapped("%s", model ? "A model is a folder with model.json and its weights (marked [model])."
                                   : "A kvworld trace (JSON): the world restarts from it and replays it.");
    ImGui::TextDisabled("%s", listing.folder.string().c_str());
    if (!listing.error.empty())
        ImGui::TextColored(ui::color::vec(ui::color::kBad), "%s", listing.error.c_str());
    std::filesystem::path go_to;
    bool open_now = false;
    const float list_h = std::clamp(io.DisplaySize.y - 260, 120.0f, 360.0f);
    if (ImGui::BeginListBox("##entries", ImVec2(-1, list_h))) {
        for (const FolderEntry& e : listing.entries) {
            const std::string label =
                e.folder ? (e.model ? "[model] " : "[dir]   ") + e.name : "        " + e.name;
            const std::filesystem::path path = listing.folder / e.name;
            const bool selected = browser_selected_ == path.string();
            if (ImGui::Selectable(label.c_str(), selected, ImGuiSelectableFlags_AllowDoubleClick)) {
                browser_selected_ = path.string();
                const bool twice = ImGui::IsMouseDoubleClicked(ImGuiMouseButton_Left);
                if (e.folder && !(model && e.model && twice)) {
                    go_to = e.name == ".." ? listing.folder.parent_path() : path;
                } else if (twice) {
                    open_now = true;
                }
            }
        }
        ImGui::EndListBox();
    }
    if (!go_to.empty()) {
        browser_folder_ = go_to;
        browser_selected_ = model ? go_to.string() : "";
    }
    // A model is the folder itself: the one selected, or the one being shown.
    std::string target = browser_selected_;
    if (model && target.empty()) target = listing.folder.string();
    ImGui::SetNextItemWidth(-1);
    char buffer[1024];
    std::snprintf(buffer, sizeof buffer, "%s", target.c_str());
    if (ImGui::InputText("##target", buffer, sizeof buffer, ImGuiInputTextFlags_EnterReturnsTrue))
        open_now = true;
    browser_selected_ = target = buffer;
    const bool ok = ImGui::Button(model ? "Open model" : "Load trace", ImVec2(120, 0)) || open_now;
    ImGui::SameLine();
    const bool cancel = ImGui::Button("Cancel", ImVec2(100, 0)) || !browser_open_;
    if (ok && !target.empty()) {
        if (model)
            controller_->open_model(target);
        else
            controller_->load_trace(target);
    }
    note_window("file_browser", true);
    if ((ok && !target.empty()) || cancel) {
        browser_open_ = false;
        ImGui::CloseCurrentPopup();
    }
    ImGui::EndPopup();
}

void App::draw_escape_menu() {
    if (escape_menu_ && !ImGui::IsPopupOpen("##escape")) ImGui::OpenPopup("##escape");
    const ImGuiIO& io = ImGui::GetIO();
    ImGui::SetNextWindowPos(ImVec2(io.DisplaySize.x * 0.5f, io.DisplaySize.y * 0.5f), ImGuiCond_Always,
                            ImVec2(0.5f, 0.5f));
    ImGui::SetNextWindowSize(ImVec2(320, 0));
    if (!ImGui::BeginPopupModal("##escape", nullptr,
                                ImGuiWindowFlags_NoTitleBar | ImGuiWindowFlags_NoResize |
                                    ImGuiWindowFlags_NoSavedSettings | ImGuiWindowFlags_NoMove))
        return;
    GuiController& world = *controller_;
    const ImVec2 full(-1, 0);
    ui::section_title("KVWORLD");
    ImGui::TextDisabled("%s", world.config() ? world.config()->name.c_str() : "no model");
    ImGui::Spacing();
    bool close = !escape_menu_;
    if (ImGui::Button("Resume", full)) close = true;
    ImGui::Spacing();
    ImGui::TextDisabled("Play with a KV cache of");
    for (const CachePreset& preset : cache_presets()) {
        const bool running = !world.ab().enabled && effective_cache(world.main_cache()) == preset.cache;
        if (running) ImGui::PushStyleColor(ImGuiCol_Button, ui::color::vec(IM_COL32(40, 110, 100, 255)));
        if (ImGui::Button(preset.name, full)) {
            world.set_ab_enabled(false);
            world.set_main_cache(preset.cache);
            close = true;
        }
        if (running) ImGui::PopStyleColor();
    }
    ImGui::Spacing();
    if (ImGui::Button("Settings (controls panel)", full)) {
        show_panel_ = true;
        close = true;
    }
    if (ImGui::Button("Open model...", full)) {
        close = true;
        open_browser(BrowserPurpose::OpenModel);
    }
    if (ImGui::Button("Help", full)) {
        show_help_ = true;
        close = true;
    }
    ImGui::Spacing();
    if (ImGui::Button("Quit", full)) quit_requested_ = true;
    note_window("escape_menu", true);
    if (close) {
        escape_menu_ = false;
        // The world was paused for the menu: it goes on unless it was paused before.
        if (!paused_before_menu_) world.set_paused(false);
        ImGui::CloseCurrentPopup();
    }
    ImGui::EndPopup();
}

void App::draw_start_hint() {
    // Until the player first moves (or a while has passed): how to play, and on the CPU backend that a
    // chunk takes seconds, so keys are to be held rather than tapped.
    const GuiController& world = *controller_;
    if (!start_hint_ || !world.ready() || !world.takes_player_input() || world.state() != RunState::Running)
        return;
    const InputState& input = world.input_timeline().latest();
    for (int c = 0; c < kCommandCount; ++c)
        if (input.is_held(static_cast<Command>(c))) start_hint_ = false;
    if (now_ > 60 || !start_hint_) {
        start_hint_ = false;
        return;
    }
    const Keymap& k = keymap_.keymap;
    std::string hint = k.describe(Command::MoveForward) + k.describe(Command::MoveLeft) +
                       k.describe(Command::MoveBack) + k.describe(Command::MoveRight) +
                       " move  ·  arrows or right mouse look  ·  " + k.describe(Command::ToggleHelp) +
                       " help  ·  Esc menu";
    if (world.backend() == BackendKind::Cpu) {
        char buf[96];
        if (!world.chunk_ms_history().empty())
            std::snprintf(buf, sizeof buf, "  ·  CPU: about %.0f s a chunk, hold keys",
                          std::max(1.0, world.chunk_ms_history().back() / 1000.0));
        else
            std::snprintf(buf, sizeof buf, "  ·  CPU: chunks take seconds, hold keys");
        hint += buf;
    }
    const std::string text =
        first_fitting({hint, hint.substr(0, hint.find("  ·  Esc"))}, world_x1_ - world_x0_ - 20);
    if (text.empty()) return;
    const ImVec2 size = ImGui::CalcTextSize(text.c_str());
    // In the top band of the world area, above the frames (they are laid out below it while it shows).
    const float x = (world_x0_ + world_x1_ - size.x) * 0.5f - 10;
    const float y = hint_y_;
    ImDrawList* dl = ImGui::GetBackgroundDrawList();  // under the help and the menus
    dl->AddRectFilled(ImVec2(x, y), ImVec2(x + size.x + 20, y + size.y + 10), IM_COL32(10, 12, 16, 230), 5);
    dl->AddText(ImVec2(x + 10, y + 5), ui::color::kAccent, text.c_str());
    note_widget("start_hint", x, y, x + size.x + 20, y + size.y + 10);
}

}  // namespace kvw::gui
