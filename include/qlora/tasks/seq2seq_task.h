// Seq2seq fine-tuning of T5 / Flan-T5 / mT5 / ViT5 on {source, target} pairs (qlora prepare pairs): LoRA
// (PEFT adapters, task_type SEQ_2_SEQ_LM) or full, on the shared engine. Validation reports the loss
// and, with generation.metric, ROUGE / BLEU / chrF of generated text (greedy or beam search).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "qlora/config/run_config.h"
#include "qlora/core/jsonl.h"
#include "qlora/models/t5.h"
#include "qlora/nn/lm_loss.h"
#include "qlora/peft/lora_model.h"
#include "qlora/tokenizer/tokenizer.h"
#include "qlora/train/trainer.h"

namespace qlora::tasks {

struct T5Bundle {
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<models::T5Model> model;  // heap: the PEFT view points into it
  peft::PeftModelView view;
  peft::LoraSummary adapter;
  bool has_adapter = false;
};

// Loads a T5 folder (+ tokenizer) in `dtype`, with a PEFT adapter for inference when adapter_dir is set.
// tokenizer_optional: a folder without tokenizer files leaves `tokenizer` null (generation from ids).
T5Bundle load_t5_bundle(const std::string& model_dir, const std::string& tokenizer_dir,
                        const std::string& adapter_dir, const std::string& dtype,
                        bool tokenizer_optional = false);

// One tokenized pair: the source ids end with EOS (T5 tokenizer), labels end with EOS.
struct Seq2SeqSample {
  std::vector<int64_t> input_ids;
  std::vector<int64_t> labels;
  std::string source, target;  // after the templates
};

// Reads pairs JSONL ({source, target}), applies data.source_template / target_template ("{source}",
// "{target}") and tokenizes, truncating to data.max_seq_length / data.max_target_length (EOS kept last,
// as HF truncation keeps special tokens). Errors name FILE:LINE.
std::vector<Seq2SeqSample> read_seq2seq_samples(const std::string& path, const config::RunConfig& config,
                                                const Tokenizer& tokenizer);

// Generates for every sample (batched) and returns the decoded texts (special tokens skipped).
std::vector<std::string> generate_texts(const T5Bundle& t5, const std::vector<Seq2SeqSample>& samples,
                                        const config::GenerationSection& generation, int64_t batch_size);

// seq2seq_forward's loss as a sum over the label tokens (labels != -100) and their count, without
// [B, T, V] logits: the decoder's hidden states, then the output head on chunks of `chunk_tokens` label
// tokens recomputed in backward (0 = all at once; nn/lm_loss.h). Cross entropy in the head's dtype, as
// T5ForConditionalGeneration. inputs.labels is required.
nn::LmLossSum seq2seq_loss_sum(const models::T5Model& model, const models::Seq2SeqInputs& inputs,
                               int64_t chunk_tokens, const nn::ForwardContext& ctx);

class Seq2SeqTrainTask : public train::TrainTask {
 public:
  explicit Seq2SeqTrainTask(const config::RunConfig& config);
  int64_t num_train_samples() const override { return static_cast<int64_t>(train_.size()); }
  train::MicroBatchLoss train_loss(const std::vector<size_t>& indices,
                                   const nn::ForwardContext& ctx) override;
  Json evaluate() override;
  train::NamedTensorRefs trainable_parameters() override;
  void save_model(const std::string& dir) override;
  void load_model(const std::string& dir) override;
  Json describe() const;

 private:
  config::RunConfig config_;
  T5Bundle t5_;
  std::vector<Seq2SeqSample> train_, valid_;
  int64_t total_params_ = 0;
};

Json run_seq2seq_training(const config::RunConfig& config, const std::string& resume_from);

}  // namespace qlora::tasks
