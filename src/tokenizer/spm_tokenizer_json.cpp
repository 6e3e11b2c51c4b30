// Reading a SentencePiece-flavoured tokenizer.json the way transformers 5's tokenizer classes do
// (TokenizersBackend.convert_to_native_format + the class __init__).
#include "spm_tokenizer_json.h"

#include <unordered_map>

#include "normalized_string.h"
#include "qlora/core/error.h"
#include "qlora/core/jsonl.h"

namespace qlora::tokenizer_detail {

namespace {

const std::string kMetaspace = "\xE2\x96\x81";  // U+2581 '▁'

std::string type_of(const Json& j) {
  return j.is_object() && j.contains("type") && j["type"].is_string() ? j["type"].get<std::string>() : "";
}

// A model's type. tokenizers deserializes models untagged, and files written by older versions carry no
// "type" (the hub's t5-small tokenizer.json among them): then the shape tells, as it does for tokenizers.
std::string model_type_of(const Json& model) {
  const std::string tagged = type_of(model);
  if (!tagged.empty() || !model.is_object() || !model.contains("vocab")) return tagged;
  const Json& vocab = model["vocab"];
  if (vocab.is_array()) return "Unigram";  // [[piece, score], ...]
  if (vocab.is_object() && model.contains("merges")) return "BPE";
  return "";
}

struct Reader {
  std::string path;
  TokenizerKind kind;

  [[noreturn]] void error(const std::string& json_path, const std::string& what) const {
    fail(path + ": " + json_path + ": " + what);
  }

  std::string flavour() const {
    return kind == TokenizerKind::kLlama ? "LlamaTokenizer"
           : kind == TokenizerKind::kT5  ? "T5Tokenizer"
                                         : "XLMRobertaTokenizer";
  }

  // A component transformers replaces with the class's own: only the forms it writes are accepted.
  [[noreturn]] void unexpected(const std::string& json_path, const std::string& what,
                               const std::string& expected) const {
    error(json_path, what + " is not supported for a " + flavour() + " tokenizer.json (expected " + expected +
                         "); transformers 5 would silently replace it with the " + flavour() +
                         " pipeline, so qlora refuses it instead of guessing");
  }

  std::string string_at(const Json& j, const char* key, const std::string& json_path) const {
    if (!j.contains(key) || !j[key].is_string()) error(json_path + "." + key, "expected a string");
    return j[key].get<std::string>();
  }

  bool is_metaspace(const Json& j) const {
    return type_of(j) == "Metaspace" && j.value("replacement", std::string()) == kMetaspace;
  }

  // Returns the Precompiled charsmap (decoded); empty when the normalizer is null.
  std::string normalizer(const Json& j) const {
    const std::string where = "normalizer";
    if (j.is_null()) return "";
    if (kind == TokenizerKind::kLlama) {
      // LLaMA-2's published form: Prepend('▁') + Replace(' ', '▁') = Metaspace; transformers 5 uses none.
      const bool legacy_llama = type_of(j) == "Sequence" && j.contains("normalizers") &&
                                j["normalizers"].size() == 2 && type_of(j["normalizers"][0]) == "Prepend" &&
                                j["normalizers"][0].value("prepend", "") == kMetaspace &&
                                type_of(j["normalizers"][1]) == "Replace" &&
                                j["normalizers"][1].value("content", "") == kMetaspace;
      if (!legacy_llama) {
        unexpected(where, "normalizer '" + type_of(j) + "'",
                   "null, or Sequence [Prepend '▁', Replace ' ' -> '▁']");
      }
      return "";
    }
    if (type_of(j) == "Precompiled") {
      return base64_decode(string_at(j, "precompiled_charsmap", where), path + ": " + where);
    }
    if (type_of(j) == "Sequence" && j.contains("normalizers") && j["normalizers"].is_array() &&
        j["normalizers"].size() == 1 && type_of(j["normalizers"][0]) == "Precompiled") {
      return base64_decode(string_at(j["normalizers"][0], "precompiled_charsmap", where + ".normalizers[0]"),
                           path + ": " + where + ".normalizers[0]");
    }
    unexpected(where, "normalizer '" + type_of(j) + "'", "null or Precompiled");
  }

  void pre_tokenizer(const Json& j) const {
    const std::string where = "pre_tokenizer";
    if (kind == TokenizerKind::kLlama) {
      if (!j.is_null() && !is_metaspace(j))
        unexpected(where, "pre-tokenizer '" + type_of(j) + "'", "null or Metaspace");
      return;
    }
    const bool sequence =
        type_of(j) == "Sequence" && j.contains("pretokenizers") && j["pretokenizers"].size() == 2 &&
        type_of(j["pretokenizers"][0]) == "WhitespaceSplit" && is_metaspace(j["pretokenizers"][1]);
    if (!sequence && !is_metaspace(j)) {
      unexpected(where, "pre-tokenizer '" + type_of(j) + "'",
                 "Sequence [WhitespaceSplit, Metaspace] or Metaspace");
    }
  }

