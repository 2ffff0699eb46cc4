// Frame pacing and action collection: the timing core of the app, kept free of GL and threads so that it
// can be tested.
//
// Chunks arrive from the worker F frames at a time; Playback shows them one frame per 1/fps (never in
// bursts: a late frame delays the ones after it instead of being skipped over).
//
// Actions (the documented choice): each time a new frame is shown, the chunk being collected gains an
// action slot, and the F slots filled while chunk c plays become the actions of chunk c+1, requested the
// moment the last of them is filled. The player's slots are built at request time from everything held or
// tapped since the previous request (InputTimeline, input.h), that time split into F equal stretches: when
// generation keeps up, a stretch is one frame period (an action sampled when frame f of chunk c appears
// shows up in frame f of chunk c+1: F/fps later, 250 ms for 4 frames at 16 fps, plus any overrun); when a
// chunk takes seconds (the CPU backend), nothing the player did while it was generated is lost. The app
// measures sample (stretch end) to display time and shows it in the HUD.
#pragma once

#include <deque>
#include <optional>
#include <vector>

#include "kvworld/actions.h"

namespace kvw::gui {

struct ChunkEntry {
    int chunk = 0;  // engine chunk index (0 = the start context)
    int slot = -1;  // presenter slot holding the frames
    int frames = 0;
    std::vector<double> sampled_at;  // per frame: when its action was sampled (empty for the start context)
};

class Playback {
  public:
    Playback(int frames_per_chunk, double fps);

    void reset();  // drops every queued chunk (the caller releases their slots)

    void set_paused(bool paused);
    bool paused() const { return paused_; }
    // While paused: play on until the first frame of the next chunk is on screen, then pause again.
    void request_step();
    bool stepping() const { return stepping_; }

    void push(ChunkEntry entry);

    struct Tick {
        bool advanced = false;            // a new frame is on screen
        bool stalled = false;             // the next frame is due but not there (generation is behind)
        int released_slot = -1;           // a chunk finished playing: its slot may be reused
        std::optional<double> latency_s;  // the new frame's action: sample to display time
    };
    // Real time: dt seconds passed; `now` is the clock the action sample times use.
    Tick tick(double dt, double now);
    // Deterministic (offscreen): show the next frame if there is one, ignoring time and pause.
    Tick advance(double now);

    bool has_frame() const { return !queue_.empty() && frame_ >= 0; }
    const ChunkEntry& current() const { return queue_.front(); }
    int frame() const { return frame_; }
    bool next_frame_available() const;
    int frames_shown() const { return frames_shown_; }

  private:
    Tick show_next(double now);

    int frames_per_chunk_;
    double period_;
    std::deque<ChunkEntry> queue_;  // front = the chunk on screen
    int frame_ = -1;                // frame of the front chunk on screen, -1 before the first
    double accumulator_ = 0;
    bool paused_ = false;
    bool stepping_ = false;
    int frames_shown_ = 0;
};

// Collects the actions for the next chunk, one per shown frame, each with its sample time. A `live` slot is
// the player's: its action is made from the input when the chunk is requested.
class ActionCollector {
  public:
    explicit ActionCollector(int frames_per_chunk) : frames_per_chunk_(frames_per_chunk) {}
    void add(const FrameAction& action, double sampled_at, bool live = false);
    bool full() const { return static_cast<int>(actions_.size()) >= frames_per_chunk_; }
    int size() const { return static_cast<int>(actions_.size()); }
    void clear() { actions_.clear(), times_.clear(), live_.clear(); }
    // Takes the first F actions (and their times, and which slots are live) for a request.
    void take(std::vector<FrameAction>* actions, std::vector<double>* times,
              std::vector<bool>* live = nullptr);

  private:
    int frames_per_chunk_;
    std::vector<FrameAction> actions_;
    std::vector<double> times_;
    std::vector<bool> live_;
};

// Rolling statistics for the HUD (latency, fps): last value and mean of the last N.
class RollingStat {
  public:
    explicit RollingStat(size_t window = 64) : window_(window) {}
    void add(double v);
    void clear() { values_.clear(); }
    bool empty() const { return values_.empty(); }
    double last() const { return values_.empty() ? 0 : values_.back(); }
    double mean() const;

  private:
    size_t window_;
    std::deque<double> values_;
};

}  // namespace kvw::gui
