// A small fork-join pool. parallel_for hands out task indices [0, n) dynamically (an atomic
// counter) to `num_threads()` threads: the caller plus num_threads()-1 workers, so
// set_num_threads(n) is honoured exactly. Calls from several Python threads at once are
// serialised by a mutex (each call still uses every pool thread), which keeps one model object
// safe to share. The API is a plain function pointer + context so ISA-specific translation
// units never share template instantiations with the baseline code (no ODR mixing of
// AVX-512 and scalar code).
// Hand-offs spin before they block: a worker polls for the next job, and the caller for the
// workers' completion, for about kSpinIterations pause instructions (~100 us) before waiting on
// a condition variable. A forward pass is ~60 back-to-back parallel_for calls microseconds
// apart, so they pass without futex syscalls or wake-up latency; an idle pool goes back to sleep
// within ~100 us (OpenMP runtimes spin for up to 200 ms by default).
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

namespace sqf {

using TaskFn = void (*)(void* ctx, int64_t task, int thread_index);

class ThreadPool {
 public:
  static ThreadPool& global();
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return num_threads_; }
  void set_num_threads(int n);
  // Runs fn(ctx, i, thread_index) for every i in [0, n); thread_index < num_threads().
  void parallel_for(int64_t n, TaskFn fn, void* ctx);

 private:
  void start(int n);
  void stop();
  void worker(int index, uint64_t seen);  // seen: the last generation already done
  void run_tasks(int thread_index);

  std::mutex call_mutex_;  // one parallel_for at a time
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  std::vector<std::thread> workers_;
  int num_threads_ = 1;
  std::atomic<uint64_t> generation_{0};  // written under mutex_, read by spinning workers
  std::atomic<bool> quit_{false};
  std::atomic<int> active_{0};  // workers still running the current job
  // current job
  TaskFn fn_ = nullptr;
  void* ctx_ = nullptr;
  int64_t n_ = 0;
  std::atomic<int64_t> next_{0};
};

int default_num_threads();

}  // namespace sqf
