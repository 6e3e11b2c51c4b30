#include "qlora/io/hf_config.h"

#include <algorithm>
#include <iterator>
#include <limits>

#include "qlora/core/error.h"
#include "qlora/core/fs.h"
#include "qlora/core/log.h"
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

// generation_config.json keys that qlora does not read, with transformers' default value. `processor`:
// transformers builds a logits processor (or a decoding mode) from a non-default value, so qlora refuses
// it rather than decode differently; the others only change what generate() returns or how fast.
struct UnreadKey {
  const char* key;
  const char* default_json;  // a value equal to it (or null) is harmless
  bool processor;
};
constexpr UnreadKey kUnreadKeys[] = {
    {"sequence_bias", "null", true},
    {"guidance_scale", "1.0", true},
    {"encoder_no_repeat_ngram_size", "0", true},
    {"forced_bos_token_id", "null", true},
    {"forced_eos_token_id", "null", true},
    {"remove_invalid_values", "false", true},
    {"exponential_decay_length_penalty", "null", true},
    {"typical_p", "1.0", true},
    {"epsilon_cutoff", "0.0", true},
    {"eta_cutoff", "0.0", true},
    {"min_p", "null", true},
    {"top_h", "null", true},
    {"watermarking_config", "null", true},
    {"renormalize_logits", "false", true},
    {"num_beam_groups", "1", true},
    {"diversity_penalty", "0.0", true},
    {"penalty_alpha", "null", true},
    {"constraints", "null", true},
    {"force_words_ids", "null", true},
    {"stop_strings", "null", true},
    {"max_time", "null", false},
    {"num_return_sequences", "1", false},
    {"output_scores", "false", false},
    {"output_logits", "false", false},
    {"output_attentions", "false", false},
    {"output_hidden_states", "false", false},
    {"return_dict_in_generate", "false", false},
    {"use_cache", "true", false},
    {"cache_implementation", "null", false},
    {"low_memory", "null", false},
};

// Keys GenerationConfig::from_json reads, and metadata that means nothing for decoding.
constexpr const char* kReadKeys[] = {"bos_token_id",
                                     "eos_token_id",
                                     "pad_token_id",
                                     "decoder_start_token_id",
                                     "max_new_tokens",
                                     "max_length",
                                     "do_sample",
                                     "temperature",
                                     "top_k",
                                     "top_p",
                                     "num_beams",
                                     "repetition_penalty",
                                     "length_penalty",
                                     "no_repeat_ngram_size",
                                     "early_stopping",
                                     "encoder_repetition_penalty",
                                     "bad_words_ids",
                                     "min_length",
                                     "min_new_tokens",
                                     "suppress_tokens",
                                     "begin_suppress_tokens",
                                     "transformers_version",
                                     "_from_model_config"};

void check_unread_keys(const HfConfig& json) {
  for (const auto& [key, value] : json.json().items()) {
    if (value.is_null()) continue;
    if (std::find(std::begin(kReadKeys), std::end(kReadKeys), key) != std::end(kReadKeys)) continue;
    const auto* it = std::find_if(std::begin(kUnreadKeys), std::end(kUnreadKeys),
                                  [&](const UnreadKey& k) { return key == k.key; });
    if (it != std::end(kUnreadKeys) && value == Json::parse(it->default_json)) continue;
    if (it != std::end(kUnreadKeys) && it->processor) {
      fail_at(json.source(), -1,
              "key '" + key + "' = " + value.dump() +
                  ": transformers decodes with it and qlora does not implement it; remove the key to decode "
                  "without it");
    }
    log::warn(json.source() + ": key '" + key + "' = " + value.dump() + " is not applied by qlora");
  }
}

std::vector<int64_t> int_list(const HfConfig& json, const std::string& key) {
  return json.has(key) ? json.get_int_list(key) : std::vector<int64_t>{};
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
  g.encoder_repetition_penalty = json.get_float("encoder_repetition_penalty", g.encoder_repetition_penalty);
  g.min_length = json.get_int("min_length", g.min_length);
  g.min_new_tokens = json.get_int("min_new_tokens", g.min_new_tokens);
  g.suppress_tokens = int_list(json, "suppress_tokens");
  g.begin_suppress_tokens = int_list(json, "begin_suppress_tokens");
  if (json.has("bad_words_ids")) {
    const Json& v = json.json().at("bad_words_ids");
    const auto bad = [&] {
      fail_at(json.source(), -1,
              "key 'bad_words_ids' should be a list of lists of token ids, got " + v.dump());
    };
    if (!v.is_array() || v.empty()) bad();
    for (const Json& word : v) {
      if (!word.is_array() || word.empty()) bad();
      std::vector<int64_t> ids;
      for (const Json& id : word) {
        if (!is_int(id) || id.get<int64_t>() < 0) bad();
        ids.push_back(id.get<int64_t>());
      }
      g.bad_words_ids.push_back(std::move(ids));
    }
  }
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
  check_unread_keys(json);
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
