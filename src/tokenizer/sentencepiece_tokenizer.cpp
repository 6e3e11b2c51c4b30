// SentencePiece tokenizers that reproduce the transformers 5.x fast tokenizers.
//
// HF fast pipelines (transformers 5 builds them in the tokenizer classes, whatever tokenizer.json says):
//   LLaMA : no normalizer; Metaspace(replace ' ', prepend "always" (legacy) or "first", split=False);
//           BPE with byte fallback; template "<s> $A" / "<s> $A <s> $B" (token types 0 / 1).
//   T5    : Precompiled(charsmap) -> WhitespaceSplit -> Metaspace(always, split); Unigram;
//           template "$A </s>" / "$A </s> $B </s>".
//   XLM-R : the T5 pipeline; fairseq ids; template "<s> $A </s>" / "<s> $A </s> </s> $B </s>".
// We run that text pipeline ourselves, tracking alignments the way tokenizers does. T5 / XLM-R:
// libsentencepiece (its own normalizer switched off) segments the already-normalized text with the
// Unigram model. LLaMA: HfBpe (spm_bpe.h) runs BPE with HF's merge ranks, because sentencepiece's
// score-ranked BPE differs from HF on whitespace runs.
// Where plain sentencepiece (the old "slow" path) differs - leading spaces for LLaMA, NFD text whose
// grapheme composes in HF but not in spm's longest-match normalizer - we follow HF fast.
#include "qlora/tokenizer/sentencepiece_tokenizer.h"

#include <sentencepiece_processor.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <unordered_map>

#include "normalized_string.h"
#include "qlora/core/error.h"
#include "qlora/core/jsonl.h"
#include "qlora/core/unicode.h"
#include "spm_bpe.h"
#include "spm_tokenizer_json.h"

namespace qlora {

namespace td = tokenizer_detail;

namespace {

const std::string kMetaspaceUtf8 = "\xE2\x96\x81";  // U+2581 '▁'

std::string read_binary(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path + ": cannot open SentencePiece model (no such file or not readable)");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// "<0xNN>" as written by SentencePiece byte fallback; -1 otherwise.
int byte_token_value(const std::string& token) {
  if (token.size() != 6 || token.compare(0, 3, "<0x") != 0 || token[5] != '>') return -1;
  int v = 0;
  for (int i = 3; i < 5; ++i) {
    const char c = token[i];
    v = v * 16 + (c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1000);
  }
  return v >= 0 ? v : -1;
}

void replace_all(std::string& s, const std::string& from, const std::string& to) {
  for (size_t pos = 0; (pos = s.find(from, pos)) != std::string::npos; pos += to.size()) {
    s.replace(pos, from.size(), to);
  }
}

// transformers' clean_up_tokenization().
std::string clean_up_tokenization(std::string s) {
  for (const auto& [from, to] : std::vector<std::pair<std::string, std::string>>{{" .", "."},
                                                                                 {" ?", "?"},
                                                                                 {" !", "!"},
                                                                                 {" ,", ","},
                                                                                 {" ' ", "'"},
                                                                                 {" n't", "n't"},
                                                                                 {" 'm", "'m"},
                                                                                 {" 's", "'s"},
                                                                                 {" 've", "'ve"},
                                                                                 {" 're", "'re"}}) {
    replace_all(s, from, to);
  }
  return s;
}

// Tokens of one input sequence, offsets in bytes of that sequence.
struct Piece {
  std::vector<int64_t> ids;
  std::vector<td::ByteRange> offsets;
};

struct AddedToken {
  std::string content;
  int64_t id;
  bool lstrip;
};

class SentencePieceTokenizer final : public Tokenizer {
 public:
  // From a SentencePiece .model file.
  SentencePieceTokenizer(const std::string& model_file, const SentencePieceOptions& options)
      : path_(model_file), opt_(options) {
    const std::string proto = read_binary(model_file);
    const td::SpmProtoInfo info = td::read_spm_proto(proto, model_file);
    load_proto(td::with_identity_normalizer(proto, model_file), info.precompiled_charsmap);
    setup_vocab();
    if (opt_.kind == TokenizerKind::kLlama) bpe_ = td::HfBpe(piece_list(), sp_.unk_id());
  }

