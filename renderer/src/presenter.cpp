#include "kvworld/render/presenter.h"

#include "kvworld/render/cuda_gl.h"

namespace kvw::render {

struct Presenter::Slot {
    bool in_use = false;
    std::vector<std::vector<Texture>> textures;  // [pane][frame]
    // Declared after the textures so that it is destroyed first: CUDA must drop its registrations before
    // GL deletes the textures.
    std::vector<std::unique_ptr<CudaGlTextures>> interop;  // [pane], registered on first device upload
};

Presenter::Presenter() = default;
Presenter::~Presenter() = default;

void Presenter::configure(const PresentLayout& layout, bool engine_on_cuda) {
    engine_on_cuda_ = engine_on_cuda;
    if (engine_on_cuda && !probed_) probe_interop();
    if (layout == layout_ && !slots_.empty()) return;
    if (layout.width <= 0 || layout.height <= 0 || layout.frames_per_chunk <= 0 || layout.panes <= 0 ||
        layout.slots <= 0)
        throw Error("presenter: invalid layout");
    slots_.clear();
    layout_ = layout;
    for (int s = 0; s < layout.slots; ++s) {
        auto slot = std::make_unique<Slot>();
        slot->textures.resize(static_cast<size_t>(layout.panes));
        slot->interop.resize(static_cast<size_t>(layout.panes));
        for (auto& pane : slot->textures)
            for (int f = 0; f < layout.frames_per_chunk; ++f)
                pane.emplace_back(layout.width, layout.height, filter_);
        slots_.push_back(std::move(slot));
    }
}

void Presenter::probe_interop() {
    probed_ = true;
    if (!cuda_interop_compiled()) {
        interop_error_ = "this build has no CUDA";
        return;
    }
    std::string why;
    if (!cuda_device_present(&why)) {
        interop_error_ = why;
        return;
    }
    try {
        Texture probe(16, 16, Filter::Nearest);
        CudaGlTextures registration({probe.id()}, 16, 16);
        interop_ok_ = true;
    } catch (const Error& e) {
        // Mesa's GL (llvmpipe, Xvfb, remote X) cannot be registered: CUDA reports "unknown error".
        interop_error_ = std::string("CUDA cannot register GL textures of this context: ") + e.what();
    }
}

std::string Presenter::interop_unavailable_reason() const {
    if (!engine_on_cuda_) return "CPU backend";
    if (!probed_) return "interop not probed yet";
    return interop_error_;
}

int Presenter::acquire_slot() {
    for (size_t s = 0; s < slots_.size(); ++s)
        if (!slots_[s]->in_use) {
            slots_[s]->in_use = true;
            return static_cast<int>(s);
        }
    throw Error("presenter: every frame slot is in use (" + std::to_string(slots_.size()) +
                " chunks queued)");
}

void Presenter::release_slot(int slot) {
    slot_ref(slot).in_use = false;
}

void Presenter::release_all() {
    for (auto& s : slots_) s->in_use = false;
}

Presenter::Slot& Presenter::slot_ref(int slot) {
    if (slot < 0 || slot >= static_cast<int>(slots_.size()))
        throw Error("presenter: no slot " + std::to_string(slot));
    return *slots_[static_cast<size_t>(slot)];
}
const Presenter::Slot& Presenter::slot_ref(int slot) const {
    if (slot < 0 || slot >= static_cast<int>(slots_.size()))
        throw Error("presenter: no slot " + std::to_string(slot));
    return *slots_[static_cast<size_t>(slot)];
}

void Presenter::upload(int slot, int pane, const ChunkResult& result) {
    Slot& s = slot_ref(slot);
    if (pane < 0 || pane >= layout_.panes) throw Error("presenter: no pane " + std::to_string(pane));
    auto& textures = s.textures[static_cast<size_t>(pane)];
    if (!result.frames.empty()) {
        if (static_cast<int>(result.frames.size()) != layout_.frames_per_chunk)
            throw Error("presenter: a chunk of " + std::to_string(result.frames.size()) +
                        " frames, expected " + std::to_string(layout_.frames_per_chunk));
        for (size_t f = 0; f < textures.size(); ++f) {
            const Image& img = result.frames[f];
            if (img.width != layout_.width || img.height != layout_.height)
                throw Error("presenter: frame of " + std::to_string(img.width) + "x" +
                            std::to_string(img.height) + ", textures are " + std::to_string(layout_.width) +
                            "x" + std::to_string(layout_.height));
            textures[f].upload_rgb(img.rgb.data());
        }
        last_upload_interop_ = false;
    } else if (result.device_frames.rgba != nullptr) {
        if (!interop_ready())
            throw Error("presenter: device frames arrived but interop is unavailable (" +
                        interop_unavailable_reason() + ")");
        auto& registration = s.interop[static_cast<size_t>(pane)];
        if (!registration) {
            std::vector<unsigned> names;
            for (const Texture& t : textures) names.push_back(t.id());
            registration = std::make_unique<CudaGlTextures>(names, layout_.width, layout_.height);
        }
        registration->copy(result.device_frames);
        last_upload_interop_ = true;
    } else {
        throw Error("presenter: the chunk has neither host nor device frames");
    }
}

unsigned Presenter::texture(int slot, int pane, int frame) const {
    const Slot& s = slot_ref(slot);
    return s.textures.at(static_cast<size_t>(pane)).at(static_cast<size_t>(frame)).id();
}

Image Presenter::read_frame(int slot, int pane, int frame) const {
    const Slot& s = slot_ref(slot);
    return s.textures.at(static_cast<size_t>(pane)).at(static_cast<size_t>(frame)).read_rgb();
}

void Presenter::set_filter(Filter filter) {
    filter_ = filter;
    for (auto& s : slots_)
        for (auto& pane : s->textures)
            for (Texture& t : pane) t.set_filter(filter);
}

}  // namespace kvw::render