  void decoder(const Json& j) const {
    const std::string where = "decoder";
    if (kind != TokenizerKind::kLlama) {
      if (!is_metaspace(j)) unexpected(where, "decoder '" + type_of(j) + "'", "Metaspace");
      return;
    }
    if (j.is_null() || is_metaspace(j)) return;
    if (type_of(j) != "Sequence" || !j.contains("decoders") || !j["decoders"].is_array()) {
      unexpected(where, "decoder '" + type_of(j) + "'", "a Sequence of Replace, ByteFallback, Fuse, Strip");
    }
    for (size_t i = 0; i < j["decoders"].size(); ++i) {
      const std::string t = type_of(j["decoders"][i]);
      if (t != "Replace" && t != "ByteFallback" && t != "Fuse" && t != "Strip") {
        unexpected(where + ".decoders[" + std::to_string(i) + "]", "decoder '" + t + "'",
                   "Replace, ByteFallback, Fuse or Strip");
      }
    }
  }

  // LLaMA: "[<s>:0] $A:0 [</s>:0]" / "[<s>:0] $A:0 [</s>:0] [<s>:1] $B:1 [</s>:1]" (update_post_processor's
  // form).
  void post_processor(const Json& j, SpmJsonModel& m) const {
    const std::string where = "post_processor";
    if (j.is_null()) return;
    if (type_of(j) != "TemplateProcessing" || !j.contains("single") || !j.contains("pair")) {
      error(where, "post-processor '" + type_of(j) + "' is not supported (expected TemplateProcessing)");
    }
    auto render = [&](const Json& list, const std::string& list_path) {
      std::string out;
      if (!list.is_array()) error(list_path, "expected a list of template pieces");
      for (const Json& piece : list) {
        if (piece.contains("Sequence")) {
          out += std::string(out.empty() ? "" : " ") + "$" + piece["Sequence"].value("id", std::string("A")) +
                 ":" + std::to_string(piece["Sequence"].value("type_id", 0));
        } else if (piece.contains("SpecialToken")) {
          out += std::string(out.empty() ? "" : " ") + piece["SpecialToken"].value("id", std::string()) +
                 ":" + std::to_string(piece["SpecialToken"].value("type_id", 0));
        } else {
          error(list_path, "expected Sequence or SpecialToken template pieces");
        }
      }
      return out;
    };
    const std::string single = render(j["single"], where + ".single");
    const std::string pair = render(j["pair"], where + ".pair");
    for (int bos = 0; bos < 2; ++bos) {
      for (int eos = 0; eos < 2; ++eos) {
        const std::string s = std::string(bos ? "<s>:0 " : "") + "$A:0" + std::string(eos ? " </s>:0" : "");
        const std::string p =
            s + std::string(bos ? " <s>:1" : "") + " $B:1" + std::string(eos ? " </s>:1" : "");
        if (single == s && pair == p) {
          m.has_template = true;
          m.template_bos = bos;
          m.template_eos = eos;
          return;
        }
      }
    }
    error(where, "template single '" + single + "' / pair '" + pair +
                     "' is not supported (expected transformers' LLaMA template: [<s>:0] $A:0 [</s>:0], pair "
                     "followed by [<s>:1] $B:1 [</s>:1])");
  }

  void added_tokens(const Json& j, SpmJsonModel& m) const {
    if (j.is_null()) return;
    if (!j.is_array()) error("added_tokens", "expected a list");
    for (size_t i = 0; i < j.size(); ++i) {
      const std::string where = "added_tokens[" + std::to_string(i) + "]";
      const Json& t = j[i];
      if (!t.is_object() || !t.contains("id") || !t["id"].is_number_integer())
        error(where, "expected {id, content, ...}");
      SpmJsonAddedToken a;
      a.content = string_at(t, "content", where);
      a.id = t["id"].get<int64_t>();
      a.lstrip = t.value("lstrip", false);
      if (!t.value("special", false)) {
        error(where,
              "non-special added token '" + a.content + "' is not supported (only special added tokens)");
      }
      if (t.value("rstrip", false) || t.value("single_word", false)) {
        error(where, "added token '" + a.content + "' with rstrip or single_word is not supported");
      }
      if (t.value("normalized", false) && kind != TokenizerKind::kLlama) {
        error(where,
              "added token '" + a.content +
                  "' with normalized=true is not supported for T5 / XLM-R (matched after the normalizer)");
      }
      m.added_tokens.push_back(a);
    }
  }

