#include "normalized_string.h"

#include <utf8proc.h>

#include <cstring>

#include "qlora/core/error.h"
#include "qlora/core/unicode.h"

namespace qlora::tokenizer_detail {

namespace {

char32_t decode_at(std::string_view text, size_t i) {
  utf8proc_int32_t cp = 0;
  utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(text.data() + i),
                   static_cast<utf8proc_ssize_t>(text.size() - i), &cp);
  return static_cast<char32_t>(cp);
}

size_t utf8_size(char32_t c) { return c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4; }

constexpr char32_t kMetaspace = 0x2581;

}  // namespace

NormalizedString NormalizedString::from_original(std::string_view original) {
  NormalizedString s;
  s.text = std::string(original);
  s.alignment.resize(original.size());
  for (size_t i = 0; i < original.size();) {
    const size_t n = utf8_lead_length(static_cast<unsigned char>(original[i]));
    for (size_t k = 0; k < n; ++k) s.alignment[i + k] = {i, i + n};
    i += n;
  }
  return s;
}

ByteRange NormalizedString::original_range(size_t begin, size_t end) const {
  return {alignment[begin].first, alignment[end - 1].second};
}

void transform(NormalizedString& s, const std::vector<Change>& changes) {
  std::vector<size_t> old_sizes;  // byte size of each old char, in order
  for (size_t i = 0; i < s.text.size();) {
    const size_t n = utf8_lead_length(static_cast<unsigned char>(s.text[i]));
    old_sizes.push_back(n);
    i += n;
  }
  size_t next_old = 0;
  size_t offset = 0;  // byte position in the old string
  NormalizedString out;
  for (const auto& [c, change] : changes) {
    ByteRange align{0, 0};
    if (change > 0) {
      // An inserted char shares the alignment of the byte before it (tokenizers does the same).
      if (offset >= 1) align = s.alignment[std::min(offset, s.alignment.size()) - 1];
    } else if (offset < s.alignment.size()) {
      align = s.alignment[offset];
    } else if (!s.alignment.empty()) {
      align = s.alignment.back();
    }
    if (change <= 0 && next_old < old_sizes.size()) offset += old_sizes[next_old++];
    for (int k = 0; k < -change && next_old < old_sizes.size(); ++k) offset += old_sizes[next_old++];
    utf8_append(out.text, c);
    out.alignment.insert(out.alignment.end(), utf8_size(c), align);
  }
  s = std::move(out);
}

void prepend_char(NormalizedString& s, char32_t c) {
  if (s.text.empty()) return;
  const size_t first_len = utf8_lead_length(static_cast<unsigned char>(s.text[0]));
  const ByteRange first_align = s.alignment[0];
  std::string prefix;
  utf8_append(prefix, c);
  s.text.insert(0, prefix);
  s.alignment.insert(s.alignment.begin(), prefix.size(), first_align);
  // The old first char is "inserted" after the new one: it takes the alignment of the byte before
  // it, which is the new char's (= its own first byte's) alignment.
  for (size_t k = 0; k < first_len; ++k) s.alignment[prefix.size() + k] = first_align;
}

void replace_spaces_with_metaspace(NormalizedString& s) {
  NormalizedString out;
  for (size_t i = 0; i < s.text.size(); ++i) {
    if (s.text[i] == ' ') {
      utf8_append(out.text, kMetaspace);
      out.alignment.insert(out.alignment.end(), 3, s.alignment[i]);
    } else {
      out.text.push_back(s.text[i]);
      out.alignment.push_back(s.alignment[i]);
    }
  }
  s = std::move(out);
}

