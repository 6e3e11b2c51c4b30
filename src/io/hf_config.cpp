#include "qlora/io/hf_config.h"

#include <limits>

#include "qlora/core/error.h"
#include "qlora/core/fs.h"
#include "qlora/core/suggest.h"

namespace qlora {

namespace {

std::string describe(const Json& value) {
  std::string text = value.dump();
  if (text.size() > 40) text = text.substr(0, 37) + "...";
  return std::string(value.type_name()) + " " + text;
}

bool is_int(const Json& v) {
  return v.is_number_integer() && !(v.is_number_unsigned() && v.get<uint64_t>() > INT64_MAX);
}

}  // namespace

HfConfig HfConfig::load(const std::string& path) {
  const std::string file = fsys::is_directory(path) ? fsys::join(path, "config.json") : path;
  if (!fsys::exists(file)) fail(file + ": no such file (expected a Hugging Face config.json)");
  return HfConfig(read_json_file(file), file);
}

HfConfig::HfConfig(Json json, std::string source) : json_(std::move(json)), source_(source), file_(source) {
  if (!json_.is_object()) fail_at(file_, -1, std::string("expected a JSON object, got ") + json_.type_name());
}

bool HfConfig::has(const std::string& key) const {
  const auto it = json_.find(key);
  return it != json_.end() && !it->is_null();
}

const Json& HfConfig::require(const std::string& key) const {
  const auto it = json_.find(key);
  if (it == json_.end()) {
    std::vector<std::string> keys;
    for (const auto& item : json_.items()) keys.push_back(item.key());
    fail_at(file_, -1, "missing key '" + prefix_ + key + "'" + did_you_mean(key, keys));
  }
  if (it->is_null()) fail_at(file_, -1, "key '" + prefix_ + key + "' is null");
  return *it;
}

void HfConfig::wrong_type(const std::string& key, const char* expected) const {
  fail_at(file_, -1,
          "key '" + prefix_ + key + "' should be " + expected + ", got " + describe(json_.at(key)));
}

int64_t HfConfig::get_int(const std::string& key) const {
  const Json& v = require(key);
  if (!is_int(v)) wrong_type(key, "an integer");
  return v.get<int64_t>();
}

double HfConfig::get_float(const std::string& key) const {
  const Json& v = require(key);
  if (!v.is_number()) wrong_type(key, "a number");
  return v.get<double>();
}

std::string HfConfig::get_string(const std::string& key) const {
  const Json& v = require(key);
  if (!v.is_string()) wrong_type(key, "a string");
  return v.get<std::string>();
}

bool HfConfig::get_bool(const std::string& key) const {
  const Json& v = require(key);
  if (!v.is_boolean()) wrong_type(key, "true or false");
  return v.get<bool>();
}

std::vector<int64_t> HfConfig::get_int_list(const std::string& key) const {
  const Json& v = require(key);
  if (is_int(v)) return {v.get<int64_t>()};
  if (!v.is_array()) wrong_type(key, "an integer or a list of integers");
  std::vector<int64_t> out;
  for (const Json& item : v) {
    if (!is_int(item)) wrong_type(key, "an integer or a list of integers");
    out.push_back(item.get<int64_t>());
  }
  return out;
}

int64_t HfConfig::get_int(const std::string& key, int64_t fallback) const {
  return has(key) ? get_int(key) : fallback;
}

double HfConfig::get_float(const std::string& key, double fallback) const {
  return has(key) ? get_float(key) : fallback;
}

std::string HfConfig::get_string(const std::string& key, const std::string& fallback) const {
  return has(key) ? get_string(key) : fallback;
}

bool HfConfig::get_bool(const std::string& key, bool fallback) const {
  return has(key) ? get_bool(key) : fallback;
}

std::optional<int64_t> HfConfig::find_int(const std::string& key) const {
  if (!has(key)) return std::nullopt;
  return get_int(key);
}

std::optional<double> HfConfig::find_float(const std::string& key) const {
  if (!has(key)) return std::nullopt;
  return get_float(key);
}

HfConfig HfConfig::sub(const std::string& key) const {
  const Json& v = require(key);
  if (!v.is_object()) wrong_type(key, "an object");
  HfConfig nested(v, file_);
  nested.prefix_ = prefix_ + key + ".";
  nested.source_ = file_ + ": " + prefix_ + key;
  return nested;
}

GenerationConfig GenerationConfig::from_json(const HfConfig& json) {
  GenerationConfig g;
  g.bos_token_id = json.find_int("bos_token_id");
  if (json.has("eos_token_id")) g.eos_token_ids = json.get_int_list("eos_token_id");
  g.pad_token_id = json.find_int("pad_token_id");
  if (json.has("decoder_start_token_id")) {
    // transformers allows a list (one start token per batch row); qlora decodes with one.
    const auto ids = json.get_int_list("decoder_start_token_id");
    if (ids.size() != 1) {
      fail_at(json.source(), -1, "decoder_start_token_id: only a single start token is supported");
    }
    g.decoder_start_token_id = ids[0];
  }
  g.max_new_tokens = json.find_int("max_new_tokens");
  g.max_length = json.get_int("max_length", g.max_length);
  g.do_sample = json.get_bool("do_sample", g.do_sample);
  g.temperature = json.get_float("temperature", g.temperature);
  g.top_k = json.get_int("top_k", g.top_k);
  g.top_p = json.get_float("top_p", g.top_p);
  g.num_beams = json.get_int("num_beams", g.num_beams);
  g.repetition_penalty = json.get_float("repetition_penalty", g.repetition_penalty);
  g.length_penalty = json.get_float("length_penalty", g.length_penalty);
  g.no_repeat_ngram_size = json.get_int("no_repeat_ngram_size", g.no_repeat_ngram_size);
  if (json.has("early_stopping")) {
    const Json& v = json.json().at("early_stopping");
    if (v.is_boolean()) {
      g.early_stopping = v.get<bool>() ? EarlyStopping::kTrue : EarlyStopping::kFalse;
    } else if (v == "never") {
      g.early_stopping = EarlyStopping::kNever;
    } else {
      fail_at(json.source(), -1, "key 'early_stopping' should be true, false or \"never\", got " + v.dump());
    }
  }
  return g;
}

GenerationConfig GenerationConfig::load(const std::string& dir) {
  const std::string generation = fsys::join(dir, "generation_config.json");
  if (fsys::exists(generation)) return from_json(HfConfig(read_json_file(generation), generation));
  // from_model_config: only the special token ids carry over from config.json.
  const HfConfig model = HfConfig::load(dir);
  GenerationConfig g;
  g.bos_token_id = model.find_int("bos_token_id");
  if (model.has("eos_token_id")) g.eos_token_ids = model.get_int_list("eos_token_id");
  g.pad_token_id = model.find_int("pad_token_id");
  g.decoder_start_token_id = model.find_int("decoder_start_token_id");
  return g;
}

}  // namespace qlora
