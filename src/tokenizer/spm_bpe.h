// Internal: BPE over SentencePiece pieces exactly as HF tokenizers runs it for LLaMA in
// transformers 5 (tokenizers BPE, byte_fallback, fuse_unk), with merges generated from the
// piece list the way transformers' generate_merges() does: every split (l, r) of a piece whose two
// halves are pieces is a merge, ranked by (id of the merged piece, length of l).
// This differs from libsentencepiece's own BPE, which ranks by piece score: for LLaMA-2, whose
// whitespace-run pieces ("▁▁", ...) have score -1e9 but low ids, "  leading" becomes
// "▁▁ leading" in HF but "▁ ▁leading" in sentencepiece. We match HF.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "normalized_string.h"

namespace qlora::tokenizer_detail {

struct BpeToken {
  int id;
  size_t begin;  // normalized bytes [begin, end)
  size_t end;
};

class HfBpe {
 public:
  HfBpe() = default;
  // pieces[i] is the string of id i; unk_id is used for chars with neither a piece nor byte pieces.
  HfBpe(const std::vector<std::string>& pieces, int unk_id);
  // A merge of tokenizer.json's model.merges: ids of the left, right and merged pieces.
  struct MergeRule {
    int left, right, merged;
  };
  // With the merges of a tokenizer.json, ranked by their position (a user may have edited them, so they
  // are not regenerated from the pieces). A repeated pair keeps its last rank, as tokenizers does.
  HfBpe(const std::vector<std::string>& pieces, int unk_id, const std::vector<MergeRule>& merges);

  std::vector<BpeToken> encode(const std::string& normalized) const;

 private:
  struct Merge {
    int64_t rank;
    int merged_id;
  };
  static uint64_t key(int left, int right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
  }
  void index_pieces(const std::vector<std::string>& pieces);
  std::unordered_map<std::string, int> piece_to_id_;
  std::unordered_map<uint64_t, Merge> merges_;
  int byte_ids_[256];
  int unk_id_ = 0;
};

}  // namespace qlora::tokenizer_detail
