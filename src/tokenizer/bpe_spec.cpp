// Reading a byte-level BPE tokenizer: tokenizer.json (HF tokenizers' serialisation) or the legacy GPT-2
// pair vocab.json + merges.txt, and the special tokens transformers takes from the config files.
#include "bpe_spec.h"

#include <fstream>
#include <sstream>

#include "qlora/core/error.h"
#include "qlora/core/jsonl.h"

namespace qlora::tokenizer_detail {

namespace {

const char* const kOnlyByteLevel = "tokenizer.json models other than byte-level BPE are not implemented";

bool exists(const std::string& path) { return static_cast<bool>(std::ifstream(path)); }

std::string type_of(const Json& j) {
  return j.is_object() && j.contains("type") && j["type"].is_string() ? j["type"].get<std::string>() : "";
}

bool bool_field(const Json& j, const char* key, bool fallback) {
  return j.contains(key) && j[key].is_boolean() ? j[key].get<bool>() : fallback;
}

[[noreturn]] void unsupported(const BpeSpec& spec, const std::string& json_path, const std::string& what) {
  fail(spec.source + ": " + json_path + ": " + what);
}

void read_normalizer(BpeSpec& spec, const Json& j, const std::string& path) {
  if (j.is_null()) return;
  const std::string type = type_of(j);
  if (type == "NFC") {
    spec.nfc = true;
  } else if (type == "Sequence" && j.contains("normalizers") && j["normalizers"].is_array()) {
    for (size_t i = 0; i < j["normalizers"].size(); ++i) {
      read_normalizer(spec, j["normalizers"][i], path + ".normalizers[" + std::to_string(i) + "]");
    }
  } else {
    unsupported(spec, path,
                "normalizer type '" + type +
                    "' is not supported for byte-level BPE (supported: null, NFC, Sequence of NFC)");
  }
}

void read_pre_tokenizer(BpeSpec& spec, const Json& j, const std::string& path) {
  const std::string type = type_of(j);
  if (type == "Sequence" && j.contains("pretokenizers") && j["pretokenizers"].is_array()) {
    for (size_t i = 0; i < j["pretokenizers"].size(); ++i) {
      read_pre_tokenizer(spec, j["pretokenizers"][i], path + ".pretokenizers[" + std::to_string(i) + "]");
    }
    return;
  }
  PreTokenizeStep step;
  if (type == "ByteLevel") {
    step.kind = PreTokenizeStep::Kind::kByteLevel;
    step.add_prefix_space = bool_field(j, "add_prefix_space", true);
    step.use_regex = bool_field(j, "use_regex", true);
  } else if (type == "Split") {
    step.kind = PreTokenizeStep::Kind::kSplit;
    const Json& pattern = j.value("pattern", Json());
    if (pattern.contains("Regex") && pattern["Regex"].is_string()) {
      const std::string re = pattern["Regex"].get<std::string>();
      if (!known_split_regex(re, step.regex)) {
        unsupported(
            spec, path + ".pattern.Regex",
            "pre-tokenizer regex '" + re +
                "' is not one of the known GPT-2 / Qwen2 / LLaMA-3 patterns (no general regex engine)");
      }
    } else if (pattern.contains("String") && pattern["String"].is_string() &&
               !pattern["String"].get<std::string>().empty()) {
      step.literal = true;
      step.literal_text = pattern["String"].get<std::string>();
    } else {
      unsupported(spec, path + ".pattern", "expected {\"Regex\": ...} or {\"String\": ...}");
    }
    const std::string behavior = j.value("behavior", std::string());
    if (behavior != "Isolated" && behavior != "Removed") {
      unsupported(spec, path + ".behavior",
                  "Split behavior '" + behavior + "' is not supported (Isolated, Removed)");
    }
    step.removed = behavior == "Removed";
    step.invert = bool_field(j, "invert", false);
  } else {
    unsupported(
        spec, path,
        "pre-tokenizer type '" + type + "' is not supported for byte-level BPE (ByteLevel, Split, Sequence)");
  }
  spec.pre_tokenizer.push_back(step);
}

int64_t added_or_vocab_id(const BpeSpec& spec, const std::string& token) {
  for (const auto& a : spec.added) {
    if (a.content == token) return a.id;
  }
  const auto it = spec.vocab.find(token);
  return it == spec.vocab.end() ? -1 : it->second;
}

// TemplateProcessing single / pair lists.
std::vector<TemplatePiece> read_template(const BpeSpec& spec, const Json& j, const std::string& path) {
  std::vector<TemplatePiece> pieces;
  if (!j.is_array()) unsupported(spec, path, "expected a list of template pieces");
  for (size_t i = 0; i < j.size(); ++i) {
    const std::string where = path + "[" + std::to_string(i) + "]";
    TemplatePiece piece;
    if (j[i].contains("Sequence")) {
      piece.is_sequence = true;
      const std::string id = j[i]["Sequence"].value("id", std::string("A"));
      if (id != "A" && id != "B") unsupported(spec, where, "sequence id '" + id + "' (expected A or B)");
      piece.sequence = id == "A" ? 0 : 1;
      piece.type_id = j[i]["Sequence"].value("type_id", 0);
    } else if (j[i].contains("SpecialToken")) {
      piece.type_id = j[i]["SpecialToken"].value("type_id", 0);
      piece.sequence = -1;  // ids come from the special_tokens table (resolve_template)
    } else {
      unsupported(spec, where, "expected a Sequence or SpecialToken piece");
    }
    pieces.push_back(piece);
  }
  return pieces;
}

void resolve_template(const BpeSpec& spec, const Json& j, const std::string& path, const char* key,
                      std::vector<TemplatePiece>& out) {
  out = read_template(spec, j[key], path + "." + key);
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i].is_sequence) continue;
    const std::string name = j[key][i]["SpecialToken"].value("id", std::string());
    const Json& table = j.value("special_tokens", Json::object());
    if (!table.contains(name)) {
      unsupported(spec, path + ".special_tokens", "no entry for template token '" + name + "'");
    }
    out[i].ids = table[name].value("ids", std::vector<int64_t>());
  }
}

