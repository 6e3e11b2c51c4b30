// Activation (gradient) checkpointing per transformer block: the forward keeps only the block's
// input, the backward recomputes the block with autograd on and backpropagates through it. The
// semantics are torch.utils.checkpoint(use_reentrant=True) without its trap: the block's output
// requires grad even when its input does not (frozen embeddings under LoRA / a frozen 4-bit base),
// so no enable_input_require_grads() hook is needed. Dropout masks are reproduced by replaying the
// dropout generator, and the forward's autocast settings are re-applied during the recompute.
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <vector>

#include "qlora/nn/lora_linear.h"

namespace qlora::nn {

// A block of one input, e.g. an encoder layer x [B, T, C] -> [B, T, C]. Extra tensors the block
// needs (attention bias, position ids, rotary tables) are captured by the closure; they must not
// need gradients from the recompute (constants or frozen weights), or be passed through the
// list form below.
using Block = std::function<at::Tensor(const at::Tensor&)>;
using MultiInputBlock = std::function<at::Tensor(const std::vector<at::Tensor>&)>;

// block(x), with its activations recomputed in backward instead of stored. Gradients reach the
// leaf tensors the block uses (LoRA A/B, trainable norms) during the outer backward, as in
// reentrant checkpointing. Without grad mode (evaluation) this is just block(x).
at::Tensor checkpoint_block(const Block& block, const at::Tensor& x, const ForwardContext& ctx);

// The same for a block of several tensor inputs; each input that requires grad receives one.
at::Tensor checkpoint_block(const MultiInputBlock& block, const std::vector<at::Tensor>& inputs,
                            const ForwardContext& ctx);

}  // namespace qlora::nn