  // From tokenizer.json alone (spm_tokenizer_json.h): the pieces laid out as their spm model, the file's
  // merges and added tokens.
  SentencePieceTokenizer(const std::string& json_file, const td::SpmJsonModel& model,
                         const SentencePieceOptions& options)
      : path_(json_file), opt_(options) {
    load_proto(model.model_proto, model.precompiled_charsmap);
    setup_vocab();
    add_json_tokens(model.added_tokens);
    if (opt_.kind == TokenizerKind::kLlama) bpe_ = td::HfBpe(piece_list(), model.bpe_unk_id, model.merges);
  }

  TokenizerKind kind() const override { return opt_.kind; }

  Encoding encode(std::string_view text, bool add_special_tokens) const override {
    const Piece a = encode_sequence(text);
    return assemble(text, a, nullptr, {}, add_special_tokens);
  }

  Encoding encode_pair(std::string_view a, std::string_view b, bool add_special_tokens) const override {
    const Piece pa = encode_sequence(a);
    const Piece pb = encode_sequence(b);
    return assemble(a, pa, &pb, b, add_special_tokens);
  }

  std::string decode(const std::vector<int64_t>& ids, bool skip_special_tokens) const override {
    std::vector<std::string> tokens;
    for (int64_t id : ids) {
      if (skip_special_tokens && is_special(id)) continue;
      tokens.push_back(id_to_token(id));
    }
    std::string out = opt_.kind == TokenizerKind::kLlama ? decode_llama(tokens) : decode_metaspace(tokens);
    return opt_.clean_up_tokenization_spaces ? clean_up_tokenization(out) : out;
  }

  int64_t vocab_size() const override { return vocab_size_; }

  int64_t token_to_id(std::string_view token) const override {
    const auto it = added_by_content_.find(std::string(token));
    if (it != added_by_content_.end()) return it->second;
    const int spm_id = sp_.PieceToId(std::string(token));
    if (spm_id == sp_.unk_id() && sp_.IdToPiece(spm_id) != token) return -1;
    return model_id(spm_id);
  }

  std::string id_to_token(int64_t id) const override {
    if (id < 0 || id >= vocab_size_) {
      fail("token id " + std::to_string(id) + " is outside the vocabulary [0, " +
           std::to_string(vocab_size_) + ") of " + path_);
    }
    const auto it = added_by_id_.find(id);
    if (it != added_by_id_.end()) return it->second;
    return sp_.IdToPiece(static_cast<int>(opt_.kind == TokenizerKind::kXlmRoberta ? id - 1 : id));
  }

  bool is_special(int64_t id) const override { return added_by_id_.count(id) != 0; }

  const SpecialTokenIds& special_ids() const override { return special_; }

  int64_t num_special_tokens_to_add(bool pair) const override {
    switch (opt_.kind) {
      case TokenizerKind::kT5:
        return pair ? 2 : 1;
      case TokenizerKind::kXlmRoberta:
        return pair ? 4 : 2;
      default: {
        const int64_t per = (opt_.add_bos_token ? 1 : 0) + (opt_.add_eos_token ? 1 : 0);
        return pair ? 2 * per : per;
      }
    }
  }

 private:
  void add_special(const std::string& content, int64_t id, bool lstrip = false) {
    added_.push_back({content, id, lstrip});
    added_by_content_[content] = id;
    added_by_id_[id] = content;
  }

  void load_proto(const std::string& identity_proto, const std::string& charsmap) {
    const auto status = sp_.LoadFromSerializedProto(identity_proto);
    if (!status.ok()) fail(path_ + ": not a SentencePiece model: " + status.ToString());
    sp_size_ = sp_.GetPieceSize();
    if (opt_.kind != TokenizerKind::kLlama && !charsmap.empty())
      charsmap_ = td::PrecompiledCharsmap(charsmap, path_);
  }

