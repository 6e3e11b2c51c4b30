// Where work runs: device specs ("auto", "cpu", "cuda", "cuda:N") resolved against this build and this
// machine, what the device is (name, compute capability, memory), and the precision rules that follow
// from it. Asking for CUDA where there is none is one clear error, never a silent CPU run.
#pragma once

#include <c10/core/Device.h>

#include <cstdint>
#include <string>

namespace qlora::ops {

struct DeviceInfo {
  c10::Device device = c10::Device(c10::kCPU);
  std::string name = "cpu";  // "Tesla T4", "NVIDIA H100 80GB HBM3"
  int capability_major = 0;  // compute capability (7.5 on a T4, 9.0 on an H100); 0 on the CPU
  int capability_minor = 0;
  int64_t total_bytes = 0;  // device memory; 0 on the CPU
  int64_t free_bytes = 0;
  bool is_cuda() const { return device.is_cuda(); }
  // "sm_75"; "" on the CPU.
  std::string capability() const;
};

// True when this binary was built with the CUDA kernels (QLORA_WITH_CUDA) and libtorch sees a device.
bool cuda_usable();
// CUDA devices libtorch sees (0 in a CPU-only build or on a machine without a GPU).
int cuda_device_count();

// "auto" (the first CUDA device when the build has CUDA and one is present, else the CPU), "cpu",
// "cuda" (= cuda:0) or "cuda:N". `what` names the option or config key in errors ("--device",
// "config key 'train.device'"). Errors: an unknown spec; CUDA asked in a CPU-only build; no device;
// N out of range.
c10::Device resolve_device(const std::string& spec, const std::string& what);

// Name, capability and memory of `device` (only the device field is meaningful on the CPU).
DeviceInfo describe_device(c10::Device device);

// One log line: "cuda:0 Tesla T4 (sm_75), 14.6 GiB total, 14.2 GiB free" or "cpu".
std::string device_summary(const DeviceInfo& info);

// train.mixed_precision for the device: "auto" picks bf16 on sm80+ and fp16 (dynamic loss scaling)
// below, "no" on the CPU; "bf16" on a GPU below sm80 is an error that suggests fp16 (T4 sm75 and V100
// sm70 have no bf16 tensor cores). "no" / "fp16" / "bf16" otherwise pass through.
std::string resolve_mixed_precision(const std::string& requested, const DeviceInfo& device,
                                    const std::string& what);

// model.dtype ("auto", "fp32", "bf16", "fp16") for the device: "auto" is fp32 on the CPU, bf16 on sm80+
// and fp16 below; "bf16" below sm80 is an error that suggests fp16.
std::string resolve_model_dtype(const std::string& requested, const DeviceInfo& device,
                                const std::string& what);

}  // namespace qlora::ops