  void check_no_bpe_extras(const Json& model) const {
    if (model.contains("dropout") && !model["dropout"].is_null() && model["dropout"].get<double>() != 0.0) {
      error("model.dropout", "BPE dropout is not supported");
    }
    for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
      if (model.contains(key) && !model[key].is_null() && !model[key].get<std::string>().empty()) {
        error(std::string("model.") + key, "is not supported for a LLaMA (SentencePiece-style) BPE");
      }
    }
    if (!model.value("byte_fallback", false)) {
      unexpected("model.byte_fallback", "byte_fallback=false",
                 "true: LlamaTokenizer always uses byte fallback");
    }
  }

  static SpmPiece::Type llama_type(const std::string& piece, int id) {
    if (id == 0 && piece == "<unk>") return SpmPiece::kUnknown;
    if (piece == "<s>" || piece == "</s>") return SpmPiece::kControl;
    if (piece.size() == 6 && piece.compare(0, 3, "<0x") == 0 && piece[5] == '>') return SpmPiece::kByte;
    return SpmPiece::kNormal;
  }

  void llama_model(const Json& model, SpmJsonModel& m) const {
    if (model_type_of(model) != "BPE")
      error("model.type", "expected BPE for a LLaMA tokenizer, found '" + model_type_of(model) + "'");
    check_no_bpe_extras(model);
    if (!model.contains("vocab") || !model["vocab"].is_object()) error("model.vocab", "expected {piece: id}");
    const Json& vocab = model["vocab"];
    std::vector<std::string> pieces(vocab.size());
    std::vector<bool> seen(vocab.size(), false);
    std::unordered_map<std::string, int> ids;
    for (const auto& [piece, id] : vocab.items()) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0 ||
          id.get<int64_t>() >= static_cast<int64_t>(pieces.size()) || seen[id.get<size_t>()]) {
        error("model.vocab." + piece,
              "ids must be 0..N-1, each once (N = " + std::to_string(pieces.size()) + ")");
      }
      pieces[id.get<size_t>()] = piece;
      seen[id.get<size_t>()] = true;
      ids[piece] = id.get<int>();
    }
    if (model.contains("unk_token") && model["unk_token"].is_string()) {
      const auto it = ids.find(model["unk_token"].get<std::string>());
      if (it == ids.end()) error("model.unk_token", "not in the vocabulary");
      m.bpe_unk_id = it->second;
    }
    const Json& merges = model.value("merges", Json::array());
    if (!merges.is_array()) error("model.merges", "expected a list");
    for (size_t i = 0; i < merges.size(); ++i) {
      const std::string where = "model.merges[" + std::to_string(i) + "]";
      std::string left, right;
      if (merges[i].is_string()) {
        const std::string s = merges[i].get<std::string>();
        const size_t space = s.find(' ');
        if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos) {
          error(where, "expected \"left right\" (one space)");
        }
        left = s.substr(0, space);
        right = s.substr(space + 1);
      } else if (merges[i].is_array() && merges[i].size() == 2 && merges[i][0].is_string() &&
                 merges[i][1].is_string()) {
        left = merges[i][0].get<std::string>();
        right = merges[i][1].get<std::string>();
      } else {
        error(where, "expected [left, right] or \"left right\"");
      }
      const auto l = ids.find(left), r = ids.find(right), lr = ids.find(left + right);
      if (l == ids.end() || r == ids.end() || lr == ids.end()) {
        error(where, "merge '" + left + "' + '" + right + "': a piece is not in model.vocab");
      }
      m.merges.push_back({l->second, r->second, lr->second});
    }
    std::vector<SpmPiece> spm;
    bool has_bytes = false;
    for (size_t i = 0; i < pieces.size(); ++i) {
      const SpmPiece::Type type = llama_type(pieces[i], static_cast<int>(i));
      has_bytes = has_bytes || type == SpmPiece::kByte;
      spm.push_back({pieces[i], -static_cast<float>(i), type});
    }
    if (spm.empty() || spm[0].type != SpmPiece::kUnknown) error("model.vocab", "expected '<unk>' at id 0");
    m.model_proto = build_spm_model_proto(spm, /*unigram=*/false, has_bytes);
  }

  // Unigram vocab [[piece, score], ...] -> spm pieces. T5: HF id = spm id, the trailing <extra_id_N> are
  // not spm pieces. XLM-R: fairseq ids <s> <pad> </s> <unk> | spm pieces 3.. | <mask>; spm has <unk> <s>
  // </s>.
  void unigram_model(const Json& model, SpmJsonModel& m) const {
    if (model_type_of(model) != "Unigram") {
      error("model.type", "expected Unigram for a " + flavour() + ", found '" + model_type_of(model) + "'");
    }
    if (model.value("byte_fallback", false)) {
      unexpected("model.byte_fallback", "byte_fallback=true",
                 std::string("false: ") + flavour() + " never uses it");
    }
    if (!model.contains("vocab") || !model["vocab"].is_array())
      error("model.vocab", "expected [[piece, score], ...]");
    const Json& vocab = model["vocab"];
    std::vector<SpmPiece> all;
    for (size_t i = 0; i < vocab.size(); ++i) {
      const Json& e = vocab[i];
      if (!e.is_array() || e.size() != 2 || !e[0].is_string() || !e[1].is_number()) {
        error("model.vocab[" + std::to_string(i) + "]", "expected [piece, score]");
      }
      all.push_back({e[0].get<std::string>(), e[1].get<float>(), SpmPiece::kNormal});
    }
    const int64_t unk = model.value("unk_id", int64_t{-1});
    auto expect = [&](size_t id, const std::string& piece) {
      if (id >= all.size() || all[id].piece != piece) {
        error("model.vocab[" + std::to_string(id) + "]",
              "expected '" + piece + "' for a " + flavour() + " (the layout transformers writes)");
      }
    };
    std::vector<SpmPiece> spm;
    if (kind == TokenizerKind::kT5) {
      expect(0, "<pad>");
      expect(1, "</s>");
      expect(2, "<unk>");
      if (unk != 2) error("model.unk_id", "expected 2 for T5");
      size_t n = all.size();
      int extra = 0;
      while (n > 3 && all[n - 1].piece == "<extra_id_" + std::to_string(extra) + ">") {
        --n;
        ++extra;
      }
      m.extra_ids = extra;
      spm.assign(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(n));
      spm[0].type = SpmPiece::kControl;
      spm[1].type = SpmPiece::kControl;
      spm[2].type = SpmPiece::kUnknown;
    } else {
      expect(0, "<s>");
      expect(1, "<pad>");
      expect(2, "</s>");
      expect(3, "<unk>");
      expect(all.size() - 1, "<mask>");
      if (unk != 3) error("model.unk_id", "expected 3 for XLM-R");
      spm.push_back({"<unk>", 0, SpmPiece::kUnknown});
      spm.push_back({"<s>", 0, SpmPiece::kControl});
      spm.push_back({"</s>", 0, SpmPiece::kControl});
      spm.insert(spm.end(), all.begin() + 4, all.end() - 1);
    }
    m.model_proto = build_spm_model_proto(spm, /*unigram=*/true, /*byte_fallback=*/false);
  }
};

}  // namespace

