// XLM-RoBERTa / RoBERTa / BERT encoders (transformers modeling_xlm_roberta.py, modeling_roberta.py,
// modeling_bert.py) with the QA and sequence-classification heads. The variants are flags of
// EncoderConfig: RoBERTa counts positions from pad_token_id + 1 and classifies with
// classifier.dense/out_proj; BERT counts positions from 0 and classifies through the pooler.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "qlora/core/error.h"
#include "qlora/core/log.h"
#include "qlora/io/checkpoint.h"
#include "qlora/models/encoder.h"
#include "qlora/models/quantize.h"
#include "qlora/nn/attention.h"
#include "qlora/nn/checkpoint.h"

namespace qlora::models {
namespace {

// Modules under the "roberta." / "bert." prefix of the HF head models.
bool is_encoder_module(const std::string& module) {
  for (const char* root : {"embeddings.", "encoder.", "pooler."}) {
    if (module.rfind(root, 0) == 0) return true;
  }
  return false;
}

enum class Presence { kRequired, kOptional, kInitIfMissing };

// One module of the table: where its weight (and bias) live in EncoderModel, and its shape.
struct ModuleSlot {
  std::string module;  // canonical name
  at::Tensor* weight = nullptr;
  at::Tensor* bias = nullptr;    // nullptr: the module has no bias (embeddings)
  nn::Linear* linear = nullptr;  // set for projections
  std::vector<int64_t> weight_shape;
  Presence presence = Presence::kRequired;
};

// THE table of names. Loading, named_parameters, named_linears and encoder_tensor_table all walk
// it, so they agree by construction. The canonical name of a module is its HF path without the
// "roberta."/"bert." prefix; head modules (qa_outputs, classifier.*) have no prefix in HF either.
std::vector<ModuleSlot> module_table(EncoderModel& m) {
  const EncoderConfig& c = m.config;
  const int64_t C = c.hidden_size, I = c.intermediate_size;
  std::vector<ModuleSlot> t;
  auto linear = [&](std::string name, nn::Linear& l, int64_t out, int64_t in,
                    Presence p = Presence::kRequired) {
    t.push_back({std::move(name), &l.base.weight, &l.base.bias, &l, {out, in}, p});
  };
  auto norm = [&](std::string name, nn::LayerNorm& n) {
    t.push_back({std::move(name), &n.weight, &n.bias, nullptr, {C}, Presence::kRequired});
  };
  auto embedding = [&](std::string name, at::Tensor& w, int64_t rows) {
    t.push_back({std::move(name), &w, nullptr, nullptr, {rows, C}, Presence::kRequired});
  };

  // Module order follows the HF class, because PEFT and the Trainer list parameters in it (and
  // clip_grad_norm sums per-tensor norms in it): XLMRobertaFor{QuestionAnswering,
  // SequenceClassification} create their head before `roberta`, RoBERTa and BERT after the body.
  const size_t body_start = t.size();
  embedding("embeddings.word_embeddings", m.word_embeddings, c.vocab_size);
  embedding("embeddings.position_embeddings", m.position_embeddings, c.max_position_embeddings);
  embedding("embeddings.token_type_embeddings", m.token_type_embeddings, c.type_vocab_size);
  norm("embeddings.LayerNorm", m.embedding_norm);
  for (size_t i = 0; i < m.layers.size(); ++i) {
    EncoderLayer& L = m.layers[i];
    const std::string p = "encoder.layer." + std::to_string(i) + ".";
    linear(p + "attention.self.query", L.query, C, C);
    linear(p + "attention.self.key", L.key, C, C);
    linear(p + "attention.self.value", L.value, C, C);
    linear(p + "attention.output.dense", L.attention_output, C, C);
    norm(p + "attention.output.LayerNorm", L.attention_norm);
    linear(p + "intermediate.dense", L.intermediate, I, C);
    linear(p + "output.dense", L.output, C, I);
    norm(p + "output.LayerNorm", L.output_norm);
  }
  switch (m.head) {
    case EncoderHead::kNone:  // XLMRobertaModel / BertModel carry a pooler by default
      linear("pooler.dense", m.pooler, C, C, Presence::kOptional);
      break;
    case EncoderHead::kQuestionAnswering:  // built with add_pooling_layer=False
      linear("qa_outputs", m.qa_outputs, 2, C, Presence::kInitIfMissing);
      break;
    case EncoderHead::kSequenceClassification:
      if (c.pooled_classifier) {
        linear("pooler.dense", m.pooler, C, C, Presence::kInitIfMissing);
        linear("classifier", m.classifier, c.num_labels, C, Presence::kInitIfMissing);
      } else {
        linear("classifier.dense", m.classifier_dense, C, C, Presence::kInitIfMissing);
        linear("classifier.out_proj", m.classifier, c.num_labels, C, Presence::kInitIfMissing);
      }
      break;
  }
  if (c.model_type == "xlm-roberta" && m.head != EncoderHead::kNone) {
    const auto head_begin = t.begin() + static_cast<std::ptrdiff_t>(body_start);
    // Everything after the last encoder layer is the head: rotate it to the front.
    auto head = std::find_if(t.begin(), t.end(), [&](const ModuleSlot& slot) {
      return slot.module.rfind("embeddings.", 0) != 0 && slot.module.rfind("encoder.", 0) != 0;
    });
    std::rotate(head_begin, head, t.end());
  }
  return t;
}

EncoderModel skeleton(const EncoderConfig& config, EncoderHead head) {
  EncoderModel m;
  m.config = config;
  m.head = head;
  m.layers.resize(static_cast<size_t>(config.num_layers));
  m.embedding_norm.eps = config.layer_norm_eps;
  for (EncoderLayer& L : m.layers) L.attention_norm.eps = L.output_norm.eps = config.layer_norm_eps;
  return m;
}

ProblemType parse_problem_type(const HfConfig& hf, int64_t num_labels) {
  if (!hf.has("problem_type")) return num_labels == 1 ? ProblemType::kRegression : ProblemType::kSingleLabel;
  const std::string p = hf.get_string("problem_type");
  if (p == "single_label_classification") return ProblemType::kSingleLabel;
  if (p == "multi_label_classification") return ProblemType::kMultiLabel;
  if (p == "regression") return ProblemType::kRegression;
  fail(hf.source() + ": problem_type '" + p +
       "' is not one of single_label_classification, multi_label_classification, regression");
}

}  // namespace

EncoderConfig EncoderConfig::from_hf_config(const HfConfig& hf) {
  EncoderConfig c;
  c.model_type = hf.model_type();
  if (c.model_type == "xlm-roberta" || c.model_type == "roberta") {
    c.roberta_positions = true;
    c.hf_prefix = "roberta.";
  } else if (c.model_type == "bert") {
    c.roberta_positions = false;
    c.hf_prefix = "bert.";
    c.pooled_classifier = true;
  } else {
    fail(hf.source() + ": model_type '" + c.model_type +
         "' is not an encoder of this family (xlm-roberta, roberta, bert)");
  }
  const std::string position_type = hf.get_string("position_embedding_type", "absolute");
  if (position_type != "absolute") {
    fail(hf.source() + ": position_embedding_type '" + position_type +
         "' is not supported (only 'absolute')");
  }
  c.vocab_size = hf.get_int("vocab_size");
  c.hidden_size = hf.get_int("hidden_size");
  c.num_layers = hf.get_int("num_hidden_layers");
  c.num_heads = hf.get_int("num_attention_heads");
  c.intermediate_size = hf.get_int("intermediate_size");
  c.hidden_act = nn::parse_activation(hf.get_string("hidden_act", "gelu"), hf.source() + ": hidden_act");
  c.max_position_embeddings = hf.get_int("max_position_embeddings");
  c.type_vocab_size = hf.get_int("type_vocab_size", 2);
  c.layer_norm_eps = hf.get_float("layer_norm_eps", 1e-12);
  c.pad_token_id = hf.get_int("pad_token_id", c.roberta_positions ? 1 : 0);
  c.hidden_dropout = hf.get_float("hidden_dropout_prob", 0.1);
  c.attention_dropout = hf.get_float("attention_probs_dropout_prob", 0.1);
  c.classifier_dropout = hf.get_float("classifier_dropout", c.hidden_dropout);
  // config.json stores id2label (num_labels is a derived property in transformers).
  if (auto n = hf.find_int("num_labels")) {
    c.num_labels = *n;
  } else if (hf.has("id2label") && hf.json().at("id2label").is_object()) {
    c.num_labels = static_cast<int64_t>(hf.json().at("id2label").size());
  }
  c.problem_type = parse_problem_type(hf, c.num_labels);
  c.initializer_range = hf.get_float("initializer_range", 0.02);

  auto positive = [&](const char* key, int64_t v) {
    if (v <= 0) fail(hf.source() + ": " + key + " must be positive, got " + std::to_string(v));
  };
  positive("vocab_size", c.vocab_size);
  positive("hidden_size", c.hidden_size);
  positive("num_hidden_layers", c.num_layers);
  positive("num_attention_heads", c.num_heads);
  positive("intermediate_size", c.intermediate_size);
  positive("max_position_embeddings", c.max_position_embeddings);
  positive("type_vocab_size", c.type_vocab_size);
  positive("num_labels", c.num_labels);
  if (c.hidden_size % c.num_heads != 0) {
    fail(hf.source() + ": hidden_size " + std::to_string(c.hidden_size) +
         " is not a multiple of num_attention_heads " + std::to_string(c.num_heads));
  }
  return c;
}

std::vector<std::pair<std::string, nn::Linear*>> EncoderModel::named_linears() {
  std::vector<std::pair<std::string, nn::Linear*>> out;
  for (const ModuleSlot& s : module_table(*this)) {
    // A quantized base has no dense weight but is still a linear (and a parameter, stored by bnb's keys).
    if (s.linear != nullptr && (s.weight->defined() || s.linear->base.quantized()))
      out.emplace_back(s.module, s.linear);
  }
  return out;
}

std::vector<std::pair<std::string, at::Tensor*>> EncoderModel::named_parameters() {
  std::vector<std::pair<std::string, at::Tensor*>> out;
  for (const ModuleSlot& s : module_table(*this)) {
    if (!s.weight->defined() && !(s.linear != nullptr && s.linear->base.quantized())) continue;
    out.emplace_back(s.module + ".weight", s.weight);
    if (s.bias != nullptr && s.bias->defined()) out.emplace_back(s.module + ".bias", s.bias);
  }
  return out;
}

std::string EncoderModel::hf_module_name(const std::string& module) const {
  return head != EncoderHead::kNone && is_encoder_module(module) ? config.hf_prefix + module : module;
}

void EncoderModel::to(at::ScalarType dtype) {
  at::NoGradGuard no_grad;
  for (auto& [name, tensor] : named_parameters()) {
    if (!tensor->defined()) continue;  // a quantized linear's weight lives in its quant state
    const bool requires_grad = tensor->requires_grad();
    *tensor = tensor->to(dtype).set_requires_grad(requires_grad);
  }
}

std::vector<EncoderTensorInfo> encoder_tensor_table(const EncoderConfig& config, EncoderHead head) {
  EncoderModel m = skeleton(config, head);
  std::vector<EncoderTensorInfo> out;
  for (const ModuleSlot& s : module_table(m)) {
    const bool optional = s.presence == Presence::kOptional;
    const bool init = s.presence == Presence::kInitIfMissing;
    const std::string hf = m.hf_module_name(s.module);
    out.push_back({s.module + ".weight", hf + ".weight", s.weight_shape, optional, init});
    if (s.bias != nullptr)
      out.push_back({s.module + ".bias", hf + ".bias", {s.weight_shape[0]}, optional, init});
  }
  return out;
}

EncoderModel load_encoder(const std::string& dir, const EncoderLoadOptions& options,
                          EncoderLoadReport* report) {
  return load_encoder(EncoderConfig::from_hf_config(HfConfig::load(dir)), dir, options, report);
}

EncoderModel load_encoder(const EncoderConfig& config, const std::string& checkpoint_path,
                          const EncoderLoadOptions& options, EncoderLoadReport* report) {
  const Checkpoint ckpt = open_checkpoint(checkpoint_path);
  const std::string probe = "embeddings.word_embeddings.weight";
  std::string prefix;
  if (ckpt.contains(config.hf_prefix + probe)) {
    prefix = config.hf_prefix;
  } else if (!ckpt.contains(probe)) {
    fail(ckpt.path() + ": missing tensor '" + config.hf_prefix + probe + "' (nor '" + probe + "'): not a " +
         config.model_type + " checkpoint");
  }

  EncoderModel m = skeleton(config, options.head);
  m.config.attn_implementation = options.attn_implementation;
  std::set<std::string> used;
  EncoderLoadReport local;
  local.prefix = prefix;
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(options.init_seed);
  auto read = [&](const std::string& name, const std::vector<int64_t>& shape, at::Tensor& slot) {
    slot = ckpt.tensor(name, shape).clone();  // own the memory rather than alias the file mapping
    used.insert(name);
  };

  std::vector<ModuleSlot> missing;
  for (const ModuleSlot& s : module_table(m)) {
    const std::string stored = (is_encoder_module(s.module) ? prefix : std::string()) + s.module;
    const std::vector<int64_t> bias_shape = {s.weight_shape[0]};
    if (ckpt.contains(stored + ".weight")) {
      if (s.linear == nullptr ||
          !read_prequantized(ckpt, stored, s.weight_shape, std::nullopt, s.linear->base, &used))
        read(stored + ".weight", s.weight_shape, *s.weight);
      if (s.bias != nullptr) read(stored + ".bias", bias_shape, *s.bias);
      continue;
    }
    if (s.presence == Presence::kOptional) continue;
    if (s.presence == Presence::kRequired) fail(ckpt.path() + ": missing tensor '" + stored + ".weight'");
    missing.push_back(s);
  }
  // A head absent from a base checkpoint: PreTrainedModel._init_weights for nn.Linear, in the dtype
  // of the loaded embeddings (initialised after the loop: the head may come first in the table).
  for (const ModuleSlot& s : missing) {
    const at::Tensor like = m.word_embeddings;
    *s.weight = at::empty(s.weight_shape, like.options()).normal_(0.0, config.initializer_range, gen);
    *s.bias = at::zeros({s.weight_shape[0]}, like.options());
    local.initialized.push_back(s.module + ".weight");
    local.initialized.push_back(s.module + ".bias");
  }
  for (const std::string& name : ckpt.names()) {
    if (used.count(name) == 0) local.unused.push_back(name);
  }
  // As transformers' load report lists UNEXPECTED keys (a base checkpoint's MLM head and pooler under a QA
  // model, say): never silently.
  ckpt.warn_unread();
  if (!local.initialized.empty()) {
    std::string names;
    for (const std::string& n : local.initialized) names += (names.empty() ? "" : ", ") + n;
    log::warn(ckpt.path() + ": not in the checkpoint, newly initialised (seed " +
              std::to_string(options.init_seed) + "): " + names);
  }
  if (report != nullptr) *report = std::move(local);
  return m;
}

at::Tensor encode(const EncoderModel& model, const EncoderInputs& inputs, const nn::ForwardContext& ctx) {
  const EncoderConfig& c = model.config;
  const at::Tensor& ids = inputs.input_ids;  // [B, T]
  if (!ids.defined() || ids.dim() != 2) fail("encode: input_ids must be [B, T]");
  const int64_t T = ids.size(1);
  const int64_t first_position = c.roberta_positions ? c.pad_token_id + 1 : 0;
  if (first_position + T > c.max_position_embeddings) {
    fail("encode: sequence length " + std::to_string(T) + " exceeds the " +
         std::to_string(c.max_position_embeddings - first_position) + " positions of this " + c.model_type +
         " model");
  }
  const at::Tensor mask = inputs.attention_mask.defined() ? inputs.attention_mask : at::ones_like(ids);
  if (mask.sizes() != ids.sizes()) fail("encode: attention_mask shape differs from input_ids");
  const at::Tensor types = inputs.token_type_ids.defined() ? inputs.token_type_ids : at::zeros_like(ids);
  if (types.sizes() != ids.sizes()) fail("encode: token_type_ids shape differs from input_ids");

  at::Tensor positions;  // [B, T] or [1, T]
  if (c.roberta_positions) {
    // create_position_ids_from_input_ids: pads keep pad_token_id, tokens count from pad_token_id + 1.
    const at::Tensor real = ids.ne(c.pad_token_id).to(at::kLong);
    positions = at::cumsum(real, 1) * real + c.pad_token_id;
  } else {
    positions = at::arange(T, ids.options().dtype(at::kLong)).unsqueeze(0);
  }
  // Same summation order as HF: (word + token_type) + position.
  at::Tensor x =
      at::embedding(model.word_embeddings, ids) + at::embedding(model.token_type_embeddings, types);
  x = x + at::embedding(model.position_embeddings, positions);
  x = nn::dropout(nn::layer_norm(x, model.embedding_norm), c.hidden_dropout, ctx);  // [B, T, C]

  const at::Tensor bias = nn::padding_mask_bias(mask, x.scalar_type());  // [B, 1, 1, T]
  for (const EncoderLayer& L : model.layers) {
    // One layer: x [B, T, C] -> [B, T, C]. `bias` is derived from the mask and needs no gradient.
    const auto layer = [&L, &c, bias, ctx](const at::Tensor& x) {
      const at::Tensor q = nn::split_heads(nn::lora_linear(x, L.query, ctx), c.num_heads);  // [B, H, T, D]
      const at::Tensor k = nn::split_heads(nn::lora_linear(x, L.key, ctx), c.num_heads);
      const at::Tensor v = nn::split_heads(nn::lora_linear(x, L.value, ctx), c.num_heads);
      // transformers multiplies by head_dim**-0.5 (a Python float) rather than dividing by sqrt(D).
      const double scale = std::pow(static_cast<double>(c.head_dim()), -0.5);
      const at::Tensor a = nn::merge_heads(
          nn::attention(q, k, v, bias, c.attention_dropout, scale, c.attn_implementation, ctx));
      const at::Tensor h =
          nn::layer_norm(nn::dropout(nn::lora_linear(a, L.attention_output, ctx), c.hidden_dropout, ctx) + x,
                         L.attention_norm);
      const at::Tensor f = nn::activate(nn::lora_linear(h, L.intermediate, ctx), c.hidden_act);  // [B, T, I]
      return nn::layer_norm(nn::dropout(nn::lora_linear(f, L.output, ctx), c.hidden_dropout, ctx) + h,
                            L.output_norm);
    };
    // The layer (and the model) must outlive the backward pass, as they do in training.
    x = ctx.gradient_checkpointing ? nn::checkpoint_block(layer, x, ctx) : layer(x);
  }
  return x;
}

QaLogits qa_forward(const EncoderModel& model, const EncoderInputs& inputs, const nn::ForwardContext& ctx) {
  if (model.head != EncoderHead::kQuestionAnswering)
    fail("qa_forward: the model was not loaded with the QA head");
  const at::Tensor logits = nn::lora_linear(encode(model, inputs, ctx), model.qa_outputs, ctx);  // [B, T, 2]
  return {logits.select(-1, 0).contiguous(), logits.select(-1, 1).contiguous()};
}

at::Tensor qa_loss(const at::Tensor& start_logits, const at::Tensor& end_logits,
                   const at::Tensor& start_positions, const at::Tensor& end_positions) {
  if (start_logits.dim() != 2 || end_logits.sizes() != start_logits.sizes()) {
    fail("qa_loss: start and end logits must both be [B, T]");
  }
  // Positions outside the sequence (answers truncated away) are clamped to T and then ignored.
  const int64_t ignored_index = start_logits.size(1);
  auto loss = [&](const at::Tensor& logits, const at::Tensor& positions) {
    const at::Tensor target = positions.reshape({-1}).to(at::kLong).clamp(0, ignored_index);
    return at::cross_entropy_loss(logits, target, {}, at::Reduction::Mean, ignored_index);
  };
  return (loss(start_logits, start_positions) + loss(end_logits, end_positions)) / 2;
}

at::Tensor classify(const EncoderModel& model, const EncoderInputs& inputs, const nn::ForwardContext& ctx) {
  if (model.head != EncoderHead::kSequenceClassification) {
    fail("classify: the model was not loaded with the sequence-classification head");
  }
  const double p = model.config.classifier_dropout;
  const at::Tensor first = encode(model, inputs, ctx).select(1, 0);  // [B, C]: <s> / [CLS]
  if (model.config.pooled_classifier) {
    const at::Tensor pooled = at::tanh(nn::lora_linear(first, model.pooler, ctx));  // BertPooler
    return nn::lora_linear(nn::dropout(pooled, p, ctx), model.classifier, ctx);
  }
  // RobertaClassificationHead: dropout, dense, tanh, dropout, out_proj.
  const at::Tensor h = at::tanh(nn::lora_linear(nn::dropout(first, p, ctx), model.classifier_dense, ctx));
  return nn::lora_linear(nn::dropout(h, p, ctx), model.classifier, ctx);
}

at::Tensor classification_loss(const at::Tensor& logits, const at::Tensor& labels,
                               const EncoderConfig& config) {
  switch (config.problem_type) {
    case ProblemType::kRegression:
      if (config.num_labels == 1)
        return at::mse_loss(logits.squeeze(), labels.squeeze().to(logits.scalar_type()));
      return at::mse_loss(logits, labels.to(logits.scalar_type()));
    case ProblemType::kSingleLabel:
      return at::cross_entropy_loss(logits.view({-1, config.num_labels}), labels.view({-1}).to(at::kLong));
    case ProblemType::kMultiLabel:
      return at::binary_cross_entropy_with_logits(logits, labels.to(logits.scalar_type()));
  }
  fail("classification_loss: unknown problem type");
}

}  // namespace qlora::models
