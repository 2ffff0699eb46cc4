// Image metrics of the evaluation, on RGB8 frames: SSIM, PSNR pooled over many frame pairs, and camera
// motion estimated from two consecutive frames. PSNR of one pair is frontend::psnr (the app's A/B meter
// shows it too).
#pragma once

#include <vector>

#include "kvworld/image.h"

namespace kvw::eval {

// Luma [height * width] of an RGB8 image (0.299 R + 0.587 G + 0.114 B).
std::vector<double> luma(const Image& img);

// Mean SSIM of luma, 11x11 Gaussian window (sigma 1.5); same-size images of at least 11x11.
double ssim(const Image& a, const Image& b);

// Camera motion estimated from two consecutive frames (the evaluation's action-following measure), on luma
// with any pattern locked to a `grid`-pixel grid removed first (grid 0: none). Why: the model draws its
// frames in 8x8 patches, and seams or shading that stay at the same place on the screen pull a matcher
// towards "no motion" (seams darkened by 15% on the simulator's frames measured a turn at 65-78% of its true
// rate and 44% of the forward zoom; with the pattern removed, 100% of both). The same estimator runs on the
// simulator's frames, which it leaves as they are. Horizontal shift in pixels (+ = content moved right; a yaw
// to the right moves content left): the best integer shift of the central band, refined with a parabola.
double estimate_shift(const Image& a, const Image& b, int grid);
// The same shift of the lower half of the frame (rows h/2 .. h): below the horizon of a level camera, the
// ground near the camera, which moves across the screen when the camera steps to the side (strafing right
// moves it left: a negative shift) while the distant view barely moves.
double estimate_lower_shift(const Image& a, const Image& b, int grid);
// Zoom about the image centre (> 1: content grows, the camera moved forward; < 1: it moved back), searched
// over 0.94 .. 1.06 in steps of 0.002 and refined with a parabola (before 2026-12-04: 0.98 .. 1.06, not
// refined).
double estimate_zoom(const Image& a, const Image& b, int grid);
// Luma [height * width] divided by the frame's mean grid-cell pattern relative to its mean (the average of
// its grid x grid cells, over that average's mean): what darkens or brightens every cell of the grid at the
// same place, such as patch seams, is gone; a frame without such a pattern keeps its luma up to sampling
// noise.
std::vector<double> luma_without_grid_pattern(const Image& img, int grid);

// PSNR of a set of frame pairs from their pooled squared error. Why: a mean of per-pair (or per-trace) dB is
// dominated by a pair of identical frames, whose PSNR is the 99 dB cap — e.g. a held-out trace whose camera
// stands still, where repeating the last frame is exact. Throws kvw::Error on a size mismatch or when empty.
class PooledPsnr {
  public:
    void add(const Image& a, const Image& b);
    double mse() const;
    double psnr() const;  // 99 dB when every pair is identical, like frontend::psnr()

  private:
    double squared_error_ = 0, values_ = 0;
};

}  // namespace kvw::eval
