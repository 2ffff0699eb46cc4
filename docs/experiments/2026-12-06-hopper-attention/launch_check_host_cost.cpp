// The host-side cost of overlapping_launch_allowed (kernels/common.cu) once a kernel's answer is cached: a
// mutex and an unordered_map lookup, timed alone (no CUDA), on one thread and on 2 and 8 threads at once.
//   g++ -O2 -std=c++20 -pthread launch_check_host_cost.cpp -o launch_check_host_cost &&
//   ./launch_check_host_cost
#include <chrono>
#include <cstdio>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

namespace {
std::mutex mutex;
std::unordered_map<const void*, bool> allowed;

__attribute__((noinline)) bool ask(const void* kernel) {
    const std::lock_guard<std::mutex> lock(mutex);
    const auto it = allowed.find(kernel);
    return it != allowed.end() && it->second;
}
}  // namespace

int main() {
    static int kernels[40];  // stand-ins for the engine's kernels' addresses
    for (int& k : kernels) allowed.emplace(&k, true);
    for (int threads : {1, 2, 8}) {
        const long calls = 4000000;
        struct alignas(64) Counter {  // one cache line each: the threads share only the mutex and the map
            long answers = 0;
        };
        std::vector<Counter> counters(static_cast<size_t>(threads));
        const auto t0 = std::chrono::steady_clock::now();
        std::vector<std::thread> pool;
        for (int t = 0; t < threads; ++t)
            pool.emplace_back([&, t] {
                for (long i = 0; i < calls; ++i)
                    counters[static_cast<size_t>(t)].answers += ask(&kernels[i % 40]);
            });
        for (std::thread& th : pool) th.join();
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        std::printf("%d thread(s): %.1f ns a call a thread (%ld answers)\n", threads, 1e9 * s / calls,
                    counters[0].answers);
    }
}
