#include "app.h"

#include <imgui.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "frontend.h"
#include "kvworld/fileio.h"

namespace kvw::gui {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

void write_seed(char (&text)[24], uint64_t seed) {
    std::snprintf(text, sizeof text, "%llu", static_cast<unsigned long long>(seed));
}

}  // namespace

App::App(const AppOptions& options) : options_(options) {
    if (options_.out_dir.empty()) options_.out_dir = "kvworld-captures";
    const fs::path keymap_path =
        options.keymap_path.empty() ? data_root() / "config" / "keymap.json" : fs::path(options.keymap_path);
    keymap_ = load_keymap(keymap_path);
    if (!keymap_.error.empty()) notify("Keymap: " + keymap_.error, true);
    try {
        presets_ = load_peer_presets(default_presets_dir());
    } catch (const std::exception& e) {
        presets_error_ = e.what();
    }
    show_memory_ = options.memory;
    show_help_ = options.help;
    if (!options.input_script.empty()) {
        try {
            input_script_ = InputScript::load(options.input_script);
            options_.world.scripted_input = true;
        } catch (const std::exception& e) {
            notify(std::string("Input script not used: ") + e.what(), true);
        }
    }
    controller_ = std::make_unique<GuiController>(options_.world, presenter_frames_);
    if (const auto& config = controller_->config())
        presenter_.set_filter(config->width <= 256 ? render::Filter::Nearest : render::Filter::Linear);
    world_seed_shown_ = controller_->world_seed();
    seed_shown_ = controller_->shared().seed;
    write_seed(world_seed_text_, world_seed_shown_);
    write_seed(seed_text_, seed_shown_);
    sync_with_controller();
}

App::~App() {
    // Stop the worker first (it may be waiting for us to consume device frames), then the presenter's
    // textures go while the GL context is still current (the platform loop destroys the app first).
    controller_.reset();
    if (video_.recording()) video_.stop();
}

fs::path App::out_dir() const {
    return options_.out_dir.empty() ? fs::path("kvworld-captures") : fs::path(options_.out_dir);
}

void App::notify(const std::string& text, bool error) {
    toasts_.push_back(Toast{text, error, now_, frames_shown_});
    while (toasts_.size() > 6) toasts_.pop_front();
    std::fprintf(stderr, "kvworld: %s%s\n", error ? "error: " : "", text.c_str());
}

void App::sync_with_controller() {
    for (const GuiController::Notice& n : controller_->take_notices()) notify(n.text, n.error);
    // The seed fields keep what the user types, and follow the controller when it changes the seeds (a
    // new world, a loaded trace, a random seed).
    if (controller_->world_seed() != world_seed_shown_) {
        world_seed_shown_ = controller_->world_seed();
        write_seed(world_seed_text_, world_seed_shown_);
    }
    if (controller_->shared().seed != seed_shown_) {
        seed_shown_ = controller_->shared().seed;
        write_seed(seed_text_, seed_shown_);
    }
}

