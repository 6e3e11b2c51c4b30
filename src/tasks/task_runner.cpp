#include "qlora/tasks/task_runner.h"

#include <ATen/ATen.h>

#include "qlora/core/atomic_file.h"
#include "qlora/core/error.h"
#include "qlora/core/fs.h"
#include "qlora/core/log.h"
#include "qlora/io/checkpoint.h"
#include "qlora/train/metrics_writer.h"

namespace qlora::tasks {

at::ScalarType parse_dtype_name(const std::string& dtype) {
  if (dtype == "fp32") return at::kFloat;
  if (dtype == "bf16") return at::kBFloat16;
  if (dtype == "fp16") return at::kHalf;
  fail("unknown dtype '" + dtype + "' (fp32, bf16, fp16)");
}

ops::DeviceInfo training_device(const config::RunConfig& config) {
  return ops::describe_device(ops::resolve_device(config.train.device, "config key 'train.device'"));
}

std::string training_dtype(const config::RunConfig& config, const ops::DeviceInfo& device) {
  return ops::resolve_model_dtype(config.model.dtype, device, "config key 'model.dtype'");
}

void copy_model_side_files(const std::string& from_dir, const std::string& to_dir) {
  static const char* const kFiles[] = {"config.json",
                                       "generation_config.json",
                                       "tokenizer_config.json",
                                       "tokenizer.json",
                                       "special_tokens_map.json",
                                       "sentencepiece.bpe.model",
                                       "spiece.model",
                                       "tokenizer.model",
                                       "vocab.txt",
                                       "vocab.json",
                                       "merges.txt",
                                       "added_tokens.json",
                                       "chat_template.jinja"};
  for (const char* name : kFiles) {
    const std::string src = fsys::join(from_dir, name);
    if (fsys::exists(src)) write_file_atomic(fsys::join(to_dir, name), read_file(src));
  }
}

std::string torch_dtype_name(at::ScalarType dtype) {
  if (dtype == at::kFloat) return "float32";
  if (dtype == at::kBFloat16) return "bfloat16";
  if (dtype == at::kHalf) return "float16";
  fail(std::string("no config.json name for dtype ") + c10::toString(dtype));
}

Json config_with_dtype(const std::string& config_text, at::ScalarType dtype, const std::string& source) {
  Json config;
  try {
    config = Json::parse(config_text);
  } catch (const Json::exception& e) {
    fail_at(source, -1, std::string("not valid JSON: ") + e.what());
  }
  if (!config.is_object()) fail_at(source, -1, "expected a JSON object");
  config["dtype"] = torch_dtype_name(dtype);
  config["torch_dtype"] = torch_dtype_name(dtype);
  return config;
}

void save_full_model(const std::string& dir,
                     const std::vector<std::pair<std::string, at::Tensor*>>& parameters,
                     const config::RunConfig& config) {
  NamedTensors tensors;
  at::ScalarType dtype = at::kFloat;
  bool seen_float = false;
  for (const auto& [name, tensor] : parameters) {
    if (!tensor->defined()) continue;
    if (!seen_float && at::isFloatingType(tensor->scalar_type())) {
      dtype = tensor->scalar_type();
      seen_float = true;
    }
    tensors.emplace_back(name, tensor->detach().contiguous());
  }
  save_checkpoint(dir, tensors);
  copy_model_side_files(config.model.path, dir);
  const std::string& tok = config.model.tokenizer;
  if (!tok.empty() && tok != config.model.path) copy_model_side_files(tok, dir);
  const std::string config_path = fsys::join(dir, "config.json");
  if (fsys::exists(config_path))
    write_file_atomic(config_path,
                      config_with_dtype(read_file(config_path), dtype, config_path).dump(2) + "\n");
}

void skip_dense_modules(models::QuantizeOptions& options, const peft::PeftModelView& view) {
  options.output_module = view.output_embeddings;
  options.skip_modules.insert(options.skip_modules.end(), view.keep_dense.begin(), view.keep_dense.end());
}

models::QuantizeReport apply_quantization(const config::RunConfig& config, peft::PeftModelView& view) {
  const auto& q = config.quantization;
  models::QuantizeOptions o;
  o.load_in_4bit = q.load_in_4bit;
  o.load_in_8bit = q.load_in_8bit;
  o.quant_type = ops::parse_quant_type(q.quant_type, "config key 'quantization.quant_type'");
  o.blocksize = q.blocksize;
  o.double_quant = q.double_quant;
  o.compute_dtype = parse_dtype_name(q.compute_dtype);
  o.int8_threshold = q.int8_threshold;
  o.skip_modules = q.skip_modules;
  if (config.adapter.type == "lora")
    o.skip_modules.insert(o.skip_modules.end(), config.adapter.modules_to_save.begin(),
                          config.adapter.modules_to_save.end());
  skip_dense_modules(o, view);
  models::QuantizeReport pre;  // linears a bitsandbytes checkpoint stored quantized
  for (const auto& [module, linear] : view.linears)
    if (linear->base.quantized()) pre.quantized.push_back(module);
  if (!o.load_in_4bit && !o.load_in_8bit && pre.quantized.empty()) return {};
  if (config.adapter.type == "full") {
    fail(pre.quantized.empty()
             ? "config key 'quantization': a quantized base cannot be fully fine-tuned"
             : config.model.path +
                   ": the checkpoint is quantized (bitsandbytes); full fine-tuning needs dense "
                   "weights (qlora export --model ... --out ... writes a dequantized copy)");
  }
  if (!o.load_in_4bit && !o.load_in_8bit) {
    for (const auto& [module, linear] : view.linears) {
      if (!linear->base.quantized()) continue;
      pre.quantized_params += linear->base.in_features() * linear->base.out_features();
      pre.quantized_bytes += models::quantized_state_bytes(linear->base);
    }
    log::info("the checkpoint is pre-quantized (bitsandbytes): " + std::to_string(pre.quantized.size()) +
              " linear layers stay quantized");
    return pre;
  }
  auto report = models::quantize_linears(view.linears, o);
  log::info(
      "quantized " + std::to_string(report.quantized.size()) + " linear layers to " +
      (o.load_in_4bit ? q.quant_type + (q.double_quant ? " + double quant" : "") : std::string("int8")) +
      ": " + std::to_string(report.quantized_params) + " parameters in " +
      std::to_string(report.quantized_bytes) +
      " bytes; kept dense: " + std::to_string(report.skipped.size()));
  return report;
}

train::TrainerOptions trainer_options(const config::RunConfig& config) {
  train::TrainerOptions o;
  const auto& t = config.train;
  o.output_dir = t.output_dir;
  o.epochs = t.epochs;
  o.max_steps = t.max_steps;
  o.micro_batch_size = t.micro_batch_size;
  o.gradient_accumulation_steps = t.gradient_accumulation_steps;
  o.learning_rate = t.learning_rate;
  o.weight_decay = t.weight_decay;
  o.adam_beta1 = t.adam_beta1;
  o.adam_beta2 = t.adam_beta2;
  o.adam_epsilon = t.adam_epsilon;
  o.lr_scheduler = t.lr_scheduler;
  o.warmup_steps = t.warmup_steps;
  o.warmup_ratio = t.warmup_ratio;
  o.max_grad_norm = t.max_grad_norm;
  o.seed = t.seed;
  o.logging_steps = t.logging_steps;
  o.eval_steps = t.eval_steps;
  o.save_steps = t.save_steps;
  o.save_total_limit = t.save_total_limit;
  o.metric_for_best = t.metric_for_best;
  o.early_stopping_patience = t.early_stopping_patience;
  o.gradient_checkpointing = t.gradient_checkpointing;
  o.mixed_precision = ops::resolve_mixed_precision(t.mixed_precision, training_device(config),
                                                   "config key 'train.mixed_precision'");
  o.optim = t.optim;
  return o;
}

Json run_task_training(train::TrainTask& task, const config::RunConfig& config,
                       const std::string& resume_from, const std::function<Json()>& describe) {
  const train::TrainerOptions o = trainer_options(config);
  fsys::create_directories(o.output_dir);
  config::RunConfig copy = config;
  write_file_atomic(fsys::join(o.output_dir, "run_config.json"),
                    config::bind_schema(copy).to_json().dump(2) + "\n");
  train::MetricsWriter writer(o.output_dir);
  const auto sink = [&writer](const Json& record) {
    train::MetricValues values;
    for (const auto& [key, value] : record.items()) {
      if (key == "step" || key == "epoch" || key == "split" || !value.is_number()) continue;
      values.emplace_back(key, value.get<double>());
    }
    const auto split = record["split"] == "eval" ? train::Split::kEval : train::Split::kTrain;
    writer.log(split, record["step"].get<int64_t>(), record["epoch"].get<double>(), values);
    if (split == train::Split::kEval)
      log::info("eval at step " + record["step"].dump() + ": " + record.dump());
  };
  const auto summary = train::run_training(task, o, resume_from, sink,
                                           [&writer](int64_t step) { writer.truncate_after_step(step); });
  writer.close();
  Json out = summary.to_json();
  if (describe) out["model"] = describe();
  out["metrics_file"] = writer.metrics_path();
  out["tensorboard_file"] = writer.event_path();
  return out;
}

}  // namespace qlora::tasks
