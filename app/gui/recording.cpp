#include "recording.h"

#include <ctime>
#include <nlohmann/json.hpp>

#include "frontend.h"
#include "kvworld/error.h"

namespace kvw::gui {

using json = nlohmann::json;
namespace fs = std::filesystem;

void TraceRecorder::begin(const Trace& base, const std::string& settings_json,
                          const std::string& replay_hint) {
    trace_ = base;
    trace_.actions.resize(static_cast<size_t>(base.context_frames));
    trace_.note.clear();
    trace_.settings_json.clear();
    settings_at_start_ = settings_latest_ = settings_json;
    changes_.clear();
    replay_hint_ = replay_hint;
    divergence_.clear();
    active_ = true;
}

void TraceRecorder::add_chunk(const std::vector<FrameAction>& actions) {
    if (!active_) return;
    trace_.actions.insert(trace_.actions.end(), actions.begin(), actions.end());
}

void TraceRecorder::settings_changed(const std::string& settings_json) {
    if (!active_ || settings_json == settings_latest_) return;
    settings_latest_ = settings_json;
    if (generated_frames() == 0) {
        settings_at_start_ = settings_json;  // nothing generated yet: still the settings of the whole run
        return;
    }
    changes_.emplace_back(generated_frames(), settings_json);
    if (divergence_.empty())
        divergence_ = "settings changed at generated frame " + std::to_string(generated_frames()) +
                      " (the CLI replays one setting for the whole trace)";
}

void TraceRecorder::mark_diverged(const std::string& why) {
    if (active_ && divergence_.empty())
        divergence_ = why + " at generated frame " + std::to_string(generated_frames());
}

Trace TraceRecorder::trace() const {
    Trace t = trace_;
    json settings = json::parse(settings_at_start_.empty() ? "{}" : settings_at_start_, nullptr, false);
    if (settings.is_discarded() || !settings.is_object()) settings = json::object();
    if (!changes_.empty()) {
        json changes = json::array();
        for (const auto& [frame, s] : changes_) {
            json parsed = json::parse(s, nullptr, false);
            changes.push_back(
                {{"generated_frame", frame}, {"settings", parsed.is_discarded() ? json(s) : parsed}});
        }
        settings["changes"] = changes;
    }
    t.settings_json = settings.dump();
    t.note = "Recorded by kvworld. Replay: " + replay_hint_ +
             (divergence_.empty() ? "" : ". NOT an exact replay: " + divergence_);
    return t;
}

FileWriter::FileWriter() : thread_([this](std::stop_token stop) { run(stop); }) {}

FileWriter::~FileWriter() {
    wait_idle();
    thread_.request_stop();
    cv_.notify_all();
}

void FileWriter::post(std::function<std::string()> job) {
    {
        std::lock_guard lock(mutex_);
        jobs_.push_back(std::move(job));
    }
    cv_.notify_one();
}

std::vector<FileWriter::Message> FileWriter::take_messages() {
    std::lock_guard lock(mutex_);
    return std::exchange(messages_, {});
}

int FileWriter::pending() const {
    std::lock_guard lock(mutex_);
    return static_cast<int>(jobs_.size()) + running_;
}

void FileWriter::wait_idle() {
    std::unique_lock lock(mutex_);
    idle_cv_.wait(lock, [&] { return jobs_.empty() && running_ == 0; });
}

void FileWriter::run(std::stop_token stop) {
    while (true) {
        std::function<std::string()> job;
        {
            std::unique_lock lock(mutex_);
            cv_.wait(lock, stop, [&] { return !jobs_.empty(); });
            if (jobs_.empty()) return;  // stop requested and nothing left
            job = std::move(jobs_.front());
            jobs_.pop_front();
            running_ = 1;
        }
        Message m;
        try {
            m.text = job();
        } catch (const std::exception& e) {
            m.error = true;
            m.text = e.what();
        }
        std::lock_guard lock(mutex_);
        running_ = 0;
        if (!m.text.empty()) messages_.push_back(std::move(m));
        idle_cv_.notify_all();
    }
}

void VideoRecorder::start(const fs::path& folder, int fps) {
    if (recording_) return;
    folder_ = folder;
    fps_ = fps;
    frames_ = 0;
    recording_ = true;
    // The folder is made with the first frame: a video stopped before any frame leaves nothing behind.
}

void VideoRecorder::add_frame(Image frame) {
    if (!recording_) return;
    const int index = frames_++;
    writer_.post([folder = folder_, index, frame = std::move(frame)] {
        char name[32];
        std::snprintf(name, sizeof name, "frame_%05d.png", index);
        if (index == 0) fs::create_directories(folder);
        write_png(folder / name, frame);
        return std::string();
    });
}

void VideoRecorder::stop() {
    if (!recording_) return;
    recording_ = false;
    const int frames = frames_;
    writer_.post([folder = folder_, fps = fps_, frames] {
        if (frames == 0) return std::string("video: no frames were recorded");
        std::string why;
        const fs::path out = folder / "video.mp4";
        if (frontend::encode_mp4(folder, "frame_%05d.png", fps, 0, out, &why))
            return "video: " + out.string() + " (" + std::to_string(frames) + " frames)";
        return "video: " + std::to_string(frames) + " PNG frames in " + folder.string() + " (" + why + ")";
    });
}

std::string timestamp_name(const std::string& prefix) {
    static std::string last;
    static int repeat = 0;
    const std::time_t now = std::time(nullptr);
    std::tm local{};
    localtime_r(&now, &local);
    char buf[64];
    std::strftime(buf, sizeof buf, "%Y%m%d_%H%M%S", &local);
    std::string name = prefix + "_" + buf;
    if (name == last) {
        ++repeat;
        return name + "_" + std::to_string(repeat);
    }
    last = name;
    repeat = 0;
    return name;
}

}  // namespace kvw::gui
