// A small fork-join pool. parallel_for hands out task indices [0, n) dynamically (an atomic
// counter) to `num_threads()` threads: the caller plus num_threads()-1 workers, so
// set_num_threads(n) is honoured exactly. Calls from several Python threads at once are
// serialised by a mutex (each call still uses every pool thread), which keeps one model object
// safe to share. The API is a plain function pointer + context so ISA-specific translation
// units never share template instantiations with the baseline code (no ODR mixing of
// AVX-512 and scalar code).
// Hand-offs spin before they block: a worker polls for the next job, and the caller for the
// workers' completion, for SQBERT_FAST_SPIN_US microseconds (default 50; by the clock, as a pause takes
// ~12 ns on the Sapphire Rapids VM and ~25 ns on the EPYC Zen 4 VM) before waiting on a condition
// variable. A forward pass is ~60 back-to-back parallel_for calls microseconds apart, so they pass
// without futex syscalls or wake-up latency; an idle pool goes back to sleep as soon (OpenMP runtimes
// spin for up to 200 ms by default). The best length depends on the host, measured on two 2-vCPU VMs
// with a forward called after 100 ms idle (int8 MiniLM 1x128, 5 ms back to back):
//   - Sapphire Rapids guest: 120-300 us made it 2-3x slower (12-15 ms), apparently while the host ran
//     both vCPUs on one core; 25-60 us did not.
//   - EPYC Zen 4 guest: 50 and 100 us give 12 ms for each of the first three calls after the idle
//     gap, 200 us 6-11 ms, 500 us 5-6 ms (as back to back); but in a process where other runtimes'
//     thread pools live (the benchmark: OpenVINO, ONNX Runtime), 500 us made fp32 MiniLM 1x32 2.6x
//     slower (27 ms against 10.4).
// So the default stays short, and the variable lets a deployment with idle gaps between requests
// choose. Keep the hand-offs short rather than the spin long (ffn_split).
// fork(): only the forking thread exists in the child, so the workers, and any lock or condition
// variable they held, are gone there. The global pool holds every piece of worker state in one
// heap block (Core); a pthread_atfork handler takes call_mutex_ across fork() (no job is half
// handed out at that instant), and in the child abandons the parent's Core (leaked: its threads
// cannot be joined) and starts a fresh one lazily, at the child's first parallel_for.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
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

  // Largest accepted set_num_threads(): a multiple of the hardware threads (oversubscription
  // beyond it only adds context switches; 10,000 threads exhaust the process).
  static int max_threads();

 private:
  struct Core;  // workers + the hand-off state they share (thread_pool.cc)
  void start(int n);
  void stop();
  void fork_prepare();
  void fork_parent();
  void fork_child();

  std::mutex call_mutex_;  // one parallel_for (or resize, or fork) at a time
  int num_threads_ = 1;
  int64_t spin_us_ = 0;  // how long hand-offs poll before blocking (SQBERT_FAST_SPIN_US)
  std::unique_ptr<Core> core_;  // null until the first parallel_for of a (forked) process
};

int default_num_threads();

}  // namespace sqf
