// The controller's FrameStore over the renderer's Presenter: chunks go into GL textures (through CUDA-GL
// interop when the presenter can take device frames), and the UI draws them from there.
#pragma once

#include "controller.h"
#include "kvworld/render/presenter.h"

namespace kvw::gui {

class PresenterFrames final : public FrameStore {
  public:
    explicit PresenterFrames(render::Presenter& presenter) : presenter_(presenter) {}

    void configure(const FrameLayout& layout, bool engine_on_cuda) override {
        presenter_.configure(render::PresentLayout{layout.width, layout.height, layout.frames_per_chunk,
                                                   layout.panes, layout.slots},
                             engine_on_cuda);
    }
    bool accepts_device_frames() const override { return presenter_.interop_ready(); }
    int acquire_slot() override { return presenter_.acquire_slot(); }
    void release_slot(int slot) override { presenter_.release_slot(slot); }
    void release_all() override { presenter_.release_all(); }
    void upload(int slot, int pane, const ChunkResult& result) override {
        presenter_.upload(slot, pane, result);
    }
    Image read_frame(int slot, int pane, int frame) const override {
        return presenter_.read_frame(slot, pane, frame);
    }

  private:
    render::Presenter& presenter_;
};

}  // namespace kvw::gui
