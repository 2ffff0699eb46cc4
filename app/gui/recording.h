// Recording what was played: action traces that replay in kvworld-cli, screenshots and video.
//
// A trace (docs/design.md "Trace") is the start of the current world (world seed, noise seed, start pose,
// the context actions that the simulator renders as ground truth) followed by every action the player
// generated a chunk with. Replayed with `kvworld-cli generate --trace T` and the same cache settings (the
// note in the file spells out the command) it gives the same frames, as long as nothing changed mid-run;
// when something did (settings, seed, a continued world after a backend switch), the recorder says so in
// the UI and in the trace's note and settings.
//
// Files are written on a background thread (PNG encoding of a 1280x720 screenshot takes longer than a UI
// frame), each atomically (kvw::write_png / write_file_atomic).
#pragma once

#include <condition_variable>
#include <deque>
#include <filesystem>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "kvworld/image.h"
#include "kvworld/trace.h"

namespace kvw::gui {

class TraceRecorder {
  public:
    // `base`: the trace head the world started from (context actions, seeds, pose; generated actions are
    // dropped). `settings_json`: the session settings then (a JSON object). `replay_hint`: the CLI command.
    void begin(const Trace& base, const std::string& settings_json, const std::string& replay_hint);
    void add_chunk(const std::vector<FrameAction>& actions);
    // Settings changed after generation began: kept in the trace, and the replay is no longer exact.
    void settings_changed(const std::string& settings_json);
    void mark_diverged(const std::string& why);

    bool active() const { return active_; }
    int generated_frames() const { return static_cast<int>(trace_.actions.size()) - trace_.context_frames; }
    bool exact_replay() const { return divergence_.empty(); }
    const std::string& divergence() const { return divergence_; }
    // The trace with the settings history and the replay note filled in.
    Trace trace() const;

  private:
    bool active_ = false;
    Trace trace_;
    std::string settings_at_start_;
    std::string settings_latest_;
    std::vector<std::pair<int, std::string>> changes_;  // (generated frame, settings JSON)
    std::string replay_hint_;
    std::string divergence_;
};

// Runs file jobs in order on one thread. A job returns a message for the UI (or "") and may throw: the
// exception's text becomes an error message.
class FileWriter {
  public:
    FileWriter();
    ~FileWriter();  // finishes every queued job first
    FileWriter(const FileWriter&) = delete;
    FileWriter& operator=(const FileWriter&) = delete;

    void post(std::function<std::string()> job);
    struct Message {
        bool error = false;
        std::string text;
    };
    std::vector<Message> take_messages();
    int pending() const;
    void wait_idle();

  private:
    void run(std::stop_token stop);
    mutable std::mutex mutex_;
    std::condition_variable_any cv_;
    std::condition_variable_any idle_cv_;
    std::deque<std::function<std::string()>> jobs_;
    std::vector<Message> messages_;
    int running_ = 0;
    std::jthread thread_;
};

// Video: every displayed world frame as a numbered PNG in a fresh folder; on stop, ffmpeg turns them into
// an MP4 next to them when it is installed (the PNGs stay either way).
class VideoRecorder {
  public:
    explicit VideoRecorder(FileWriter& writer) : writer_(writer) {}
    void start(const std::filesystem::path& folder, int fps);
    void add_frame(Image frame);
    void stop();
    bool recording() const { return recording_; }
    int frames() const { return frames_; }

  private:
    FileWriter& writer_;
    bool recording_ = false;
    int frames_ = 0;
    int fps_ = 16;
    std::filesystem::path folder_;
};

// "kvworld_20250101_120000" (local time) plus a counter when called twice in one second.
std::string timestamp_name(const std::string& prefix);

}  // namespace kvw::gui
