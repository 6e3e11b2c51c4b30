// Internal: a SentencePiece-flavoured tokenizer (LLaMA BPE, T5 / XLM-R Unigram) read from tokenizer.json
// alone, as transformers 5 saves it (no tokenizer.model / spiece.model / sentencepiece.bpe.model).
// transformers 5 takes from tokenizer.json only the model's vocabulary (and BPE merges), the Precompiled
// charsmap of the normalizer, the added tokens and (LLaMA) the post-processor; LlamaTokenizer / T5Tokenizer /
// XLMRobertaTokenizer build the rest of the pipeline themselves. We do the same, and lay the pieces out as
// the SentencePiece model they came from (spm ids) so the SentencePiece code path runs unchanged. Components
// that transformers would replace are checked to be the forms it writes; anything else is an Error naming
// the file and the JSON path, never ignored.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "qlora/tokenizer/tokenizer.h"
#include "spm_bpe.h"

namespace qlora::tokenizer_detail {

struct SpmJsonAddedToken {
  std::string content;
  int64_t id = -1;  // HF id
  bool lstrip = false;
};

struct SpmJsonModel {
  std::string model_proto;               // serialized ModelProto in spm id order, identity normalizer
  std::string precompiled_charsmap;      // T5 / XLM-R; empty when the normalizer is null
  std::vector<HfBpe::MergeRule> merges;  // LLaMA, in rank order
  int bpe_unk_id = -1;                   // LLaMA: model.unk_token's id, -1 when null (unknown chars dropped)
  int extra_ids = 0;                     // T5: the <extra_id_N> entries at the end of the vocabulary
  std::vector<SpmJsonAddedToken> added_tokens;  // every entry of added_tokens (all special)
  // LLaMA: post_processor as TemplateProcessing flags; has_template is false when it is null.
  bool has_template = false;
  bool template_bos = false;
  bool template_eos = false;
};

// Reads `path` (a tokenizer.json) for `kind` (kLlama, kT5 or kXlmRoberta).
SpmJsonModel read_spm_tokenizer_json(const std::string& path, TokenizerKind kind);

// Standard base64 (RFC 4648, with padding); throws Error naming `source` on bad input.
std::string base64_decode(const std::string& text, const std::string& source);

}  // namespace qlora::tokenizer_detail
