#include "qlora/train/schedule.h"

#include <algorithm>
#include <cmath>

#include "qlora/core/error.h"

namespace qlora::train {

int64_t warmup_steps_for(int64_t total_steps, int64_t warmup_steps, double warmup_ratio) {
  if (warmup_steps > 0) return warmup_steps;
  return static_cast<int64_t>(std::ceil(static_cast<double>(total_steps) * warmup_ratio));
}

double lr_factor(const ScheduleOptions& o, int64_t step) {
  const double s = static_cast<double>(step);
  const double warmup = static_cast<double>(o.warmup_steps);
  if (step < o.warmup_steps) return s / std::max(1.0, warmup);
  const double total = static_cast<double>(o.total_steps);
  if (o.kind == "constant") return 1.0;
  if (o.kind == "linear") return std::max(0.0, (total - s) / std::max(1.0, total - warmup));
  if (o.kind == "cosine") {
    // get_cosine_schedule_with_warmup with num_cycles = 0.5.
    const double progress = (s - warmup) / std::max(1.0, total - warmup);
    return std::max(0.0, 0.5 * (1.0 + std::cos(M_PI * 0.5 * 2.0 * progress)));
  }
  fail("unknown learning-rate schedule '" + o.kind + "'");
}

}  // namespace qlora::train
