// Learning-rate schedules as transformers' get_scheduler builds them (LambdaLR over optimizer
// steps): the lr of optimizer step k (0-based) is base_lr * factor(k).
#pragma once

#include <cstdint>
#include <string>

namespace qlora::train {

struct ScheduleOptions {
  std::string kind = "linear";  // linear, cosine, constant
  int64_t total_steps = 1;      // optimizer steps in the run
  int64_t warmup_steps = 0;     // linear warmup from 0
};

// warmup_steps when > 0, else ceil(total_steps * warmup_ratio) (transformers' get_warmup_steps).
int64_t warmup_steps_for(int64_t total_steps, int64_t warmup_steps, double warmup_ratio);

// The multiplier of the base learning rate at optimizer step `step`.
double lr_factor(const ScheduleOptions& options, int64_t step);

}  // namespace qlora::train
