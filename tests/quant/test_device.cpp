// Device specs and the precision rules that follow from the hardware. The rules are checked with
// described devices (a T4's sm_75, an A100's sm_80), so they are tested on a machine without a GPU.
#include <gtest/gtest.h>

#include "error_of.h"
#include "qlora/ops/device.h"

namespace qlora::ops {
namespace {

DeviceInfo gpu(const std::string& name, int major, int minor) {
  DeviceInfo d;
  d.device = c10::Device(c10::kCUDA, 0);
  d.name = name;
  d.capability_major = major;
  d.capability_minor = minor;
  return d;
}

const std::string kKey = "config key 'train.mixed_precision'";

TEST(Device, CpuAndAutoResolveWithoutAGpu) {
  EXPECT_EQ(resolve_device("cpu", "--device"), c10::Device(c10::kCPU));
  const c10::Device a = resolve_device("auto", "--device");
  EXPECT_EQ(a.is_cuda(), cuda_usable());  // auto never errors: the GPU when there is one, else the CPU
  EXPECT_EQ(device_summary(describe_device(c10::Device(c10::kCPU))), "cpu");
}

TEST(Device, CudaWithoutADeviceIsOneClearError) {
  if (cuda_usable()) GTEST_SKIP() << "a CUDA device is present";
  for (const char* spec : {"cuda", "cuda:0", "cuda:3"}) {
    const std::string e = qlora_test::error_of([&] { resolve_device(spec, "config key 'train.device'"); });
    EXPECT_NE(e.find("config key 'train.device' " + std::string(spec)), std::string::npos) << e;
#ifdef QLORA_WITH_CUDA
    EXPECT_NE(e.find("no CUDA device is visible"), std::string::npos) << e;
#else
    EXPECT_NE(e.find("built without CUDA"), std::string::npos) << e;
#endif
  }
}

TEST(Device, UnknownSpecsAreErrorsWithTheChoices) {
  for (const char* spec : {"gpu", "cuda:", "cuda:x", "cuda0", "CPU", ""}) {
    const std::string e = qlora_test::error_of([&] { resolve_device(spec, "--device"); });
    EXPECT_NE(e.find("auto, cpu, cuda, cuda:N"), std::string::npos) << spec << ": " << e;
  }
}

TEST(Precision, AutoFollowsTheHardware) {
  EXPECT_EQ(resolve_mixed_precision("auto", gpu("NVIDIA H100 80GB HBM3", 9, 0), kKey), "bf16");
  EXPECT_EQ(resolve_mixed_precision("auto", gpu("NVIDIA A100-SXM4-40GB", 8, 0), kKey), "bf16");
  EXPECT_EQ(resolve_mixed_precision("auto", gpu("Tesla T4", 7, 5), kKey), "fp16");
  EXPECT_EQ(resolve_mixed_precision("auto", gpu("Tesla V100-SXM2-16GB", 7, 0), kKey), "fp16");
  EXPECT_EQ(resolve_mixed_precision("auto", DeviceInfo{}, kKey), "no");
  EXPECT_EQ(resolve_model_dtype("auto", gpu("Tesla T4", 7, 5), "model.dtype"), "fp16");
  EXPECT_EQ(resolve_model_dtype("auto", gpu("NVIDIA L4", 8, 9), "model.dtype"), "bf16");
  EXPECT_EQ(resolve_model_dtype("auto", DeviceInfo{}, "model.dtype"), "fp32");
  // Explicit choices pass through where the hardware has them (bf16 on the CPU is allowed: emulated).
  EXPECT_EQ(resolve_mixed_precision("fp16", gpu("Tesla T4", 7, 5), kKey), "fp16");
  EXPECT_EQ(resolve_mixed_precision("bf16", DeviceInfo{}, kKey), "bf16");
  EXPECT_EQ(resolve_model_dtype("bf16", gpu("NVIDIA H100", 9, 0), "model.dtype"), "bf16");
}

TEST(Precision, Bf16BelowSm80IsAnErrorSuggestingFp16) {
  const std::string e =
      qlora_test::error_of([&] { resolve_mixed_precision("bf16", gpu("Tesla T4", 7, 5), kKey); });
  EXPECT_NE(e.find("config key 'train.mixed_precision' bf16"), std::string::npos) << e;
  EXPECT_NE(e.find("Tesla T4 (sm_75)"), std::string::npos) << e;
  EXPECT_NE(e.find("Use fp16"), std::string::npos) << e;
  const std::string d = qlora_test::error_of(
      [&] { resolve_model_dtype("bf16", gpu("Tesla V100", 7, 0), "config key 'model.dtype'"); });
  EXPECT_NE(d.find("config key 'model.dtype' bf16"), std::string::npos) << d;
  EXPECT_NE(d.find("sm_70"), std::string::npos) << d;
}

}  // namespace
}  // namespace qlora::ops
