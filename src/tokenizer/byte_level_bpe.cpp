// Byte-level BPE, following HF tokenizers' pipeline step by step so that offsets agree:
//   1. added tokens with normalized=false are split out of the raw text (leftmost-longest, lstrip/rstrip);
//   2. the rest is normalized (NFC, with alignments), then normalized added tokens are split out;
//   3. pre-tokenizer steps split each piece (Split regexes, ByteLevel's prefix space and GPT-2 regex);
//   4. each piece's bytes are mapped to GPT-2's printable byte alphabet and merged by BPE rank;
//   5. offsets go back to original code points; the post-processor trims them and adds specials.
#include "qlora/tokenizer/byte_level_bpe.h"

#include <utf8proc.h>

#include <algorithm>
#include <array>
#include <mutex>
#include <unordered_map>
#include <unordered_set>

#include "bpe_pretokenize.h"
#include "bpe_spec.h"
#include "normalized_string.h"
#include "qlora/core/error.h"
#include "qlora/core/unicode.h"

namespace qlora {

namespace td = tokenizer_detail;

namespace {

constexpr char32_t kByteLevelSpace = 0x120;  // 'Ġ', the byte-level symbol of ' '

// GPT-2 bytes_to_unicode: printable Latin-1 bytes map to themselves, the others to U+0100 + n.
std::array<char32_t, 256> bytes_to_unicode() {
  std::array<char32_t, 256> table{};
  char32_t next = 256;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    table[b] = printable ? static_cast<char32_t>(b) : next++;
  }
  return table;
}

// A piece of text between added tokens, or an added token; `text` keeps original alignments.
struct Segment {
  td::NormalizedString text;
  int64_t added_id = -1;  // >= 0: this segment is that added token
};

td::NormalizedString slice(const td::NormalizedString& s, size_t begin, size_t end) {
  td::NormalizedString out;
  out.text = s.text.substr(begin, end - begin);
  out.alignment.assign(s.alignment.begin() + begin, s.alignment.begin() + end);
  return out;
}

char32_t code_point_at(const std::string& s, size_t i) {
  utf8proc_int32_t cp = 0;
  utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(s.data() + i),
                   static_cast<utf8proc_ssize_t>(s.size() - i), &cp);
  return static_cast<char32_t>(cp);
}

// tokenizers' AddedVocabulary::find_matches: leftmost-longest matches, then lstrip/rstrip widen each
// match over the whitespace beside it.
std::vector<Segment> split_on_added(const td::NormalizedString& s,
                                    const std::vector<td::BpeAddedToken>& tokens) {
  const std::string& t = s.text;
  std::vector<std::pair<size_t, size_t>> matches;
  std::vector<const td::BpeAddedToken*> which;
  for (size_t i = 0; i < t.size() && !tokens.empty();) {
    const td::BpeAddedToken* best = nullptr;
    for (const auto& tok : tokens) {
      if ((!best || tok.content.size() > best->content.size()) &&
          t.compare(i, tok.content.size(), tok.content) == 0) {
        best = &tok;
      }
    }
    if (best) {
      matches.emplace_back(i, i + best->content.size());
      which.push_back(best);
      i += best->content.size();
    } else {
      i += utf8_lead_length(static_cast<unsigned char>(t[i]));
    }
  }
  std::vector<Segment> out;
  size_t done = 0;
  for (size_t m = 0; m < matches.size(); ++m) {
    auto [start, stop] = matches[m];
    if (which[m]->lstrip) {
      size_t k = start;
      while (k > 0) {
        size_t p = k - 1;
        while (p > 0 && (static_cast<unsigned char>(t[p]) & 0xC0) == 0x80) --p;
        if (!td::is_white_space(code_point_at(t, p))) break;
        k = p;
      }
      start = std::max(k, done);
    }
    if (which[m]->rstrip) {
      while (stop < t.size() && td::is_white_space(code_point_at(t, stop))) {
        stop += utf8_lead_length(static_cast<unsigned char>(t[stop]));
      }
    }
    if (done < start) out.push_back({slice(s, done, start), -1});
    out.push_back({slice(s, start, stop), which[m]->id});
    done = stop;
  }
  if (done < t.size()) out.push_back({slice(s, done, t.size()), -1});
  return out;
}

