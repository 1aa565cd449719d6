#include "thread_pool.h"

#include <cstdlib>
#include <string>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include "errors.h"

namespace sqf {
namespace {

constexpr int kSpinIterations = 2000;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

// Polls `ready` kSpinIterations times; true as soon as it holds.
template <typename F>
bool spin_until(F ready) {
  for (int i = 0; i < kSpinIterations; ++i) {
    if (ready()) return true;
    cpu_relax();
  }
  return ready();
}

}  // namespace

int default_num_threads() {
  if (const char* env = std::getenv("SQBERT_FAST_NUM_THREADS")) {
    int n = std::atoi(env);
    if (n > 0) return n;
  }
  unsigned hw = std::thread::hardware_concurrency();
  return hw ? static_cast<int>(hw) : 1;
}

ThreadPool& ThreadPool::global() {
  static ThreadPool* pool = new ThreadPool(default_num_threads());  // leaked: outlives atexit
  return *pool;
}

ThreadPool::ThreadPool(int num_threads) { start(num_threads); }
ThreadPool::~ThreadPool() { stop(); }

void ThreadPool::start(int n) {
  SQF_CHECK(n >= 1, "number of threads must be >= 1, got ", n);
  num_threads_ = n;
  quit_.store(false, std::memory_order_relaxed);
  // A new worker waits for the job after the current generation (jobs of a previous pool size
  // are done); starting from 0 it would run a stale hand-off and decrement active_ twice.
  const uint64_t current = generation_.load(std::memory_order_relaxed);
  for (int i = 1; i < n; ++i) workers_.emplace_back(&ThreadPool::worker, this, i, current);
}

void ThreadPool::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    quit_.store(true, std::memory_order_release);
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
  workers_.clear();
}

void ThreadPool::set_num_threads(int n) {
  SQF_CHECK(n >= 1, "number of threads must be >= 1, got ", n);
  std::lock_guard<std::mutex> call(call_mutex_);
  if (n == num_threads_) return;
  stop();
  start(n);
}

void ThreadPool::run_tasks(int thread_index) {
  for (;;) {
    int64_t i = next_.fetch_add(1, std::memory_order_relaxed);
    if (i >= n_) break;
    fn_(ctx_, i, thread_index);
  }
}

void ThreadPool::worker(int index, uint64_t seen) {
  for (;;) {
    auto ready = [&] { return quit_.load(std::memory_order_acquire) || generation_.load(std::memory_order_acquire) != seen; };
    if (!spin_until(ready)) {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, ready);
    }
    if (quit_.load(std::memory_order_acquire)) return;
    seen = generation_.load(std::memory_order_acquire);
    run_tasks(index);
    if (active_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      std::lock_guard<std::mutex> lock(mutex_);  // a caller past its spin waits under mutex_
      done_.notify_one();
    }
  }
}

void ThreadPool::parallel_for(int64_t n, TaskFn fn, void* ctx) {
  if (n <= 0) return;
  std::lock_guard<std::mutex> call(call_mutex_);
  if (num_threads_ == 1 || n == 1) {
    for (int64_t i = 0; i < n; ++i) fn(ctx, i, 0);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    fn_ = fn;
    ctx_ = ctx;
    n_ = n;
    next_.store(0, std::memory_order_relaxed);
    active_.store(num_threads_ - 1, std::memory_order_relaxed);
    generation_.fetch_add(1, std::memory_order_release);  // publishes the job to spinning workers
  }
  wake_.notify_all();
  run_tasks(0);
  auto finished = [&] { return active_.load(std::memory_order_acquire) == 0; };
  if (!spin_until(finished)) {
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, finished);
  }
}

}  // namespace sqf
