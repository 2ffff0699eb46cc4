// A small persistent thread pool for the CPU backend's element-wise and attention loops (GEMMs use
// OpenBLAS's own threads). parallel_for splits [0, n) into contiguous ranges, one per worker.
#pragma once

#include <cstddef>
#include <functional>

namespace kvw {

int cpu_threads();  // workers in the pool (KVW_THREADS or the hardware concurrency)
void parallel_for(int n, const std::function<void(int begin, int end)>& fn);
// parallel_for over the elements [0, n) of a cheap element-wise loop, in blocks of `block` elements (fewer
// than two blocks run on the caller: waking the pool would cost more than the loop).
void parallel_for_elements(size_t n, const std::function<void(size_t begin, size_t end)>& fn,
                           size_t block = 4096);

}  // namespace kvw