void App::handle_keys(const FrameInput& in) {
    GuiController& world = *controller_;
    for (int key : in.pressed_keys) {
        if (key == key_from_name("Escape")) {
            // Esc closes what is open, innermost first; with nothing open it opens (or closes) the menu.
            if (browser_open_) {
                browser_open_ = false;
            } else if (path_prompt_ != PathPrompt::None) {
                path_prompt_ = PathPrompt::None;
            } else if (show_help_) {
                show_help_ = false;
            } else if (show_planner_) {
                show_planner_ = false;
            } else if (escape_menu_) {
                escape_menu_ = false;  // draw_escape_menu resumes the world
            } else {
                escape_menu_ = true;
                start_hint_ = false;
                paused_before_menu_ = world.paused();
                world.set_paused(true);
            }
            continue;
        }
        if (key == key_from_name("F11")) fullscreen_requested_ = true;
        if (escape_menu_) continue;  // the menu is modal: no world keys behind it
        // A/B view: 1-4 enlarge a pane, the same digit (or 0) brings the grid back.
        for (int digit = 0; digit <= AbSettings::kMaxPanes; ++digit) {
            if (key != key_from_name(std::to_string(digit)) || !world.ab().enabled) continue;
            const int pane = digit - 1;
            enlarged_pane_ = digit == 0 || enlarged_pane_ == pane ? -1 : pane;
        }
        for (int c = 0; c < kCommandCount; ++c) {
            const Command cmd = static_cast<Command>(c);
            if (command_is_held(cmd) || !keymap_.keymap.matches(cmd, key)) continue;
            switch (cmd) {
                case Command::Pause:
                    world.set_paused(!world.paused());
                    break;
                case Command::Reset:
                    world.restart_world();
                    break;
                case Command::Step:
                    if (!world.step_one_chunk())
                        notify("Step (" + keymap_.keymap.describe(Command::Step) + ") works while paused (" +
                               keymap_.keymap.describe(Command::Pause) + ")");
                    break;
                case Command::ToggleCorrection:
                    world.toggle_correction();
                    break;
                case Command::ToggleMemory:
                    show_memory_ = !show_memory_;
                    break;
                case Command::ToggleHelp:
                    show_help_ = !show_help_;
                    break;
                case Command::ToggleHud:
                    show_hud_ = !show_hud_;
                    break;
                case Command::TogglePanel:
                    show_panel_ = !show_panel_;
                    break;
                case Command::ToggleAb:
                    world.set_ab_enabled(!world.ab().enabled);
                    break;
                case Command::Screenshot:
                    take_screenshot();
                    break;
                case Command::ToggleVideo:
                    toggle_video();
                    break;
                default:
                    break;
            }
        }
    }
}

void App::frame(const FrameInput& platform_in) {
    FrameInput in = platform_in;
    if (!input_script_.empty()) {
        // Scripted keys go the way the window's keys go: through the keymap into held commands and presses.
        InputScript::FrameKeys keys = input_script_.advance(ui_frames_);
        in.input.held = held_commands(keymap_.keymap, keys.down);
        in.input.tapped = held_commands(keymap_.keymap, keys.tapped);
        in.pressed_keys.insert(in.pressed_keys.end(), keys.pressed.begin(), keys.pressed.end());
    }
    now_ = in.now;
    ++ui_frames_;
    gl_info_ = in.gl_info;
    gamepad_status_ = in.gamepad_status;
    if (in.dt > 0) ui_fps_.add(1.0 / in.dt);
    GuiController& world = *controller_;
    world.process_worker_events();
    for (const FileWriter::Message& m : writer_.take_messages()) notify(m.text, m.error);
    // Every UI frame, not only when a video frame is shown: a chunk may take seconds to generate and
    // whatever is held or tapped meanwhile belongs to the next one.
    world.observe_input(in.now, in.input);
    // Keys work without a world too (Esc: the menu, to open another model or quit).
    handle_keys(in);
    if (world.ready()) {
        const auto to_action = [&](const InputState& input) {
            return action_from_input(input, keymap_.keymap, world.config()->motion);
        };
        // Scripted runs let ImGui settle its window sizes before the first frame is shown.
        if (world.update(in.dt, in.now, to_action, ui_frames_ <= 2).advanced) on_frame_shown();
    }
    if (world.scripted() && world.state() == RunState::Failed && !finishing_) {
        // A scripted run that cannot go on ends with exit code 1, after drawing the error for a few frames
        // (ImGui sizes a new window on its first) and saving that screen (final.png, summary.json).
        if (++failed_frames_ >= 3) {
            finishing_ = true;
            ui_screenshot_due_ = true;
            exit_code_ = 1;
        }
    }
    sync_with_controller();
    draw_ui(in);
}