  std::vector<std::string> piece_list() const {
    std::vector<std::string> pieces(sp_size_);
    for (int i = 0; i < sp_size_; ++i) pieces[i] = sp_.IdToPiece(i);
    return pieces;
  }

  // tokenizer.json's added_tokens: the flavour's own tokens must sit where the flavour puts them (their
  // lstrip comes from the file, as in transformers); further special tokens extend the vocabulary.
  void add_json_tokens(const std::vector<td::SpmJsonAddedToken>& tokens) {
    const int64_t base_size = vocab_size_;
    for (size_t i = 0; i < tokens.size(); ++i) {
      const td::SpmJsonAddedToken& t = tokens[i];
      const std::string where = path_ + ": added_tokens[" + std::to_string(i) + "] '" + t.content + "'";
      const auto known = added_by_content_.find(t.content);
      if (known != added_by_content_.end()) {
        if (known->second != t.id) {
          fail(where + " has id " + std::to_string(t.id) + " but a " + tokenizer_kind_name(opt_.kind) +
               " tokenizer has it at " + std::to_string(known->second));
        }
        for (AddedToken& a : added_) {
          if (a.content == t.content) a.lstrip = t.lstrip;
        }
        continue;
      }
      if (t.id < 0 || added_by_id_.count(t.id) != 0)
        fail(where + ": id " + std::to_string(t.id) + " is taken");
      if (t.id < base_size && id_to_token(t.id) != t.content) {
        fail(where + ": id " + std::to_string(t.id) + " is the piece '" + id_to_token(t.id) + "'");
      }
      add_special(t.content, t.id, t.lstrip);
      vocab_size_ = std::max(vocab_size_, t.id + 1);
    }
    for (int64_t id = base_size; id < vocab_size_; ++id) {
      if (added_by_id_.count(id) == 0) {
        fail(path_ + ": added_tokens leave id " + std::to_string(id) +
             " unassigned (ids must be contiguous)");
      }
    }
  }

  void expect_piece(int id, const std::string& piece) const {
    if (id >= sp_size_ || sp_.IdToPiece(id) != piece) {
      fail(path_ + ": expected piece '" + piece + "' at id " + std::to_string(id) + " for a " +
           tokenizer_kind_name(opt_.kind) + " tokenizer");
    }
  }

  void setup_vocab() {
    switch (opt_.kind) {
      case TokenizerKind::kLlama:
        expect_piece(0, "<unk>");
        expect_piece(1, "<s>");
        expect_piece(2, "</s>");
        add_special("<unk>", 0);
        add_special("<s>", 1);
        add_special("</s>", 2);
        special_.unk = 0;
        special_.bos = 1;
        special_.eos = 2;
        vocab_size_ = sp_size_;
        break;
      case TokenizerKind::kT5:
        expect_piece(0, "<pad>");
        expect_piece(1, "</s>");
        expect_piece(2, "<unk>");
        add_special("<pad>", 0);
        add_special("</s>", 1);
        add_special("<unk>", 2);
        vocab_size_ = sp_size_ + opt_.extra_ids;
        // <extra_id_N> = vocab_size - N - 1: <extra_id_0> is the highest id.
        for (int n = 0; n < opt_.extra_ids; ++n)
          add_special("<extra_id_" + std::to_string(n) + ">", vocab_size_ - n - 1);
        special_.pad = 0;
        special_.eos = 1;
        special_.unk = 2;
        break;
      case TokenizerKind::kXlmRoberta:
        expect_piece(0, "<unk>");
        expect_piece(1, "<s>");
        expect_piece(2, "</s>");
        // fairseq order: <s>=0 <pad>=1 </s>=2 <unk>=3, other pieces spm id + 1, <mask> last.
        add_special("<s>", 0);
        add_special("<pad>", 1);
        add_special("</s>", 2);
        add_special("<unk>", 3);
        add_special("<mask>", sp_size_ + 1, /*lstrip=*/true);
        vocab_size_ = sp_size_ + 2;
        special_ = {0, 2, 1, 3, sp_size_ + 1, 0, 2};
        break;
      default:
        fail(path_ + ": " + tokenizer_kind_name(opt_.kind) + " is not a SentencePiece tokenizer kind");
    }
  }

