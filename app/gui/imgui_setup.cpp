#include <imgui.h>

#include "platform.h"
#include "ui_style.h"

namespace kvw::gui {

void init_imgui(float scale) {
    IMGUI_CHECKVERSION();
    ImGui::CreateContext();
    ImGuiIO& io = ImGui::GetIO();
    io.IniFilename = nullptr;  // panels are placed from the window size every frame; nothing to persist
    io.LogFilename = nullptr;
    ui::load_fonts(scale);
    ui::apply_theme(scale);
}

}  // namespace kvw::gui
