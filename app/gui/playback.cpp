#include "playback.h"

#include <algorithm>
#include <numeric>

#include "kvworld/error.h"

namespace kvw::gui {

Playback::Playback(int frames_per_chunk, double fps)
    : frames_per_chunk_(frames_per_chunk), period_(1.0 / fps) {
    if (frames_per_chunk <= 0 || !(fps > 0))
        throw Error("playback: frames per chunk and fps must be positive");
}

void Playback::reset() {
    queue_.clear();
    frame_ = -1;
    accumulator_ = 0;
    stepping_ = false;
    frames_shown_ = 0;
}

void Playback::set_paused(bool paused) {
    paused_ = paused;
    if (!paused) stepping_ = false;
}

void Playback::request_step() {
    if (paused_) stepping_ = true;
}

void Playback::push(ChunkEntry entry) {
    if (entry.frames <= 0) throw Error("playback: a chunk without frames");
    queue_.push_back(std::move(entry));
}

bool Playback::next_frame_available() const {
    if (queue_.empty()) return false;
    if (frame_ < 0) return true;
    if (frame_ + 1 < queue_.front().frames) return true;
    return queue_.size() > 1;
}

Playback::Tick Playback::show_next(double now) {
    Tick t;
    if (frame_ < 0) {
        frame_ = 0;
    } else if (frame_ + 1 < queue_.front().frames) {
        ++frame_;
    } else {
        t.released_slot = queue_.front().slot;
        queue_.pop_front();
        frame_ = 0;
        if (stepping_) stepping_ = false;  // the first frame of the next chunk: the step is done
    }
    t.advanced = true;
    ++frames_shown_;
    const ChunkEntry& e = queue_.front();
    if (frame_ < static_cast<int>(e.sampled_at.size()))
        t.latency_s = now - e.sampled_at[static_cast<size_t>(frame_)];
    return t;
}

Playback::Tick Playback::tick(double dt, double now) {
    if (queue_.empty()) return {};
    if (frame_ < 0) {
        accumulator_ = 0;
        return show_next(now);  // the first frame goes up as soon as it exists
    }
    if (paused_ && !stepping_) {
        accumulator_ = 0;
        return {};
    }
    accumulator_ += dt;
    if (accumulator_ < period_) return {};
    if (!next_frame_available()) {
        accumulator_ = period_;  // hold: show the next frame the moment it arrives, not a burst later
        Tick t;
        t.stalled = true;
        return t;
    }
    accumulator_ -= period_;
    if (accumulator_ >= period_) accumulator_ = 0;  // a long UI hitch does not cause catch-up bursts
    return show_next(now);
}

Playback::Tick Playback::advance(double now) {
    if (!next_frame_available()) {
        Tick t;
        t.stalled = !queue_.empty();
        return t;
    }
    return show_next(now);
}

void ActionCollector::add(const FrameAction& action, double sampled_at, bool live) {
    actions_.push_back(action);
    times_.push_back(sampled_at);
    live_.push_back(live);
}

void ActionCollector::take(std::vector<FrameAction>* actions, std::vector<double>* times,
                           std::vector<bool>* live) {
    const size_t n = std::min(actions_.size(), static_cast<size_t>(frames_per_chunk_));
    actions->assign(actions_.begin(), actions_.begin() + static_cast<long>(n));
    times->assign(times_.begin(), times_.begin() + static_cast<long>(n));
    if (live) live->assign(live_.begin(), live_.begin() + static_cast<long>(n));
    actions_.erase(actions_.begin(), actions_.begin() + static_cast<long>(n));
    times_.erase(times_.begin(), times_.begin() + static_cast<long>(n));
    live_.erase(live_.begin(), live_.begin() + static_cast<long>(n));
}

void RollingStat::add(double v) {
    values_.push_back(v);
    while (values_.size() > window_) values_.pop_front();
}

double RollingStat::mean() const {
    if (values_.empty()) return 0;
    return std::accumulate(values_.begin(), values_.end(), 0.0) / static_cast<double>(values_.size());
}

}  // namespace kvw::gui
