#include "qlora/ops/device.h"

#include <ATen/Context.h>

#include <algorithm>
#include <cstdio>
#include <vector>

#include "qlora/core/error.h"
#include "qlora/core/suggest.h"

#ifdef QLORA_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace qlora::ops {

namespace {

std::string gib(int64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f GiB", static_cast<double>(bytes) / (1024.0 * 1024.0 * 1024.0));
  return buf;
}

bool has_bf16(const DeviceInfo& d) { return d.capability_major >= 8; }

[[noreturn]] void no_bf16(const DeviceInfo& d, const std::string& what, const std::string& value) {
  fail(what + " " + value + ": " + d.name + " (" + d.capability() +
       ") has no bf16 arithmetic; bf16 needs compute capability 8.0 or newer (A100, L4, H100). Use fp16 "
       "instead (training then uses dynamic loss scaling)");
}

}  // namespace

std::string DeviceInfo::capability() const {
  if (!is_cuda()) return "";
  return "sm_" + std::to_string(capability_major) + std::to_string(capability_minor);
}

int cuda_device_count() {
#ifdef QLORA_WITH_CUDA
  if (!at::hasCUDA()) return 0;
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device" error
    return 0;
  }
  return n;
#else
  return 0;
#endif
}

bool cuda_usable() { return cuda_device_count() > 0; }

c10::Device resolve_device(const std::string& spec, const std::string& what) {
  if (spec == "cpu") return c10::Device(c10::kCPU);
  if (spec == "auto") return cuda_usable() ? c10::Device(c10::kCUDA, 0) : c10::Device(c10::kCPU);
  int index = -1;
  if (spec == "cuda") {
    index = 0;
  } else if (spec.rfind("cuda:", 0) == 0 && spec.size() > 5 &&
             spec.find_first_not_of("0123456789", 5) == std::string::npos && spec.size() <= 8) {
    index = std::stoi(spec.substr(5));
  } else {
    fail(what + ": '" + spec + "' is not a device (auto, cpu, cuda, cuda:N)" +
         did_you_mean(spec, {"auto", "cpu", "cuda", "cuda:0"}));
  }
#ifndef QLORA_WITH_CUDA
  fail(what + " " + spec +
       ": this qlora was built without CUDA (QLORA_CUDA=OFF or no toolkit at configure time); rebuild with "
       "the CUDA toolkit, or use cpu");
#else
  const int n = cuda_device_count();
  if (n == 0) {
    fail(what + " " + spec + ": no CUDA device is visible (" +
         (at::hasCUDA() ? "CUDA_VISIBLE_DEVICES or the driver hides them"
                        : "no GPU or driver on this machine") +
         "); use cpu or auto");
  }
  if (index >= n) {
    fail(what + " " + spec + ": only " + std::to_string(n) + " CUDA device" + (n == 1 ? "" : "s") +
         " (cuda:0" + (n > 1 ? "..cuda:" + std::to_string(n - 1) : std::string()) + ")");
  }
  return c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(index));
#endif
}

DeviceInfo describe_device(c10::Device device) {
  DeviceInfo info;
  info.device = device;
  if (!device.is_cuda()) return info;
#ifdef QLORA_WITH_CUDA
  const int index = device.has_index() ? device.index() : 0;
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, index) != cudaSuccess)
    fail("cuda:" + std::to_string(index) + ": cannot read the device properties");
  info.name = prop.name;
  info.capability_major = prop.major;
  info.capability_minor = prop.minor;
  int previous = 0;
  cudaGetDevice(&previous);
  cudaSetDevice(index);
  size_t free_bytes = 0, total_bytes = 0;
  if (cudaMemGetInfo(&free_bytes, &total_bytes) == cudaSuccess) {
    info.free_bytes = static_cast<int64_t>(free_bytes);
    info.total_bytes = static_cast<int64_t>(total_bytes);
  }
  cudaSetDevice(previous);
#else
  fail("describe_device: a CUDA device in a CPU-only build");
#endif
  return info;
}

std::string device_summary(const DeviceInfo& info) {
  if (!info.is_cuda()) return "cpu";
  return info.device.str() + " " + info.name + " (" + info.capability() + "), " + gib(info.total_bytes) +
         " total, " + gib(info.free_bytes) + " free";
}

namespace {

// One precision setting on `device`: "auto" is bf16 on sm80+, fp16 below and `cpu_auto` on the CPU; bf16
// on a GPU below sm80 is refused; anything but "auto" and `explicit_values` is an error listing them.
std::string resolve_precision(const std::string& requested, const DeviceInfo& device, const std::string& what,
                              const std::string& cpu_auto, const std::vector<std::string>& explicit_values) {
  if (requested == "auto") return !device.is_cuda() ? cpu_auto : has_bf16(device) ? "bf16" : "fp16";
  if (std::find(explicit_values.begin(), explicit_values.end(), requested) == explicit_values.end()) {
    std::string choices = "auto";
    for (const auto& v : explicit_values) choices += ", " + v;
    fail(what + ": '" + requested + "' is not one of " + choices);
  }
  if (requested == "bf16" && device.is_cuda() && !has_bf16(device)) no_bf16(device, what, requested);
  return requested;
}

}  // namespace

std::string resolve_mixed_precision(const std::string& requested, const DeviceInfo& device,
                                    const std::string& what) {
  return resolve_precision(requested, device, what, "no", {"no", "fp16", "bf16"});
}

std::string resolve_model_dtype(const std::string& requested, const DeviceInfo& device,
                                const std::string& what) {
  return resolve_precision(requested, device, what, "fp32", {"fp32", "bf16", "fp16"});
}

}  // namespace qlora::ops
