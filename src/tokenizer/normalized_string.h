// Internal: a port of the parts of HF tokenizers' NormalizedString that SentencePiece tokenizers use.
// A normalized UTF-8 string keeps, per normalized byte, the original byte range it came from; token
// offsets are read back through it. The alignment rules (including their oddities: a composed char
// aligns to the first original char only; chars added by an expansion share the expanded char's
// alignment) are what make our offsets equal HF's offset_mapping.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace qlora::tokenizer_detail {

using ByteRange = std::pair<size_t, size_t>;

struct NormalizedString {
  std::string text;                  // normalized UTF-8
  std::vector<ByteRange> alignment;  // alignment[i]: original [begin, end) bytes of normalized byte i

  static NormalizedString from_original(std::string_view original);
  bool empty() const { return text.empty(); }
  // Original byte range of normalized bytes [begin, end) (begin < end).
  ByteRange original_range(size_t begin, size_t end) const;
};

// One output char and its change, as tokenizers' transform(): 0 replaces the next original char,
// -N replaces it and removes N more, >0 inserts.
using Change = std::pair<char32_t, int>;

// NormalizedString::transform over the whole string with initial_offset 0.
void transform(NormalizedString& s, const std::vector<Change>& changes);

// prepend(str) for a single char: the new char and the old first char share the first char's
// alignment. No-op on an empty string.
void prepend_char(NormalizedString& s, char32_t c);

// replace(' ', "▁") (1:1, each ▁ aligned to its space).
void replace_spaces_with_metaspace(NormalizedString& s);

// WhitespaceSplit: the non-whitespace runs (Unicode White_Space), whitespace dropped.
std::vector<NormalizedString> split_on_whitespace(const NormalizedString& s);

// Appends b to a.
void append(NormalizedString& a, const NormalizedString& b);

bool is_unicode_whitespace(char32_t c);

// SentencePiece's precompiled_charsmap: a Darts double-array trie plus a blob of replacement strings.
class PrecompiledCharsmap {
 public:
  PrecompiledCharsmap() = default;
  // Throws Error (naming `source`) when the blob is malformed.
  PrecompiledCharsmap(std::string blob, const std::string& source);

  bool empty() const { return trie_.empty(); }
  // HF Precompiled normalizer: grapheme by grapheme (graphemes under 6 bytes are looked up whole,
  // the others char by char), replacing by the shortest trie match.
  void normalize(NormalizedString& s) const;

 private:
  // Replacement for `chunk` when its shortest prefix is in the trie (the rest of chunk is dropped,
  // as in spm_precompiled), else nullptr-equivalent false.
  bool lookup(std::string_view chunk, std::string_view* out) const;

  std::vector<uint32_t> trie_;
  std::string replacements_;
};

// Minimal protobuf surgery on a serialized sentencepiece ModelProto.
struct SpmProtoInfo {
  std::string precompiled_charsmap;
  std::string normalizer_name;
};
// Reads normalizer_spec; throws Error naming `source` on malformed protobuf.
SpmProtoInfo read_spm_proto(std::string_view model_proto, const std::string& source);
// One piece of a SentencePiece model built by hand (sentencepiece_model.proto SentencePiece.Type values).
struct SpmPiece {
  enum Type { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kByte = 6 };
  std::string piece;
  float score = 0;
  Type type = kNormal;
};
// A serialized ModelProto with these pieces, trainer_spec.model_type UNIGRAM (unigram = true) or BPE, the
// given byte_fallback, and an identity normalizer (we normalize the HF way before spm sees the text).
std::string build_spm_model_proto(const std::vector<SpmPiece>& pieces, bool unigram, bool byte_fallback);
// The same model with an identity normalizer (no charsmap, no dummy prefix, no whitespace removal),
// without self-test data: we feed spm text that is already normalized the HF way.
std::string with_identity_normalizer(std::string_view model_proto, const std::string& source);

}  // namespace qlora::tokenizer_detail