// NFC with tokenizers' alignment rules: a composed char replaces the first char of its source run and
// removes the rest (so it aligns to that first char only); extra output chars are insertions.
void nfc_normalize(td::NormalizedString& s) {
  // Text already in NFC maps every run onto itself: every change is 0 and the alignments stay.
  if (nfc(s.text) == s.text) return;
  const std::vector<char32_t> cps = utf8_decode(s.text);
  std::vector<td::Change> changes;
  size_t i = 0;
  while (i < cps.size()) {
    // A run: a char plus what may compose with it (non-starters, or starters NFC merges into it).
    size_t j = i + 1;
    std::vector<char32_t> run{cps[i]};
    while (j < cps.size()) {
      const auto* prop = utf8proc_get_property(static_cast<utf8proc_int32_t>(cps[j]));
      if (prop->combining_class == 0) {
        std::vector<char32_t> with = run;
        with.push_back(cps[j]);
        const std::string joined = nfc(utf8_encode(with));
        if (joined == nfc(utf8_encode(run)) + nfc(utf8_encode({cps[j]}))) break;
      }
      run.push_back(cps[j]);
      ++j;
    }
    const std::vector<char32_t> out = utf8_decode(nfc(utf8_encode(run)));
    const int n = static_cast<int>(run.size()), m = static_cast<int>(out.size());
    for (int k = 0; k < m; ++k) {
      int change = 0;
      if (m <= n && k == 0) change = m - n;
      if (m > n && k >= n) change = 1;
      changes.emplace_back(out[k], change);
    }
    i = j;
  }
  td::transform(s, changes);
}

// A BPE symbol: a token id over bytes [begin, end) of its pre-token.
struct Symbol {
  int64_t id;
  size_t begin, end;
};

// One token of one sequence before post-processing.
struct RawToken {
  int64_t id;
  size_t begin, end;  // original bytes
  std::string value;  // token text as tokenizers stores it (used by offset trimming)
};

class ByteLevelBpeTokenizer : public Tokenizer {
 public:
  explicit ByteLevelBpeTokenizer(td::BpeSpec spec) : spec_(std::move(spec)) {
    const auto table = bytes_to_unicode();
    for (int b = 0; b < 256; ++b) {
      byte_char_[b].clear();
      utf8_append(byte_char_[b], table[b]);
      char_byte_[table[b]] = static_cast<uint8_t>(b);
      const auto it = spec_.vocab.find(byte_char_[b]);
      byte_id_[b] = it == spec_.vocab.end() ? -1 : it->second;
    }
    std::unordered_set<std::string> names;
    for (const auto& [token, id] : spec_.vocab) {
      names.insert(token);
      vocab_tokens_[id] = token;
    }
    for (const auto& a : spec_.added) {
      names.insert(a.content);
      added_by_id_[a.id] = a;
      added_by_content_[a.content] = a.id;
      (a.normalized ? normalized_added_ : raw_added_).push_back(a);
    }
    vocab_size_ = static_cast<int64_t>(names.size());
  }

  TokenizerKind kind() const override { return TokenizerKind::kByteLevelBpe; }

  Encoding encode(std::string_view text, bool add_special_tokens) const override {
    const std::vector<RawToken> a = tokenize(text);
    return post_process(to_chars(text, a), nullptr, add_special_tokens);
  }

  Encoding encode_pair(std::string_view a, std::string_view b, bool add_special_tokens) const override {
    const Encoding ea = to_chars(a, tokenize(a));
    const Encoding eb = to_chars(b, tokenize(b));
    return post_process(ea, &eb, add_special_tokens);
  }

  std::string decode(const std::vector<int64_t>& ids, bool skip_special_tokens) const override {
    std::string bytes;
    for (int64_t id : ids) {
      check_id(id);
      if (skip_special_tokens && is_special(id)) continue;
      const std::string* token = token_of(id);
      if (!token) continue;  // an id with no token is dropped, as tokenizers does
      // ByteLevel decoder: a token whose chars are all byte symbols becomes those bytes, any other token
      // is copied as UTF-8.
      std::string mapped;
      bool all_bytes = true;
      for (char32_t c : utf8_decode(*token)) {
        const auto it = char_byte_.find(c);
        if (it == char_byte_.end()) {
          all_bytes = false;
          break;
        }
        mapped.push_back(static_cast<char>(it->second));
      }
      bytes += all_bytes ? mapped : *token;
    }
    std::string text = utf8_lossy(bytes);
    return spec_.clean_up_tokenization_spaces ? clean_up_tokenization(text) : text;
  }

  int64_t vocab_size() const override { return vocab_size_; }

