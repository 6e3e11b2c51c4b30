// Language-model cross entropy without the [B, T, V] logits: the output head (lm_head, with its LoRA,
// MPT's logit_scale, T5's rescale) runs on chunks of the labelled positions only, each chunk under
// checkpoint_block, so that one chunk's logits exist at a time, in the forward and in the backward
// (where the chunk's logits are recomputed: one extra head matmul per chunk, a few % of a step).
// With vocabularies of 32k-152k the full logits and their gradient are the largest activations of a
// fine-tuning step (Qwen2, T = 1024: 0.6 GB fp32 logits + 0.6 GB gradient per sequence).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>

#include "qlora/nn/lora_linear.h"

namespace qlora::nn {

inline constexpr int64_t kIgnoreLabel = -100;  // positions with this label are not scored

// The output head: hidden [M, C] -> logits [M, V]. It must depend only on its input and on leaves
// (weights, LoRA A/B): it is rerun in backward.
using OutputHead = std::function<at::Tensor(const at::Tensor&)>;

struct LmLossOptions {
  // Labelled positions per head call; 0 = all in one call without recomputation (the full logits
  // of the labelled positions exist at once).
  int64_t chunk_tokens = 0;
  // Cross entropy on float32 logits (transformers' ForCausalLMLoss upcasts); false = in the head's
  // dtype (T5ForConditionalGeneration's CrossEntropyLoss on lm_logits as they are).
  bool upcast = true;
};

struct LmLossSum {
  at::Tensor sum;     // scalar float32: summed cross entropy over the scored positions
  int64_t count = 0;  // positions scored (labels != kIgnoreLabel)
};

// Summed cross entropy of head(hidden) against `labels`. hidden [..., C], labels [...] int64 with the
// same leading shape, aligned: labels[i] is the target of hidden[i] (shift causal labels first, see
// shift_labels_left). Only positions with a label != kIgnoreLabel reach the head. The chunks' sums
// are added in float32. Under no-grad (evaluation) nothing is kept for a backward.
LmLossSum lm_loss_sum(const at::Tensor& hidden, const at::Tensor& labels, const OutputHead& head,
                      const LmLossOptions& options, const ForwardContext& ctx);

// Causal-LM targets aligned with the positions: out[:, t] = labels[:, t + 1], kIgnoreLabel at the
// last position (transformers' ForCausalLMLoss pads the labels; the logits are never sliced).
// labels [B, T] -> [B, T].
at::Tensor shift_labels_left(const at::Tensor& labels);

}  // namespace qlora::nn
