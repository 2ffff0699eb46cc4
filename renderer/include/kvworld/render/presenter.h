// The presenter: frames from the engine into GL textures that the UI draws.
//
// Frames arrive a chunk at a time (F frames per pane) and are played one by one at the model's fps, so the
// presenter keeps a small ring of chunk slots; each slot holds one texture per frame per pane (separate
// textures rather than one atlas, so linear filtering never bleeds between frames). A chunk reaches its
// slot on one of two paths:
//   - CUDA-GL interop: the engine left RGBA frames on the device (SessionParams::keep_device_frames); they
//     are copied device to device into the registered textures, never touching host memory;
//   - host upload: RGB8 frames from host memory through glTexSubImage2D (CPU backend, a build without
//     CUDA, or a GL that CUDA cannot register with: Mesa/llvmpipe, remote X).
// Interop is probed once per GL context by registering a texture; the probe's failure is the reason the UI
// shows next to "host upload".
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "kvworld/kvworld.h"
#include "kvworld/render/gl_objects.h"

namespace kvw::render {

class CudaGlTextures;

struct PresentLayout {
    int width = 0, height = 0;  // frame size (the model's resolution)
    int frames_per_chunk = 0;
    int panes = 1;
    int slots = 3;  // chunks held at once: playing, queued, and one spare

    bool operator==(const PresentLayout&) const = default;
};

class Presenter {
  public:
    Presenter();
    ~Presenter();
    Presenter(const Presenter&) = delete;
    Presenter& operator=(const Presenter&) = delete;

    // (Re)creates the textures when the layout changes (every slot is freed then). `engine_on_cuda`: the
    // engine runs on CUDA, so interop is worth probing (once per presenter).
    void configure(const PresentLayout& layout, bool engine_on_cuda);
    const PresentLayout& layout() const { return layout_; }

    // Interop can be used now: probed successfully and the engine is on CUDA.
    bool interop_ready() const { return engine_on_cuda_ && interop_ok_; }
    // Why interop cannot be used ("CPU backend", "this build has no CUDA", the registration error, ...).
    std::string interop_unavailable_reason() const;
    // What the latest chunk took: true = interop, false = host upload.
    bool last_upload_interop() const { return last_upload_interop_; }

    int acquire_slot();  // throws kvw::Error when all slots are in use
    void release_slot(int slot);
    void release_all();

    // Puts one pane's chunk into a slot: host frames when the result has them, else its device frames.
    void upload(int slot, int pane, const ChunkResult& result);

    unsigned texture(int slot, int pane, int frame) const;
    Image read_frame(int slot, int pane, int frame) const;

    void set_filter(Filter filter);
    Filter filter() const { return filter_; }

  private:
    struct Slot;
    void probe_interop();
    Slot& slot_ref(int slot);
    const Slot& slot_ref(int slot) const;

    PresentLayout layout_;
    Filter filter_ = Filter::Linear;
    std::vector<std::unique_ptr<Slot>> slots_;
    bool engine_on_cuda_ = false;
    bool probed_ = false;
    bool interop_ok_ = false;
    std::string interop_error_;
    bool last_upload_interop_ = false;
};

}  // namespace kvw::render
