#include "qlora/nn/lm_loss.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <string>
#include <vector>

#include "qlora/core/error.h"
#include "qlora/nn/checkpoint.h"

namespace qlora::nn {
namespace {

// Cross entropy summed over one chunk: hidden [n, C], targets [n] (no ignored label among them) ->
// scalar float32.
at::Tensor chunk_loss_sum(const OutputHead& head, const at::Tensor& hidden, const at::Tensor& targets,
                          bool upcast) {
  at::Tensor logits = head(hidden);  // [n, V]
  if (upcast) logits = logits.to(at::kFloat);
  return at::cross_entropy_loss(logits, targets, {}, at::Reduction::Sum, kIgnoreLabel).to(at::kFloat);
}

}  // namespace

LmLossSum lm_loss_sum(const at::Tensor& hidden, const at::Tensor& labels, const OutputHead& head,
                      const LmLossOptions& options, const ForwardContext& ctx) {
  if (!hidden.defined() || hidden.dim() < 1) fail("lm_loss_sum: hidden must be [..., C]");
  if (!labels.defined() || labels.sizes() != hidden.sizes().slice(0, hidden.dim() - 1)) {
    fail("lm_loss_sum: labels must have hidden's leading shape; hidden " + std::to_string(hidden.dim()) +
         "-d, labels " + std::to_string(labels.dim()) + "-d");
  }
  if (options.chunk_tokens < 0) {
    fail("lm_loss_sum: chunk_tokens must be >= 0, got " + std::to_string(options.chunk_tokens));
  }
  const int64_t C = hidden.size(-1);
  const at::Tensor flat_labels = labels.reshape({-1}).to(at::kLong);
  // Only the scored positions reach the head: padding and prompt tokens cost no vocab-sized work.
  const at::Tensor rows = flat_labels.ne(kIgnoreLabel).nonzero().squeeze(1);  // [M]
  const int64_t M = rows.numel();
  const at::Tensor h = hidden.reshape({-1, C}).index_select(0, rows);  // [M, C]
  const at::Tensor y = flat_labels.index_select(0, rows);              // [M]
  const bool upcast = options.upcast;

  const int64_t chunk = options.chunk_tokens;
  if (chunk == 0 || M <= chunk) return {chunk_loss_sum(head, h, y, upcast), M};

  std::vector<at::Tensor> sums;
  for (int64_t start = 0; start < M; start += chunk) {
    const int64_t n = std::min(chunk, M - start);
    const at::Tensor targets = y.narrow(0, start, n);
    // Recomputed in backward: only this chunk's logits (and their gradient) are alive at once.
    const Block block = [head, targets, upcast](const at::Tensor& x) {
      return chunk_loss_sum(head, x, targets, upcast);
    };
    sums.push_back(checkpoint_block(block, h.narrow(0, start, n), ctx));
  }
  return {at::stack(sums).sum(), M};
}

at::Tensor shift_labels_left(const at::Tensor& labels) {
  if (!labels.defined() || labels.dim() != 2) fail("shift_labels_left: labels must be [B, T]");
  at::Tensor out = at::full_like(labels, kIgnoreLabel);
  const int64_t T = labels.size(1);
  if (T > 1) out.narrow(1, 0, T - 1).copy_(labels.narrow(1, 1, T - 1));
  return out;
}

}  // namespace qlora::nn
