// GPU kernel benchmarks, as ratios to what the device can do: device copy bandwidth (at::Tensor::copy_
// of 1 GiB), dequantize_4bit (NF4 + double quant, 4096 x 11008 -> bf16) and the batch-1 GEMV against it,
// and the tiled 4-bit training matmul (forward and input gradient, M = 4096 tokens) against at::matmul
// of the dense bf16 weight. CUDA events around each call, warmup, median of --iters. Prints one JSON line
// per measurement, then a table. Without a CUDA device it says so and exits 2.
//
//   bench_kernels [--warmup 5] [--iters 20]      (bench/run_kernels.sh builds and runs it)
#include <ATen/ATen.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "bench_util.h"
#include "qlora/core/error.h"
#include "qlora/ops/quantize.h"

#ifdef QLORA_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAEvent.h>
#include <torch/csrc/autograd/autograd.h>

#include "kernels/nf4_dequantize.h"
#endif

namespace {

struct Row {
  std::string name;
  double ms = 0;
  double gbps = -1;    // effective bandwidth where the op is memory-bound, else -1
  double ratio = -1;   // vs the row's reference (copy bandwidth, or dense matmul time)
  std::string target;  // e.g. ">= 0.75"
  bool pass = true;
};

Row make_row(std::string name, double ms, double gbps = -1, double ratio = -1, std::string target = "",
             bool pass = true) {
  Row r;
  r.name = std::move(name);
  r.ms = ms;
  r.gbps = gbps;
  r.ratio = ratio;
  r.target = std::move(target);
  r.pass = pass;
  return r;
}

void emit(std::vector<Row>& rows, Row row) {
  nlohmann::ordered_json j;
  j["bench"] = "kernels";
  j["name"] = row.name;
  j["ms"] = row.ms;
  if (row.gbps >= 0) j["gbps"] = row.gbps;
  if (row.ratio >= 0) j["ratio"] = row.ratio;
  if (!row.target.empty()) {
    j["target"] = row.target;
    j["pass"] = row.pass;
  }
  std::cout << j.dump() << std::endl;
  rows.push_back(std::move(row));
}

void print_table(const std::vector<Row>& rows) {
  std::printf("\n%-44s %10s %10s %8s %10s %5s\n", "measurement", "ms", "GB/s", "ratio", "target", "ok");
  for (const Row& r : rows) {
    std::printf("%-44s %10.4f ", r.name.c_str(), r.ms);
    r.gbps >= 0 ? std::printf("%10.1f ", r.gbps) : std::printf("%10s ", "-");
    r.ratio >= 0 ? std::printf("%8.3f ", r.ratio) : std::printf("%8s ", "-");
    std::printf("%10s %5s\n", r.target.empty() ? "-" : r.target.c_str(),
                r.target.empty() ? "" : (r.pass ? "yes" : "NO"));
  }
}

#ifdef QLORA_WITH_CUDA

// Median GPU time of f in milliseconds (CUDA events on the current stream).
template <class F>
double time_ms(F&& f, int warmup, int iters) {
  for (int i = 0; i < warmup; ++i) f();
  std::vector<double> samples;
  for (int i = 0; i < iters; ++i) {
    at::cuda::CUDAEvent start(cudaEventDefault), stop(cudaEventDefault);
    start.record();
    f();
    stop.record();
    stop.synchronize();
    samples.push_back(start.elapsed_time(stop));
  }
  return qlora_bench::median(samples);
}

double gbps(double bytes, double ms) { return bytes / (ms * 1e-3) / 1e9; }

qlora::ops::QuantState4bit nf4_dq(int64_t n, int64_t k) {
  // Quantized on the CPU reference and moved (as at load); only the bytes' layout matters here.
  return qlora::ops::quantize_4bit(at::randn({n, k}, at::kCUDA) * 0.02, qlora::ops::QuantType::kNf4, 64,
                                   true);
}

int run(int warmup, int iters) {
  at::manual_seed(0);
  std::vector<Row> rows;
  const auto bf16 = at::TensorOptions().dtype(at::kBFloat16).device(at::kCUDA);

  // Device copy: 1 GiB read + 1 GiB written.
  double copy_gbps = 0;
  {
    const int64_t bytes = int64_t{1} << 30;
    at::Tensor src = at::empty({bytes}, at::TensorOptions().dtype(at::kByte).device(at::kCUDA)).fill_(1);
    at::Tensor dst = at::empty_like(src);
    const double ms = time_ms([&] { dst.copy_(src); }, warmup, iters);
    copy_gbps = gbps(2.0 * bytes, ms);
    emit(rows, make_row("copy_1GiB", ms, copy_gbps));
  }

  // dequantize_4bit NF4 + DQ, 4096 x 11008 -> bf16 (the op: nested absmax rebuilt in the kernel).
  {
    const int64_t n = 4096, k = 11008, numel = n * k, blocks = numel / 64;
    const auto s = nf4_dq(n, k);
    const double bytes = numel / 2.0 + blocks + (blocks + 255) / 256 * 4.0 + numel * 2.0;
    const double ms = time_ms([&] { qlora::ops::dequantize_4bit(s, at::kBFloat16); }, warmup, iters);
    const double bw = gbps(bytes, ms);
    emit(rows, make_row("dequantize_4bit nf4+dq 4096x11008 bf16", ms, bw, bw / copy_gbps));
  }

  // GEMV, batch 1, bf16 x. "op": ops::matmul_4bit as layers call it (absmax of the DQ state rebuilt
  // first); "kernel": gemv_4bit alone on a float32 absmax. Bytes: packed + fp32 absmax + x + y.
  for (const auto& [out, in] : std::vector<std::pair<int64_t, int64_t>>{{11008, 4096}, {4096, 11008}}) {
    const auto s = nf4_dq(out, in);
    const at::Tensor x = at::randn({1, in}, bf16);
    const int64_t blocks = out * in / 64;
    const double bytes = out * in / 2.0 + blocks * 4.0 + in * 2.0 + out * 2.0;
    const std::string shape = std::to_string(in) + "->" + std::to_string(out);
    const double op_ms = time_ms([&] { qlora::ops::matmul_4bit(x, s); }, warmup, iters);
    emit(rows,
         make_row("gemv op (nf4+dq) " + shape, op_ms, gbps(bytes, op_ms), gbps(bytes, op_ms) / copy_gbps));
    const at::Tensor absmax = qlora::ops::state_absmax_f32(s);
    at::Tensor y = at::empty({1, out}, bf16);
    const double k_ms = time_ms(
        [&] {
          const int err = qlora::kernels::gemv_4bit(x.data_ptr(), 2, s.packed.data_ptr<uint8_t>(),
                                                    absmax.data_ptr<float>(), y.data_ptr(), 1, out, in, 64, 0,
                                                    at::cuda::getCurrentCUDAStream().stream());
          if (err != 0) qlora::fail("bench_kernels: gemv_4bit failed with CUDA error " + std::to_string(err));
        },
        warmup, iters);
    const double ratio = gbps(bytes, k_ms) / copy_gbps;
    emit(rows, make_row("gemv kernel " + shape, k_ms, gbps(bytes, k_ms), ratio, ">= 0.75", ratio >= 0.75));
  }

  // Tiled training matmul vs dense bf16 at::matmul, M = 4096 tokens.
  const int64_t M = 4096;
  for (const auto& [N, K] :
       std::vector<std::pair<int64_t, int64_t>>{{4096, 4096}, {11008, 4096}, {4096, 11008}}) {
    const auto s = nf4_dq(N, K);
    const at::Tensor w = qlora::ops::dequantize_4bit(s, at::kBFloat16);  // [N, K]
    const at::Tensor x = at::randn({M, K}, bf16), dy = at::randn({M, N}, bf16);
    const std::string shape = "N" + std::to_string(N) + " K" + std::to_string(K);
    const double dense_fwd = time_ms([&] { at::matmul(x, w.t()); }, warmup, iters);
    const double tiled_fwd = time_ms([&] { qlora::ops::matmul_4bit_tiled(x, s); }, warmup, iters);
    emit(rows, make_row("dense matmul fwd " + shape, dense_fwd));
    emit(rows, make_row("tiled 4-bit fwd " + shape, tiled_fwd, -1, tiled_fwd / dense_fwd, "<= 1.15",
                        tiled_fwd / dense_fwd <= 1.15));
    const at::Tensor xg = x.clone().requires_grad_(true);
    const at::Tensor y = qlora::ops::matmul_4bit_tiled(xg, s);
    const double dense_bwd = time_ms([&] { at::matmul(dy, w); }, warmup, iters);
    const double tiled_bwd =
        time_ms([&] { torch::autograd::grad({y}, {xg}, {dy}, /*retain_graph=*/true); }, warmup, iters);
    emit(rows, make_row("dense matmul dx " + shape, dense_bwd));
    emit(rows, make_row("tiled 4-bit dx " + shape, tiled_bwd, -1, tiled_bwd / dense_bwd, "<= 1.15",
                        tiled_bwd / dense_bwd <= 1.15));
  }
  print_table(rows);
  return 0;
}

#endif

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"qlora GPU kernel benchmarks"};
  int warmup = 5, iters = 20;
  app.add_option("--warmup", warmup, "untimed calls before timing")->check(CLI::NonNegativeNumber);
  app.add_option("--iters", iters, "timed calls; the median is reported")->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);
#ifdef QLORA_WITH_CUDA
  if (!at::hasCUDA()) {
    std::cerr << "bench_kernels: no CUDA device on this machine; these benchmarks need one" << std::endl;
    return 2;
  }
  return run(warmup, iters);
#else
  (void)warmup;
  std::cerr << "bench_kernels: built without CUDA kernels (QLORA_CUDA=OFF); these benchmarks need them"
            << std::endl;
  return 2;
#endif
}