  int64_t model_id(int spm_id) const {
    if (opt_.kind != TokenizerKind::kXlmRoberta) return spm_id;
    return spm_id == sp_.unk_id() ? 3 : spm_id + 1;
  }

  // Splits on special tokens written in the text (leftmost, longest), then tokenizes the rest.
  Piece encode_sequence(std::string_view text) const {
    if (!is_valid_utf8(text)) fail("tokenizer input is not valid UTF-8");
    Piece out;
    size_t segment_begin = 0;
    for (size_t i = 0; i < text.size();) {
      const AddedToken* hit = nullptr;
      for (const AddedToken& t : added_) {
        if (text.compare(i, t.content.size(), t.content) == 0 &&
            (!hit || t.content.size() > hit->content.size())) {
          hit = &t;
        }
      }
      if (!hit) {
        ++i;
        continue;
      }
      size_t match_begin = i;
      if (hit->lstrip) {
        while (match_begin > segment_begin && text[match_begin - 1] == ' ') --match_begin;
      }
      encode_segment(text, segment_begin, match_begin, out);
      out.ids.push_back(hit->id);
      out.offsets.push_back({i, i + hit->content.size()});  // stripped spaces belong to no token
      i += hit->content.size();
      segment_begin = i;
    }
    encode_segment(text, segment_begin, text.size(), out);
    return out;
  }

  // The HF normalizer + pre-tokenizer for one segment, as one normalized string (the pre-tokens
  // concatenated: spm pieces never cross a '▁' word start, so segmenting the concatenation equals
  // segmenting each pre-token).
  td::NormalizedString pre_tokenize(std::string_view segment, bool at_text_start) const {
    td::NormalizedString s = td::NormalizedString::from_original(segment);
    if (opt_.kind == TokenizerKind::kLlama) {
      td::replace_spaces_with_metaspace(s);
      const bool starts_with_metaspace = s.text.compare(0, kMetaspaceUtf8.size(), kMetaspaceUtf8) == 0;
      if (opt_.add_prefix_space && !starts_with_metaspace && (opt_.legacy || at_text_start)) {
        td::prepend_char(s, 0x2581);
      }
      return s;
    }
    if (!charsmap_.empty()) charsmap_.normalize(s);  // a tokenizer.json may have no normalizer
    td::NormalizedString joined;
    for (td::NormalizedString& word : td::split_on_whitespace(s)) {
      if (word.text.compare(0, kMetaspaceUtf8.size(), kMetaspaceUtf8) != 0) td::prepend_char(word, 0x2581);
      td::append(joined, word);
    }
    return joined;
  }

  void encode_segment(std::string_view text, size_t begin, size_t end, Piece& out) const {
    if (begin >= end) return;
    const td::NormalizedString s = pre_tokenize(text.substr(begin, end - begin), begin == 0);
    if (s.empty()) return;
    if (opt_.kind == TokenizerKind::kLlama) {
      for (const td::BpeToken& t : bpe_.encode(s.text)) {
        const td::ByteRange range = s.original_range(t.begin, t.end);
        out.ids.push_back(t.id);
        out.offsets.push_back({range.first + begin, range.second + begin});
      }
      return;
    }
    const auto spt = sp_.EncodeAsImmutableProto(s.text);
    size_t cursor = 0;  // bytes of s.text consumed so far
    for (const auto& p : spt.pieces()) {
      const int spm_id = static_cast<int>(p.id());
      td::ByteRange range;
      if (sp_.IsByte(spm_id)) {
        // Byte fallback: every byte token of a char gets the whole char's span (HF BPE does).
        size_t char_begin = cursor;
        while (char_begin > 0 && (static_cast<unsigned char>(s.text[char_begin]) & 0xC0) == 0x80)
          --char_begin;
        size_t char_end = char_begin + 1;
        while (char_end < s.text.size() && (static_cast<unsigned char>(s.text[char_end]) & 0xC0) == 0x80)
          ++char_end;
        range = s.original_range(char_begin, char_end);
        cursor += 1;
      } else {
        const size_t nb = p.begin();
        const size_t ne = p.end();
        if (nb >= ne || ne > s.text.size()) {
          fail(path_ + ": SentencePiece returned an empty or out-of-range piece for '" + std::string(text) +
               "'");
        }
        range = s.original_range(nb, ne);
        cursor = ne;
      }
      out.ids.push_back(model_id(spm_id));
      out.offsets.push_back({range.first + begin, range.second + begin});
    }
  }