void App::on_frame_shown() {
    const GuiController& world = *controller_;
    const Playback& playback = *world.playback();
    if (video_.recording()) {
        try {
            video_.add_frame(presenter_.read_frame(playback.current().slot, 0, playback.frame()));
        } catch (const std::exception& e) {
            notify(std::string("Video frame lost: ") + e.what(), true);
        }
    }
    if (world.scripted()) {
        const int index = frames_shown_++;  // across restarts (playback counts from each one)
        const bool last = world.generated_frames_shown() >= world.scripted_frame_target();
        ui_screenshot_due_ = last || index % std::max(1, options_.shot_every) == 0;
        if (last) finishing_ = true;
    }
}

void App::save_ui_screenshot(Image image) {
    ui_screenshot_due_ = false;
    const fs::path dir = out_dir();
    const int index = std::max(0, frames_shown_ - 1);
    char name[32];
    std::snprintf(name, sizeof name, "ui_%05d.png", index);
    const bool last = finishing_;
    writer_.post([dir, name = std::string(name), image = std::move(image), last] {
        fs::create_directories(dir);
        write_png(dir / name, image);
        if (last) write_png(dir / "final.png", image);
        return std::string();
    });
    if (finishing_) {
        // What was played, as a trace: scripted input can be checked against it (and replayed).
        if (controller_->recorder().active()) controller_->save_trace((dir / "played_trace.json").string());
        write_summary();
        writer_.wait_idle();
        finished_ = true;
    }
}

void App::save_window_screenshot(Image image) {
    window_shot_requested_ = false;
    const fs::path path = out_dir() / (last_screenshot_ + "_window.png");
    writer_.post([path, image = std::move(image)] {
        fs::create_directories(path.parent_path());
        write_png(path, image);
        return "Screenshot: " + path.string();
    });
}

void App::take_screenshot() {
    const Playback* playback = controller_->playback();
    if (!playback || !playback->has_frame()) {
        notify("Nothing on screen to capture yet", true);
        return;
    }
    last_screenshot_ = timestamp_name("kvworld");
    const fs::path dir = out_dir();
    const size_t panes = controller_->panes().size();
    try {
        for (size_t p = 0; p < panes; ++p) {
            Image frame =
                presenter_.read_frame(playback->current().slot, static_cast<int>(p), playback->frame());
            const std::string suffix = panes > 1 ? "_pane" + std::to_string(p + 1) : "";
            const fs::path path = dir / (last_screenshot_ + "_world" + suffix + ".png");
            writer_.post([path, frame = std::move(frame)] {
                fs::create_directories(path.parent_path());
                write_png(path, frame);
                return std::string();
            });
        }
    } catch (const std::exception& e) {
        notify(std::string("Screenshot failed: ") + e.what(), true);
        return;
    }
    window_shot_requested_ = true;  // the platform reads the framebuffer after this frame renders
}

void App::toggle_video() {
    if (video_.recording()) {
        video_.stop();
        // Without frames the writer says so (and nothing is left on disk).
        if (video_.frames() > 0)
            notify("Video stopped: encoding " + std::to_string(video_.frames()) + " frames" +
                   (frontend::have_ffmpeg() ? " with ffmpeg" : " (no ffmpeg: PNG frames are kept)"));
        return;
    }
    const fs::path folder = out_dir() / timestamp_name("kvworld_video");
    const auto& config = controller_->config();
    video_.start(folder, config ? config->fps : 16);
    notify("Recording video into " + folder.string());
}

void App::note_widget(const std::string& name, float x0, float y0, float x1, float y1, bool modal) {
    if (x1 > x0 && y1 > y0) widgets_.push_back(WidgetRect{name, {x0, y0, x1, y1}, modal});
}

void App::note_window(const std::string& name, bool modal) {
    const ImVec2 pos = ImGui::GetWindowPos(), size = ImGui::GetWindowSize();
    note_widget(name, pos.x, pos.y, pos.x + size.x, pos.y + size.y, modal);
}