bool is_unicode_whitespace(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

std::vector<NormalizedString> split_on_whitespace(const NormalizedString& s) {
  std::vector<NormalizedString> words;
  NormalizedString current;
  for (size_t i = 0; i < s.text.size();) {
    const size_t n = utf8_lead_length(static_cast<unsigned char>(s.text[i]));
    if (is_unicode_whitespace(decode_at(s.text, i))) {
      if (!current.empty()) words.push_back(std::move(current));
      current = NormalizedString{};
    } else {
      current.text.append(s.text, i, n);
      current.alignment.insert(current.alignment.end(), s.alignment.begin() + i, s.alignment.begin() + i + n);
    }
    i += n;
  }
  if (!current.empty()) words.push_back(std::move(current));
  return words;
}

void append(NormalizedString& a, const NormalizedString& b) {
  a.text += b.text;
  a.alignment.insert(a.alignment.end(), b.alignment.begin(), b.alignment.end());
}

// ---- precompiled charsmap -------------------------------------------------------------------

PrecompiledCharsmap::PrecompiledCharsmap(std::string blob, const std::string& source) {
  if (blob.empty()) return;
  uint32_t trie_bytes = 0;
  if (blob.size() < 4) fail(source + ": precompiled_charsmap is truncated");
  std::memcpy(&trie_bytes, blob.data(), 4);  // little-endian, as written by sentencepiece
  if (trie_bytes % 4 != 0 || 4 + static_cast<size_t>(trie_bytes) > blob.size()) {
    fail(source + ": precompiled_charsmap has a bad trie size " + std::to_string(trie_bytes));
  }
  trie_.resize(trie_bytes / 4);
  std::memcpy(trie_.data(), blob.data() + 4, trie_bytes);
  replacements_ = blob.substr(4 + trie_bytes);
}

// Darts double-array unit accessors (darts.h).
namespace {
bool has_leaf(uint32_t unit) { return ((unit >> 8) & 1) == 1; }
uint32_t value(uint32_t unit) { return unit & ((1u << 31) - 1); }
uint32_t label(uint32_t unit) { return unit & ((1u << 31) | 0xFF); }
uint32_t unit_offset(uint32_t unit) { return (unit >> 10) << ((unit & (1u << 9)) >> 6); }
}  // namespace

bool PrecompiledCharsmap::lookup(std::string_view chunk, std::string_view* out) const {
  if (trie_.empty()) return false;
  size_t node = 0;
  uint32_t unit = trie_[node];
  node ^= unit_offset(unit);
  for (unsigned char c : chunk) {
    if (c == 0) break;
    node ^= c;
    if (node >= trie_.size()) return false;
    unit = trie_[node];
    if (label(unit) != c) return false;
    node ^= unit_offset(unit);
    if (has_leaf(unit)) {
      if (node >= trie_.size()) return false;
      const size_t start = value(trie_[node]);
      if (start >= replacements_.size()) return false;
      const size_t end = replacements_.find('\0', start);
      *out = std::string_view(replacements_).substr(start, end == std::string::npos ? end : end - start);
      return true;  // the shortest match wins, as in spm_precompiled's transform()
    }
  }
  return false;
}

void PrecompiledCharsmap::normalize(NormalizedString& s) const {
  if (trie_.empty() || s.text.empty()) return;
  std::vector<Change> changes;
  bool modified = false;
  auto push_replacement = [&](std::string_view old_chunk, std::string_view norm) {
    const int old_count = static_cast<int>(utf8_length(old_chunk));
    const std::vector<char32_t> chars = utf8_decode(norm);
    const int new_count = static_cast<int>(chars.size());
    // A contraction aligns to the first replaced char; in an expansion the chars past the old count
    // are insertions sharing the previous char's alignment (what tokenizers 0.23 produces: "½" ->
    // "1⁄2" gives all three the span of "½").
    for (int i = 0; i < new_count; ++i) {
      int change = 0;
      if (new_count < old_count) {
        change = i == 0 ? new_count - old_count : 0;
      } else {
        change = i < old_count ? 0 : 1;
      }
      changes.emplace_back(chars[i], change);
    }
  };
  std::string_view text(s.text);
  size_t g_begin = 0;
  utf8proc_int32_t state = 0;
  while (g_begin < text.size()) {
    // Extended grapheme cluster [g_begin, g_end).
    size_t g_end = g_begin + utf8_lead_length(static_cast<unsigned char>(text[g_begin]));
    char32_t prev = decode_at(text, g_begin);
    state = 0;
    while (g_end < text.size()) {
      const char32_t next = decode_at(text, g_end);
      if (utf8proc_grapheme_break_stateful(static_cast<utf8proc_int32_t>(prev),
                                           static_cast<utf8proc_int32_t>(next), &state)) {
        break;
      }
      prev = next;
      g_end += utf8_lead_length(static_cast<unsigned char>(text[g_end]));
    }
    const std::string_view grapheme = text.substr(g_begin, g_end - g_begin);
    std::string_view norm;
    if (grapheme.size() < 6 && lookup(grapheme, &norm)) {
      modified = true;
      push_replacement(grapheme, norm);
    } else {
      for (size_t i = 0; i < grapheme.size();) {
        const size_t n = utf8_lead_length(static_cast<unsigned char>(grapheme[i]));
        const std::string_view part = grapheme.substr(i, n);
        if (lookup(part, &norm)) {
          modified = true;
          push_replacement(part, norm);
        } else {
          changes.emplace_back(decode_at(part, 0), 0);
        }
        i += n;
      }
    }
    g_begin = g_end;
  }
  if (modified) transform(s, changes);
}

// ---- protobuf surgery -----------------------------------------------------------------------

namespace {

struct Field {
  uint32_t number = 0;
  uint32_t wire = 0;
  std::string_view raw;      // the whole field, key included
  std::string_view payload;  // length-delimited payload
  uint64_t varint = 0;
};

bool read_varint(std::string_view data, size_t& pos, uint64_t& v) {
  v = 0;
  for (int shift = 0; shift < 64 && pos < data.size(); shift += 7) {
    const auto b = static_cast<unsigned char>(data[pos++]);
    v |= static_cast<uint64_t>(b & 0x7F) << shift;
    if ((b & 0x80) == 0) return true;
  }
  return false;
}

std::vector<Field> parse_fields(std::string_view data, const std::string& source) {
  std::vector<Field> fields;
  size_t pos = 0;
  while (pos < data.size()) {
    const size_t start = pos;
    uint64_t key = 0;
    Field f;
    bool ok = read_varint(data, pos, key);
    f.number = static_cast<uint32_t>(key >> 3);
    f.wire = static_cast<uint32_t>(key & 7);
    if (ok) {
      if (f.wire == 0) {
        ok = read_varint(data, pos, f.varint);
      } else if (f.wire == 1 || f.wire == 5) {
        pos += f.wire == 1 ? 8 : 4;
        ok = pos <= data.size();
      } else if (f.wire == 2) {
        uint64_t len = 0;
        ok = read_varint(data, pos, len) && len <= data.size() - pos;
        if (ok) {
          f.payload = data.substr(pos, len);
          pos += len;
        }
      } else {
        ok = false;
      }
    }
    if (!ok || f.number == 0) fail(source + ": not a SentencePiece model (malformed protobuf)");
    f.raw = data.substr(start, pos - start);
    fields.push_back(f);
  }
  return fields;
}

void write_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7F) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

void write_bytes_field(std::string& out, uint32_t number, std::string_view payload) {
  write_varint(out, (static_cast<uint64_t>(number) << 3) | 2);
  write_varint(out, payload.size());
  out.append(payload);
}

void write_varint_field(std::string& out, uint32_t number, uint64_t v) {
  write_varint(out, static_cast<uint64_t>(number) << 3);
  write_varint(out, v);
}

void write_float_field(std::string& out, uint32_t number, float v) {
  write_varint(out, (static_cast<uint64_t>(number) << 3) | 5);
  uint32_t bits = 0;
  static_assert(sizeof(bits) == sizeof(v));
  std::memcpy(&bits, &v, sizeof(bits));
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((bits >> (8 * i)) & 0xFF));  // little endian
}