  Encoding assemble(std::string_view a_text, const Piece& a, const Piece* b, std::string_view b_text,
                    bool add_special) const {
    Encoding e;
    auto special = [&](int64_t id, int64_t type) {
      e.ids.push_back(id);
      e.offsets.emplace_back(0, 0);
      e.token_type_ids.push_back(type);
      e.sequence_ids.push_back(-1);
    };
    auto sequence = [&](std::string_view text, const Piece& p, int seq, int64_t type) {
      const std::vector<size_t> to_char = utf8_byte_to_char(text);
      for (size_t i = 0; i < p.ids.size(); ++i) {
        e.ids.push_back(p.ids[i]);
        e.offsets.emplace_back(static_cast<int64_t>(to_char[p.offsets[i].first]),
                               static_cast<int64_t>(to_char[p.offsets[i].second]));
        e.token_type_ids.push_back(type);
        e.sequence_ids.push_back(seq);
      }
    };
    const bool llama = opt_.kind == TokenizerKind::kLlama;
    const bool xlmr = opt_.kind == TokenizerKind::kXlmRoberta;
    const bool bos = add_special && (xlmr || (llama && opt_.add_bos_token));
    const bool eos = add_special && !(llama && !opt_.add_eos_token);
    if (bos) special(special_.bos, 0);
    sequence(a_text, a, 0, 0);
    if (eos) special(special_.eos, 0);
    if (b) {
      const int64_t type = llama ? 1 : 0;  // only the LLaMA template gives $B type 1
      if (add_special && xlmr) special(special_.eos, 0);
      if (bos && llama) special(special_.bos, type);
      sequence(b_text, *b, 1, type);
      if (eos) special(special_.eos, type);
    }
    return e;
  }

  // Replace('▁', ' ') -> ByteFallback -> Fuse -> Strip(left 1 space) when add_prefix_space.
  std::string decode_llama(const std::vector<std::string>& tokens) const {
    std::string out;
    std::string bytes;
    size_t byte_tokens = 0;
    auto flush = [&]() {
      if (byte_tokens == 0) return;
      if (is_valid_utf8(bytes)) {
        out += bytes;
      } else {
        for (size_t i = 0; i < byte_tokens; ++i) out += "\xEF\xBF\xBD";  // U+FFFD per byte token
      }
      bytes.clear();
      byte_tokens = 0;
    };
    for (const std::string& token : tokens) {
      const int byte = byte_token_value(token);
      if (byte >= 0) {
        bytes.push_back(static_cast<char>(byte));
        ++byte_tokens;
        continue;
      }
      flush();
      std::string t = token;
      replace_all(t, kMetaspaceUtf8, " ");
      out += t;
    }
    flush();
    if (opt_.add_prefix_space && !out.empty() && out[0] == ' ') out.erase(0, 1);
    return out;
  }

  // Metaspace decoder (prepend_scheme always): '▁' -> ' ', except in the first token where it is dropped.
  std::string decode_metaspace(const std::vector<std::string>& tokens) const {
    std::string out;
    for (size_t i = 0; i < tokens.size(); ++i) {
      std::string t = tokens[i];
      replace_all(t, kMetaspaceUtf8, i == 0 ? "" : " ");
      out += t;
    }
    return out;
  }

