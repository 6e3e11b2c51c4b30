// Byte-level BPE tokenizers (GPT-2, RoBERTa, Qwen2, LLaMA-3, PhoGPT style) from a Hugging Face
// tokenizer.json, or GPT-2's legacy vocab.json + merges.txt. Ids, offsets, token types and decode equal
// the transformers 5.x fast tokenizers (HF tokenizers 0.23).
//
// Supported tokenizer.json components: normalizer null / NFC / Sequence of NFC; pre_tokenizer ByteLevel
// (GPT-2 regex) or a Sequence of Split (the GPT-2, Qwen2 and LLaMA-3 regexes, or a literal; Isolated or
// Removed) ending in ByteLevel; model BPE (no dropout, no byte fallback, optional unk, ignore_merges,
// merges as "a b" or [a, b]); added tokens (lstrip / rstrip / normalized); post_processor null /
// ByteLevel / RobertaProcessing / TemplateProcessing / Sequence of these; decoder ByteLevel. Anything
// else is an Error naming the file and the JSON path.
#pragma once

#include <memory>
#include <string>

#include "qlora/tokenizer/tokenizer.h"

namespace qlora {

// Loads the byte-level BPE tokenizer in `model_dir` (tokenizer.json, else vocab.json + merges.txt), with
// special token ids from tokenizer_config.json / special_tokens_map.json as transformers reads them.
std::unique_ptr<Tokenizer> load_byte_level_bpe_tokenizer(const std::string& model_dir);

}  // namespace qlora
