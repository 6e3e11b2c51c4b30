// Instruction tuning (SFT) of a decoder LLM (LLaMA / Mistral / Qwen2 / MPT): the TrainTask the engine
// trains with LoRA (PEFT adapters, task_type CAUSAL_LM) or in full, on data::build_sft_dataset samples.
// Loss: next-token cross-entropy over labels != -100, mean over the micro batch's label tokens (as
// transformers' ForCausalLMLoss without num_items_in_batch).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "qlora/config/run_config.h"
#include "qlora/core/jsonl.h"
#include "qlora/data/sft.h"
#include "qlora/models/causal_lm.h"
#include "qlora/models/quantize.h"
#include "qlora/nn/lm_loss.h"
#include "qlora/peft/lora_model.h"
#include "qlora/tokenizer/tokenizer.h"
#include "qlora/train/trainer.h"

namespace qlora::tasks {

// A decoder ready to run: tokenizer + model, an adapter attached (not merged) when given.
struct CausalLmBundle {
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<models::CausalLM> model;  // heap: the PEFT view points into it
  peft::PeftModelView view;
  peft::LoraSummary adapter;
  bool has_adapter = false;
};

// Loads model_dir (+ tokenizer_dir, default model_dir) in `dtype`, quantizes its linears when `quantize` asks
// for 4-bit or int8 bases (as transformers' load_in_4bit / load_in_8bit), and, when adapter_dir is set,
// attaches a PEFT adapter for inference (merge = true folds it into the weights, dense again).
// tokenizer_optional: a folder without tokenizer files leaves `tokenizer` null (generation from ids).
CausalLmBundle load_causal_lm_bundle(const std::string& model_dir, const std::string& tokenizer_dir,
                                     const std::string& adapter_dir, const std::string& dtype,
                                     bool merge = false, const models::QuantizeOptions& quantize = {},
                                     bool tokenizer_optional = false);

// Whether `dir` holds the files of a tokenizer (tokenizer.json, a sentencepiece model or vocab.json).
bool has_tokenizer_files(const std::string& dir);

// Right-padded batch of SFT samples: input_ids [B, T], attention_mask [B, T], labels [B, T] (-100 on
// padding), segment_ids [B, T] when the samples are packed rows.
struct SftBatch {
  at::Tensor input_ids, attention_mask, labels, segment_ids;
  int64_t tokens = 0;
};
SftBatch collate_sft(const std::vector<const data::SftSample*>& samples, int64_t pad_id);
// The batch's tensors on `device` (where the model is).
SftBatch on_device(SftBatch batch, c10::Device device);

// Sum of next-token cross-entropy over label tokens, and their count: logits [B, T, V], labels [B, T].
// For logits that exist anyway (the training loss below never makes them).
std::pair<at::Tensor, int64_t> causal_lm_loss_sum(const at::Tensor& logits, const at::Tensor& labels);

// The same from the model's inputs without [B, T, V] logits: the final hidden states, the labels
// shifted left, and the output head on chunks of `chunk_tokens` label tokens recomputed in backward
// (0 = all at once; nn/lm_loss.h). labels [B, T].
nn::LmLossSum causal_lm_loss_sum(models::CausalLM& model, const models::CausalLmInputs& inputs,
                                 const at::Tensor& labels, int64_t chunk_tokens,
                                 const nn::ForwardContext& ctx);

class SftTrainTask : public train::TrainTask {
 public:
  explicit SftTrainTask(const config::RunConfig& config);

  int64_t num_train_samples() const override { return static_cast<int64_t>(train_.samples.size()); }
  train::MicroBatchLoss train_loss(const std::vector<size_t>& indices,
                                   const nn::ForwardContext& ctx) override;
  Json evaluate() override;  // {"loss", "perplexity", "tokens"}
  train::NamedTensorRefs trainable_parameters() override;
  void save_model(const std::string& dir) override;
  void load_model(const std::string& dir) override;
  Json describe() const;

 private:
  config::RunConfig config_;
  CausalLmBundle lm_;
  c10::Device device_ = c10::Device(c10::kCPU);  // train.device: the model and every batch live there
  data::SftDataset train_, valid_;
  int64_t pad_id_ = 0;
  int64_t total_params_ = 0;
};

Json run_sft_training(const config::RunConfig& config, const std::string& resume_from);

}  // namespace qlora::tasks
