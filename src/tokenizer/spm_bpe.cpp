#include "spm_bpe.h"

#include <cstdio>
#include <queue>
#include <tuple>

#include "qlora/core/unicode.h"

namespace qlora::tokenizer_detail {

void HfBpe::index_pieces(const std::vector<std::string>& pieces) {
  for (size_t i = 0; i < pieces.size(); ++i) piece_to_id_.emplace(pieces[i], static_cast<int>(i));
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    const auto it = piece_to_id_.find(name);
    byte_ids_[b] = it == piece_to_id_.end() ? -1 : it->second;
  }
}

HfBpe::HfBpe(const std::vector<std::string>& pieces, int unk_id, const std::vector<MergeRule>& merges)
    : unk_id_(unk_id) {
  index_pieces(pieces);
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const MergeRule& m = merges[rank];
    merges_.insert_or_assign(key(m.left, m.right), Merge{static_cast<int64_t>(rank), m.merged});
  }
}

HfBpe::HfBpe(const std::vector<std::string>& pieces, int unk_id) : unk_id_(unk_id) {
  index_pieces(pieces);
  // generate_merges(vocab): rank by (merged id, len(l) in code points); len(r) follows from len(l).
  for (size_t m = 0; m < pieces.size(); ++m) {
    const std::string& p = pieces[m];
    size_t chars_left = 0;
    for (size_t split = 0; split < p.size();) {
      split += utf8_lead_length(static_cast<unsigned char>(p[split]));
      ++chars_left;
      if (split >= p.size()) break;
      const auto l = piece_to_id_.find(p.substr(0, split));
      if (l == piece_to_id_.end()) continue;
      const auto r = piece_to_id_.find(p.substr(split));
      if (r == piece_to_id_.end()) continue;
      const int64_t rank = static_cast<int64_t>(m) * 4096 + static_cast<int64_t>(chars_left);
      merges_.emplace(key(l->second, r->second), Merge{rank, static_cast<int>(m)});
    }
  }
}

std::vector<BpeToken> HfBpe::encode(const std::string& text) const {
  struct Symbol {
    int id;
    size_t begin, end;
    int prev, next;
    bool alive;
  };
  std::vector<Symbol> syms;
  auto push = [&](int id, size_t b, size_t e) {
    const int n = static_cast<int>(syms.size());
    syms.push_back({id, b, e, n - 1, -1, true});
    if (n > 0) syms[n - 1].next = n;
  };
  for (size_t i = 0; i < text.size();) {
    const size_t n = utf8_lead_length(static_cast<unsigned char>(text[i]));
    const auto it = piece_to_id_.find(text.substr(i, n));
    if (it != piece_to_id_.end()) {
      push(it->second, i, i + n);
    } else {
      bool all_bytes = true;
      for (size_t k = 0; k < n; ++k)
        all_bytes = all_bytes && byte_ids_[static_cast<unsigned char>(text[i + k])] >= 0;
      if (all_bytes) {
        // Every byte token carries the whole char's span, as in tokenizers.
        for (size_t k = 0; k < n; ++k) push(byte_ids_[static_cast<unsigned char>(text[i + k])], i, i + n);
      } else if (unk_id_ < 0) {
        // No unk token (tokenizer.json's model.unk_token null): tokenizers drops the char.
      } else if (!syms.empty() && syms.back().id == unk_id_) {
        syms.back().end = i + n;  // fuse_unk
      } else {
        push(unk_id_, i, i + n);
      }
    }
    i += n;
  }
  // (rank, left position, left id, right id); the smallest rank, then the leftmost, merges first.
  using Entry = std::tuple<int64_t, int, int, int>;
  std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> queue;
  auto consider = [&](int left) {
    if (left < 0 || syms[left].next < 0) return;
    const int right = syms[left].next;
    const auto it = merges_.find(key(syms[left].id, syms[right].id));
    if (it != merges_.end()) queue.emplace(it->second.rank, left, syms[left].id, syms[right].id);
  };
  for (int i = 0; i + 1 < static_cast<int>(syms.size()); ++i) consider(i);
  while (!queue.empty()) {
    const auto [rank, left, left_id, right_id] = queue.top();
    queue.pop();
    Symbol& l = syms[left];
    if (!l.alive || l.id != left_id || l.next < 0 || syms[l.next].id != right_id) continue;
    Symbol& r = syms[l.next];
    l.id = merges_.at(key(left_id, right_id)).merged_id;
    l.end = r.end;
    r.alive = false;
    l.next = r.next;
    if (r.next >= 0) syms[r.next].prev = left;
    consider(l.prev);
    consider(left);
  }
  std::vector<BpeToken> out;
  for (const Symbol& s : syms) {
    if (s.alive) out.push_back({s.id, s.begin, s.end});
  }
  return out;
}

}  // namespace qlora::tokenizer_detail
