#include "ui_style.h"

#include <algorithm>
#include <cstdarg>
#include <filesystem>

#include "kvworld/planner.h"

namespace kvw::gui::ui {

namespace {
bool g_unicode = false;
ImFont* g_mono = nullptr;
}  // namespace

ImVec4 color::vec(ImU32 c) {
    return ImGui::ColorConvertU32ToFloat4(c);
}

ImU32 color::pane(int index) {
    static const ImU32 colors[] = {IM_COL32(230, 230, 235, 255), IM_COL32(64, 196, 178, 255),
                                   IM_COL32(240, 120, 100, 255), IM_COL32(150, 140, 250, 255),
                                   IM_COL32(245, 190, 70, 255)};
    return colors[static_cast<size_t>(index) % (sizeof colors / sizeof colors[0])];
}

ImFont* mono_font() {
    return g_mono ? g_mono : ImGui::GetFont();
}
const char* delta_ps_name() {
    return g_unicode ? "\xCE\x94P_S" : "dP_S";
}

void apply_theme(float scale) {
    ImGuiStyle& s = ImGui::GetStyle();
    ImGui::StyleColorsDark(&s);
    s.WindowRounding = 6;
    s.ChildRounding = 4;
    s.FrameRounding = 4;
    s.PopupRounding = 4;
    s.GrabRounding = 4;
    s.TabRounding = 4;
    s.ScrollbarRounding = 6;
    s.WindowBorderSize = 1;
    s.FrameBorderSize = 0;
    s.WindowPadding = ImVec2(10, 10);
    s.FramePadding = ImVec2(7, 4);
    s.ItemSpacing = ImVec2(8, 6);
    s.ItemInnerSpacing = ImVec2(6, 4);
    s.IndentSpacing = 14;
    s.ScrollbarSize = 12;
    s.GrabMinSize = 10;
    s.WindowTitleAlign = ImVec2(0.0f, 0.5f);

    ImVec4* c = s.Colors;
    const ImVec4 bg(0.085f, 0.095f, 0.115f, 0.97f), panel(0.12f, 0.13f, 0.16f, 1.0f);
    const ImVec4 accent = color::vec(color::kAccent);
    const ImVec4 accent_dim(accent.x * 0.55f, accent.y * 0.55f, accent.z * 0.55f, 1.0f);
    c[ImGuiCol_Text] = ImVec4(0.90f, 0.91f, 0.93f, 1.0f);
    c[ImGuiCol_TextDisabled] = ImVec4(0.50f, 0.52f, 0.57f, 1.0f);
    c[ImGuiCol_WindowBg] = bg;
    c[ImGuiCol_ChildBg] = ImVec4(0, 0, 0, 0);
    c[ImGuiCol_PopupBg] = ImVec4(0.10f, 0.11f, 0.14f, 0.98f);
    c[ImGuiCol_Border] = ImVec4(0.22f, 0.24f, 0.29f, 1.0f);
    c[ImGuiCol_FrameBg] = panel;
    c[ImGuiCol_FrameBgHovered] = ImVec4(0.17f, 0.19f, 0.23f, 1.0f);
    c[ImGuiCol_FrameBgActive] = ImVec4(0.20f, 0.23f, 0.28f, 1.0f);
    c[ImGuiCol_TitleBg] = ImVec4(0.09f, 0.10f, 0.12f, 1.0f);
    c[ImGuiCol_TitleBgActive] = ImVec4(0.11f, 0.12f, 0.15f, 1.0f);
    c[ImGuiCol_MenuBarBg] = ImVec4(0.07f, 0.08f, 0.10f, 1.0f);
    c[ImGuiCol_Header] = ImVec4(0.15f, 0.17f, 0.21f, 1.0f);
    c[ImGuiCol_HeaderHovered] = ImVec4(0.19f, 0.22f, 0.27f, 1.0f);
    c[ImGuiCol_HeaderActive] = ImVec4(0.22f, 0.25f, 0.31f, 1.0f);
    c[ImGuiCol_Button] = ImVec4(0.16f, 0.18f, 0.22f, 1.0f);
    c[ImGuiCol_ButtonHovered] = ImVec4(0.21f, 0.24f, 0.29f, 1.0f);
    c[ImGuiCol_ButtonActive] = accent_dim;
    c[ImGuiCol_CheckMark] = accent;
    c[ImGuiCol_SliderGrab] = accent;
    c[ImGuiCol_SliderGrabActive] = ImVec4(accent.x * 1.1f, accent.y * 1.1f, accent.z * 1.1f, 1.0f);
    c[ImGuiCol_Separator] = ImVec4(0.22f, 0.24f, 0.29f, 1.0f);
    c[ImGuiCol_PlotLines] = accent;
    c[ImGuiCol_PlotHistogram] = accent;
    c[ImGuiCol_TableHeaderBg] = ImVec4(0.13f, 0.14f, 0.18f, 1.0f);
    c[ImGuiCol_TableBorderLight] = ImVec4(0.18f, 0.20f, 0.24f, 1.0f);
    c[ImGuiCol_TableBorderStrong] = ImVec4(0.22f, 0.24f, 0.29f, 1.0f);
    c[ImGuiCol_ModalWindowDimBg] = ImVec4(0, 0, 0, 0.55f);
    s.ScaleAllSizes(scale);
}

void load_fonts(float scale) {
    ImGuiIO& io = ImGui::GetIO();
    namespace fs = std::filesystem;
    const fs::path bundled = data_root() / "assets" / "fonts";
    const fs::path system = "/usr/share/fonts/truetype/dejavu";
    auto find = [&](const char* file) -> std::string {
        for (const fs::path& dir : {bundled, system}) {
            std::error_code ec;
            if (fs::exists(dir / file, ec)) return (dir / file).string();
        }
        return "";
    };
    // Latin, Greek (Δ, α), dashes, ellipsis, arrows, bullets and geometric shapes (state dots).
    static const ImWchar ranges[] = {0x0020, 0x00FF, 0x0370, 0x03FF, 0x2013, 0x2026, 0x2190, 0x21FF,
                                     0x2212, 0x2212, 0x2264, 0x2265, 0x25A0, 0x25FF, 0};
    const std::string sans = find("DejaVuSans.ttf"), mono = find("DejaVuSansMono.ttf");
    ImFontConfig config;
    config.OversampleH = 2;
    if (!sans.empty() && io.Fonts->AddFontFromFileTTF(sans.c_str(), 15.0f * scale, &config, ranges)) {
        g_unicode = true;
        if (!mono.empty())
            g_mono = io.Fonts->AddFontFromFileTTF(mono.c_str(), 14.0f * scale, &config, ranges);
    } else {
        ImFontConfig def;
        def.SizePixels = 13.0f * scale;
        io.Fonts->AddFontDefault(&def);
    }
}

bool segmented(const char* id, int* value, const std::vector<std::pair<int, std::string>>& options,
               bool enabled) {
    bool changed = false;
    ImGui::PushID(id);
    if (!enabled) ImGui::BeginDisabled();
    const ImVec4 active = color::vec(color::kAccent);
    for (size_t i = 0; i < options.size(); ++i) {
        if (i) ImGui::SameLine(0, 2);
        const bool selected = *value == options[i].first;
        if (selected) {
            ImGui::PushStyleColor(ImGuiCol_Button,
                                  ImVec4(active.x * 0.55f, active.y * 0.55f, active.z * 0.55f, 1));
            ImGui::PushStyleColor(ImGuiCol_ButtonHovered,
                                  ImVec4(active.x * 0.65f, active.y * 0.65f, active.z * 0.65f, 1));
        }
        if (ImGui::Button(options[i].second.c_str()) && !selected) {
            *value = options[i].first;
            changed = true;
        }
        if (selected) ImGui::PopStyleColor(2);
    }
    if (!enabled) ImGui::EndDisabled();
    ImGui::PopID();
    return changed;
}

void form_label(const char* label, float column) {
    ImGui::AlignTextToFramePadding();
    ImGui::TextUnformatted(label);
    ImGui::SameLine(column);
}

void help_marker(const char* text) {
    ImGui::SameLine();
    ImGui::TextDisabled("(?)");
    if (ImGui::IsItemHovered()) {
        ImGui::BeginTooltip();
        ImGui::PushTextWrapPos(ImGui::GetFontSize() * 30.0f);
        ImGui::TextUnformatted(text);
        ImGui::PopTextWrapPos();
        ImGui::EndTooltip();
    }
}

void section_title(const char* text) {
    ImGui::PushStyleColor(ImGuiCol_Text, color::vec(color::kMuted));
    ImGui::TextUnformatted(text);
    ImGui::PopStyleColor();
}

void muted_wrapped(const char* format, ...) {
    va_list args;
    va_start(args, format);
    ImGui::PushStyleColor(ImGuiCol_Text, ImGui::GetStyle().Colors[ImGuiCol_TextDisabled]);
    ImGui::PushTextWrapPos(0.0f);
    ImGui::TextV(format, args);
    ImGui::PopTextWrapPos();
    ImGui::PopStyleColor();
    va_end(args);
}

void stacked_bar(ImVec2 size, const std::vector<std::pair<double, ImU32>>& parts, double full, double marker,
                 ImU32 outline) {
    ImDrawList* dl = ImGui::GetWindowDrawList();
    const ImVec2 p = ImGui::GetCursorScreenPos();
    dl->AddRectFilled(p, ImVec2(p.x + size.x, p.y + size.y), IM_COL32(255, 255, 255, 18), 3);
    double x = 0;
    if (full > 0) {
        for (const auto& [value, col] : parts) {
            const double w = std::max(0.0, value) / full * size.x;
            const float x0 = p.x + static_cast<float>(std::min<double>(x, size.x));
            const float x1 = p.x + static_cast<float>(std::min<double>(x + w, size.x));
            if (x1 > x0) dl->AddRectFilled(ImVec2(x0, p.y), ImVec2(x1, p.y + size.y), col, 2);
            x += w;
        }
        if (marker >= 0) {
            const float mx = p.x + static_cast<float>(std::min(marker / full, 1.0) * size.x);
            dl->AddLine(ImVec2(mx, p.y - 2), ImVec2(mx, p.y + size.y + 2), color::kBudget, 2.0f);
        }
    }
    if (outline) dl->AddRect(p, ImVec2(p.x + size.x, p.y + size.y), outline, 3);
    ImGui::Dummy(size);
}

void legend(ImU32 col, const char* text) {
    const float h = ImGui::GetTextLineHeight();
    const ImVec2 p = ImGui::GetCursorScreenPos();
    ImGui::GetWindowDrawList()->AddRectFilled(ImVec2(p.x, p.y + h * 0.2f),
                                              ImVec2(p.x + h * 0.6f, p.y + h * 0.8f), col, 2);
    ImGui::Dummy(ImVec2(h * 0.7f, h));
    ImGui::SameLine(0, 4);
    ImGui::TextUnformatted(text);
}

void state_chip(ImU32 col, const char* text) {
    const float h = ImGui::GetTextLineHeight();
    const ImVec2 p = ImGui::GetCursorScreenPos();
    ImGui::GetWindowDrawList()->AddCircleFilled(ImVec2(p.x + h * 0.35f, p.y + h * 0.5f), h * 0.28f, col);
    ImGui::Dummy(ImVec2(h * 0.75f, h));
    ImGui::SameLine(0, 2);
    ImGui::PushStyleColor(ImGuiCol_Text, color::vec(col));
    ImGui::TextUnformatted(text);
    ImGui::PopStyleColor();
}

}  // namespace kvw::gui::ui
