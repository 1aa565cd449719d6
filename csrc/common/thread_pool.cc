#include "thread_pool.h"

#include <pthread.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <string>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include "errors.h"

namespace sqf {
namespace {

constexpr int64_t kDefaultSpinUs = 50;
constexpr int64_t kMaxSpinUs = 1000000;
constexpr int kMaxThreadsPerCore = 4;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

// Polls `ready` for about spin_us microseconds (the clock read every 16 pauses, and not at all when one
// of the first 16 polls succeeds, as most hand-offs of a forward do: a pause takes 5-140 cycles depending
// on the CPU); true as soon as it holds.
template <typename F>
bool spin_until(int64_t spin_us, F ready) {
  std::chrono::steady_clock::time_point deadline{};
  for (bool first = true;; first = false) {
    for (int i = 0; i < 16; ++i) {
      if (ready()) return true;
      cpu_relax();
    }
    const auto now = std::chrono::steady_clock::now();
    if (first) deadline = now + std::chrono::microseconds(spin_us);
    if (now >= deadline) return ready();
  }
}

// SQBERT_FAST_SPIN_US: how long a hand-off polls before it blocks (thread_pool.h); an integer in
// [0, 1000000], default kDefaultSpinUs. Anything else is an error naming the variable.
int64_t spin_us_from_env() {
  const char* env = std::getenv("SQBERT_FAST_SPIN_US");
  if (!env || !*env) return kDefaultSpinUs;
  char* end = nullptr;
  errno = 0;
  const long long v = std::strtoll(env, &end, 10);
  SQF_CHECK(errno == 0 && end && *end == '\0' && v >= 0 && v <= kMaxSpinUs, "SQBERT_FAST_SPIN_US must be an integer "
            "number of microseconds in [0, ", kMaxSpinUs, "], got '", env, "'");
  return static_cast<int64_t>(v);
}

int hardware_threads() {
  unsigned hw = std::thread::hardware_concurrency();
  return hw ? static_cast<int>(hw) : 1;
}

}  // namespace

// Everything the workers touch. Abandoned (never destroyed) in a forked child, where its threads
// do not exist and its mutex or condition variables may be mid-use.
struct ThreadPool::Core {
  Core(int n, int64_t spin) : num_threads(n), spin_us(spin) {
    for (int i = 1; i < n; ++i) workers.emplace_back(&Core::worker, this, i, uint64_t{0});
  }
  ~Core() {
    {
      std::lock_guard<std::mutex> lock(mutex);
      quit.store(true, std::memory_order_release);
    }
    wake.notify_all();
    for (auto& t : workers) t.join();
  }

  void run_tasks(int thread_index) {
    for (;;) {
      int64_t i = next.fetch_add(1, std::memory_order_relaxed);
      if (i >= n) break;
      fn(ctx, i, thread_index);
    }
  }

  void worker(int index, uint64_t seen) {
    for (;;) {
      auto ready = [&] {
        return quit.load(std::memory_order_acquire) || generation.load(std::memory_order_acquire) != seen;
      };
      if (!spin_until(spin_us, ready)) {
        std::unique_lock<std::mutex> lock(mutex);
        wake.wait(lock, ready);
      }
      if (quit.load(std::memory_order_acquire)) return;
      seen = generation.load(std::memory_order_acquire);
      run_tasks(index);
      if (active.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        std::lock_guard<std::mutex> lock(mutex);  // a caller past its spin waits under mutex
        done.notify_one();
      }
    }
  }

  void run(int64_t count, TaskFn f, void* c) {
    {
      std::lock_guard<std::mutex> lock(mutex);
      fn = f;
      ctx = c;
      n = count;
      next.store(0, std::memory_order_relaxed);
      active.store(num_threads - 1, std::memory_order_relaxed);
      generation.fetch_add(1, std::memory_order_release);  // publishes the job to spinning workers
    }
    wake.notify_all();
    run_tasks(0);
    auto finished = [&] { return active.load(std::memory_order_acquire) == 0; };
    if (!spin_until(spin_us, finished)) {
      std::unique_lock<std::mutex> lock(mutex);
      done.wait(lock, finished);
    }
  }

  const int num_threads;
  const int64_t spin_us;
  std::mutex mutex;
  std::condition_variable wake, done;
  std::vector<std::thread> workers;
  std::atomic<uint64_t> generation{0};  // written under mutex, read by spinning workers
  std::atomic<bool> quit{false};
  std::atomic<int> active{0};  // workers still running the current job
  TaskFn fn = nullptr;
  void* ctx = nullptr;
  int64_t n = 0;
  std::atomic<int64_t> next{0};
};

int ThreadPool::max_threads() { return kMaxThreadsPerCore * hardware_threads(); }

int default_num_threads() {
  if (const char* env = std::getenv("SQBERT_FAST_NUM_THREADS")) {
    int n = std::atoi(env);
    if (n > 0) return std::min(n, ThreadPool::max_threads());
  }
  return hardware_threads();
}

ThreadPool& ThreadPool::global() {
  static ThreadPool* pool = [] {
    auto* p = new ThreadPool(default_num_threads());  // leaked: outlives atexit
    pthread_atfork([] { global().fork_prepare(); }, [] { global().fork_parent(); },
                   [] { global().fork_child(); });
    return p;
  }();
  return *pool;
}

ThreadPool::ThreadPool(int num_threads) { start(num_threads); }
ThreadPool::~ThreadPool() { stop(); }

void ThreadPool::start(int n) {
  SQF_CHECK(n >= 1, "number of threads must be >= 1, got ", n);
  SQF_CHECK(n <= max_threads(), "number of threads must be <= ", max_threads(), " (", kMaxThreadsPerCore,
            " x the ", hardware_threads(), " hardware threads), got ", n);
  spin_us_ = spin_us_from_env();  // read here, on a caller's thread, so a bad value is that call's error
  num_threads_ = n;
  core_.reset();  // workers start at the first parallel_for
}

void ThreadPool::stop() { core_.reset(); }

void ThreadPool::set_num_threads(int n) {
  SQF_CHECK(n >= 1, "number of threads must be >= 1, got ", n);
  std::lock_guard<std::mutex> call(call_mutex_);
  if (n == num_threads_) return;
  stop();
  start(n);
}

void ThreadPool::fork_prepare() { call_mutex_.lock(); }
void ThreadPool::fork_parent() { call_mutex_.unlock(); }
void ThreadPool::fork_child() {
  (void)core_.release();  // its threads are the parent's: leaked, never joined
  call_mutex_.unlock();   // taken by this (the forking) thread in fork_prepare
}

void ThreadPool::parallel_for(int64_t n, TaskFn fn, void* ctx) {
  if (n <= 0) return;
  std::lock_guard<std::mutex> call(call_mutex_);
  if (num_threads_ == 1 || n == 1) {
    for (int64_t i = 0; i < n; ++i) fn(ctx, i, 0);
    return;
  }
  if (!core_) core_ = std::make_unique<Core>(num_threads_, spin_us_);
  core_->run(n, fn, ctx);
}

}  // namespace sqf
