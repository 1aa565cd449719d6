#include "thread_pool.h"

#include <cstdlib>
#include <string>

#include "errors.h"

namespace sqf {

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
  quit_ = false;
  for (int i = 1; i < n; ++i) workers_.emplace_back(&ThreadPool::worker, this, i);
}

void ThreadPool::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    quit_ = true;
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

void ThreadPool::worker(int index) {
  uint64_t seen = 0;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return quit_ || generation_ != seen; });
      if (quit_) return;
      seen = generation_;
    }
    run_tasks(index);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (--active_ == 0) done_.notify_one();
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
    active_ = num_threads_ - 1;
    ++generation_;
  }
  wake_.notify_all();
  run_tasks(0);
  std::unique_lock<std::mutex> lock(mutex_);
  done_.wait(lock, [&] { return active_ == 0; });
}

}  // namespace sqf
