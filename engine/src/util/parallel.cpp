#include "util/parallel.h"

#include <algorithm>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

namespace kvw {

namespace {

class Pool {
  public:
    explicit Pool(int n) {
        for (int i = 1; i < n; ++i) workers_.emplace_back([this, i] { loop(i); });
        size_ = n;
    }
    ~Pool() {
        {
            std::lock_guard<std::mutex> lk(m_);
            stop_ = true;
        }
        cv_.notify_all();
        for (auto& t : workers_) t.join();
    }
    int size() const { return size_; }

    void run(int n, const std::function<void(int, int)>& fn) {
        const int parts = std::min(size_, n);
        if (parts <= 1) {
            fn(0, n);
            return;
        }
        std::unique_lock<std::mutex> call_lock(call_m_);  // one parallel region at a time
        {
            std::lock_guard<std::mutex> lk(m_);
            fn_ = &fn;
            n_ = n;
            parts_ = parts;
            pending_ = parts - 1;
            ++generation_;
        }
        cv_.notify_all();
        fn(0, n / parts);  // the caller does part 0
        std::unique_lock<std::mutex> lk(m_);
        done_cv_.wait(lk, [&] { return pending_ == 0; });
        fn_ = nullptr;
    }

  private:
    void loop(int index) {
        unsigned long seen = 0;
        for (;;) {
            const std::function<void(int, int)>* fn;
            int n, parts;
            {
                std::unique_lock<std::mutex> lk(m_);
                cv_.wait(lk, [&] { return stop_ || generation_ != seen; });
                if (stop_) return;
                seen = generation_;
                fn = fn_;
                n = n_;
                parts = parts_;
            }
            if (index < parts) {
                const int begin = static_cast<int>(static_cast<long long>(n) * index / parts);
                const int end = static_cast<int>(static_cast<long long>(n) * (index + 1) / parts);
                (*fn)(begin, end);
                std::lock_guard<std::mutex> lk(m_);
                if (--pending_ == 0) done_cv_.notify_one();
            }
        }
    }

    std::vector<std::thread> workers_;
    int size_ = 1;
    std::mutex m_, call_m_;
    std::condition_variable cv_, done_cv_;
    const std::function<void(int, int)>* fn_ = nullptr;
    int n_ = 0, parts_ = 0, pending_ = 0;
    unsigned long generation_ = 0;
    bool stop_ = false;
};

Pool& pool() {
    static Pool p([] {
        if (const char* env = std::getenv("KVW_THREADS")) {
            const int n = std::atoi(env);
            if (n > 0) return n;
        }
        return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    }());
    return p;
}

}  // namespace

int cpu_threads() {
    return pool().size();
}

void parallel_for(int n, const std::function<void(int, int)>& fn) {
    if (n <= 0) return;
    pool().run(n, fn);
}

void parallel_for_elements(size_t n, const std::function<void(size_t, size_t)>& fn, size_t block) {
    const size_t blocks = (n + block - 1) / block;
    if (blocks <= 1) {
        if (n) fn(0, n);
        return;
    }
    parallel_for(static_cast<int>(blocks), [&](int b, int e) {
        fn(static_cast<size_t>(b) * block, std::min(n, static_cast<size_t>(e) * block));
    });
}

}  // namespace kvw
