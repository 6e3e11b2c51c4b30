#include "qlora/tasks/sft_task.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>

#include "qlora/core/error.h"
#include "qlora/core/fs.h"
#include "qlora/core/log.h"
#include "qlora/io/checkpoint.h"
#include "qlora/io/safetensors.h"
#include "qlora/peft/lora_config.h"
#include "qlora/tasks/task_runner.h"

namespace qlora::tasks {

CausalLmBundle load_causal_lm_bundle(const std::string& model_dir, const std::string& tokenizer_dir,
                                     const std::string& adapter_dir, const std::string& dtype, bool merge,
                                     const models::QuantizeOptions& quantize, bool tokenizer_optional) {
  CausalLmBundle b;
  const std::string tokenizer_path = tokenizer_dir.empty() ? model_dir : tokenizer_dir;
  if (!tokenizer_optional || has_tokenizer_files(tokenizer_path))
    b.tokenizer = load_tokenizer(tokenizer_path);
  models::CausalLmLoadOptions options;
  options.dtype = parse_dtype_name(dtype);
  b.model = models::load_causal_lm(model_dir, options);
  if (b.tokenizer) check_vocab_size(*b.tokenizer, b.model->vocab_size(), model_dir);
  b.view = peft::peft_view(*b.model);
  if (quantize.load_in_4bit || quantize.load_in_8bit) {
    models::QuantizeOptions q = quantize;
    skip_dense_modules(q, b.view);
    const auto report = models::quantize_linears(b.view.linears, q);
    log::info("quantized " + std::to_string(report.quantized.size()) + " linear layers (" +
              std::to_string(report.quantized_bytes) + " bytes)");
  }
  if (!adapter_dir.empty()) {
    b.adapter = peft::load_adapter(b.view, adapter_dir, {/*is_trainable=*/false});
    b.has_adapter = true;
    if (merge) peft::merge_and_unload(b.view);
  }
  return b;
}

bool has_tokenizer_files(const std::string& dir) {
  for (const char* name :
       {"tokenizer.json", "tokenizer.model", "spiece.model", "sentencepiece.bpe.model", "vocab.json"}) {
    if (fsys::exists(fsys::join(dir, name))) return true;
  }
  return false;
}

SftBatch collate_sft(const std::vector<const data::SftSample*>& samples, int64_t pad_id) {
  const int64_t B = static_cast<int64_t>(samples.size());
  int64_t T = 0;
  bool packed = false;
  for (const auto* s : samples) {
    T = std::max<int64_t>(T, static_cast<int64_t>(s->input_ids.size()));
    packed = packed || !s->segment_ids.empty();
  }
  SftBatch batch;
  batch.input_ids = at::full({B, T}, pad_id, at::kLong);
  batch.attention_mask = at::zeros({B, T}, at::kLong);
  batch.labels = at::full({B, T}, data::kIgnoreIndex, at::kLong);
  if (packed) batch.segment_ids = at::full({B, T}, -1, at::kLong);  // padding: a segment of its own
  auto ids = batch.input_ids.accessor<int64_t, 2>();
  auto mask = batch.attention_mask.accessor<int64_t, 2>();
  auto labels = batch.labels.accessor<int64_t, 2>();
  at::Tensor segments_storage = packed ? batch.segment_ids : at::zeros({1, 1}, at::kLong);
  auto segments = segments_storage.accessor<int64_t, 2>();
  for (int64_t b = 0; b < B; ++b) {
    const auto& s = *samples[static_cast<size_t>(b)];
    for (size_t t = 0; t < s.input_ids.size(); ++t) {
      ids[b][static_cast<int64_t>(t)] = s.input_ids[t];
      mask[b][static_cast<int64_t>(t)] = 1;
      labels[b][static_cast<int64_t>(t)] = s.labels[t];
      if (packed) segments[b][static_cast<int64_t>(t)] = s.segment_ids.empty() ? 0 : s.segment_ids[t];
    }
    batch.tokens += static_cast<int64_t>(s.input_ids.size());
  }
  return batch;
}

SftBatch on_device(SftBatch batch, c10::Device device) {
  for (at::Tensor* t : {&batch.input_ids, &batch.attention_mask, &batch.labels, &batch.segment_ids})
    if (t->defined()) *t = t->to(device);
  return batch;
}

std::pair<at::Tensor, int64_t> causal_lm_loss_sum(const at::Tensor& logits, const at::Tensor& labels) {
  // Position t predicts token t + 1: the labels are shifted (transformers' ForCausalLMLoss pads them),
  // the logits are neither sliced nor copied whole; only the label positions' rows are upcast.
  const auto identity = [](const at::Tensor& x) { return x; };
  const nn::LmLossSum loss = nn::lm_loss_sum(logits, nn::shift_labels_left(labels), identity, {}, {});
  return {loss.sum, loss.count};
}

nn::LmLossSum causal_lm_loss_sum(models::CausalLM& model, const models::CausalLmInputs& inputs,
                                 const at::Tensor& labels, int64_t chunk_tokens,
                                 const nn::ForwardContext& ctx) {
  const at::Tensor hidden = model.hidden_states(inputs, nullptr, ctx);  // [B, T, C]
  models::CausalLM* m = &model;  // the model outlives the backward that reruns the head
  const nn::OutputHead head = [m, ctx](const at::Tensor& x) { return m->output_head(x, ctx); };
  nn::LmLossOptions options;
  options.chunk_tokens = chunk_tokens;
  return nn::lm_loss_sum(hidden, nn::shift_labels_left(labels), head, options, ctx);
}

namespace {

data::PromptTemplate make_template(const config::DataSection& d) {
  const auto& names = data::PromptTemplate::names();
  if (std::find(names.begin(), names.end(), d.prompt_template) != names.end())
    return data::PromptTemplate::named(d.prompt_template);
  if (d.prompt_template.find('{') == std::string::npos)
    return data::PromptTemplate::named(d.prompt_template);  // an unknown name: named() suggests one
  return data::PromptTemplate::custom(d.prompt_template);
}

data::SftDataset load_sft_file(const std::string& path, const config::RunConfig& c,
                               const Tokenizer& tokenizer) {
  auto records = data::read_sft_records(path, data::parse_sft_format(c.data.format));
  if (c.data.max_samples > 0 && static_cast<int64_t>(records.size()) > c.data.max_samples)
    records.resize(static_cast<size_t>(c.data.max_samples));
  if (!c.data.system_prompt.empty()) {
    if (!make_template(c.data).is_chat())
      fail("config key 'data.system_prompt' needs a chat template (chatml, llama-2); '" +
           c.data.prompt_template + "' has no system message");
    for (auto& r : records) {
      if (r.format != data::SftFormat::kChat) {
        r.messages = r.as_messages();
        r.format = data::SftFormat::kChat;
      }
      if (r.messages.empty() || r.messages.front().role != "system")
        r.messages.insert(r.messages.begin(), {"system", c.data.system_prompt});
    }
  }
  data::SftOptions o;
  o.max_seq_length = c.data.max_seq_length;
  o.train_on_inputs = c.data.train_on_inputs;
  o.add_eos = c.data.add_eos;
  o.packing = c.data.packing;
  auto dataset = data::build_sft_dataset(records, make_template(c.data), tokenizer, o);
  const auto& s = dataset.stats;
  log::info(path + ": " + std::to_string(s.records) + " records -> " + std::to_string(s.samples) +
            " samples (" + std::to_string(s.truncated) + " truncated to " + std::to_string(o.max_seq_length) +
            " tokens, " + std::to_string(s.dropped) + " dropped with no response left" +
            (o.packing ? ", packed into " + std::to_string(s.rows) + " rows" : std::string()) + ")");
  if (dataset.samples.empty()) fail(path + ": no training sample left after tokenization");
  return dataset;
}

}  // namespace

SftTrainTask::SftTrainTask(const config::RunConfig& config) : config_(config) {
  if (config_.data.train_file.empty()) fail("config key 'data.train_file' is required to train");
  const ops::DeviceInfo device = training_device(config_);
  log::info("device: " + ops::device_summary(device));
  device_ = device.device;
  lm_ =
      load_causal_lm_bundle(config_.model.path, config_.model.tokenizer, "", training_dtype(config_, device));
  lm_.model->set_attn_implementation(
      nn::parse_attn_implementation(config_.model.attn_implementation, "model.attn_implementation"));
  const int64_t max_len = lm_.model->max_sequence_length();
  if (max_len > 0 && config_.data.max_seq_length > max_len)
    fail("config key 'data.max_seq_length' is " + std::to_string(config_.data.max_seq_length) + " but " +
         config_.model.path + " allows " + std::to_string(max_len) + " positions");
  for (const auto& p : lm_.view.parameters) total_params_ += p.second->numel();
  apply_quantization(config_, lm_.view);
  const auto& special = lm_.tokenizer->special_ids();
  pad_id_ = special.pad >= 0 ? special.pad : special.eos >= 0 ? special.eos : 0;

  if (config_.adapter.type == "lora") {
    if (!config_.adapter.resume_adapter.empty()) {
      lm_.adapter = peft::load_adapter(lm_.view, config_.adapter.resume_adapter, {/*is_trainable=*/true});
    } else {
      peft::LoraConfig lora = peft::lora_config_from_section(config_.adapter);
      lora.task_type = "CAUSAL_LM";
      lora.base_model_name_or_path = config_.model.path;
      lm_.adapter = peft::attach_lora(lm_.view, lora, static_cast<uint64_t>(config_.train.seed));
    }
    lm_.has_adapter = true;
    log::info(lm_.adapter.trainable_line());
  } else {
    for (auto& p : lm_.view.parameters) p.second->set_requires_grad(true);
    log::info("full fine-tuning: " + std::to_string(total_params_) + " trainable parameters");
  }
  peft::move_to_device(lm_.view, device_);  // after quantizing and attaching: every tensor once
  train_ = load_sft_file(config_.data.train_file, config_, *lm_.tokenizer);
  if (!config_.data.valid_file.empty())
    valid_ = load_sft_file(config_.data.valid_file, config_, *lm_.tokenizer);
}

train::MicroBatchLoss SftTrainTask::train_loss(const std::vector<size_t>& indices,
                                               const nn::ForwardContext& ctx) {
  std::vector<const data::SftSample*> samples;
  for (size_t i : indices) samples.push_back(&train_.samples[i]);
  const SftBatch batch = on_device(collate_sft(samples, pad_id_), device_);
  models::CausalLmInputs in;
  in.input_ids = batch.input_ids;
  in.attention_mask = batch.attention_mask;
  in.segment_ids = batch.segment_ids;
  const auto loss = causal_lm_loss_sum(*lm_.model, in, batch.labels, config_.train.loss_chunk_tokens, ctx);
  return {loss.sum / static_cast<double>(std::max<int64_t>(loss.count, 1)), batch.tokens};
}

Json SftTrainTask::evaluate() {
  if (valid_.samples.empty()) return Json::object();
  at::NoGradGuard no_grad;
  const size_t bs = static_cast<size_t>(std::max<int64_t>(1, config_.train.micro_batch_size * 2));
  double total = 0;
  int64_t count = 0;
  for (size_t i = 0; i < valid_.samples.size(); i += bs) {
    std::vector<const data::SftSample*> samples;
    for (size_t j = i; j < std::min(valid_.samples.size(), i + bs); ++j)
      samples.push_back(&valid_.samples[j]);
    const SftBatch batch = on_device(collate_sft(samples, pad_id_), device_);
    models::CausalLmInputs in;
    in.input_ids = batch.input_ids;
    in.attention_mask = batch.attention_mask;
    in.segment_ids = batch.segment_ids;
    const auto loss = causal_lm_loss_sum(*lm_.model, in, batch.labels, config_.train.loss_chunk_tokens,
                                         nn::ForwardContext{});
    total += loss.sum.item<double>();
    count += loss.count;
  }
  const double loss = count ? total / static_cast<double>(count) : 0.0;
  return {{"loss", loss}, {"perplexity", std::exp(loss)}, {"tokens", count}};
}

train::NamedTensorRefs SftTrainTask::trainable_parameters() {
  train::NamedTensorRefs out;
  if (lm_.has_adapter) {
    for (const auto& t : lm_.adapter.trainable) out.emplace_back(t.key, *t.tensor);
  } else {
    for (const auto& p : lm_.view.parameters) out.emplace_back(p.first, *p.second);
  }
  return out;
}

void SftTrainTask::save_model(const std::string& dir) {
  if (lm_.has_adapter) {
    peft::save_adapter(dir, lm_.view, lm_.adapter);
    return;
  }
  save_full_model(dir, lm_.view.parameters, config_);
}

void SftTrainTask::load_model(const std::string& dir) {
  at::NoGradGuard no_grad;
  if (lm_.has_adapter) {
    const auto file = SafetensorsFile::open(fsys::join(dir, "adapter_model.safetensors"));
    for (const auto& t : lm_.adapter.trainable) t.tensor->copy_(file.tensor(peft::kPeftKeyPrefix + t.key));
    return;
  }
  const auto checkpoint = open_checkpoint(dir);
  for (const auto& p : lm_.view.parameters) p.second->copy_(checkpoint.tensor(p.first));
}

Json SftTrainTask::describe() const {
  Json out = {{"total_parameters", total_params_},         {"train_samples", train_.stats.samples},
              {"train_truncated", train_.stats.truncated}, {"train_dropped", train_.stats.dropped},
              {"train_rows", train_.stats.rows},           {"valid_samples", valid_.stats.samples}};
  out["trainable_parameters"] = lm_.has_adapter ? lm_.adapter.trainable_params : total_params_;
  return out;
}

Json run_sft_training(const config::RunConfig& config, const std::string& resume_from) {
  SftTrainTask task(config);
  return run_task_training(task, config, resume_from, [&task] { return task.describe(); });
}

}  // namespace qlora::tasks
