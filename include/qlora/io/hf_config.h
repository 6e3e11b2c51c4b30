// Hugging Face config.json and generation_config.json. HfConfig is a typed view over the raw JSON;
// each architecture reads its own fields from it (in src/models/), so this stays generic.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "qlora/core/jsonl.h"

namespace qlora {

class HfConfig {
 public:
  // `path` is config.json or a folder holding it. Throws Error when missing or not an object.
  static HfConfig load(const std::string& path);
  // `source` names the file (and key prefix, for sub-configs) in errors.
  HfConfig(Json json, std::string source);

  // True when the key is present and not null (HF writes unset options as null).
  bool has(const std::string& key) const;

  // Errors name the file, the key and the expected type; a missing key gets a did-you-mean.
  int64_t get_int(const std::string& key) const;   // a JSON integer (1.0 is not accepted)
  double get_float(const std::string& key) const;  // any JSON number
  std::string get_string(const std::string& key) const;
  bool get_bool(const std::string& key) const;
  std::vector<int64_t> get_int_list(const std::string& key) const;  // an integer or a list of them

  // Missing or null gives `fallback`; a value of the wrong type is still an error.
  int64_t get_int(const std::string& key, int64_t fallback) const;
  double get_float(const std::string& key, double fallback) const;
  std::string get_string(const std::string& key, const std::string& fallback) const;
  bool get_bool(const std::string& key, bool fallback) const;
  // Missing or null gives nullopt.
  std::optional<int64_t> find_int(const std::string& key) const;
  std::optional<double> find_float(const std::string& key) const;

  // A nested object such as "text_config" or "rope_parameters", reporting keys as "a.b".
  HfConfig sub(const std::string& key) const;

  // "llama", "t5", ...: get_string("model_type").
  std::string model_type() const { return get_string("model_type"); }
  const Json& json() const { return json_; }
  const std::string& source() const { return source_; }

 private:
  const Json& require(const std::string& key) const;  // present and not null
  [[noreturn]] void wrong_type(const std::string& key, const char* expected) const;

  Json json_;
  std::string source_;  // "path/config.json" or "path/config.json: text_config"
  std::string file_;    // the file alone
  std::string prefix_;  // "" or "text_config."
};

// transformers' GenerationConfig fields that qlora's decoding uses. Defaults are those that
// transformers applies to unset fields (GenerationConfig._get_default_generation_params()).
struct GenerationConfig {
  enum class EarlyStopping { kFalse, kTrue, kNever };  // beam search stop rule: bool or "never"

  std::optional<int64_t> bos_token_id;
  std::vector<int64_t> eos_token_ids;  // generation stops at any of them; empty: never
  std::optional<int64_t> pad_token_id;
  std::optional<int64_t> decoder_start_token_id;  // encoder-decoder models (T5)
  std::optional<int64_t> max_new_tokens;          // takes precedence over max_length when set
  int64_t max_length = 20;                        // prompt + generated tokens
  bool do_sample = false;
  double temperature = 1.0;
  int64_t top_k = 50;
  double top_p = 1.0;
  int64_t num_beams = 1;
  double repetition_penalty = 1.0;
  double length_penalty = 1.0;       // exponent on length in beam scores
  int64_t no_repeat_ngram_size = 0;  // 0: off
  EarlyStopping early_stopping = EarlyStopping::kFalse;
  double encoder_repetition_penalty = 1.0;          // 1: off
  std::vector<std::vector<int64_t>> bad_words_ids;  // id sequences never generated; empty: off
  int64_t min_length = 0;                           // eos banned while shorter (decoder: prompt included)
  int64_t min_new_tokens = 0;                       // eos banned before this many new tokens; 0: off
  std::vector<int64_t> suppress_tokens;             // ids never generated
  std::vector<int64_t> begin_suppress_tokens;       // ids not generated first

  // Reads a generation_config.json (or its parsed JSON); absent and null fields keep defaults. A key
  // whose logits processor qlora lacks (forced_bos_token_id, sequence_bias, typical_p, ...) is an error
  // unless it holds transformers' default; any other key qlora does not apply is a warning naming it.
  static GenerationConfig from_json(const HfConfig& json);
  // `dir`/generation_config.json when present; otherwise the token ids of `dir`/config.json,
  // like transformers' GenerationConfig.from_model_config.
  static GenerationConfig load(const std::string& dir);
};

}  // namespace qlora