void read_post_processor(BpeSpec& spec, const Json& j, const std::string& path) {
  if (j.is_null()) return;
  const std::string type = type_of(j);
  PostProcessorSpec& post = spec.post;
  if (type == "Sequence" && j.contains("processors") && j["processors"].is_array()) {
    for (size_t i = 0; i < j["processors"].size(); ++i) {
      read_post_processor(spec, j["processors"][i], path + ".processors[" + std::to_string(i) + "]");
    }
  } else if (type == "ByteLevel") {
    post.trim_offsets = bool_field(j, "trim_offsets", true);
    post.add_prefix_space = bool_field(j, "add_prefix_space", true);
  } else if (type == "RobertaProcessing") {
    post.kind = PostProcessorSpec::Kind::kRoberta;
    post.trim_offsets = bool_field(j, "trim_offsets", true);
    post.add_prefix_space = bool_field(j, "add_prefix_space", true);
    post.cls = j["cls"][1].get<int64_t>();
    post.sep = j["sep"][1].get<int64_t>();
  } else if (type == "TemplateProcessing") {
    post.kind = PostProcessorSpec::Kind::kTemplate;
    resolve_template(spec, j, path, "single", post.single);
    resolve_template(spec, j, path, "pair", post.pair);
  } else {
    unsupported(spec, path,
                "post-processor type '" + type +
                    "' is not supported (null, ByteLevel, RobertaProcessing, "
                    "TemplateProcessing, Sequence of these)");
  }
}

void read_model(BpeSpec& spec, const Json& m) {
  const std::string type = type_of(m);
  // Old serialisations (roberta-base) omit model.type.
  if (!(type == "BPE" || (type.empty() && m.contains("merges")))) {
    unsupported(spec, "model.type", "model type '" + type + "' is not BPE; " + kOnlyByteLevel);
  }
  if (m.contains("dropout") && !m["dropout"].is_null())
    unsupported(spec, "model.dropout", "BPE dropout must be null");
  if (bool_field(m, "byte_fallback", false)) {
    unsupported(spec, "model.byte_fallback", "byte_fallback BPE is SentencePiece-style, not byte-level BPE");
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (m.contains(key) && m[key].is_string() && !m[key].get<std::string>().empty()) {
      unsupported(spec, std::string("model.") + key, "must be empty for byte-level BPE");
    }
  }
  spec.ignore_merges = bool_field(m, "ignore_merges", false);
  if (!m.contains("vocab") || !m["vocab"].is_object()) unsupported(spec, "model.vocab", "missing vocabulary");
  for (const auto& [token, id] : m["vocab"].items()) spec.vocab[token] = id.get<int64_t>();
  if (m.contains("unk_token") && m["unk_token"].is_string()) {
    const auto it = spec.vocab.find(m["unk_token"].get<std::string>());
    if (it == spec.vocab.end())
      unsupported(spec, "model.unk_token", "the unk token is not in the vocabulary");
    spec.unk_id = it->second;
  }
}