  int64_t token_to_id(std::string_view token) const override {
    const std::string t(token);
    if (const auto it = added_by_content_.find(t); it != added_by_content_.end()) return it->second;
    const auto it = spec_.vocab.find(t);
    return it == spec_.vocab.end() ? -1 : it->second;
  }

  std::string id_to_token(int64_t id) const override {
    check_id(id);
    const std::string* token = token_of(id);
    if (!token) fail(spec_.source + ": id " + std::to_string(id) + " has no token");
    return *token;
  }

  bool is_special(int64_t id) const override {
    const auto it = added_by_id_.find(id);
    return it != added_by_id_.end() && it->second.special;
  }

  const SpecialTokenIds& special_ids() const override { return spec_.special; }

  int64_t num_special_tokens_to_add(bool pair) const override {
    using Kind = td::PostProcessorSpec::Kind;
    if (spec_.post.kind == Kind::kRoberta) return pair ? 4 : 2;
    if (spec_.post.kind != Kind::kTemplate) return 0;
    int64_t n = 0;
    for (const auto& p : pair ? spec_.post.pair : spec_.post.single) n += static_cast<int64_t>(p.ids.size());
    return n;
  }

 private:
  void check_id(int64_t id) const {
    if (id < 0 || id >= vocab_size_) {
      fail(spec_.source + ": token id " + std::to_string(id) + " is outside [0, " +
           std::to_string(vocab_size_) + ")");
    }
  }

  const std::string* token_of(int64_t id) const {
    if (const auto it = added_by_id_.find(id); it != added_by_id_.end()) return &it->second.content;
    const auto it = vocab_tokens_.find(id);
    return it == vocab_tokens_.end() ? nullptr : &it->second;
  }

  std::vector<RawToken> tokenize(std::string_view text) const {
    if (!is_valid_utf8(text)) fail(spec_.source + ": cannot encode malformed UTF-8 text");
    std::vector<RawToken> tokens;
    const td::NormalizedString original = td::NormalizedString::from_original(text);
    for (Segment& raw : split_on_added(original, raw_added_)) {
      if (raw.added_id >= 0) {
        tokens.push_back({raw.added_id, raw.text.alignment.front().first, raw.text.alignment.back().second,
                          raw.text.text});
        continue;
      }
      if (spec_.nfc) nfc_normalize(raw.text);
      for (Segment& seg : split_on_added(raw.text, normalized_added_)) {
        if (seg.added_id >= 0) {
          tokens.push_back({seg.added_id, seg.text.alignment.front().first, seg.text.alignment.back().second,
                            seg.text.text});
          continue;
        }
        for (const td::NormalizedString& piece : pre_tokenize(seg.text)) {
          for (const Symbol& sym : bpe(piece.text)) {
            const auto [b, e] = piece.original_range(sym.begin, sym.end);
            tokens.push_back({sym.id, b, e, token_of(sym.id) ? *token_of(sym.id) : std::string()});
          }
        }
      }
    }
    return tokens;
  }

  std::vector<td::NormalizedString> pre_tokenize(const td::NormalizedString& text) const {
    std::vector<td::NormalizedString> pieces{text};
    for (const td::PreTokenizeStep& step : spec_.pre_tokenizer) {
      std::vector<td::NormalizedString> next;
      for (td::NormalizedString& piece : pieces) {
        if (step.kind == td::PreTokenizeStep::Kind::kByteLevel) {
          if (step.add_prefix_space && piece.text.rfind(' ', 0) != 0) td::prepend_char(piece, ' ');
          if (!step.use_regex) {
            next.push_back(std::move(piece));
            continue;
          }
        }
        split_piece(piece, step, next);
      }
      pieces.clear();
      for (auto& p : next) {
        if (!p.empty()) pieces.push_back(std::move(p));
      }
    }
    return pieces;
  }

