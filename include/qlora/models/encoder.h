// The BERT-family encoder: XLM-RoBERTa, RoBERTa and BERT, with the extractive-QA head
// (XxxForQuestionAnswering) and the sequence-classification head (XxxForSequenceClassification).
// The variants differ only by flags in EncoderConfig (position ids, token types, pooler); see
// src/models/xlmr.cpp for the one table of tensor names.
#pragma once

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "qlora/io/hf_config.h"
#include "qlora/nn/activation.h"
#include "qlora/nn/attention.h"
#include "qlora/nn/lora_linear.h"
#include "qlora/nn/norm.h"

namespace qlora::models {

enum class EncoderHead {
  kNone,                    // XLMRobertaModel / BertModel: hidden states only
  kQuestionAnswering,       // qa_outputs: Linear(C, 2) -> start / end logits
  kSequenceClassification,  // RoBERTa: classifier.dense + tanh + classifier.out_proj; BERT: pooler +
                            // classifier
};

// Loss of a classification head, as transformers picks it from config.problem_type.
enum class ProblemType { kSingleLabel, kMultiLabel, kRegression };

struct EncoderConfig {
  std::string model_type;              // "xlm-roberta", "roberta" or "bert"
  bool roberta_positions = true;       // positions count from pad_token_id + 1 (RoBERTa); else arange (BERT)
  std::string hf_prefix = "roberta.";  // module prefix of the encoder inside the HF head models
  bool pooled_classifier = false;      // BERT: pooler + classifier; RoBERTa: classifier.dense/out_proj
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;  // C
  int64_t num_layers = 0;
  int64_t num_heads = 0;          // H; head dim D = C / H
  int64_t intermediate_size = 0;  // FFN width
  nn::Activation hidden_act = nn::Activation::kGeluErf;
  int64_t max_position_embeddings = 0;  // RoBERTa: usable length is this - pad_token_id - 1
  int64_t type_vocab_size = 0;          // 1 for XLM-R checkpoints, 2 for BERT
  double layer_norm_eps = 1e-12;
  int64_t pad_token_id = 1;
  double hidden_dropout = 0.1;      // hidden_dropout_prob: embeddings, after each sub-block's dense
  double attention_dropout = 0.1;   // attention_probs_dropout_prob: on the softmax probabilities
  double classifier_dropout = 0.1;  // classifier_dropout, or hidden_dropout_prob when null (as HF)
  int64_t num_labels = 2;           // classification outputs
  ProblemType problem_type = ProblemType::kSingleLabel;  // num_labels == 1 without problem_type: regression
  double initializer_range = 0.02;  // std of the normal init of a head missing from the checkpoint
  // Not in config.json: how encode computes attention (load option; eager = the fixtures' form).
  nn::AttnImplementation attn_implementation = nn::AttnImplementation::kEager;

  // Reads config.json. Throws Error naming the file and key for unsupported model types,
  // activations or position_embedding_type != "absolute".
  static EncoderConfig from_hf_config(const HfConfig& hf);
  int64_t head_dim() const { return hidden_size / num_heads; }
};

struct EncoderLayer {
  nn::Linear query, key, value;  // attention.self.*: [C, C]
  nn::Linear attention_output;   // attention.output.dense: [C, C]
  nn::LayerNorm attention_norm;  // attention.output.LayerNorm
  nn::Linear intermediate;       // intermediate.dense: [I, C]
  nn::Linear output;             // output.dense: [C, I]
  nn::LayerNorm output_norm;     // output.LayerNorm
};

struct EncoderModel {
  EncoderConfig config;
  EncoderHead head = EncoderHead::kNone;

  at::Tensor word_embeddings;        // [V, C]
  at::Tensor position_embeddings;    // [P, C]
  at::Tensor token_type_embeddings;  // [type_vocab_size, C]
  nn::LayerNorm embedding_norm;
  std::vector<EncoderLayer> layers;
  nn::Linear pooler;            // pooler.dense [C, C]: BERT classification (loaded when present otherwise)
  nn::Linear qa_outputs;        // [2, C]
  nn::Linear classifier_dense;  // RoBERTa classifier.dense [C, C]
  nn::Linear classifier;        // RoBERTa classifier.out_proj / BERT classifier: [num_labels, C]