void add_merge(BpeSpec& spec, const std::string& left, const std::string& right, int32_t rank,
               const std::string& where) {
  const auto a = spec.vocab.find(left), b = spec.vocab.find(right), ab = spec.vocab.find(left + right);
  if (a == spec.vocab.end() || b == spec.vocab.end() || ab == spec.vocab.end()) {
    fail(where + ": merge '" + left + " " + right + "' uses a token that is not in the vocabulary");
  }
  // tokenizers collects merges into a map, so a repeated pair keeps its last rank.
  spec.merges[merge_key(a->second, b->second)] = {rank, ab->second};
}

void read_merges_json(BpeSpec& spec, const Json& merges) {
  if (!merges.is_array()) unsupported(spec, "model.merges", "expected a list");
  for (size_t i = 0; i < merges.size(); ++i) {
    const std::string where = spec.source + ": model.merges[" + std::to_string(i) + "]";
    const Json& m = merges[i];
    if (m.is_string()) {
      const std::string s = m.get<std::string>();
      const size_t space = s.find(' ');
      if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos) {
        fail(where + ": expected \"left right\", got '" + s + "'");
      }
      add_merge(spec, s.substr(0, space), s.substr(space + 1), static_cast<int32_t>(i), where);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      add_merge(spec, m[0].get<std::string>(), m[1].get<std::string>(), static_cast<int32_t>(i), where);
    } else {
      fail(where + ": expected \"left right\" or [left, right]");
    }
  }
}

void read_added_tokens(BpeSpec& spec, const Json& list) {
  for (size_t i = 0; i < list.size(); ++i) {
    const Json& t = list[i];
    BpeAddedToken a;
    a.content = t.value("content", std::string());
    a.id = t.value("id", int64_t{-1});
    a.special = bool_field(t, "special", false);
    a.lstrip = bool_field(t, "lstrip", false);
    a.rstrip = bool_field(t, "rstrip", false);
    a.normalized = bool_field(t, "normalized", !a.special);
    if (a.content.empty() || a.id < 0)
      unsupported(spec, "added_tokens[" + std::to_string(i) + "]", "needs content and id");
    if (bool_field(t, "single_word", false)) {
      unsupported(spec, "added_tokens[" + std::to_string(i) + "].single_word",
                  "single_word added tokens are not supported");
    }
    spec.added.push_back(a);
  }
}

BpeSpec read_tokenizer_json(const std::string& path) {
  BpeSpec spec;
  spec.source = path;
  const Json j = read_json_file(path);
  if (!j.contains("model") || !j["model"].is_object())
    unsupported(spec, "model", std::string("missing; ") + kOnlyByteLevel);
  read_model(spec, j["model"]);
  read_merges_json(spec, j["model"].value("merges", Json::array()));
  read_added_tokens(spec, j.value("added_tokens", Json::array()));
  read_normalizer(spec, j.value("normalizer", Json()), "normalizer");
  read_pre_tokenizer(spec, j.value("pre_tokenizer", Json()), "pre_tokenizer");
  bool byte_level = false;
  for (const auto& s : spec.pre_tokenizer) byte_level |= s.kind == PreTokenizeStep::Kind::kByteLevel;
  if (!byte_level)
    unsupported(spec, "pre_tokenizer", "a byte-level BPE tokenizer needs a ByteLevel pre-tokenizer");
  // Split steps scan text, not byte-level symbols: they must come before the byte mapping.
  if (spec.pre_tokenizer.back().kind != PreTokenizeStep::Kind::kByteLevel) {
    unsupported(spec, "pre_tokenizer", "ByteLevel must be the last pre-tokenizer step");
  }
  if (type_of(j.value("decoder", Json())) != "ByteLevel") {
    unsupported(spec, "decoder",
                "decoder type '" + type_of(j.value("decoder", Json())) +
                    "' is not supported (a byte-level BPE tokenizer decodes with ByteLevel)");
  }
  read_post_processor(spec, j.value("post_processor", Json()), "post_processor");
  return spec;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path + ": cannot open (no such file or not readable)");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// vocab.json + merges.txt: what transformers' GPT2TokenizerFast builds from them.