  // Split (or ByteLevel's regex, which is Split(GPT-2 regex, Isolated)).
  static void split_piece(const td::NormalizedString& piece, const td::PreTokenizeStep& step,
                          std::vector<td::NormalizedString>& out) {
    std::vector<td::Span> matches;  // byte spans
    if (step.kind == td::PreTokenizeStep::Kind::kSplit && step.literal) {
      for (size_t pos = 0; (pos = piece.text.find(step.literal_text, pos)) != std::string::npos;
           pos += step.literal_text.size()) {
        matches.emplace_back(pos, pos + step.literal_text.size());
      }
    } else {
      const td::SplitRegex re =
          step.kind == td::PreTokenizeStep::Kind::kByteLevel ? td::kByteLevelRegex : step.regex;
      const std::vector<size_t> to_byte = utf8_char_to_byte(piece.text);
      for (const auto& [b, e] : td::regex_matches(re, utf8_decode(piece.text)))
        matches.emplace_back(to_byte[b], to_byte[e]);
    }
    // Matches and the gaps between them, in order, flagged as matches (after invert).
    std::vector<std::pair<td::Span, bool>> parts;
    size_t done = 0;
    for (const auto& m : matches) {
      if (done < m.first) parts.push_back({{done, m.first}, step.invert});
      parts.push_back({m, !step.invert});
      done = m.second;
    }
    if (done < piece.text.size()) parts.push_back({{done, piece.text.size()}, step.invert});
    for (const auto& [span, is_match] : parts) {
      if (step.kind == td::PreTokenizeStep::Kind::kSplit && step.removed && is_match) continue;
      out.push_back(slice(piece, span.first, span.second));
    }
  }

  // BPE over the byte symbols of one pre-token.
  std::vector<Symbol> bpe(const std::string& piece) const {
    {
      std::lock_guard<std::mutex> lock(cache_mutex_);
      if (const auto it = cache_.find(piece); it != cache_.end()) return it->second;
    }
    std::vector<Symbol> out;
    std::string word;
    for (unsigned char b : piece) word += byte_char_[b];
    const auto whole = spec_.vocab.find(word);
    if (spec_.ignore_merges && whole != spec_.vocab.end()) {
      out.push_back({whole->second, 0, piece.size()});
    } else {
      for (size_t i = 0; i < piece.size(); ++i) {
        const int64_t id = byte_id_[static_cast<unsigned char>(piece[i])];
        // A byte with no symbol becomes unk, or no token at all when there is no unk (as in tokenizers).
        if (id >= 0 || spec_.unk_id >= 0) out.push_back({id >= 0 ? id : spec_.unk_id, i, i + 1});
      }
      merge_all(out);
    }
    std::lock_guard<std::mutex> lock(cache_mutex_);
    if (cache_.size() > 100000) cache_.clear();
    cache_.emplace(piece, out);
    return out;
  }

  // Repeatedly merges the adjacent pair of lowest rank (leftmost on ties), as tokenizers' Word::merge_all.
  void merge_all(std::vector<Symbol>& symbols) const {
    while (symbols.size() > 1) {
      int32_t best_rank = INT32_MAX;
      size_t best = 0;
      int64_t merged = -1;
      for (size_t i = 0; i + 1 < symbols.size(); ++i) {
        const auto it = spec_.merges.find(td::merge_key(symbols[i].id, symbols[i + 1].id));
        if (it != spec_.merges.end() && it->second.first < best_rank) {
          best_rank = it->second.first;
          best = i;
          merged = it->second.second;
        }
      }
      if (merged < 0) break;
      symbols[best] = {merged, symbols[best].begin, symbols[best + 1].end};
      symbols.erase(symbols.begin() + static_cast<std::ptrdiff_t>(best) + 1);
    }
  }

  // Code-point offsets and the trimming ByteLevel / RobertaProcessing do (tokenizers process_offsets).
  Encoding to_chars(std::string_view text, const std::vector<RawToken>& tokens) const {
    const std::vector<size_t> to_char = utf8_byte_to_char(text);
    Encoding e;
    for (size_t i = 0; i < tokens.size(); ++i) {
      const RawToken& t = tokens[i];
      auto offsets =
          std::make_pair(static_cast<int64_t>(to_char[t.begin]), static_cast<int64_t>(to_char[t.end]));
      if (spec_.post.trim_offsets) trim_offsets(t.value, i, offsets);
      e.ids.push_back(t.id);
      e.offsets.push_back(offsets);
    }
    return e;
  }

  void trim_offsets(const std::string& value, size_t index, std::pair<int64_t, int64_t>& offsets) const {
    const std::vector<char32_t> chars = utf8_decode(value);
    auto is_space = [](char32_t c) { return c == kByteLevelSpace || td::is_white_space(c); };
    int64_t leading = 0, trailing = 0;
    while (leading < static_cast<int64_t>(chars.size()) && is_space(chars[leading])) ++leading;
    while (trailing < static_cast<int64_t>(chars.size()) && is_space(chars[chars.size() - 1 - trailing]))
      ++trailing;
    if (leading > 0) {
      const bool is_first = index == 0 || offsets.first == 0;
      // Keep the prefix space the pre-tokenizer added itself.
      if (is_first && spec_.post.add_prefix_space && leading == 1) leading = 0;
      offsets.first = std::min(offsets.first + leading, offsets.second);
    }
    if (trailing > 0 && offsets.second >= trailing)
      offsets.second = std::max(offsets.second - trailing, offsets.first);
  }

