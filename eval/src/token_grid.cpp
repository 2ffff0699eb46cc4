#include "kvworld/eval/token_grid.h"

#include <cmath>

#include "kvworld/error.h"
#include "kvworld/eval/image_metrics.h"

namespace kvw::eval {

int token_grid_pixels(const ModelConfig& config) {
    // One token covers patch_pixels() pixels a side: the patch itself for a pixel model, patch x the
    // autoencoder's downsampling for a latent one.
    return config.patch_pixels();
}

void GridGradients::add(const Image& frame, int grid) {
    if (grid < 2) throw Error("grid gradients: the grid must be at least 2 pixels");
    const std::vector<double> y = luma(frame);
    const int w = frame.width, h = frame.height;
    for (int row = 0; row < h; ++row)
        for (int x = 0; x + 1 < w; ++x) {
            const size_t i = static_cast<size_t>(row) * w + x;
            const double d = std::fabs(y[i + 1] - y[i]);
            if ((x + 1) % grid == 0) {
                boundary_sum += d;
                boundary_pairs += 1;
            } else {
                interior_sum += d;
                interior_pairs += 1;
            }
        }
    for (int row = 0; row + 1 < h; ++row) {
        const bool boundary = (row + 1) % grid == 0;
        for (int x = 0; x < w; ++x) {
            const size_t i = static_cast<size_t>(row) * w + x;
            const double d = std::fabs(y[i + static_cast<size_t>(w)] - y[i]);
            (boundary ? boundary_sum : interior_sum) += d;
            (boundary ? boundary_pairs : interior_pairs) += 1;
        }
    }
}

void GridGradients::add(const GridGradients& other) {
    boundary_sum += other.boundary_sum;
    boundary_pairs += other.boundary_pairs;
    interior_sum += other.interior_sum;
    interior_pairs += other.interior_pairs;
}

double GridGradients::ratio() const {
    if (boundary_pairs == 0 || interior_pairs == 0 || interior_sum == 0) return 0;
    return (boundary_sum / boundary_pairs) / (interior_sum / interior_pairs);
}

GridGradients grid_gradients(const std::vector<Image>& frames, int grid) {
    GridGradients g;
    for (const Image& frame : frames) g.add(frame, grid);
    return g;
}

double seam_index(const GridGradients& model, const GridGradients& simulator) {
    const double sim = simulator.ratio();
    return sim > 0 ? model.ratio() / sim : 0;
}

}  // namespace kvw::eval
