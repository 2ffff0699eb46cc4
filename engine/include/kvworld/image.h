// RGB8 images and PNG files.
#pragma once

#include <cstdint>
#include <filesystem>
#include <vector>

namespace kvw {

struct Image {
    int width = 0, height = 0;
    std::vector<uint8_t> rgb;  // height × width × 3

    Image() = default;
    Image(int w, int h) : width(w), height(h), rgb(static_cast<size_t>(w) * h * 3, 0) {}
    uint8_t* pixel(int x, int y) { return &rgb[(static_cast<size_t>(y) * width + x) * 3]; }
    const uint8_t* pixel(int x, int y) const { return &rgb[(static_cast<size_t>(y) * width + x) * 3]; }
};

// PNG written atomically. Throws kvw::Error naming the path on failure.
void write_png(const std::filesystem::path& path, const Image& image);
// Reads any format stb_image reads (PNG, JPEG, ...) as RGB8; throws kvw::Error naming the path.
Image read_image(const std::filesystem::path& path);
// Bilinear resize (for start images of another size than the model's frames).
Image resize_image(const Image& image, int width, int height);

}  // namespace kvw
