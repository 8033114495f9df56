// A CUDA graph: device work captured once and replayed. Built only with CUDA (KDBENCH_WITH_CUDA); elsewhere
// available() is false and capture() throws.
#pragma once
#include <functional>
#include <memory>

namespace kd {

class CapturedWork {
 public:
  CapturedWork();
  ~CapturedWork();
  CapturedWork(const CapturedWork&) = delete;
  CapturedWork& operator=(const CapturedWork&) = delete;

  // Whether this build can capture CUDA graphs and a CUDA device is present.
  static bool available();
  // Captures the device work `enqueue` launches on the current CUDA device (on a side stream, with the
  // default generator registered so random numbers advance at each replay, autocast's cache off). The work is
  // recorded, NOT run: call replay() to run it. Tensors `enqueue` allocates live in the graph's private pool
  // and are rewritten by every replay. Throws (leaving nothing captured) if `enqueue` does something a capture
  // forbids (a host synchronisation such as .item(), a host-to-device copy from pageable memory).
  void capture(const std::function<void()>& enqueue);
  void replay();
  bool captured() const;
  void reset();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Runs `warm_up` on a side stream that waits for the current one (and the current waits for it after), as
// PyTorch advises before a capture so that lazy initialisation happens outside the graph. Without CUDA it
// just calls `warm_up`.
void on_side_stream(const std::function<void()>& warm_up);

}  // namespace kd