  Encoding post_process(const Encoding& a, const Encoding* b, bool add_special_tokens) const {
    using Kind = td::PostProcessorSpec::Kind;
    Encoding out;
    auto append_sequence = [&](const Encoding& s, int seq, int64_t type_id) {
      for (size_t i = 0; i < s.ids.size(); ++i) {
        out.ids.push_back(s.ids[i]);
        out.offsets.push_back(s.offsets[i]);
        out.token_type_ids.push_back(type_id);
        out.sequence_ids.push_back(seq);
      }
    };
    auto append_special = [&](int64_t id, int64_t type_id) {
      out.ids.push_back(id);
      out.offsets.emplace_back(0, 0);
      out.token_type_ids.push_back(type_id);
      out.sequence_ids.push_back(-1);
    };
    const Kind kind = add_special_tokens ? spec_.post.kind : Kind::kNone;
    if (kind == Kind::kRoberta) {
      append_special(spec_.post.cls, 0);
      append_sequence(a, 0, 0);
      append_special(spec_.post.sep, 0);
      if (b) {
        append_special(spec_.post.sep, 0);
        append_sequence(*b, 1, 0);
        append_special(spec_.post.sep, 0);
      }
    } else if (kind == Kind::kTemplate) {
      for (const td::TemplatePiece& p : b ? spec_.post.pair : spec_.post.single) {
        if (p.is_sequence) {
          append_sequence(p.sequence == 0 ? a : *b, p.sequence, p.type_id);
        } else {
          for (int64_t id : p.ids) append_special(id, p.type_id);
        }
      }
    } else {
      // Without a template tokenizers keeps the type id each sequence was encoded with: 0 for A, 1 for B.
      append_sequence(a, 0, 0);
      if (b) append_sequence(*b, 1, 1);
    }
    return out;
  }

  // Rust String::from_utf8_lossy: each maximal ill-formed subpart becomes one U+FFFD.
  static std::string utf8_lossy(const std::string& s) {
    std::string out;
    const auto* p = reinterpret_cast<const unsigned char*>(s.data());
    const size_t n = s.size();
    for (size_t i = 0; i < n;) {
      const unsigned char c = p[i];
      size_t len = 0;
      unsigned char lo = 0x80, hi = 0xBF;
      if (c < 0x80) {
        out.push_back(static_cast<char>(c));
        ++i;
        continue;
      }
      if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
      } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
      } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
      }
      size_t k = 1;
      if (len > 0) {
        for (; k < len && i + k < n; ++k) {
          const unsigned char lo_k = k == 1 ? lo : 0x80, hi_k = k == 1 ? hi : 0xBF;
          if (p[i + k] < lo_k || p[i + k] > hi_k) break;
        }
      }
      if (len > 0 && k == len) {
        out.append(s, i, len);
      } else {
        out += "\xEF\xBF\xBD";
      }
      i += k;
    }
    return out;
  }

  // transformers' clean_up_tokenization().
  static std::string clean_up_tokenization(std::string s) {
    static const std::pair<const char*, const char*> kRules[] = {
        {" .", "."},     {" ?", "?"},   {" !", "!"},   {" ,", ","},     {" ' ", "'"},
        {" n't", "n't"}, {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}};
    for (const auto& [from, to] : kRules) {
      const std::string f(from), t(to);
      for (size_t pos = 0; (pos = s.find(f, pos)) != std::string::npos; pos += t.size())
        s.replace(pos, f.size(), t);
    }
    return s;
  }

  td::BpeSpec spec_;
  std::array<std::string, 256> byte_char_;
  std::array<int64_t, 256> byte_id_{};
  std::unordered_map<char32_t, uint8_t> char_byte_;
  std::unordered_map<int64_t, std::string> vocab_tokens_;
  std::unordered_map<int64_t, td::BpeAddedToken> added_by_id_;
  std::unordered_map<std::string, int64_t> added_by_content_;
  std::vector<td::BpeAddedToken> raw_added_, normalized_added_;
  int64_t vocab_size_ = 0;
  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<Symbol>> cache_;
};

}  // namespace

std::unique_ptr<Tokenizer> load_byte_level_bpe_tokenizer(const std::string& model_dir) {
  return std::make_unique<ByteLevelBpeTokenizer>(td::read_bpe_spec(model_dir));
}

}  // namespace qlora
