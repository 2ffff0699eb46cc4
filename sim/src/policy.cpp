// PlayerPolicy: a state machine that plays like a person exploring the world. Each mode lasts a while and
// is played either "on the keyboard" (components exactly -1/0/+1, turns exactly +-turn_max or 0) or "on a
// stick/mouse" (smooth analog ramps), because the model has to learn both kinds of input.
//
// Frame shares it aims for: ~60% walking forward (with turns; includes returns), ~15% pausing and looking
// around, ~15% strafing and backing, ~10% rising and sinking. Every few hundred frames it walks back to a
// place it remembers (14..45 units away) and turns to the heading it had there, so long traces revisit
// earlier views (what a memory-augmented world model must get right).
#include <algorithm>
#include <cmath>
#include <vector>

#include "kvworld/sim.h"
#include "noise.h"
#include "world_impl.h"

namespace kvw::sim {

namespace {

constexpr float kPitchLimit = 30.f;  // the policy keeps |pitch| below this
constexpr int kRememberEvery = 24;   // frames between remembered positions
constexpr int kMinReturnAge = 150;   // a place must be this many frames old to be returned to
constexpr float kMinReturnDistance = 14.f;
constexpr float kMaxReturnDistance = 45.f;  // ~3 minutes of walking at most, so returns stay ~20% of frames
constexpr int kReturnOverdue = 700;         // frames since the last return after which one is due

float wrap_deg(float d) {
    while (d > 180.f) d -= 360.f;
    while (d <= -180.f) d += 360.f;
    return d;
}
float clampf(float v, float lo, float hi) {
    return v < lo ? lo : (v > hi ? hi : v);
}
float heading_to(float dx, float dz) {
    return std::atan2(dx, dz) / kDegToRad;
}

}  // namespace

struct PlayerPolicy::State {
    enum class Mode { Walk, Look, Strafe, Fly, Return };
    struct Place {
        float x, z, yaw;
        int frame;
    };

    SimParams params;
    detail::Rng rng;
    Mode mode = Mode::Walk;
    int frame = 0;
    int mode_left = 0;
    bool analog = false;

    // Turning (walk, look): a target rate held for a while; analog input eases towards it.
    float yaw_target = 0.f, yaw_rate = 0.f;
    int yaw_hold = 0;
    float pitch_target = 0.f;
    int pitch_hold = 0;
    // Translation of the current mode.
    float forward = 0.f, right = 0.f, up = 0.f;
    int avoid_hold = 0;

    // Walking height: sink back towards eye_target when higher (the simulator only ever pushes up).
    float eye_target = 2.5f;
    bool sinking = false;

    std::vector<Place> memory;
    int last_return_end = 0;
    Place goal{};
    bool facing_goal_heading = false;

    State(uint64_t seed, const SimParams& p) : params(p), rng(detail::derive_seed(seed, 0x9011c7)) {
        eye_target = params.clearance + rng.range(0.5f, 1.8f);
    }

    float turn_max() const { return params.motion.turn_max_deg; }
    float step() const { return params.motion.move_per_frame; }

    void remember(const CameraPose& pose) {
        if (memory.size() >= 256) {  // thin out the oldest half, keep recent places dense
            std::vector<Place> kept;
            for (size_t i = 0; i < memory.size(); ++i)
                if (i >= memory.size() / 2 || i % 2 == 0) kept.push_back(memory[i]);
            memory.swap(kept);
        }
        memory.push_back(Place{pose.x, pose.z, pose.yaw_deg, frame});
    }

    // A remembered place old and far enough to make returning to it interesting (nearer ones a bit
    // likelier), or nullptr.
    const Place* pick_return(const CameraPose& pose) {
        const Place* best = nullptr;
        float best_score = 0.f;
        for (const Place& p : memory) {
            if (frame - p.frame < kMinReturnAge) continue;
            const float d = std::hypot(p.x - pose.x, p.z - pose.z);
            if (d < kMinReturnDistance || d > kMaxReturnDistance) continue;
            const float score = rng.range(0.f, 1.f) * (1.f - 0.5f * d / kMaxReturnDistance);
            if (score > best_score) {
                best_score = score;
                best = &p;
            }
        }
        return best;
    }

