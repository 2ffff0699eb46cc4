#include "parallel.h"

#include <algorithm>
#include <atomic>
#include <mutex>
#include <thread>
#include <vector>

#include "kvworld/error.h"

namespace kvw::eval {

void parallel_for(size_t n, const std::string& what, const std::function<void(size_t)>& fn,
                  unsigned max_threads) {
    std::atomic<size_t> next{0};
    std::mutex error_mutex;
    std::string first_error;
    auto worker = [&] {
        for (size_t i = next++; i < n; i = next++) {
            try {
                fn(i);
            } catch (const std::exception& e) {
                std::lock_guard<std::mutex> lock(error_mutex);
                if (first_error.empty()) first_error = e.what();
            }
        }
    };
    unsigned threads =
        std::max(1u, std::min<unsigned>(std::thread::hardware_concurrency(), static_cast<unsigned>(n)));
    if (max_threads > 0) threads = std::min(threads, max_threads);
    std::vector<std::thread> pool;
    for (unsigned k = 0; k < threads; ++k) pool.emplace_back(worker);
    for (std::thread& t : pool) t.join();
    if (!first_error.empty()) throw Error(what + ": " + first_error);
}

void run_concurrently(size_t n, int concurrent, const std::string& what,
                      const std::function<void(size_t)>& fn) {
    if (concurrent <= 1) {
        for (size_t i = 0; i < n; ++i) fn(i);
        return;
    }
    parallel_for(n, what, fn, static_cast<unsigned>(concurrent));
}

}  // namespace kvw::eval