  std::string path_;
  SentencePieceOptions opt_;
  sentencepiece::SentencePieceProcessor sp_;
  td::PrecompiledCharsmap charsmap_;
  td::HfBpe bpe_;  // LLaMA only
  int64_t sp_size_ = 0;
  int64_t vocab_size_ = 0;
  SpecialTokenIds special_;
  std::vector<AddedToken> added_;
  std::unordered_map<std::string, int64_t> added_by_content_;
  std::unordered_map<int64_t, std::string> added_by_id_;
};

}  // namespace

std::unique_ptr<Tokenizer> load_sentencepiece_tokenizer(const std::string& model_file,
                                                        const SentencePieceOptions& options) {
  return std::make_unique<SentencePieceTokenizer>(model_file, options);
}

std::unique_ptr<Tokenizer> load_sentencepiece_tokenizer_json(const std::string& model_dir,
                                                             TokenizerKind kind) {
  const std::string json_file = model_dir + "/tokenizer.json";
  const td::SpmJsonModel model = td::read_spm_tokenizer_json(json_file, kind);
  SentencePieceOptions options = read_sentencepiece_options(model_dir, kind);
  if (kind == TokenizerKind::kT5) {
    const std::string cfg = model_dir + "/tokenizer_config.json";
    if (std::ifstream(cfg) && read_json_file(cfg).contains("extra_ids") &&
        options.extra_ids != model.extra_ids) {
      fail(cfg + ": extra_ids is " + std::to_string(options.extra_ids) + " but " + json_file + " has " +
           std::to_string(model.extra_ids) + " <extra_id_N> tokens at the end of model.vocab");
    }
    options.extra_ids = model.extra_ids;
  }
  if (kind == TokenizerKind::kLlama) {
    // transformers 5 (TokenizersBackend): add_bos_token / add_eos_token in tokenizer_config.json rebuild the
    // template (a missing one counts as false); without either, tokenizer.json's post_processor is used.
    const std::string cfg_path = model_dir + "/tokenizer_config.json";
    const Json cfg = std::ifstream(cfg_path) ? read_json_file(cfg_path) : Json::object();
    const bool has_bos = cfg.contains("add_bos_token") && !cfg["add_bos_token"].is_null();
    const bool has_eos = cfg.contains("add_eos_token") && !cfg["add_eos_token"].is_null();
    if (!has_bos && !has_eos) {
      options.add_bos_token = model.template_bos;
      options.add_eos_token = model.template_eos;
    } else {
      if (!has_bos) options.add_bos_token = false;
      if (!has_eos) options.add_eos_token = false;
    }
  }
  return std::make_unique<SentencePieceTokenizer>(json_file, model, options);
}

SentencePieceOptions read_sentencepiece_options(const std::string& model_dir, TokenizerKind kind) {
  SentencePieceOptions o;
  o.kind = kind;
  const std::string path = model_dir + "/tokenizer_config.json";
  if (!std::ifstream(path)) return o;
  const Json cfg = read_json_file(path);
  auto get_bool = [&](const char* key, bool& dst) {
    if (!cfg.contains(key) || cfg[key].is_null()) return;
    if (!cfg[key].is_boolean()) fail(path + ": '" + key + "' must be true or false");
    dst = cfg[key].get<bool>();
  };
  get_bool("add_bos_token", o.add_bos_token);
  get_bool("add_eos_token", o.add_eos_token);
  get_bool("add_prefix_space", o.add_prefix_space);
  get_bool("legacy", o.legacy);
  get_bool("clean_up_tokenization_spaces", o.clean_up_tokenization_spaces);
  if (cfg.contains("extra_ids")) {
    if (!cfg["extra_ids"].is_number_integer() || cfg["extra_ids"].get<int>() < 0) {
      fail(path + ": 'extra_ids' must be a non-negative integer");
    }
    o.extra_ids = cfg["extra_ids"].get<int>();
  }
  return o;
}

}  // namespace qlora