BpeSpec read_gpt2_files(const std::string& model_dir, bool add_prefix_space) {
  BpeSpec spec;
  spec.source = model_dir + "/vocab.json";
  const Json vocab = read_json_file(spec.source);
  for (const auto& [token, id] : vocab.items()) spec.vocab[token] = id.get<int64_t>();
  const std::string merges_path = model_dir + "/merges.txt";
  std::istringstream lines(read_text(merges_path));
  std::string line;
  int32_t rank = 0;
  for (int64_t n = 1; std::getline(lines, line); ++n) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || (n == 1 && line.rfind("#version", 0) == 0)) continue;
    const size_t space = line.find(' ');
    if (space == std::string::npos) fail_at(merges_path, n, "expected \"left right\", got '" + line + "'");
    add_merge(spec, line.substr(0, space), line.substr(space + 1), rank++, located(merges_path, n, ""));
  }
  PreTokenizeStep byte_level;
  byte_level.add_prefix_space = add_prefix_space;
  spec.pre_tokenizer.push_back(byte_level);
  const auto eot = spec.vocab.find("<|endoftext|>");
  if (eot != spec.vocab.end())
    spec.added.push_back({"<|endoftext|>", eot->second, true, false, false, false});
  return spec;
}

// tokenizer_config.json "bos_token": "<s>" or {"content": "<s>", ...} or null.
bool config_token(const Json& cfg, const std::string& key, std::string& out) {
  if (!cfg.is_object() || !cfg.contains(key)) return false;
  const Json& v = cfg[key];
  if (v.is_string()) {
    out = v.get<std::string>();
  } else if (v.is_object() && v.contains("content")) {
    out = v["content"].get<std::string>();
  } else {
    out.clear();
  }
  return true;
}

void read_special_ids(BpeSpec& spec, const std::string& cls, const Json& config, const Json& special_map) {
  std::string c = cls;
  if (c.size() > 4 && c.compare(c.size() - 4, 4, "Fast") == 0) c.resize(c.size() - 4);
  // transformers class defaults (None where a class has none).
  std::unordered_map<std::string, std::string> defaults;
  if (c == "GPT2Tokenizer") {
    defaults = {{"bos", "<|endoftext|>"}, {"eos", "<|endoftext|>"}, {"unk", "<|endoftext|>"}};
  } else if (c == "Qwen2Tokenizer") {
    defaults = {{"eos", "<|endoftext|>"}, {"pad", "<|endoftext|>"}, {"unk", "<|endoftext|>"}};
  } else if (c == "RobertaTokenizer") {
    defaults = {{"bos", "<s>"},   {"eos", "</s>"},  {"sep", "</s>"},   {"cls", "<s>"},
                {"unk", "<unk>"}, {"pad", "<pad>"}, {"mask", "<mask>"}};
  }
  auto id_of = [&](const std::string& name) -> int64_t {
    std::string token;
    const std::string key = name + "_token";
    if (!config_token(config, key, token) && !config_token(special_map, key, token)) {
      const auto it = defaults.find(name);
      if (it == defaults.end()) return -1;
      token = it->second;
    }
    return token.empty() ? -1 : added_or_vocab_id(spec, token);
  };
  SpecialTokenIds& s = spec.special;
  s.bos = id_of("bos");
  s.eos = id_of("eos");
  s.pad = id_of("pad");
  s.unk = id_of("unk");
  s.mask = id_of("mask");
  s.cls = id_of("cls");
  s.sep = id_of("sep");
}

}  // namespace

BpeSpec read_bpe_spec(const std::string& model_dir) {
  const std::string config_path = model_dir + "/tokenizer_config.json";
  const Json config = exists(config_path) ? read_json_file(config_path) : Json::object();
  const std::string map_path = model_dir + "/special_tokens_map.json";
  const Json special_map = exists(map_path) ? read_json_file(map_path) : Json::object();
  std::string cls = config.value("tokenizer_class", std::string());

  BpeSpec spec;
  const std::string json_path = model_dir + "/tokenizer.json";
  if (exists(json_path)) {
    spec = read_tokenizer_json(json_path);
  } else if (exists(model_dir + "/vocab.json") && exists(model_dir + "/merges.txt")) {
    spec = read_gpt2_files(model_dir, bool_field(config, "add_prefix_space", false));
    if (cls.empty()) cls = "GPT2Tokenizer";
  } else {
    fail(model_dir +
         ": a byte-level BPE tokenizer needs tokenizer.json, or vocab.json and merges.txt; none found");
  }
  read_special_ids(spec, cls, config, special_map);
  // transformers 5 skips clean_up_tokenization for BPE models unless explicitly forced.
  spec.clean_up_tokenization_spaces =
      bool_field(config, "clean_up_tokenization_spaces", false) &&
      bool_field(config, "clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output", false);
  return spec;
}

}  // namespace qlora::tokenizer_detail
