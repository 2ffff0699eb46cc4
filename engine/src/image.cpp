#include "kvworld/image.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "kvworld/error.h"
#include "kvworld/fileio.h"

// stb's implementations are third-party C: their warnings are not ours to fix.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wunused-function"
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STB_IMAGE_WRITE_STATIC
#include <stb_image_write.h>
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_STATIC
#include <stb_image.h>
#pragma GCC diagnostic pop

namespace kvw {

namespace {
constexpr uint64_t kMaxImagePixels = uint64_t{16384} * 16384;
}  // namespace

void write_png(const std::filesystem::path& path, const Image& image) {
    if (image.width <= 0 || image.height <= 0 ||
        image.rgb.size() != static_cast<size_t>(image.width) * image.height * 3)
        throw Error(path.string() + ": refusing to write an empty or malformed image");
    std::vector<uint8_t> png;
    auto sink = [](void* ctx, void* data, int size) {
        auto* out = static_cast<std::vector<uint8_t>*>(ctx);
        out->insert(out->end(), static_cast<uint8_t*>(data), static_cast<uint8_t*>(data) + size);
    };
    if (!stbi_write_png_to_func(sink, &png, image.width, image.height, 3, image.rgb.data(), image.width * 3))
        throw Error(path.string() + ": PNG encoding failed");
    write_file_atomic(path, png.data(), png.size());
}

Image read_image(const std::filesystem::path& path) {
    const std::vector<uint8_t> bytes = read_file_bytes(path, kMaxImageFileBytes);
    int w = 0, h = 0, n = 0;
    // The header's size is checked before decoding: a small file can claim a picture of gigabytes.
    if (bytes.size() <= static_cast<size_t>(INT32_MAX) &&
        stbi_info_from_memory(bytes.data(), static_cast<int>(bytes.size()), &w, &h, &n) &&
        static_cast<uint64_t>(w) * static_cast<uint64_t>(h) > kMaxImagePixels)
        throw Error(path.string() + ": the image is " + std::to_string(w) + "x" + std::to_string(h) +
                    " pixels, more than the " + std::to_string(kMaxImagePixels) + " a start image may have");
    uint8_t* data = stbi_load_from_memory(bytes.data(), static_cast<int>(bytes.size()), &w, &h, &n, 3);
    if (!data) throw Error(path.string() + ": not a readable image (" + stbi_failure_reason() + ")");
    Image img(w, h);
    std::copy(data, data + static_cast<size_t>(w) * h * 3, img.rgb.begin());
    stbi_image_free(data);
    return img;
}

Image resize_image(const Image& src, int width, int height) {
    if (src.width == width && src.height == height) return src;
    Image dst(width, height);
    const float sx = static_cast<float>(src.width) / width, sy = static_cast<float>(src.height) / height;
    for (int y = 0; y < height; ++y) {
        const float fy = std::max(0.f, (y + 0.5f) * sy - 0.5f);
        const int y0 = std::min(static_cast<int>(fy), src.height - 1), y1 = std::min(y0 + 1, src.height - 1);
        const float wy = fy - y0;
        for (int x = 0; x < width; ++x) {
            const float fx = std::max(0.f, (x + 0.5f) * sx - 0.5f);
            const int x0 = std::min(static_cast<int>(fx), src.width - 1),
                      x1 = std::min(x0 + 1, src.width - 1);
            const float wx = fx - x0;
            for (int c = 0; c < 3; ++c) {
                const float v = (1 - wy) * ((1 - wx) * src.pixel(x0, y0)[c] + wx * src.pixel(x1, y0)[c]) +
                                wy * ((1 - wx) * src.pixel(x0, y1)[c] + wx * src.pixel(x1, y1)[c]);
                dst.pixel(x, y)[c] = static_cast<uint8_t>(std::clamp(std::lround(v), 0L, 255L));
            }
        }
    }
    return dst;
}

}  // namespace kvw
