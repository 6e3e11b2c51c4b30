// The tokenizer factory: which implementation a model folder needs.
#include "qlora/tokenizer/tokenizer.h"

#include <fstream>

#include "qlora/core/error.h"
#include "qlora/core/jsonl.h"
#include "qlora/core/suggest.h"
#include "qlora/tokenizer/byte_level_bpe.h"
#include "qlora/tokenizer/sentencepiece_tokenizer.h"

namespace qlora {

namespace {

const std::vector<std::pair<std::string, TokenizerKind>>& kind_names() {
  static const std::vector<std::pair<std::string, TokenizerKind>> names = {
      {"auto", TokenizerKind::kAuto},
      {"llama", TokenizerKind::kLlama},
      {"t5", TokenizerKind::kT5},
      {"xlm-roberta", TokenizerKind::kXlmRoberta},
      {"bpe", TokenizerKind::kByteLevelBpe}};
  return names;
}

bool exists(const std::string& path) { return static_cast<bool>(std::ifstream(path)); }

// The file a SentencePiece flavour loads from.
std::string model_file_name(TokenizerKind kind) {
  switch (kind) {
    case TokenizerKind::kLlama:
      return "tokenizer.model";
    case TokenizerKind::kT5:
      return "spiece.model";
    case TokenizerKind::kXlmRoberta:
      return "sentencepiece.bpe.model";
    default:
      return "tokenizer.json";
  }
}

// HF tokenizer_class (without "Fast") -> kind.
bool kind_from_class(std::string cls, TokenizerKind& kind) {
  if (cls.size() > 4 && cls.compare(cls.size() - 4, 4, "Fast") == 0) cls.resize(cls.size() - 4);
  if (cls == "LlamaTokenizer" || cls == "CodeLlamaTokenizer") {
    kind = TokenizerKind::kLlama;
  } else if (cls == "T5Tokenizer") {
    kind = TokenizerKind::kT5;
  } else if (cls == "XLMRobertaTokenizer") {
    kind = TokenizerKind::kXlmRoberta;
  } else if (cls == "GPT2Tokenizer" || cls == "Qwen2Tokenizer" || cls == "RobertaTokenizer" ||
             cls == "GPTNeoXTokenizer" || cls == "PreTrainedTokenizer" || cls == "TokenizersBackend") {
    kind = TokenizerKind::kByteLevelBpe;
  } else {
    return false;
  }
  return true;
}

bool kind_from_model_type(const std::string& type, TokenizerKind& kind) {
  if (type == "llama" || type == "mistral") {
    kind = TokenizerKind::kLlama;
  } else if (type == "t5" || type == "mt5") {
    kind = TokenizerKind::kT5;
  } else if (type == "xlm-roberta") {
    kind = TokenizerKind::kXlmRoberta;
  } else if (type == "qwen2" || type == "mpt" || type == "gpt2" || type == "roberta") {
    kind = TokenizerKind::kByteLevelBpe;
  } else {
    return false;
  }
  return true;
}

std::string string_field(const Json& j, const char* key) {
  return j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : std::string();
}

// A tokenizer.json that is BPE but SentencePiece-style (byte fallback, Metaspace; LLaMA-2's) is not
// byte-level: say so instead of failing later on its pre-tokenizer.
void check_not_sentencepiece_bpe(const std::string& path) {
  const Json j = read_json_file(path);
  const Json model = j.value("model", Json::object());
  const bool byte_fallback = model.is_object() && model.value("byte_fallback", false);
  const std::string pre = j.contains("pre_tokenizer") && j["pre_tokenizer"].is_object()
                              ? string_field(j["pre_tokenizer"], "type")
                              : "";
  if (byte_fallback || pre == "Metaspace") {
    fail(path +
         ": this is a SentencePiece-style BPE (byte_fallback / Metaspace), not byte-level BPE; load its "
         "folder as a llama tokenizer (tokenizer_config.json tokenizer_class LlamaTokenizer, or kind llama); "
         "tokenizer.json alone is enough");
  }
}

}  // namespace

TokenizerKind parse_tokenizer_kind(const std::string& name) {
  std::vector<std::string> candidates;
  for (const auto& [n, k] : kind_names()) {
    if (n == name) return k;
    candidates.push_back(n);
  }
  fail("unknown tokenizer kind '" + name + "'" + did_you_mean(name, candidates) +
       "; expected auto, llama, t5, xlm-roberta or bpe");
}

std::string tokenizer_kind_name(TokenizerKind kind) {
  for (const auto& [n, k] : kind_names()) {
    if (k == kind) return n;
  }
  return "unknown";
}

TokenizerKind detect_tokenizer_kind(const std::string& model_dir) {
  TokenizerKind kind = TokenizerKind::kAuto;
  const std::string tok_cfg = model_dir + "/tokenizer_config.json";
  if (exists(tok_cfg)) {
    const std::string cls = string_field(read_json_file(tok_cfg), "tokenizer_class");
    if (!cls.empty() && !kind_from_class(cls, kind)) {
      fail(
          tok_cfg + ": tokenizer_class '" + cls +
          "' is not supported (supported: LlamaTokenizer, T5Tokenizer, XLMRobertaTokenizer, and byte-level "
          "BPE: GPT2Tokenizer, Qwen2Tokenizer, RobertaTokenizer, GPTNeoXTokenizer, PreTrainedTokenizerFast)");
    }
    if (!cls.empty()) return kind;
  }
  const std::string cfg = model_dir + "/config.json";
  if (exists(cfg)) {
    const std::string type = string_field(read_json_file(cfg), "model_type");
    if (kind_from_model_type(type, kind)) return kind;
  }
  for (TokenizerKind k : {TokenizerKind::kXlmRoberta, TokenizerKind::kT5, TokenizerKind::kLlama}) {
    if (exists(model_dir + "/" + model_file_name(k))) return k;
  }
  if (exists(model_dir + "/tokenizer.json")) {
    check_not_sentencepiece_bpe(model_dir + "/tokenizer.json");
    return TokenizerKind::kByteLevelBpe;
  }
  // GPT-2's legacy pair (transformers builds a GPT2TokenizerFast from it).
  if (exists(model_dir + "/vocab.json") && exists(model_dir + "/merges.txt"))
    return TokenizerKind::kByteLevelBpe;
  fail(
      model_dir +
      ": cannot tell which tokenizer to use; looked for tokenizer_config.json (tokenizer_class), config.json "
      "(model_type), sentencepiece.bpe.model, spiece.model, tokenizer.model, tokenizer.json and "
      "vocab.json + merges.txt");
}

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& model_dir, TokenizerKind kind) {
  if (kind == TokenizerKind::kAuto) kind = detect_tokenizer_kind(model_dir);
  if (kind == TokenizerKind::kByteLevelBpe) return load_byte_level_bpe_tokenizer(model_dir);
  // The SentencePiece model when the folder has one: the hub's folders ship it beside a tokenizer.json that
  // older tokenizers wrote (LLaMA-2's has merges containing spaces, which tokenizers 0.23 no longer
  // parses), and it is what every parity fixture anchors. Folders saved by transformers 5 have only
  // tokenizer.json (save_pretrained writes no .model): read that.
  const std::string model_file = model_dir + "/" + model_file_name(kind);
  if (!exists(model_file) && exists(model_dir + "/tokenizer.json"))
    return load_sentencepiece_tokenizer_json(model_dir, kind);
  if (!exists(model_file)) {
    fail(model_dir + ": a " + tokenizer_kind_name(kind) + " tokenizer needs " + model_file_name(kind) +
         " or tokenizer.json, which are both missing");
  }
  return load_sentencepiece_tokenizer(model_file, read_sentencepiece_options(model_dir, kind));
}

void check_vocab_size(const Tokenizer& tokenizer, int64_t config_vocab_size, const std::string& path) {
  if (tokenizer.vocab_size() > config_vocab_size) {
    fail(path + ": the tokenizer has " + std::to_string(tokenizer.vocab_size()) +
         " ids but the model's vocab_size is " + std::to_string(config_vocab_size) + "; ids at or above " +
         std::to_string(config_vocab_size) + " have no embedding row");
  }
}

}  // namespace qlora
