// First-fit allocation of byte ranges inside one fixed-size arena, with coalescing on release: the
// bookkeeping of the CUDA backend's KV-cache pool (kernels/cuda_backend.cpp), kept free of CUDA so that the
// CPU tests cover it. Offsets and sizes are multiples of kAlignment.
#pragma once

#include <cstddef>
#include <iterator>
#include <map>
#include <optional>

#include "kvworld/error.h"

namespace kvw {

class OffsetAllocator {
  public:
    static constexpr size_t kAlignment = 256;

    explicit OffsetAllocator(size_t capacity) : capacity_(capacity / kAlignment * kAlignment) {
        if (capacity_ > 0) free_[0] = capacity_;
    }

    static size_t aligned(size_t bytes) { return (bytes + kAlignment - 1) / kAlignment * kAlignment; }

    // The lowest free range that holds `bytes`, or nothing when none does.
    std::optional<size_t> allocate(size_t bytes) {
        const size_t need = aligned(bytes == 0 ? 1 : bytes);
        for (auto it = free_.begin(); it != free_.end(); ++it) {
            if (it->second < need) continue;
            const size_t offset = it->first, rest = it->second - need;
            free_.erase(it);
            if (rest > 0) free_[offset + need] = rest;
            live_[offset] = need;
            used_ += need;
            return offset;
        }
        return std::nullopt;
    }

    // Returns a range to the free list, merged with free neighbours. Throws for an offset it did not give.
    void release(size_t offset) {
        const auto it = live_.find(offset);
        if (it == live_.end()) throw Error("internal: release of an offset the cache pool never allocated");
        size_t start = offset, size = it->second;
        used_ -= size;
        live_.erase(it);
        auto next = free_.lower_bound(start);
        if (next != free_.end() && next->first == start + size) {
            size += next->second;
            next = free_.erase(next);
        }
        if (next != free_.begin()) {
            auto prev = std::prev(next);
            if (prev->first + prev->second == start) {
                start = prev->first;
                size += prev->second;
                free_.erase(prev);
            }
        }
        free_[start] = size;
    }

    bool owns(size_t offset) const { return live_.count(offset) > 0; }
    size_t used() const { return used_; }
    size_t capacity() const { return capacity_; }
    size_t largest_free() const {
        size_t best = 0;
        for (const auto& [o, s] : free_) best = s > best ? s : best;
        return best;
    }
    size_t live_ranges() const { return live_.size(); }

  private:
    size_t capacity_ = 0, used_ = 0;
    std::map<size_t, size_t> free_;  // offset -> size
    std::map<size_t, size_t> live_;  // offset -> size
};

}  // namespace kvw