std::string App::held_keys_text(const std::array<bool, kCommandCount>& held) const {
    std::string text;
    for (int c = 0; c < kCommandCount; ++c) {
        if (!held[static_cast<size_t>(c)] || !command_is_held(static_cast<Command>(c))) continue;
        const std::vector<int>& keys = keymap_.keymap.bound(static_cast<Command>(c));
        if (keys.empty()) continue;
        if (!text.empty()) text += ' ';
        text.append(key_name(keys.front()));  // not `" " + name`: GCC 12 misreports it (-Wrestrict)
    }
    return text;
}

std::string App::host_upload_reason() const {
    const AbSettings& ab = controller_->ab();
    if (presenter_.interop_ready() && ab.enabled && ab.reference) return "A/B PSNR needs host frames";
    if (controller_->frames_stay_on_device()) return "waiting for the first device frame";
    return presenter_.interop_unavailable_reason();
}

void App::write_summary() {
    const GuiController& world = *controller_;
    json j;
    j["model"] = world.config() ? world.config()->name : "";
    j["model_dir"] = world.model_dir().string();
    j["backend"] = to_string(world.backend());
    j["presentation"] =
        presenter_.last_upload_interop() ? "CUDA-GL interop" : "host upload (" + host_upload_reason() + ")";
    j["gl"] = gl_info_;
    j["frames_shown"] = world.playback() ? world.playback()->frames_shown() : 0;
    j["generated_frames_shown"] = world.generated_frames_shown();
    j["paused"] = world.paused();
    j["escape_menu"] = escape_menu_;
    j["chunks"] = world.chunks_received();
    j["generated_fps_mean"] = world.generated_fps().mean();
    j["action_to_frame_latency_ms_mean"] = world.latency_ms().mean();
    json panes = json::array();
    const std::vector<PaneView>& views = world.panes();
    for (size_t i = 0; i < views.size(); ++i) {
        json p;
        p["label"] = pane_label(views[i].spec);
        if (views[i].last) p["last_chunk"] = json::parse(frontend::chunk_metrics_json(*views[i].last));
        if (static_cast<int>(i) < world.ab_stats().panes()) {
            const PaneSeries& s = world.ab_stats().series(static_cast<int>(i));
            if (!s.psnr.empty()) p["psnr_last"] = s.psnr.back();
            if (!s.delta_ps.empty()) p["delta_ps_last"] = s.delta_ps.back();
        }
        panes.push_back(p);
    }
    j["panes"] = panes;
    j["input"] = {{"held", held_keys_text(world.input_timeline().latest().held)},
                  {"queued", held_keys_text(world.input_timeline().pending())}};
    // Where things were drawn, for tests that check the screenshots' pixels.
    const ImGuiIO& io = ImGui::GetIO();
    json layout;
    layout["display"] = {io.DisplaySize.x, io.DisplaySize.y};
    layout["world_area"] = {world_x0_, world_y0_, world_x1_, world_y1_};
    if (show_panel_)
        layout["controls_panel"] = {io.DisplaySize.x - panel_width_, menu_height_, io.DisplaySize.x,
                                    io.DisplaySize.y - status_height_};
    if (show_memory_)
        layout["memory_panel"] = {0.0f, menu_height_, memory_width_, io.DisplaySize.y - status_height_};
    json rects = json::array();
    for (const auto& r : pane_rects_) rects.push_back({r[0], r[1], r[2], r[3]});
    layout["frames"] = rects;
    json widgets = json::array();
    for (const WidgetRect& w : widgets_)
        widgets.push_back({{"name", w.name}, {"rect", w.rect}, {"modal", w.modal}});
    layout["widgets"] = widgets;
    j["layout"] = layout;
    const fs::path path = out_dir() / "summary.json";
    writer_.post([path, text = j.dump(1) + "\n"] {
        fs::create_directories(path.parent_path());
        write_file_atomic(path, text);
        return std::string();
    });
}

}  // namespace kvw::gui
