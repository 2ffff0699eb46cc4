#include "kvworld/trace.h"

#include "kvworld/fileio.h"
#include "util/json_util.h"

namespace kvw {

using jsonu::json;

namespace {

MotionParams parse_motion(const json& j, const std::string& src) {
    MotionParams m;
    m.move_per_frame = jsonu::float32(jsonu::field(j, "move_per_frame", src), "move_per_frame", src);
    m.turn_max_deg = jsonu::float32(jsonu::field(j, "turn_max_deg", src), "turn_max_deg", src);
    if (j.contains("pitch_limit_deg"))
        m.pitch_limit_deg = jsonu::float32(j["pitch_limit_deg"], "pitch_limit_deg", src);
    if (j.contains("hfov_deg")) m.hfov_deg = jsonu::float32(j["hfov_deg"], "hfov_deg", src);
    jsonu::check_motion(m, src);
    return m;
}

json motion_json(const MotionParams& m) {
    return json{{"move_per_frame", m.move_per_frame},
                {"turn_max_deg", m.turn_max_deg},
                {"pitch_limit_deg", m.pitch_limit_deg},
                {"hfov_deg", m.hfov_deg}};
}

}  // namespace

Trace parse_trace(const std::string& text, const std::string& src) {
    return jsonu::guarded(src, [&]() {
        const json j = jsonu::parse(text, src);
        if (!j.is_object()) throw Error(src + ": a trace must be a JSON object");
        const json& fmt = jsonu::field(j, "format", src);
        if (!fmt.is_string() || fmt.get<std::string>() != "kvworld-trace")
            throw Error(src + ": not a KVWorld trace (\"format\" must be \"kvworld-trace\")");
        const int version = jsonu::integer(jsonu::field(j, "version", src), "version", src, 1, 1000000);
        if (version != Trace::kVersion)
            throw Error(src + ": trace version " + std::to_string(version) +
                        " is not supported (this build reads version " + std::to_string(Trace::kVersion) +
                        ")");
        Trace t;
        t.fps = jsonu::integer(jsonu::field(j, "fps", src), "fps", src, 1, 240);
        t.world_seed = jsonu::uint64(jsonu::field(j, "world_seed", src), "world_seed", src);
        t.noise_seed = j.contains("noise_seed") ? jsonu::uint64(j["noise_seed"], "noise_seed", src) : 0;
        const json& sp = jsonu::field(j, "start_pose", src);
        auto pose_num = [&](const char* k) {
            return jsonu::float32(jsonu::field(sp, k, src + " start_pose"), k, src + " start_pose");
        };
        t.start_pose =
            CameraPose{pose_num("x"), pose_num("y"), pose_num("z"), pose_num("yaw"), pose_num("pitch")};
        t.context_frames =
            jsonu::integer(jsonu::field(j, "context_frames", src), "context_frames", src, 1, 1024);
        if (j.contains("motion")) t.motion = parse_motion(j["motion"], src + " motion");
        if (j.contains("start_image")) {
            if (!j["start_image"].is_string()) throw Error(src + ": \"start_image\" must be a path string");
            t.start_image = j["start_image"].get<std::string>();
        }
        if (j.contains("settings")) t.settings_json = j["settings"].dump();
        if (j.contains("note") && j["note"].is_string()) t.note = j["note"].get<std::string>();
        const json& acts = jsonu::field(j, "actions", src);
        if (!acts.is_array())
            throw Error(src + ": \"actions\" must be an array of [forward, right, up, yaw, pitch]");
        t.actions.reserve(acts.size());
        for (size_t i = 0; i < acts.size(); ++i) {
            const json& a = acts[i];
            const std::string what = "actions[" + std::to_string(i) + "]";
            if (!a.is_array() || a.size() != 5)
                throw Error(src + ": " + what + " must be [forward, right, up, yaw_deg, pitch_deg]");
            float v[5];
            for (int k = 0; k < 5; ++k) v[k] = jsonu::float32(a[k], what, src);
            for (int k = 0; k < 3; ++k)
                if (v[k] < -1.f || v[k] > 1.f)
                    throw Error(src + ": " + what + ": movement components must be in [-1, 1]");
            for (int k = 3; k < 5; ++k)
                if (v[k] < -90.f || v[k] > 90.f)
                    throw Error(src + ": " + what + ": a turn must be within +-90 degrees a frame");
            t.actions.push_back(FrameAction{v[0], v[1], v[2], v[3], v[4]});
        }
        if (static_cast<int>(t.actions.size()) < t.context_frames)
            throw Error(src + ": the trace has " + std::to_string(t.actions.size()) +
                        " actions, fewer than its " + std::to_string(t.context_frames) + " context frames");
        return t;
    });
}

Trace load_trace(const std::filesystem::path& path) {
    return parse_trace(read_file_text(path), path.string());
}

std::string trace_to_json(const Trace& t) {
    json j;
    j["format"] = "kvworld-trace";
    j["version"] = Trace::kVersion;
    j["fps"] = t.fps;
    j["world_seed"] = t.world_seed;
    j["noise_seed"] = t.noise_seed;
    j["start_pose"] = {{"x", t.start_pose.x},
                       {"y", t.start_pose.y},
                       {"z", t.start_pose.z},
                       {"yaw", t.start_pose.yaw_deg},
                       {"pitch", t.start_pose.pitch_deg}};
    j["context_frames"] = t.context_frames;
    if (t.motion) j["motion"] = motion_json(*t.motion);
    if (t.start_image) j["start_image"] = *t.start_image;
    // settings_json comes from the app or from a parsed trace; parsed with the same depth limit, so that a
    // Trace built in code cannot overflow the stack below either.
    if (!t.settings_json.empty()) {
        try {
            j["settings"] = jsonu::parse_nested(t.settings_json, "the trace's settings");
        } catch (const json::exception& e) {
            throw Error(std::string("the trace's settings are not valid JSON (") + e.what() + ")");
        }
    }
    if (!t.note.empty()) j["note"] = t.note;
    // One action per line keeps recorded traces readable and diffable. A start image path or a note that
    // is not UTF-8 cannot be written as JSON: refused by name rather than as the library's exception.
    std::string out = jsonu::guarded("the trace", [&] { return j.dump(2); });
    out.erase(out.find_last_of('}'));
    while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
    out += ",\n  \"actions\": [\n";
    for (size_t i = 0; i < t.actions.size(); ++i) {
        const FrameAction& a = t.actions[i];
        json row = json::array({a.move_forward, a.move_right, a.move_up, a.yaw_deg, a.pitch_deg});
        out += "    " + row.dump() + (i + 1 < t.actions.size() ? ",\n" : "\n");
    }
    out += "  ]\n}\n";
    return out;
}

void save_trace(const std::filesystem::path& path, const Trace& trace) {
    write_file_atomic(path, trace_to_json(trace));
}

std::vector<CameraPose> dead_reckon(const CameraPose& start, const std::vector<FrameAction>& actions,
                                    const MotionParams& motion) {
    std::vector<CameraPose> poses;
    poses.reserve(actions.size());
    CameraPose p = start;
    for (const FrameAction& a : actions) {
        p = integrate_pose(p, a, motion);
        poses.push_back(p);
    }
    return poses;
}

}  // namespace kvw
