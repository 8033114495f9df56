// main() of kd_bench: Google Benchmark's usual main, plus the benchmarks registered at run time (one per
// registered method, bench_losses.cpp), which must wait until every method's static registrar has run.
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <string>

#include "bench/bench_common.h"

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  kd::bench::register_method_benchmarks();
  benchmark::AddCustomContext("libtorch", KDBENCH_TORCH_VERSION);
  benchmark::AddCustomContext("torch_threads", std::to_string(torch::get_num_threads()));
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
