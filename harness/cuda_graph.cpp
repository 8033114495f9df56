#include "harness/cuda_graph.h"

#include <torch/torch.h>

#include <stdexcept>

#ifdef KDBENCH_WITH_CUDA
#include <ATen/autocast_mode.h>
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace kd {

#ifdef KDBENCH_WITH_CUDA
namespace {
// `waiter` waits (on the device) for the work queued on `first` so far.
void stream_wait(const c10::cuda::CUDAStream& waiter, const c10::cuda::CUDAStream& first) {
  at::cuda::CUDAEvent done;
  done.record(first);
  done.block(waiter);
}
}  // namespace

struct CapturedWork::Impl {
  std::unique_ptr<at::cuda::CUDAGraph> graph;
};

CapturedWork::CapturedWork() : impl_(std::make_unique<Impl>()) {}
CapturedWork::~CapturedWork() = default;

bool CapturedWork::available() {
  return torch::cuda::is_available();
}

void CapturedWork::capture(const std::function<void()>& enqueue) {
  reset();
  auto graph = std::make_unique<at::cuda::CUDAGraph>();
  auto side = c10::cuda::getStreamFromPool();
  auto current = c10::cuda::getCurrentCUDAStream();
  stream_wait(side, current);  // what the current stream queued comes first
  const bool cache = at::autocast::is_autocast_cache_enabled();
  at::autocast::set_autocast_cache_enabled(false);  // cached casts would be freed memory at replay
  try {
    c10::cuda::CUDAStreamGuard guard(side);
    graph->capture_begin();
    try {
      enqueue();
    } catch (...) {
      try {
        graph->capture_end();
      } catch (...) {
      }
      throw;
    }
    graph->capture_end();
  } catch (...) {
    at::autocast::set_autocast_cache_enabled(cache);
    throw;
  }
  at::autocast::set_autocast_cache_enabled(cache);
  stream_wait(current, side);
  impl_->graph = std::move(graph);
}

void CapturedWork::replay() {
  if (!impl_->graph) throw std::logic_error("CapturedWork::replay before a capture");
  impl_->graph->replay();
}

bool CapturedWork::captured() const {
  return impl_->graph != nullptr;
}

void CapturedWork::reset() {
  impl_->graph.reset();
}

void on_side_stream(const std::function<void()>& warm_up) {
  if (!torch::cuda::is_available()) {
    warm_up();
    return;
  }
  auto side = c10::cuda::getStreamFromPool();
  auto current = c10::cuda::getCurrentCUDAStream();
  stream_wait(side, current);
  {
    c10::cuda::CUDAStreamGuard guard(side);
    warm_up();
  }
  stream_wait(current, side);
}

#else  // a build without CUDA

struct CapturedWork::Impl {};
CapturedWork::CapturedWork() : impl_(std::make_unique<Impl>()) {}
CapturedWork::~CapturedWork() = default;
bool CapturedWork::available() {
  return false;
}
void CapturedWork::capture(const std::function<void()>&) {
  throw std::runtime_error("CUDA graphs need a CUDA build of kdbench");
}
void CapturedWork::replay() {
  throw std::logic_error("CapturedWork::replay without CUDA");
}
bool CapturedWork::captured() const {
  return false;
}
void CapturedWork::reset() {}
void on_side_stream(const std::function<void()>& warm_up) {
  warm_up();
}

#endif

}  // namespace kd