    void choose_mode(const CameraPose& pose) {
        analog = rng.chance(0.4f);
        yaw_hold = 0;
        pitch_hold = 0;
        forward = right = up = 0.f;
        const Place* place = pick_return(pose);
        const bool overdue = frame - last_return_end > kReturnOverdue;
        if (place != nullptr && (overdue || rng.chance(0.05f))) {
            mode = Mode::Return;
            goal = *place;
            facing_goal_heading = false;
            const float d = std::hypot(goal.x - pose.x, goal.z - pose.z);
            mode_left = static_cast<int>(1.6f * d / step()) + 150;
            return;
        }
        // Mode probabilities are the wanted frame shares divided by the modes' mean lengths (returns,
        // ~20% of frames, come on top of walking).
        const float r = rng.uniform();
        if (r < 0.34f) {
            mode = Mode::Walk;
            mode_left = rng.between(30, 130);
            forward = analog ? rng.range(0.6f, 1.f) : 1.f;
            if (rng.chance(0.12f)) right = analog ? rng.sign() * rng.range(0.3f, 0.7f) : rng.sign();
        } else if (r < 0.51f) {
            mode = Mode::Look;
            mode_left = rng.between(16, 64);
        } else if (r < 0.79f) {
            mode = Mode::Strafe;
            mode_left = rng.between(16, 48);
            const float kind = rng.uniform();
            const float mag = analog ? rng.range(0.5f, 1.f) : 1.f;
            if (kind < 0.45f) {
                right = rng.sign() * mag;
            } else if (kind < 0.75f) {
                forward = -mag;
            } else {  // diagonal backing, or circling while strafing
                right = rng.sign() * mag;
                if (rng.chance(0.5f)) {
                    forward = -mag;
                } else {
                    yaw_target = -right * turn_max() * (analog ? rng.range(0.3f, 1.f) : 1.f);
                    yaw_hold = mode_left;
                }
            }
        } else {
            mode = Mode::Fly;
            mode_left = rng.between(16, 40);
            if (rng.chance(0.4f)) forward = analog ? rng.range(0.5f, 1.f) : 1.f;
            up = 0.f;  // chosen each frame from the height above ground
        }
        if (rng.chance(0.2f)) eye_target = params.clearance + rng.range(0.5f, 1.8f);
    }

    // Keyboard: full-rate presses. Analog: eases towards the target like a stick or a mouse hand.
    float turn_towards(float target) {
        if (!analog) return target;
        yaw_rate += (target - yaw_rate) * 0.2f;
        if (std::fabs(yaw_rate - target) < 0.02f) yaw_rate = target;
        return yaw_rate;
    }

    float pitch_towards(float current_pitch, float target) {
        const float diff = target - current_pitch;
        if (!analog) return std::fabs(diff) >= turn_max() ? std::copysign(turn_max(), diff) : 0.f;
        return clampf(diff * 0.12f, -turn_max(), turn_max());
    }

    // Turns away from a slope ahead that would block the view (as a player would).
    bool blocked_ahead(const World& world, const CameraPose& pose, float* away) {
        const detail::WorldImpl& w = world.impl();
        const float yaw = pose.yaw_deg * kDegToRad;
        auto rise = [&](float yaw_rad, float d) {
            return (w.sample_height(2, pose.x + std::sin(yaw_rad) * d, pose.z + std::cos(yaw_rad) * d) -
                    pose.y) /
                   d;
        };
        const float ahead = std::max(rise(yaw, 5.f), rise(yaw, 10.f));
        if (ahead < 0.45f) return false;
        const float left = rise(yaw - 0.8f, 8.f), right_side = rise(yaw + 0.8f, 8.f);
        *away = left < right_side ? -1.f : 1.f;
        return true;
    }

    FrameAction walk(const World& world, const CameraPose& pose) {
        FrameAction a;
        a.move_forward = forward;
        a.move_right = right;
        float away = 0.f;
        if (avoid_hold > 0) {
            --avoid_hold;
        } else if (blocked_ahead(world, pose, &away)) {
            yaw_target = away * turn_max();
            yaw_hold = rng.between(10, 24);
            avoid_hold = yaw_hold;
        }
        if (yaw_hold <= 0) {
            const float r = rng.uniform();
            if (r < 0.45f)
                yaw_target = 0.f;
            else
                yaw_target = rng.sign() * turn_max() * (analog ? rng.range(0.2f, 1.f) : 1.f);
            yaw_hold = rng.between(6, 36);
        }
        --yaw_hold;
        a.yaw_deg = turn_towards(yaw_target);
        // While walking the view settles back towards level, with an occasional glance up or down.
        if (pitch_hold <= 0) {
            pitch_target = rng.chance(0.3f) ? rng.range(-18.f, 14.f) : 0.f;
            pitch_hold = rng.between(20, 60);
        }
        --pitch_hold;
        a.pitch_deg = std::fabs(pose.pitch_deg - pitch_target) > 4.f
                          ? pitch_towards(pose.pitch_deg, pitch_target)
                          : 0.f;
        return a;
    }

    FrameAction look(const CameraPose& pose) {
        FrameAction a;
        if (yaw_hold <= 0) {
            const float r = rng.uniform();
            const float mag = analog ? rng.range(0.3f, 1.f) : 1.f;
            yaw_target = 0.f;
            pitch_target = pose.pitch_deg;
            if (r < 0.3f) {
                yaw_target = rng.sign() * turn_max() * mag;  // pan
            } else if (r < 0.6f) {
                pitch_target = rng.range(-25.f, 25.f);  // tilt
            } else if (r < 0.8f) {
                yaw_target = rng.sign() * turn_max() * mag;  // pan and tilt
                pitch_target = rng.range(-20.f, 20.f);
            }  // else: stand still
            yaw_hold = rng.between(6, 30);
        }
        --yaw_hold;
        a.yaw_deg = turn_towards(yaw_target);
        a.pitch_deg = pitch_towards(pose.pitch_deg, pitch_target);
        return a;
    }

