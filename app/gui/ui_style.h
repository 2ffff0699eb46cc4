// Look and small custom widgets shared by the panels: the theme, fonts, colors with a meaning, a
// segmented button row, stacked bars.
#pragma once

#include <imgui.h>

#include <string>
#include <utility>
#include <vector>

namespace kvw::gui::ui {

// Colors that mean something everywhere in the app.
namespace color {
inline constexpr ImU32 kAccent = IM_COL32(64, 196, 178, 255);    // teal: selection, cache codes
inline constexpr ImU32 kMetadata = IM_COL32(240, 170, 70, 255);  // amber: quantization metadata
inline constexpr ImU32 kWeights = IM_COL32(120, 128, 150, 255);  // slate: model weights
inline constexpr ImU32 kDecode = IM_COL32(150, 140, 250, 255);   // violet: decode stage
inline constexpr ImU32 kGood = IM_COL32(110, 210, 120, 255);
inline constexpr ImU32 kWarn = IM_COL32(245, 190, 70, 255);
inline constexpr ImU32 kBad = IM_COL32(240, 96, 90, 255);
inline constexpr ImU32 kMuted = IM_COL32(150, 156, 170, 255);
inline constexpr ImU32 kBudget = IM_COL32(240, 96, 90, 255);
inline constexpr ImU32 kWorldBackground = IM_COL32(14, 16, 20, 255);
ImVec4 vec(ImU32 c);
ImU32 pane(int index);  // distinct color per pane (labels, plot lines)
}  // namespace color

// Dark theme, sizes scaled by `scale` (HiDPI); fonts from assets/fonts or fonts-dejavu-core when
// present (never required), else ImGui's built-in font.
void apply_theme(float scale);
void load_fonts(float scale);
ImFont* mono_font();          // numbers in the HUD (the default font when no TTF)
const char* delta_ps_name();  // "ΔP_S" with a TTF that has Greek, else "dP_S"

// A row of toggle buttons; returns true when the value changed.
bool segmented(const char* id, int* value, const std::vector<std::pair<int, std::string>>& options,
               bool enabled = true);
// Label in the left column, widget in the right (aligned forms in the side panel).
void form_label(const char* label, float column);
void help_marker(const char* text);
void section_title(const char* text);
// Muted (TextDisabled-colored) text that wraps at the window edge.
void muted_wrapped(const char* format, ...) IM_FMTARGS(1);
// Horizontal bar of `parts` (value, color) scaled so that `full` fills `size.x`, with an optional red
// marker line at `marker` (budget, card capacity).
void stacked_bar(ImVec2 size, const std::vector<std::pair<double, ImU32>>& parts, double full,
                 double marker = -1, ImU32 outline = 0);
// A colored dot + text (legends, state chips).
void legend(ImU32 color, const char* text);
void state_chip(ImU32 color, const char* text);

}  // namespace kvw::gui::ui