// ModelProto field numbers (sentencepiece_model.proto).
constexpr uint32_t kPieces = 1;
constexpr uint32_t kTrainerSpec = 2;
constexpr uint32_t kNormalizerSpec = 3;
constexpr uint32_t kSelfTestData = 4;
// NormalizerSpec field numbers.
constexpr uint32_t kName = 1;
constexpr uint32_t kPrecompiledCharsmap = 2;
constexpr uint32_t kAddDummyPrefix = 3;
constexpr uint32_t kRemoveExtraWhitespaces = 4;
constexpr uint32_t kEscapeWhitespaces = 5;
// SentencePiece field numbers.
constexpr uint32_t kPiece = 1;
constexpr uint32_t kScore = 2;
constexpr uint32_t kType = 3;
// TrainerSpec field numbers and ModelType values.
constexpr uint32_t kModelType = 3;
constexpr uint32_t kByteFallback = 35;
constexpr uint64_t kUnigram = 1;
constexpr uint64_t kBpe = 2;

std::string identity_normalizer_spec() {
  std::string spec;
  write_bytes_field(spec, kName, "identity");
  write_varint_field(spec, kAddDummyPrefix, 0);
  write_varint_field(spec, kRemoveExtraWhitespaces, 0);
  write_varint_field(spec, kEscapeWhitespaces, 1);
  return spec;
}

}  // namespace

std::string build_spm_model_proto(const std::vector<SpmPiece>& pieces, bool unigram, bool byte_fallback) {
  std::string out;
  for (const SpmPiece& p : pieces) {
    std::string piece;
    write_bytes_field(piece, kPiece, p.piece);
    write_float_field(piece, kScore, p.score);
    write_varint_field(piece, kType, static_cast<uint64_t>(p.type));
    write_bytes_field(out, kPieces, piece);
  }
  std::string trainer;
  write_varint_field(trainer, kModelType, unigram ? kUnigram : kBpe);
  write_varint_field(trainer, kByteFallback, byte_fallback ? 1 : 0);
  write_bytes_field(out, kTrainerSpec, trainer);
  write_bytes_field(out, kNormalizerSpec, identity_normalizer_spec());
  return out;
}

SpmProtoInfo read_spm_proto(std::string_view model_proto, const std::string& source) {
  SpmProtoInfo info;
  for (const Field& f : parse_fields(model_proto, source)) {
    if (f.number != kNormalizerSpec || f.wire != 2) continue;
    for (const Field& g : parse_fields(f.payload, source)) {
      if (g.number == kName && g.wire == 2) info.normalizer_name = std::string(g.payload);
      if (g.number == kPrecompiledCharsmap && g.wire == 2) info.precompiled_charsmap = std::string(g.payload);
    }
  }
  return info;
}

std::string with_identity_normalizer(std::string_view model_proto, const std::string& source) {
  std::string out;
  const std::string spec = identity_normalizer_spec();
  bool written = false;
  for (const Field& f : parse_fields(model_proto, source)) {
    if (f.number == kSelfTestData) continue;  // its expectations assume the original normalizer
    if (f.number == kNormalizerSpec) {
      if (!written) write_bytes_field(out, kNormalizerSpec, spec);
      written = true;
      continue;
    }
    out.append(f.raw);
  }
  if (!written) write_bytes_field(out, kNormalizerSpec, spec);
  return out;
}

}  // namespace qlora::tokenizer_detail