std::string base64_decode(const std::string& text, const std::string& source) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  std::string out;
  uint32_t bits = 0;
  int nbits = 0;
  size_t i = 0;
  for (; i < text.size() && text[i] != '='; ++i) {
    const int v = value(text[i]);
    if (v < 0) fail(source + ": invalid base64 character at position " + std::to_string(i));
    bits = (bits << 6) | static_cast<uint32_t>(v);
    nbits += 6;
    if (nbits >= 8) {
      nbits -= 8;
      out.push_back(static_cast<char>((bits >> nbits) & 0xFF));
    }
  }
  for (; i < text.size(); ++i) {
    if (text[i] != '=') fail(source + ": invalid base64 (data after '=' padding)");
  }
  if (text.size() % 4 != 0) fail(source + ": invalid base64 (length not a multiple of 4)");
  return out;
}

SpmJsonModel read_spm_tokenizer_json(const std::string& path, TokenizerKind kind) {
  const Json j = read_json_file(path);
  const Reader r{path, kind};
  if (!j.is_object() || !j.contains("model") || !j["model"].is_object()) r.error("model", "missing");
  SpmJsonModel m;
  m.precompiled_charsmap = r.normalizer(j.value("normalizer", Json()));
  r.pre_tokenizer(j.value("pre_tokenizer", Json()));
  r.decoder(j.value("decoder", Json()));
  if (kind == TokenizerKind::kLlama) {
    r.post_processor(j.value("post_processor", Json()), m);
    r.llama_model(j["model"], m);
  } else {
    r.unigram_model(j["model"], m);
  }
  r.added_tokens(j.value("added_tokens", Json()), m);
  return m;
}

}  // namespace qlora::tokenizer_detail
