// SentencePiece-backed tokenizers in their three Hugging Face flavours. libsentencepiece does the
// segmentation; the text pipeline around it (special-token splitting, normalisation with alignments,
// pre-tokenisation, templates, decoders) follows the HF fast tokenizers so that ids and offsets match
// transformers 5.x exactly.
#pragma once

#include <memory>
#include <string>

#include "qlora/tokenizer/tokenizer.h"

namespace qlora {

// Options that come from tokenizer_config.json (defaults = transformers 5 class defaults).
struct SentencePieceOptions {
  TokenizerKind kind = TokenizerKind::kLlama;  // kLlama, kT5 or kXlmRoberta
  bool add_bos_token = true;                   // LLaMA only
  bool add_eos_token = false;                  // LLaMA only
  bool add_prefix_space = true;                // LLaMA only: Metaspace prepend_scheme != never
  // LLaMA only. true: prepend '▁' to every text segment (also after special tokens); false: only to
  // the segment that starts the text (prepend_scheme "first").
  bool legacy = false;
  int extra_ids = 100;                        // T5 sentinels <extra_id_N>
  bool clean_up_tokenization_spaces = false;  // applied by decode()
};

// Loads `model_file` (a SentencePiece .model). Throws Error naming the file when it is missing or
// not a SentencePiece model, or when its vocabulary does not fit the flavour.
std::unique_ptr<Tokenizer> load_sentencepiece_tokenizer(const std::string& model_file,
                                                        const SentencePieceOptions& options);

// Loads the flavour `kind` from `model_dir`/tokenizer.json alone (transformers 5 saves no .model file): the
// vocabulary, BPE merges, Precompiled charsmap, added tokens and (LLaMA) post-processor come from the file,
// the rest of the pipeline from the flavour, as transformers 5 does. Throws Error naming the file and the
// JSON path for anything outside the forms transformers writes for that flavour.
std::unique_ptr<Tokenizer> load_sentencepiece_tokenizer_json(const std::string& model_dir,
                                                             TokenizerKind kind);

// Reads the SentencePieceOptions for `kind` from `model_dir`/tokenizer_config.json (absent: defaults).
SentencePieceOptions read_sentencepiece_options(const std::string& model_dir, TokenizerKind kind);

}  // namespace qlora
