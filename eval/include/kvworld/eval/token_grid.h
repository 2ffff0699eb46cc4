// The model's token grid on the screen: its period in pixels, and how visible it is in a set of frames (the
// seam index). Every measure that needs the grid (the seam index, the motion estimators' pattern removal)
// takes its period from token_grid_pixels().
#pragma once

#include <vector>

#include "kvworld/config.h"
#include "kvworld/image.h"

namespace kvw::eval {

// Pixels per token along each side of the frame: the period of the grid a model draws its frames on. Today
// the model works on pixels in patches of config.patch x config.patch, so the period is config.patch. A
// latent model (an autoencoder that downsamples by d, then patches of p latents) has a period of p * d
// pixels: this function then multiplies the patch by the autoencoder's downsampling (e.g. 256x256 frames, d =
// 8, p = 2: one token covers 16x16 pixels).
int token_grid_pixels(const ModelConfig& config);

// The seam index's bar: the model's frames may show the grid at most 5% more than the simulator's.
inline constexpr double kSeamIndexBar = 1.05;

// Absolute luma differences of horizontal and vertical neighbours, summed over frames and split by whether
// the pair straddles a grid boundary: pixels (x, y), (x + 1, y) straddle one when (x + 1) % grid == 0, and
// (x, y), (x, y + 1) when (y + 1) % grid == 0. A frame of W x H has (W - 1) H + W (H - 1) such pairs.
struct GridGradients {
    double boundary_sum = 0, boundary_pairs = 0;  // across grid boundaries
    double interior_sum = 0, interior_pairs = 0;  // everywhere else

    // Adds every neighbour pair of `frame` (grid >= 2).
    void add(const Image& frame, int grid);
    void add(const GridGradients& other);
    // Mean absolute difference across boundaries over the mean elsewhere: about 1 for frames without a
    // grid, more when the grid shows; 0 without pairs of either kind.
    double ratio() const;
};

GridGradients grid_gradients(const std::vector<Image>& frames, int grid);

// The seam index: the model's boundary ratio over the simulator's for the same frames of the world (same
// trace, same frame indices), so that the world's own structure at those places cancels. 1.0: no visible
// grid; the bar is kSeamIndexBar. 0 when either side has no frames.
double seam_index(const GridGradients& model, const GridGradients& simulator);

}  // namespace kvw::eval
