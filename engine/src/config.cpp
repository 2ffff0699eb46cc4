#include "kvworld/config.h"

#include <cmath>
#include <cstdio>

#include "kvworld/fileio.h"
#include "util/json_util.h"

namespace kvw {

using jsonu::json;

namespace {

// The "autoencoder" object (docs/design.md "The latent space"). Its own fields only; how they fit the frame
// size is checked with the rest of the config. Unknown keys are refused: a misspelt optional field would
// otherwise fall back to its default silently and fail later as mis-shaped weights.
AutoencoderConfig parse_autoencoder(const json& a, const std::string& src) {
    if (!a.is_object()) throw Error(src + ": \"autoencoder\" must be a JSON object");
    for (const auto& [key, value] : a.items())
        if (key != "latent_channels" && key != "channels" && key != "groups" && key != "latent_clip")
            throw Error(src + ": unknown field \"autoencoder." + key +
                        "\" (expected latent_channels, channels, groups, latent_clip)");
    AutoencoderConfig ae;
    ae.latent_channels =
        jsonu::integer(jsonu::field(a, "latent_channels", src), "autoencoder.latent_channels", src, 1, 256);
    if (a.contains("channels")) {
        const json& widths = a["channels"];
        if (!widths.is_array() || widths.size() != 4)
            throw Error(src +
                        ": \"autoencoder.channels\" must list 4 widths (full, 1/2, 1/4, 1/8 resolution)");
        for (int i = 0; i < 4; ++i)
            ae.channels[i] =
                jsonu::integer(widths[i], "autoencoder.channels[" + std::to_string(i) + "]", src, 1, 4096);
    }
    if (a.contains("groups")) ae.groups = jsonu::integer(a["groups"], "autoencoder.groups", src, 1, 4096);
    if (a.contains("latent_clip")) {
        ae.latent_clip = jsonu::float32(a["latent_clip"], "autoencoder.latent_clip", src);
        if (!(ae.latent_clip > 0.f && std::isfinite(ae.latent_clip)))
            throw Error(src + ": \"autoencoder.latent_clip\" must be a finite number > 0");
    }
    for (int i = 0; i < 4; ++i)
        if (ae.channels[i] % ae.groups)
            throw Error(src + ": \"autoencoder.channels[" + std::to_string(i) +
                        "]\" = " + std::to_string(ae.channels[i]) +
                        " is not a multiple of \"autoencoder.groups\" = " + std::to_string(ae.groups));
    return ae;
}

// A file a model.json names: read from the model folder only. An absolute path or one that climbs out would
// load whatever file it names, and a folder of ours is self-contained.
std::string file_in_model_folder(const json& f, const std::string& what, const std::string& src) {
    const bool named = f.is_string() && !f.get<std::string>().empty();
    const std::filesystem::path file = named ? f.get<std::string>() : std::string();
    bool inside = named && file.is_relative() && !file.has_root_name();
    for (const auto& part : file) inside = inside && part != "..";
    if (!inside)
        throw Error(src + ": " + what + " " + f.dump() +
                    " must be a file name inside the model folder (no absolute path, no \"..\")");
    return f.get<std::string>();
}

}  // namespace

ModelConfig parse_model_config(const std::string& text, const std::string& src) {
    return jsonu::guarded(src, [&]() {
        const json j = jsonu::parse(text, src);
        if (!j.is_object()) throw Error(src + ": a model config must be a JSON object");
        if (!j.contains("format") || j["format"] != "kvworld-model")
            throw Error(src + ": not a KVWorld model config (\"format\" must be \"kvworld-model\")");
        const int version = jsonu::integer(jsonu::field(j, "version", src), "version", src, 1, 1000000);
        if (version != 1)
            throw Error(src + ": model config version " + std::to_string(version) + " is not supported");
        ModelConfig c;
        auto geti = [&](const json& obj, const char* key, int lo, int hi) {
            return jsonu::integer(jsonu::field(obj, key, src), key, src, lo, hi);
        };
        auto getf = [&](const json& obj, const char* key) {
            return jsonu::float32(jsonu::field(obj, key, src), key, src);
        };
        c.name = j.contains("name") && j["name"].is_string() ? j["name"].get<std::string>() : "unnamed";
        c.height = geti(j, "height", 8, 4096);
        c.width = geti(j, "width", 8, 4096);
        c.patch = geti(j, "patch", 1, 64);
        c.chunk_frames = geti(j, "chunk_frames", 1, 64);
        c.fps = geti(j, "fps", 1, 240);
        c.hidden = geti(j, "hidden", 8, 16384);
        c.depth = geti(j, "depth", 1, 256);
        c.heads = geti(j, "heads", 1, 256);
        c.head_dim = geti(j, "head_dim", 8, 512);
        c.mlp_hidden = geti(j, "mlp_hidden", 1, 65536);
        c.time_freq_dim = geti(j, "time_freq_dim", 2, 4096);
        const json& axes = jsonu::field(j, "rope_axes", src);
        if (!axes.is_array() || axes.size() != 3)
            throw Error(src + ": \"rope_axes\" must be [time, row, column] dims");
        for (int i = 0; i < 3; ++i) c.rope_axes[i] = jsonu::integer(axes[i], "rope_axes", src, 0, 512);
        c.rope_theta = getf(j, "rope_theta");
        if (j.contains("norm_eps")) c.norm_eps = getf(j, "norm_eps");
        if (j.contains("absolute_position")) {
            if (!j["absolute_position"].is_boolean())
                throw Error(src + ": \"absolute_position\" must be true or false");
            c.absolute_position = j["absolute_position"].get<bool>();
        }
        // An experiment of 2026-11-29 that no shipped model uses (docs/experiments): refused by name rather
        // than ignored, so that such weights do not fail later as an unexplained extra tensor.
        if (j.contains("cumulative_motion") && j["cumulative_motion"] != false)
            throw Error(src + ": \"cumulative_motion\" is no longer supported (no shipped model uses it)");
        const json& s = jsonu::field(j, "sampler", src);
        c.steps = geti(s, "steps", 1, 1000);
        c.shift = getf(s, "shift");
        c.cache_t = getf(s, "cache_t");
        if (s.contains("source")) {
            const json& kind = s["source"];
            if (!kind.is_string() || (kind != "noise" && kind != "previous"))
                throw Error(src + ": sampler.source must be \"noise\" or \"previous\"");
            c.source_previous = kind == "previous";
        }
        if (s.contains("source_sigma")) c.source_sigma = getf(s, "source_sigma");
        if (s.contains("warp_source")) {
            if (!s["warp_source"].is_boolean())
                throw Error(src + ": \"sampler.warp_source\" must be true or false");
            c.warp_source = s["warp_source"].get<bool>();
            if (c.warp_source && !c.source_previous)
                throw Error(src + ": \"sampler.warp_source\" needs \"source\": \"previous\"");
        }
        if (s.contains("warp_eye_height")) {
            c.warp_eye_height = getf(s, "warp_eye_height");
            if (c.warp_eye_height != 0.f && !c.warp_source)
                throw Error(src + ": \"sampler.warp_eye_height\" needs \"warp_source\": true");
        }
        if (s.contains("guidance")) c.guidance = getf(s, "guidance");
        if (s.contains("guidance_min_t")) {
            c.guidance_min_t = getf(s, "guidance_min_t");
            if (c.guidance_min_t != 0.f && c.guidance == 1.f)
                throw Error(src + ": \"sampler.guidance_min_t\" needs \"guidance\" above 1");
        }
        const json& ctx = jsonu::field(j, "context", src);
        c.window = geti(ctx, "window", 0, 1024);
        c.recall = geti(ctx, "recall", 0, 1024);
        if (ctx.contains("recall_first")) {
            if (!ctx["recall_first"].is_boolean())
                throw Error(src + ": \"context.recall_first\" must be true or false");
            c.recall_first = ctx["recall_first"].get<bool>();
        }
        const json& m = jsonu::field(j, "motion", src);
        c.motion.move_per_frame = getf(m, "move_per_frame");
        c.motion.turn_max_deg = getf(m, "turn_max_deg");
        c.motion.pitch_limit_deg = getf(m, "pitch_limit_deg");
        c.motion.hfov_deg = getf(m, "hfov_deg");
        if (j.contains("autoencoder")) c.autoencoder = parse_autoencoder(j["autoencoder"], src);
        if (j.contains("weights")) {
            const json& w = j["weights"];
            if (!w.is_array() || w.empty())
                throw Error(src + ": \"weights\" must be a non-empty list of safetensors files");
            c.weight_files.clear();
            for (const json& f : w)
                c.weight_files.push_back(file_in_model_folder(f, "\"weights\" entry", src));
        }
        if (j.contains("cache_calibration"))
            c.cache_calibration_file =
                file_in_model_folder(j["cache_calibration"], "\"cache_calibration\"", src);

        // Consistency: every check names the fields that disagree.
        auto fail = [&](const std::string& why) { throw Error(src + ": " + why); };
        if (c.height % c.patch || c.width % c.patch) fail("height and width must be multiples of patch");
        const int token_pixels = c.patch_pixels();
        if (c.autoencoder.enabled() && (c.height % token_pixels || c.width % token_pixels))
            fail("height and width must be multiples of 8 × patch = " + std::to_string(token_pixels) +
                 " with an \"autoencoder\" (patch counts cells of the latent grid, height/8 × width/8)");
        if (c.heads * c.head_dim != c.hidden) fail("heads × head_dim must equal hidden");
        if (c.head_dim % 32) fail("head_dim must be a multiple of 32 (the smallest quantization group)");
        if (c.rope_axes[0] + c.rope_axes[1] + c.rope_axes[2] != c.head_dim)
            fail("rope_axes must sum to head_dim");
        for (int a : c.rope_axes)
            if (a % 2) fail("every rope_axes entry must be even (rotation pairs)");
        if (c.time_freq_dim % 2) fail("time_freq_dim must be even");
        if (!(c.rope_theta > 1.f && c.rope_theta <= 1e9f)) fail("rope_theta must be in (1, 1e9]");
        if (!(c.norm_eps > 0.f && c.norm_eps < 1.f)) fail("norm_eps must be in (0, 1)");
        if (!(c.shift > 0.f && c.shift <= 100.f)) fail("sampler.shift must be in (0, 100]");
        if (!(c.cache_t >= 0.f && c.cache_t < 1.f)) fail("sampler.cache_t must be in [0, 1)");
        if (!(c.source_sigma > 0.f && c.source_sigma <= 4.f)) fail("sampler.source_sigma must be in (0, 4]");
        if (!(c.guidance >= 1.f && c.guidance <= 8.f)) fail("sampler.guidance must be in [1, 8] (1 = off)");
        if (!(c.guidance_min_t >= 0.f && c.guidance_min_t <= 1.f))
            fail("sampler.guidance_min_t must be in [0, 1] (0 = every step)");
        if (!(c.warp_eye_height >= 0.f && c.warp_eye_height <= 1000.f))
            fail("sampler.warp_eye_height must be in [0, 1000] (0 = rotation only)");
        jsonu::check_motion(c.motion, src + ": \"motion\"");
        return c;
    });
}

ModelConfig load_model_config(const std::filesystem::path& path) {
    ModelConfig c = parse_model_config(read_file_text(path), path.string());
    if (!c.cache_calibration_file.empty()) {
        const std::filesystem::path file = path.parent_path() / c.cache_calibration_file;
        if (!std::filesystem::exists(file))
            throw Error(path.string() + ": \"cache_calibration\" names " + file.string() +
                        ", which does not exist (make it with kvworld-cli calibrate, or remove the field)");
        c.cache_calibration = parse_cache_calibration(read_file_text(file), file.string(), c);
    }
    return c;
}

CacheCalibration parse_cache_calibration(const std::string& text, const std::string& src,
                                         const ModelConfig& c) {
    return jsonu::guarded(src, [&]() {
        const json j = jsonu::parse(text, src);
        if (!j.is_object() || !j.contains("format") || j["format"] != "kvworld-cache-calibration")
            throw Error(
                src + ": not a KVWorld cache calibration (\"format\" must be \"kvworld-cache-calibration\")");
        const int version = jsonu::integer(jsonu::field(j, "version", src), "version", src, 1, 1000000);
        if (version != 1)
            throw Error(src + ": cache calibration version " + std::to_string(version) + " is not supported");
        const json& tables = jsonu::field(j, "tables", src);
        if (!tables.is_array()) throw Error(src + ": \"tables\" must be a list");
        CacheCalibration cal;
        for (size_t i = 0; i < tables.size(); ++i) {
            const json& t = tables[i];
            const std::string at = "tables[" + std::to_string(i) + "]";
            if (!t.is_object()) throw Error(src + ": " + at + " must be an object");
            CodeTable table;
            const json& tensor = jsonu::field(t, "tensor", src);
            if (tensor != "key" && tensor != "value")
                throw Error(src + ": " + at + ".tensor must be \"key\" or \"value\"");
            table.key = tensor == "key";
            table.bits = jsonu::integer(jsonu::field(t, "bits", src), at + ".bits", src, 2, 4);
            if (table.bits != 2 && table.bits != 4) throw Error(src + ": " + at + ".bits must be 2 or 4");
            table.group = jsonu::integer(jsonu::field(t, "group", src), at + ".group", src, 32, 128);
            if (table.group != 32 && table.group != 64 && table.group != 128)
                throw Error(src + ": " + at + ".group must be 32, 64 or 128");
            const json& layout = jsonu::field(t, "layout", src);
            if (layout != "token" && layout != "channel")
                throw Error(src + ": " + at + ".layout must be \"token\" or \"channel\"");
            table.channel = layout == "channel";
            if (table.channel && !table.key) throw Error(src + ": " + at + ": values have no channel layout");
            if (cal.find(table.key, table.bits, table.group, table.channel))
                throw Error(src + ": " + at + " repeats a format already listed");
            const json& levels = jsonu::field(t, "levels", src);
            const json& variance = jsonu::field(t, "error_variance", src);
            if (!levels.is_array() || levels.size() != static_cast<size_t>(c.depth) || !variance.is_array() ||
                variance.size() != static_cast<size_t>(c.depth))
                throw Error(src + ": " + at +
                            " must list levels and error_variance for each of the model's " +
                            std::to_string(c.depth) + " layers");
            const int codes = 1 << table.bits;
            for (int l = 0; l < c.depth; ++l) {
                const std::string lat = at + ".levels[" + std::to_string(l) + "]";
                const json& row = levels[static_cast<size_t>(l)];
                if (!row.is_array() || row.size() != static_cast<size_t>(codes))
                    throw Error(src + ": " + lat + " must list " + std::to_string(codes) + " levels");
                std::vector<float> lv;
                for (int k = 0; k < codes; ++k) {
                    const float v = jsonu::float32(row[static_cast<size_t>(k)], lat, src);
                    // A level stays within half a step of its code: values rounded to code k lie in
                    // [k - 1/2, k + 1/2] steps (the outer codes in [0, 1/2] and [L - 1/2, L]).
                    if (!(v >= k - 0.5f && v <= k + 0.5f))
                        throw Error(src + ": " + lat + "[" + std::to_string(k) + "] = " + std::to_string(v) +
                                    " is more than half a step from its code " + std::to_string(k));
                    lv.push_back(v);
                }
                table.levels.push_back(lv);
                const float ev =
                    jsonu::float32(variance[static_cast<size_t>(l)], at + ".error_variance", src);
                if (!(ev >= 0.f && ev <= 0.25f))
                    throw Error(src + ": " + at + ".error_variance[" + std::to_string(l) +
                                "] = " + std::to_string(ev) + " is outside [0, 1/4] (squared steps)");
                table.error_variance.push_back(ev);
            }
            cal.tables.push_back(std::move(table));
        }
        return cal;
    });
}

std::string cache_calibration_to_json(const CacheCalibration& cal, const std::string& model_name) {
    // One table a line; positions to 5 significant digits, far below what they are known to.
    auto list = [](const std::vector<float>& values) {
        std::string s = "[";
        for (size_t i = 0; i < values.size(); ++i) {
            char v[32];
            std::snprintf(v, sizeof v, "%s%.5g", i ? ", " : "", static_cast<double>(values[i]));
            s += v;
        }
        return s + "]";
    };
    std::string out =
        "{\"format\": \"kvworld-cache-calibration\", \"version\": 1, \"model\": " + json(model_name).dump() +
        ",\n \"tables\": [";
    for (size_t i = 0; i < cal.tables.size(); ++i) {
        const CodeTable& t = cal.tables[i];
        std::string levels = "[";
        for (size_t l = 0; l < t.levels.size(); ++l) levels += (l ? ", " : "") + list(t.levels[l]);
        char head[160];
        std::snprintf(head, sizeof head,
                      "{\"tensor\": \"%s\", \"bits\": %d, \"group\": %d, \"layout\": \"%s\", ",
                      t.key ? "key" : "value", t.bits, t.group, t.channel ? "channel" : "token");
        out += std::string(i ? ",\n  " : "\n  ") + head + "\"error_variance\": " + list(t.error_variance) +
               ", \"levels\": " + levels + "]}";
    }
    return out + "\n ]}\n";
}

void write_cache_calibration(const std::filesystem::path& dir, const CacheCalibration& calibration) {
    const std::filesystem::path config_path = dir / "model.json";
    const std::string src = config_path.string();
    const std::string text = read_file_text(config_path);
    const ModelConfig config = parse_model_config(text, src);
    for (const CodeTable& t : calibration.tables)
        if (t.levels.size() != static_cast<size_t>(config.depth))
            throw Error(src + ": the calibration has " + std::to_string(t.levels.size()) +
                        " layers, the model " + std::to_string(config.depth));
    const std::string file = "cache_calibration.json";
    write_file_atomic(dir / file, cache_calibration_to_json(calibration, config.name));
    // The config's own order and fields are kept: only "cache_calibration" is set.
    nlohmann::ordered_json j = jsonu::guarded(src, [&]() { return nlohmann::ordered_json::parse(text); });
    if (!j.contains("cache_calibration") || j["cache_calibration"] != file) {
        j["cache_calibration"] = file;
        write_file_atomic(config_path, j.dump(2) + "\n");
    }
}

std::string model_config_to_json(const ModelConfig& c) {
    json j;
    j["format"] = "kvworld-model";
    j["version"] = 1;
    j["name"] = c.name;
    j["height"] = c.height;
    j["width"] = c.width;
    j["patch"] = c.patch;
    j["chunk_frames"] = c.chunk_frames;
    j["fps"] = c.fps;
    j["hidden"] = c.hidden;
    j["depth"] = c.depth;
    j["heads"] = c.heads;
    j["head_dim"] = c.head_dim;
    j["mlp_hidden"] = c.mlp_hidden;
    j["time_freq_dim"] = c.time_freq_dim;
    j["rope_axes"] = c.rope_axes;
    j["rope_theta"] = c.rope_theta;
    j["norm_eps"] = c.norm_eps;
    if (c.absolute_position) j["absolute_position"] = true;
    j["sampler"] = {{"steps", c.steps},
                    {"shift", c.shift},
                    {"cache_t", c.cache_t},
                    {"source", c.source_previous ? "previous" : "noise"},
                    {"source_sigma", c.source_sigma},
                    {"guidance", c.guidance}};
    if (c.guidance_min_t > 0.f) j["sampler"]["guidance_min_t"] = c.guidance_min_t;
    if (c.warp_source) j["sampler"]["warp_source"] = true;
    if (c.warp_eye_height > 0.f) j["sampler"]["warp_eye_height"] = c.warp_eye_height;
    j["context"] = {{"window", c.window}, {"recall", c.recall}};
    if (!c.recall_first) j["context"]["recall_first"] = false;
    j["motion"] = {{"move_per_frame", c.motion.move_per_frame},
                   {"turn_max_deg", c.motion.turn_max_deg},
                   {"pitch_limit_deg", c.motion.pitch_limit_deg},
                   {"hfov_deg", c.motion.hfov_deg}};
    if (c.autoencoder.enabled())
        j["autoencoder"] = {{"latent_channels", c.autoencoder.latent_channels},
                            {"channels", c.autoencoder.channels},
                            {"groups", c.autoencoder.groups},
                            {"latent_clip", c.autoencoder.latent_clip}};
    j["weights"] = c.weight_files;
    if (!c.cache_calibration_file.empty()) j["cache_calibration"] = c.cache_calibration_file;
    return j.dump(2) + "\n";
}

}  // namespace kvw