    FrameAction strafe() {
        FrameAction a;
        a.move_forward = forward;
        a.move_right = right;
        if (yaw_hold > 0) {
            --yaw_hold;
            a.yaw_deg = turn_towards(yaw_target);
        } else {
            a.yaw_deg = turn_towards(0.f);
        }
        return a;
    }

    FrameAction fly(const World& world, const CameraPose& pose) {
        FrameAction a;
        a.move_forward = forward;
        const float above = pose.y - world.surface_height(pose.x, pose.z);
        if (up == 0.f) up = (above > 8.f || (above > 4.f && rng.chance(0.4f))) ? -1.f : 1.f;
        if (up > 0.f && above > 24.f) up = -1.f;
        if (up < 0.f && above < params.clearance + 0.5f) mode_left = 0;
        const float mag = analog ? 0.5f + 0.5f * static_cast<float>(mode_left % 7) / 6.f : 1.f;
        a.move_up = up * mag;
        a.yaw_deg = rng.chance(0.03f) ? 0.f : turn_towards(0.f);
        return a;
    }

    FrameAction go_back(const CameraPose& pose) {
        FrameAction a;
        const float dx = goal.x - pose.x, dz = goal.z - pose.z;
        const float dist = std::hypot(dx, dz);
        if (!facing_goal_heading && dist < 1.0f) facing_goal_heading = true;
        if (facing_goal_heading) {
            // Back at the place: turn to the heading we had there, so the old view comes back.
            const float err = wrap_deg(goal.yaw - pose.yaw_deg);
            if (std::fabs(err) < 0.5f) {
                mode_left = 0;
                return a;
            }
            a.yaw_deg = analog ? clampf(err * 0.5f, -turn_max(), turn_max())
                               : (std::fabs(err) >= turn_max() ? std::copysign(turn_max(), err) : err);
            return a;
        }
        const float err = wrap_deg(heading_to(dx, dz) - pose.yaw_deg);
        if (std::fabs(err) > 25.f) {  // turn around on the spot first
            a.yaw_deg = std::copysign(turn_max(), err);
        } else {
            a.move_forward = analog ? std::min(1.f, 0.5f + dist / 8.f) : 1.f;
            if (dist < 2.f * step()) a.move_forward = dist / step() * 0.5f;
            a.yaw_deg = clampf(err * 0.5f, -turn_max(), turn_max());
        }
        a.pitch_deg = std::fabs(pose.pitch_deg) > 2.f ? pitch_towards(pose.pitch_deg, 0.f) : 0.f;
        return a;
    }

    FrameAction next(const World& world, const CameraPose& pose) {
        if (frame % kRememberEvery == 0) remember(pose);
        if (mode_left <= 0) {
            if (mode == Mode::Return) last_return_end = frame;
            choose_mode(pose);
        }
        FrameAction a;
        switch (mode) {
            case Mode::Walk:
                a = walk(world, pose);
                break;
            case Mode::Look:
                a = look(pose);
                break;
            case Mode::Strafe:
                a = strafe();
                break;
            case Mode::Fly:
                a = fly(world, pose);
                break;
            case Mode::Return:
                a = go_back(pose);
                break;
        }
        --mode_left;
        if (mode == Mode::Return && mode_left <= 0) last_return_end = frame;

        if (mode != Mode::Fly) {
            const float above = pose.y - world.surface_height(pose.x, pose.z);
            if (above > eye_target + 1.5f) sinking = true;
            if (above <= eye_target + 0.2f) sinking = false;
            if (sinking) a.move_up = analog ? -0.7f : -1.f;
        }
        a.move_forward = clampf(a.move_forward, -1.f, 1.f);
        a.move_right = clampf(a.move_right, -1.f, 1.f);
        a.move_up = clampf(a.move_up, -1.f, 1.f);
        a.yaw_deg = clampf(a.yaw_deg, -turn_max(), turn_max());
        // Keep the view within +-kPitchLimit (and always allow coming back from beyond it).
        const float lo = std::min(0.f, -kPitchLimit - pose.pitch_deg),
                    hi = std::max(0.f, kPitchLimit - pose.pitch_deg);
        a.pitch_deg = clampf(clampf(a.pitch_deg, -turn_max(), turn_max()), lo, hi);
        ++frame;
        return a;
    }
};

PlayerPolicy::PlayerPolicy(uint64_t seed, const SimParams& params)
    : state_(std::make_unique<State>(seed, params)) {}
PlayerPolicy::~PlayerPolicy() = default;
PlayerPolicy::PlayerPolicy(PlayerPolicy&&) noexcept = default;
PlayerPolicy& PlayerPolicy::operator=(PlayerPolicy&&) noexcept = default;

FrameAction PlayerPolicy::next(const World& world, const CameraPose& current) {
    return state_->next(world, current);
}

}  // namespace kvw::sim
