// A small persistent thread pool for the CPU backend's element-wise and attention loops (GEMMs use
// OpenBLAS's own threads). parallel_for splits [0, n) into contiguous ranges, one per worker.
#pragma once

#include <functional>

namespace kvw {

int cpu_threads();  // workers in the pool (KVW_THREADS or the hardware concurrency)
void parallel_for(int n, const std::function<void(int begin, int end)>& fn);

}  // namespace kvw
