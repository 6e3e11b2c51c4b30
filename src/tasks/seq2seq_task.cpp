#include "qlora/tasks/seq2seq_task.h"

#include <ATen/ATen.h>

#include <algorithm>

#include "qlora/core/error.h"
#include "qlora/core/fs.h"
#include "qlora/core/log.h"
#include "qlora/eval/text_metric.h"
#include "qlora/infer/seq2seq_generate.h"
#include "qlora/io/checkpoint.h"
#include "qlora/io/hf_config.h"
#include "qlora/io/safetensors.h"
#include "qlora/peft/lora_config.h"
#include "qlora/tasks/sft_task.h"
#include "qlora/tasks/task_runner.h"

namespace qlora::tasks {

namespace {

constexpr int64_t kIgnore = -100;

std::string fill(const std::string& format, const std::string& key, const std::string& value) {
  std::string out = format;
  const std::string slot = "{" + key + "}";
  for (size_t at = out.find(slot); at != std::string::npos; at = out.find(slot, at + value.size()))
    out.replace(at, slot.size(), value);
  return out;
}

// encode(text) with EOS, cut to `max_len` keeping the EOS last.
std::vector<int64_t> encode_truncated(const Tokenizer& tok, const std::string& text, int64_t max_len) {
  std::vector<int64_t> ids = tok.encode(text, /*add_special_tokens=*/true).ids;
  if (static_cast<int64_t>(ids.size()) > max_len) {
    const int64_t eos = ids.back();
    ids.resize(static_cast<size_t>(max_len));
    ids.back() = eos;
  }
  return ids;
}

at::Tensor padded(const std::vector<const std::vector<int64_t>*>& rows, int64_t pad, at::Tensor* mask) {
  int64_t T = 1;
  for (const auto* r : rows) T = std::max<int64_t>(T, static_cast<int64_t>(r->size()));
  const int64_t B = static_cast<int64_t>(rows.size());
  at::Tensor out = at::full({B, T}, pad, at::kLong);
  if (mask) *mask = at::zeros({B, T}, at::kLong);
  for (int64_t b = 0; b < B; ++b) {
    const auto& r = *rows[static_cast<size_t>(b)];
    const int64_t n = static_cast<int64_t>(r.size());
    if (n == 0) continue;
    out[b].slice(0, 0, n).copy_(at::tensor(r, at::kLong));
    if (mask) (*mask)[b].slice(0, 0, n).fill_(1);
  }
  return out;
}

}  // namespace

T5Bundle load_t5_bundle(const std::string& model_dir, const std::string& tokenizer_dir,
                        const std::string& adapter_dir, const std::string& dtype, bool tokenizer_optional) {
  T5Bundle b;
  const std::string tokenizer_path = tokenizer_dir.empty() ? model_dir : tokenizer_dir;
  if (!tokenizer_optional || has_tokenizer_files(tokenizer_path))
    b.tokenizer = load_tokenizer(tokenizer_path);
  b.model = std::make_unique<models::T5Model>(models::load_t5(model_dir));
  if (b.tokenizer) check_vocab_size(*b.tokenizer, b.model->config.vocab_size, model_dir);
  const at::ScalarType type = parse_dtype_name(dtype);
  if (type != at::kFloat) b.model->to(type);
  b.view = peft::peft_view(*b.model);
  if (!adapter_dir.empty()) {
    b.adapter = peft::load_adapter(b.view, adapter_dir, {/*is_trainable=*/false});
    b.has_adapter = true;
  }
  return b;
}

std::vector<Seq2SeqSample> read_seq2seq_samples(const std::string& path, const config::RunConfig& c,
                                                const Tokenizer& tokenizer) {
  std::vector<Seq2SeqSample> out;
  int64_t truncated = 0;
  for_each_jsonl(path, [&](const Json& r, int64_t line) {
    if (c.data.max_samples > 0 && static_cast<int64_t>(out.size()) >= c.data.max_samples) return;
    for (const char* key : {"source", "target"})
      if (!r.contains(key) || !r[key].is_string())
        fail(path + ":" + std::to_string(line) + ": missing string field '" + key +
             "' (pairs JSONL from `qlora prepare pairs`)");
    Seq2SeqSample s;
    s.source = fill(c.data.source_template, "source", r["source"].get<std::string>());
    s.target = fill(c.data.target_template, "target", r["target"].get<std::string>());
    const auto full_source = tokenizer.encode(s.source, true).ids.size();
    s.input_ids = encode_truncated(tokenizer, s.source, c.data.max_seq_length);
    s.labels = encode_truncated(tokenizer, s.target, c.data.max_target_length);
    if (full_source > s.input_ids.size()) ++truncated;
    out.push_back(std::move(s));
  });
  log::info(path + ": " + std::to_string(out.size()) + " pairs (" + std::to_string(truncated) +
            " sources truncated to " + std::to_string(c.data.max_seq_length) + " tokens)");
  if (out.empty()) fail(path + ": no pairs");
  return out;
}

std::vector<std::string> generate_texts(const T5Bundle& t5, const std::vector<Seq2SeqSample>& samples,
                                        const config::GenerationSection& g, int64_t batch_size) {
  GenerationConfig gen;
  gen.eos_token_ids = {t5.tokenizer->special_ids().eos};
  gen.pad_token_id = t5.model->config.pad_token_id;
  gen.decoder_start_token_id = t5.model->config.decoder_start_token_id;
  gen.max_new_tokens = g.max_new_tokens;
  gen.num_beams = g.num_beams;
  gen.length_penalty = g.length_penalty;
  gen.no_repeat_ngram_size = g.no_repeat_ngram_size;
  std::vector<std::string> texts;
  for (size_t i = 0; i < samples.size(); i += static_cast<size_t>(batch_size)) {
    std::vector<const std::vector<int64_t>*> rows;
    for (size_t j = i; j < std::min(samples.size(), i + static_cast<size_t>(batch_size)); ++j)
      rows.push_back(&samples[j].input_ids);
    at::Tensor mask;
    const at::Tensor ids = padded(rows, t5.model->config.pad_token_id, &mask);
    const auto out = infer::seq2seq_generate(*t5.model, ids, mask, gen);
    for (int64_t b = 0; b < out.sequences.size(0); ++b) {
      const at::Tensor row = out.sequences[b].contiguous();
      std::vector<int64_t> seq(row.data_ptr<int64_t>(), row.data_ptr<int64_t>() + row.numel());
      texts.push_back(t5.tokenizer->decode(seq, /*skip_special_tokens=*/true));
    }
  }
  return texts;
}

nn::LmLossSum seq2seq_loss_sum(const models::T5Model& model, const models::Seq2SeqInputs& inputs,
                               int64_t chunk_tokens, const nn::ForwardContext& ctx) {
  if (!inputs.labels.defined()) fail("seq2seq_loss_sum: labels are required");
  const at::Tensor hidden = models::seq2seq_hidden_states(model, inputs, ctx);  // [B, T, C]
  const models::T5Model* m = &model;  // the model outlives the backward that reruns the head
  const nn::OutputHead head = [m, ctx](const at::Tensor& x) { return models::output_head(*m, x, ctx); };
  nn::LmLossOptions options;
  options.chunk_tokens = chunk_tokens;
  options.upcast = false;
  return nn::lm_loss_sum(hidden, inputs.labels, head, options, ctx);
}

Seq2SeqTrainTask::Seq2SeqTrainTask(const config::RunConfig& config) : config_(config) {
  if (config_.data.train_file.empty()) fail("config key 'data.train_file' is required to train");
  const ops::DeviceInfo device = training_device(config_);
  log::info("device: " + ops::device_summary(device));
  t5_ = load_t5_bundle(config_.model.path, config_.model.tokenizer, "", training_dtype(config_, device));
  t5_.model->config.attn_implementation =
      nn::parse_attn_implementation(config_.model.attn_implementation, "model.attn_implementation");
  for (const auto& p : t5_.view.parameters) total_params_ += p.second->numel();
  apply_quantization(config_, t5_.view);
  if (config_.adapter.type == "lora") {
    if (!config_.adapter.resume_adapter.empty()) {
      t5_.adapter = peft::load_adapter(t5_.view, config_.adapter.resume_adapter, {/*is_trainable=*/true});
      log::info("continuing adapter " + config_.adapter.resume_adapter);
    } else {
      peft::LoraConfig lora = peft::lora_config_from_section(config_.adapter);
      lora.task_type = "SEQ_2_SEQ_LM";
      lora.base_model_name_or_path = config_.model.path;
      t5_.adapter = peft::attach_lora(t5_.view, lora, static_cast<uint64_t>(config_.train.seed));
    }
    t5_.has_adapter = true;
    log::info(t5_.adapter.trainable_line());
  } else {
    for (auto& p : t5_.view.parameters) p.second->set_requires_grad(true);
  }
  peft::move_to_device(t5_.view, device.device);  // after quantizing and attaching: every tensor once
  train_ = read_seq2seq_samples(config_.data.train_file, config_, *t5_.tokenizer);
  if (!config_.data.valid_file.empty())
    valid_ = read_seq2seq_samples(config_.data.valid_file, config_, *t5_.tokenizer);
}

train::MicroBatchLoss Seq2SeqTrainTask::train_loss(const std::vector<size_t>& indices,
                                                   const nn::ForwardContext& ctx) {
  std::vector<const std::vector<int64_t>*> src, tgt;
  for (size_t i : indices) {
    src.push_back(&train_[i].input_ids);
    tgt.push_back(&train_[i].labels);
  }
  at::Tensor mask;
  const c10::Device device = t5_.model->shared.device();
  const at::Tensor ids = padded(src, t5_.model->config.pad_token_id, &mask).to(device);
  mask = mask.to(device);
  const at::Tensor labels = padded(tgt, kIgnore, nullptr).to(device);
  const auto loss =
      seq2seq_loss_sum(*t5_.model, {ids, mask, labels, {}}, config_.train.loss_chunk_tokens, ctx);
  return {loss.sum / static_cast<double>(std::max<int64_t>(loss.count, 1)),
          mask.sum().item<int64_t>() + loss.count};
}

Json Seq2SeqTrainTask::evaluate() {
  if (valid_.empty()) return Json::object();
  at::NoGradGuard no_grad;
  const size_t bs = static_cast<size_t>(std::max<int64_t>(1, config_.train.micro_batch_size * 2));
  double total = 0;
  int64_t count = 0;
  for (size_t i = 0; i < valid_.size(); i += bs) {
    std::vector<const std::vector<int64_t>*> src, tgt;
    for (size_t j = i; j < std::min(valid_.size(), i + bs); ++j) {
      src.push_back(&valid_[j].input_ids);
      tgt.push_back(&valid_[j].labels);
    }
    at::Tensor mask;
    const c10::Device device = t5_.model->shared.device();
    const at::Tensor ids = padded(src, t5_.model->config.pad_token_id, &mask).to(device);
    mask = mask.to(device);
    const at::Tensor labels = padded(tgt, kIgnore, nullptr).to(device);
    const auto loss =
        seq2seq_loss_sum(*t5_.model, {ids, mask, labels, {}}, config_.train.loss_chunk_tokens, {});
    total += loss.sum.item<double>();
    count += loss.count;
  }
  Json result = {{"loss", count ? total / static_cast<double>(count) : 0.0}};
  std::string metric = config_.generation.metric == "auto" ? "rouge" : config_.generation.metric;
  if (metric != "none") {
    const auto texts = generate_texts(t5_, valid_, config_.generation, static_cast<int64_t>(bs));
    std::vector<std::vector<std::string>> refs;
    for (const auto& s : valid_) refs.push_back({s.target});
    eval::TextMetricOptions mo;
    const Json scores = eval::score_text_metric(metric, texts, refs, mo);
    for (const char* key : {"rouge1", "rouge2", "rougeL", "rougeLsum", "bleu", "chrf"})
      if (scores.contains(key)) result[key] = scores[key];
  }
  return result;
}

train::NamedTensorRefs Seq2SeqTrainTask::trainable_parameters() {
  train::NamedTensorRefs out;
  if (t5_.has_adapter) {
    for (const auto& t : t5_.adapter.trainable) out.emplace_back(t.key, *t.tensor);
  } else {
    for (const auto& p : t5_.view.parameters) out.emplace_back(p.first, *p.second);
  }
  return out;
}

void Seq2SeqTrainTask::save_model(const std::string& dir) {
  if (t5_.has_adapter) {
    peft::save_adapter(dir, t5_.view, t5_.adapter);
    return;
  }
  save_full_model(dir, t5_.view.parameters, config_);
}

void Seq2SeqTrainTask::load_model(const std::string& dir) {
  at::NoGradGuard no_grad;
  if (t5_.has_adapter) {
    const auto file = SafetensorsFile::open(fsys::join(dir, "adapter_model.safetensors"));
    for (const auto& t : t5_.adapter.trainable) t.tensor->copy_(file.tensor(peft::kPeftKeyPrefix + t.key));
    return;
  }
  const auto checkpoint = open_checkpoint(dir);
  for (const auto& p : t5_.view.parameters) p.second->copy_(checkpoint.tensor(p.first));
}

Json Seq2SeqTrainTask::describe() const {
  return {{"total_parameters", total_params_},
          {"trainable_parameters", t5_.has_adapter ? t5_.adapter.trainable_params : total_params_},
          {"train_pairs", train_.size()},
          {"valid_pairs", valid_.size()}};
}

Json run_seq2seq_training(const config::RunConfig& config, const std::string& resume_from) {
  Seq2SeqTrainTask task(config);
  return run_task_training(task, config, resume_from, [&task] { return task.describe(); });
}

}  // namespace qlora::tasks
