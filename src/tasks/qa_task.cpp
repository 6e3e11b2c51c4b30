#include "qlora/tasks/qa_task.h"

#include <ATen/ATen.h>

#include <algorithm>

#include "qlora/core/atomic_file.h"
#include "qlora/core/error.h"
#include "qlora/core/fs.h"
#include "qlora/core/log.h"
#include "qlora/eval/squad_metric.h"
#include "qlora/io/checkpoint.h"
#include "qlora/io/safetensors.h"
#include "qlora/peft/lora_config.h"
#include "qlora/tasks/task_runner.h"

namespace qlora::tasks {

namespace {

at::Tensor rows_tensor(const std::vector<int64_t>& values, int64_t rows, int64_t cols) {
  return at::from_blob(const_cast<int64_t*>(values.data()), {rows, cols}, at::kLong).clone();
}

}  // namespace

QaModel load_qa_model(const std::string& model_dir, const std::string& tokenizer_dir,
                      const std::string& adapter_dir, const std::string& dtype) {
  QaModel m;
  m.tokenizer = load_tokenizer(tokenizer_dir.empty() ? model_dir : tokenizer_dir);
  models::EncoderLoadOptions options;
  options.head = models::EncoderHead::kQuestionAnswering;
  m.model = std::make_unique<models::EncoderModel>(models::load_encoder(model_dir, options));
  check_vocab_size(*m.tokenizer, m.model->config.vocab_size, model_dir);
  const at::ScalarType type = parse_dtype_name(dtype);
  if (type != at::kFloat) m.model->to(type);
  m.view = peft::peft_view(*m.model);
  if (!adapter_dir.empty()) {
    m.adapter = peft::load_adapter(m.view, adapter_dir, {/*is_trainable=*/false});
    m.has_adapter = true;
  }
  return m;
}

int64_t max_window(const models::EncoderModel& model) {
  const auto& c = model.config;
  return c.roberta_positions ? c.max_position_embeddings - c.pad_token_id - 1 : c.max_position_embeddings;
}

QaPredictions predict_qa(const QaModel& qa_model, const std::vector<qa::QaExample>& examples,
                         const QaPredictOptions& options) {
  // run_qa: max_seq_length = min(requested, what the model's positions allow).
  qa::QaFeatureOptions fo = options.features;
  if (fo.max_seq_length > max_window(*qa_model.model)) {
    fo.max_seq_length = max_window(*qa_model.model);
    log::warn("windows shortened to " + std::to_string(fo.max_seq_length) + " tokens, the model's maximum");
  }
  if (fo.doc_stride >= fo.max_seq_length / 2) {
    // The default stride (128) only suits the default window (384): keep windows overlapping by a quarter.
    fo.doc_stride = fo.max_seq_length / 4;
    log::warn("doc_stride set to " + std::to_string(fo.doc_stride) + " for windows of " +
              std::to_string(fo.max_seq_length) + " tokens");
  }
  const auto features = qa::prepare_validation_features(*qa_model.tokenizer, examples, fo);
  // The same windows with run_qa's training labels, for the evaluation loss.
  const auto labelled = qa::prepare_train_features(*qa_model.tokenizer, examples, fo);
  const int64_t n = features.inputs.size(), t = features.inputs.seq_len;
  if (labelled.inputs.size() != n) fail("internal: evaluation and label windows differ in number");
  const c10::Device device = qa_model.model->word_embeddings.device();  // where the model lives
  const at::Tensor ids = rows_tensor(features.inputs.input_ids, n, t).to(device);
  const at::Tensor mask = rows_tensor(features.inputs.attention_mask, n, t).to(device);
  const at::Tensor starts = at::tensor(labelled.start_positions, at::kLong).to(device);
  const at::Tensor ends = at::tensor(labelled.end_positions, at::kLong).to(device);
  std::vector<std::vector<float>> start_rows, end_rows;
  double loss_sum = 0;
  at::NoGradGuard no_grad;
  const nn::ForwardContext ctx;  // eval: no dropout
  for (int64_t b = 0; b < n; b += options.batch_size) {
    const int64_t e = std::min(n, b + options.batch_size);
    const auto logits =
        models::qa_forward(*qa_model.model, {ids.slice(0, b, e), mask.slice(0, b, e), {}}, ctx);
    loss_sum +=
        models::qa_loss(logits.start, logits.end, starts.slice(0, b, e), ends.slice(0, b, e)).item<double>() *
        static_cast<double>(e - b);
    const at::Tensor s = logits.start.to(at::kCPU).to(at::kFloat).contiguous(),
                     en = logits.end.to(at::kCPU).to(at::kFloat).contiguous();
    for (int64_t r = 0; r < e - b; ++r) {
      start_rows.emplace_back(s[r].data_ptr<float>(), s[r].data_ptr<float>() + t);
      end_rows.emplace_back(en[r].data_ptr<float>(), en[r].data_ptr<float>() + t);
    }
  }
  QaPredictions out;
  out.answers = qa::postprocess_qa_predictions(examples, features, start_rows, end_rows, options.postprocess);
  out.loss = n > 0 ? loss_sum / static_cast<double>(n) : 0.0;
  out.features = n;
  return out;
}

Json score_qa(const std::vector<qa::QaExample>& examples, const QaPredictions& predictions, bool v2,
              const std::string& normalize, const std::string& lang) {
  std::vector<eval::QaReference> refs;
  for (const auto& ex : examples) {
    eval::QaReference r;
    r.id = ex.id;
    for (const auto& a : ex.answers) r.answers.push_back(a.text);
    r.is_impossible = ex.is_impossible || ex.answers.empty();
    refs.push_back(std::move(r));
  }
  std::vector<eval::QaPrediction> preds;
  for (const auto& p : predictions.answers) preds.push_back({p.id, p.prediction_text, 0.0});
  eval::SquadMetricOptions o;
  o.version = v2 ? eval::SquadVersion::v2 : eval::SquadVersion::v1;
  o.normalize = eval::parse_normalization(normalize);
  o.lang = lang;
  const Json scores = eval::squad_metric(refs, preds, o).to_json();
  Json out = {{"loss", predictions.loss}};
  out["exact"] = scores.contains("exact_match") ? scores["exact_match"] : scores["exact"];
  out["f1"] = scores["f1"];
  return out;
}

QaTrainTask::QaTrainTask(const config::RunConfig& config) : config_(config) {
  if (config_.model.path.empty()) fail("config key 'model.path' is required to train");
  if (config_.data.train_file.empty()) fail("config key 'data.train_file' is required to train");
  const ops::DeviceInfo device = training_device(config_);
  log::info("device: " + ops::device_summary(device));
  qa_ = load_qa_model(config_.model.path, config_.model.tokenizer, "", training_dtype(config_, device));
  qa_.model->config.attn_implementation =
      nn::parse_attn_implementation(config_.model.attn_implementation, "model.attn_implementation");
  for (const auto& p : qa_.view.parameters) total_params_ += p.second->numel();
  apply_quantization(config_, qa_.view);

  if (config_.adapter.type == "lora") {
    if (!config_.adapter.resume_adapter.empty()) {
      qa_.adapter = peft::load_adapter(qa_.view, config_.adapter.resume_adapter, {/*is_trainable=*/true});
      log::info("continuing adapter " + config_.adapter.resume_adapter);
    } else {
      peft::LoraConfig lora = peft::lora_config_from_section(config_.adapter);
      lora.task_type = "QUESTION_ANS";
      lora.base_model_name_or_path = config_.model.path;
      qa_.adapter = peft::attach_lora(qa_.view, lora, static_cast<uint64_t>(config_.train.seed));
    }
    qa_.has_adapter = true;
    log::info(qa_.adapter.trainable_line());
  } else {
    for (auto& p : qa_.view.parameters) p.second->set_requires_grad(true);
    log::info("full fine-tuning: " + std::to_string(total_params_) + " trainable parameters");
  }

  peft::move_to_device(qa_.view, device.device);  // after quantizing and attaching: every tensor once

  const qa::QaFeatureOptions fo{config_.data.max_seq_length, config_.data.doc_stride};
  if (fo.max_seq_length > max_window(*qa_.model)) {
    fail("config key 'data.max_seq_length' is " + std::to_string(fo.max_seq_length) + " but " +
         config_.model.path + " has positions for " + std::to_string(max_window(*qa_.model)) + " tokens");
  }
  train_examples_ = qa::read_qa_examples(config_.data.train_file);
  if (config_.data.max_samples > 0 &&
      static_cast<int64_t>(train_examples_.size()) > config_.data.max_samples) {
    train_examples_.resize(static_cast<size_t>(config_.data.max_samples));
  }
  train_ = qa::prepare_train_features(*qa_.tokenizer, train_examples_, fo);
  const int64_t n = train_.inputs.size(), t = train_.inputs.seq_len;
  input_ids_ = rows_tensor(train_.inputs.input_ids, n, t);
  attention_mask_ = rows_tensor(train_.inputs.attention_mask, n, t);
  start_positions_ = at::tensor(train_.start_positions, at::kLong);
  end_positions_ = at::tensor(train_.end_positions, at::kLong);
  for (at::Tensor* t : {&input_ids_, &attention_mask_, &start_positions_, &end_positions_})
    *t = t->to(device.device);
  log::info("train: " + std::to_string(train_examples_.size()) + " questions -> " + std::to_string(n) +
            " windows of " + std::to_string(t) + " tokens");
  if (!config_.data.valid_file.empty()) {
    valid_examples_ = qa::read_qa_examples(config_.data.valid_file);
    log::info("valid: " + std::to_string(valid_examples_.size()) + " questions");
  }
}

train::MicroBatchLoss QaTrainTask::train_loss(const std::vector<size_t>& indices,
                                              const nn::ForwardContext& ctx) {
  const at::Tensor idx =
      at::tensor(std::vector<int64_t>(indices.begin(), indices.end()), at::kLong).to(input_ids_.device());
  const at::Tensor mask = attention_mask_.index_select(0, idx);
  const auto logits = models::qa_forward(*qa_.model, {input_ids_.index_select(0, idx), mask, {}}, ctx);
  const at::Tensor loss = models::qa_loss(logits.start, logits.end, start_positions_.index_select(0, idx),
                                          end_positions_.index_select(0, idx));
  return {loss, mask.sum().item<int64_t>()};
}

Json QaTrainTask::evaluate() {
  if (valid_examples_.empty()) return Json::object();
  QaPredictOptions o;
  o.features = {config_.data.max_seq_length, config_.data.doc_stride};
  o.postprocess.version_2_with_negative = config_.data.version_2_with_negative;
  o.batch_size = std::max<int64_t>(1, config_.train.micro_batch_size * 2);
  const auto predictions = predict_qa(qa_, valid_examples_, o);
  return score_qa(valid_examples_, predictions, config_.data.version_2_with_negative, "squad", "vi");
}

train::NamedTensorRefs QaTrainTask::trainable_parameters() {
  train::NamedTensorRefs out;
  if (qa_.has_adapter) {
    for (const auto& t : qa_.adapter.trainable) out.emplace_back(t.key, *t.tensor);
  } else {
    for (const auto& p : qa_.view.parameters) out.emplace_back(p.first, *p.second);
  }
  return out;
}

void QaTrainTask::save_model(const std::string& dir) {
  if (qa_.has_adapter) {
    peft::save_adapter(dir, qa_.view, qa_.adapter);
    return;
  }
  save_full_model(dir, qa_.view.parameters, config_);
}

void QaTrainTask::load_model(const std::string& dir) {
  at::NoGradGuard no_grad;
  if (qa_.has_adapter) {
    // Copy into the tensors the optimizer already holds; re-attaching would replace them.
    const auto file = SafetensorsFile::open(fsys::join(dir, "adapter_model.safetensors"));
    for (const auto& t : qa_.adapter.trainable) t.tensor->copy_(file.tensor(peft::kPeftKeyPrefix + t.key));
    return;
  }
  const auto checkpoint = open_checkpoint(dir);
  for (const auto& p : qa_.view.parameters) p.second->copy_(checkpoint.tensor(p.first));
}

Json QaTrainTask::describe() const {
  Json out = {{"total_parameters", total_params_},
              {"train_questions", train_examples_.size()},
              {"train_windows", train_.inputs.size()},
              {"valid_questions", valid_examples_.size()}};
  if (qa_.has_adapter) {
    out["trainable_parameters"] = qa_.adapter.trainable_params;
    out["trainable_percent"] = qa_.adapter.trainable_percent();
    out["adapted_modules"] = qa_.adapter.adapted.size();
  } else {
    out["trainable_parameters"] = total_params_;
    out["trainable_percent"] = 100.0;
  }
  return out;
}

Json run_qa_training(const config::RunConfig& config, const std::string& resume_from) {
  QaTrainTask task(config);
  return run_task_training(task, config, resume_from, [&task] { return task.describe(); });
}

}  // namespace qlora::tasks
