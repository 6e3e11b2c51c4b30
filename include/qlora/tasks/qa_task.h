// Extractive QA on an encoder (XLM-R / RoBERTa / BERT): the TrainTask the engine trains, and the
// prediction path that `qlora infer --task qa` and `qlora eval --model` share. It ties together the
// tokenizer, the model, the LoRA adapter (PEFT format) or full fine-tuning, run_qa's features and
// post-processing, and the SQuAD metrics.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "qlora/config/run_config.h"
#include "qlora/core/jsonl.h"
#include "qlora/models/encoder.h"
#include "qlora/peft/lora_model.h"
#include "qlora/qa/features.h"
#include "qlora/qa/postprocess.h"
#include "qlora/tokenizer/tokenizer.h"
#include "qlora/train/trainer.h"

namespace qlora::tasks {

// A QA model ready to run: tokenizer + encoder with its QA head, adapter attached or merged.
struct QaModel {
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<models::EncoderModel> model;  // heap: the PEFT view points into it
  peft::PeftModelView view;
  peft::LoraSummary adapter;  // empty config when no adapter
  bool has_adapter = false;
};

// Loads model.path (+ tokenizer) and, when `adapter_dir` is set, a PEFT adapter for inference.
QaModel load_qa_model(const std::string& model_dir, const std::string& tokenizer_dir,
                      const std::string& adapter_dir, const std::string& dtype);

// The longest window the model's position table allows (RoBERTa: max_position_embeddings - pad - 1).
int64_t max_window(const models::EncoderModel& model);

struct QaPredictOptions {
  qa::QaFeatureOptions features;
  qa::QaPostprocessOptions postprocess;
  int64_t batch_size = 16;
};

struct QaPredictions {
  std::vector<qa::QaAnswerPrediction> answers;  // one per example, in example order
  double loss = 0;                              // mean QA loss over features (labels as run_qa)
  int64_t features = 0;
};

// Forward over every window of `examples` (no grad, eval mode) and run_qa's post-processing.
QaPredictions predict_qa(const QaModel& qa_model, const std::vector<qa::QaExample>& examples,
                         const QaPredictOptions& options);

// EM/F1 (official SQuAD normalisation unless `normalize` says mlqa) plus the loss, as
// {"loss", "exact", "f1", ...}.
Json score_qa(const std::vector<qa::QaExample>& examples, const QaPredictions& predictions, bool v2,
              const std::string& normalize, const std::string& lang);

class QaTrainTask : public train::TrainTask {
 public:
  explicit QaTrainTask(const config::RunConfig& config);

  int64_t num_train_samples() const override { return train_.inputs.size(); }
  train::MicroBatchLoss train_loss(const std::vector<size_t>& indices,
                                   const nn::ForwardContext& ctx) override;
  Json evaluate() override;
  train::NamedTensorRefs trainable_parameters() override;
  void save_model(const std::string& dir) override;
  void load_model(const std::string& dir) override;

  // Parameter counts and adapter description for the run summary.
  Json describe() const;

 private:
  config::RunConfig config_;
  QaModel qa_;
  std::vector<qa::QaExample> train_examples_;
  std::vector<qa::QaExample> valid_examples_;
  qa::QaTrainFeatures train_;
  at::Tensor input_ids_, attention_mask_, start_positions_, end_positions_;  // [N, T] / [N]
  int64_t total_params_ = 0;
};

// `qlora train` for task qa: builds the task, runs the engine with metrics.jsonl + TensorBoard
// logging, and returns the run summary.
Json run_qa_training(const config::RunConfig& config, const std::string& resume_from);

}  // namespace qlora::tasks