  // Canonical module name -> projection, in table order, for attaching adapters by PEFT
  // target-module matching. Names are the HF module paths without the "roberta."/"bert." prefix,
  // e.g. "encoder.layer.0.attention.self.query". Only the layers this model holds are listed.
  std::vector<std::pair<std::string, nn::Linear*>> named_linears();
  // Canonical tensor name ("<module>.weight") -> the tensor slot; base weights only, not adapters.
  std::vector<std::pair<std::string, at::Tensor*>> named_parameters();
  // The module's full name inside the HF model this head corresponds to ("roberta.encoder.layer.0...."
  // for a head model, unchanged for kNone and for head modules): what PEFT keys are built from.
  std::string hf_module_name(const std::string& module) const;

  // Casts every base tensor (not the adapters) to `dtype`, e.g. at::kBFloat16 for bf16 compute.
  void to(at::ScalarType dtype);
  at::ScalarType dtype() const { return word_embeddings.scalar_type(); }
};

// One row of the table of names.
struct EncoderTensorInfo {
  std::string name;  // canonical: "encoder.layer.0.attention.self.query.weight"
  std::string
      hf_name;  // inside the HF model of this head: "roberta.encoder.layer.0.attention.self.query.weight"
  std::vector<int64_t> shape;
  bool optional = false;         // may be absent from a checkpoint (left undefined)
  bool init_if_missing = false;  // a head: absent -> HF's init (normal(0, initializer_range), zero bias)
};

// Every tensor a model of this config and head holds, in a fixed order.
std::vector<EncoderTensorInfo> encoder_tensor_table(const EncoderConfig& config, EncoderHead head);

struct EncoderLoadOptions {
  EncoderHead head = EncoderHead::kNone;
  uint64_t init_seed = 42;  // seeds the init of a head missing from the checkpoint
  // Copied into EncoderConfig::attn_implementation; eager = transformers' reference form.
  nn::AttnImplementation attn_implementation = nn::AttnImplementation::kEager;
};

struct EncoderLoadReport {
  std::string prefix;                    // "roberta.", "bert." or "" as found in the checkpoint
  std::vector<std::string> initialized;  // canonical names initialised because they were missing
  std::vector<std::string> unused;       // checkpoint tensors not read (lm_head.*, an unused pooler, ...)
};

// Loads config.json and the safetensors checkpoint of `dir`: a head model (prefix roberta./bert.),
// a bare XLMRobertaModel / BertModel (no prefix), or a masked-LM model (lm_head.* unused). A missing
// required tensor or a shape mismatch throws Error naming the checkpoint path and the tensor.
// Tensors are copied out of the mapping (float32 stays float32).
EncoderModel load_encoder(const std::string& dir, const EncoderLoadOptions& options,
                          EncoderLoadReport* report = nullptr);
// Same with an already parsed config and an explicit checkpoint path (file or folder).
EncoderModel load_encoder(const EncoderConfig& config, const std::string& checkpoint_path,
                          const EncoderLoadOptions& options, EncoderLoadReport* report = nullptr);

struct EncoderInputs {
  at::Tensor input_ids;       // [B, T] int64
  at::Tensor attention_mask;  // [B, T] 1 = token, 0 = padding; undefined = all ones
  at::Tensor token_type_ids;  // [B, T]; undefined = all zeros
};

// Last hidden state [B, T, C] in the model's dtype.
at::Tensor encode(const EncoderModel& model, const EncoderInputs& inputs, const nn::ForwardContext& ctx);

struct QaLogits {
  at::Tensor start;  // [B, T]
  at::Tensor end;    // [B, T]
};
QaLogits qa_forward(const EncoderModel& model, const EncoderInputs& inputs, const nn::ForwardContext& ctx);
// HF: ignored_index = T; positions clamped to [0, T]; cross-entropy (mean over the non-ignored
// rows, ignore_index = T) for start and end; their mean. positions: [B] int64.
at::Tensor qa_loss(const at::Tensor& start_logits, const at::Tensor& end_logits,
                   const at::Tensor& start_positions, const at::Tensor& end_positions);

// Sequence-classification logits [B, num_labels] from the first (<s> / [CLS]) token.
at::Tensor classify(const EncoderModel& model, const EncoderInputs& inputs, const nn::ForwardContext& ctx);
// HF's loss for config.problem_type: single-label CE (labels [B] int64), multi-label BCE-with-logits
// (labels [B, num_labels] float), regression MSE (labels [B] float).
at::Tensor classification_loss(const at::Tensor& logits, const at::Tensor& labels,
                               const EncoderConfig& config);

}  // namespace qlora::models
