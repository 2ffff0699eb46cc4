// The evaluation's one thread helper. It runs whole units of the lab's work on threads: a simulator trace
// rendered and measured, a pool world screened, a pair of frames matched for motion. Why its own: the
// engine's thread pool is internal (the CPU backend's loops) and not public, and one unit here is
// milliseconds to seconds of work, so a plain counter that hands out indices is all the balancing needed.
#pragma once

#include <cstddef>
#include <functional>
#include <string>

namespace kvw::eval {

// Runs fn(i) for every i in [0, n) on all hardware threads (at most n, and at most max_threads when that is
// not 0), each index once, in no set order; fn must write only what index i owns. Returns when every call has
// finished. The first exception thrown by fn comes back as a kvw::Error naming `what`; the other indices
// still run.
void parallel_for(size_t n, const std::string& what, const std::function<void(size_t)>& fn,
                  unsigned max_threads = 0);
// fn(i) for every i in [0, n), `concurrent` at a time: parallel_for's threads, or in order on the calling
// thread when concurrent is 1 (then fn's errors come back as they are, not renamed after `what`).
void run_concurrently(size_t n, int concurrent, const std::string& what,
                      const std::function<void(size_t)>& fn);

}  // namespace kvw::eval
