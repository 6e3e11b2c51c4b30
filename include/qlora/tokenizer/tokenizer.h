// One tokenizer interface for every model family. Implementations reproduce the Hugging Face fast
// tokenizers (transformers 5.x) exactly: ids, offsets, token types and decode.
// Today: SentencePiece flavours (LLaMA, T5, XLM-R). A byte-level BPE tokenizer.json implementation
// plugs in behind the same interface (TokenizerKind::kByteLevelBpe is reserved for it).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace qlora {

// Which implementation / HF tokenizer class. kAuto lets load_tokenizer decide from the folder.
enum class TokenizerKind { kAuto, kLlama, kT5, kXlmRoberta, kByteLevelBpe };

// "auto", "llama", "t5", "xlm-roberta", "bpe". Throws Error with a did-you-mean on anything else.
TokenizerKind parse_tokenizer_kind(const std::string& name);
std::string tokenizer_kind_name(TokenizerKind kind);

// The result of encoding one text or a pair. All vectors have the same length.
struct Encoding {
  std::vector<int64_t> ids;
  // [begin, end) in code points (Python str indices) into the sequence the token came from (a or b
  // for pairs), exactly as HF's offset_mapping. Special tokens added by the template get (0, 0).
  std::vector<std::pair<int64_t, int64_t>> offsets;
  std::vector<int64_t> token_type_ids;
  // 0 or 1: which input sequence the token came from; -1 for special tokens added by the template.
  std::vector<int> sequence_ids;
};

// Ids of the special tokens; -1 when the tokenizer has none.
struct SpecialTokenIds {
  int64_t bos = -1;
  int64_t eos = -1;
  int64_t pad = -1;
  int64_t unk = -1;
  int64_t mask = -1;
  int64_t cls = -1;
  int64_t sep = -1;
};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  virtual TokenizerKind kind() const = 0;

  // Special tokens written in the text (e.g. "</s>", "<mask>", "<extra_id_0>") are recognised as
  // single tokens, as HF does. Throws Error on malformed UTF-8.
  virtual Encoding encode(std::string_view text, bool add_special_tokens = true) const = 0;
  virtual Encoding encode_pair(std::string_view a, std::string_view b,
                               bool add_special_tokens = true) const = 0;

  // HF decode(ids, skip_special_tokens), including clean_up_tokenization_spaces when the
  // tokenizer's config enables it. Throws Error on an id outside [0, vocab_size()).
  virtual std::string decode(const std::vector<int64_t>& ids, bool skip_special_tokens = false) const = 0;

  // Number of ids (HF len(tokenizer)): base vocabulary plus added tokens.
  virtual int64_t vocab_size() const = 0;
  // -1 when the token is not in the vocabulary (HF would return the unk id).
  virtual int64_t token_to_id(std::string_view token) const = 0;
  // Throws Error on an id outside [0, vocab_size()).
  virtual std::string id_to_token(int64_t id) const = 0;
  virtual bool is_special(int64_t id) const = 0;

  virtual const SpecialTokenIds& special_ids() const = 0;
  virtual int64_t num_special_tokens_to_add(bool pair) const = 0;
};

// Loads the tokenizer in `model_dir`. With kAuto the flavour comes from, in order:
// tokenizer_config.json "tokenizer_class", config.json "model_type", then the model file present
// (sentencepiece.bpe.model -> XLM-R, spiece.model -> T5, tokenizer.model -> LLaMA). A SentencePiece
// flavour reads tokenizer.json when the folder has one (transformers 5 does; save_pretrained writes no
// .model file), else the .model file. Errors name the folder and the files looked for.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& model_dir,
                                          TokenizerKind kind = TokenizerKind::kAuto);

// The kind load_tokenizer would pick for `model_dir` (never kAuto); same errors.
TokenizerKind detect_tokenizer_kind(const std::string& model_dir);

// Throws Error naming `path` when the tokenizer can produce ids the model's embedding table
// (config vocab_size) does not have. A larger embedding (padding, e.g. T5's 32128) is fine.
void check_vocab_size(const Tokenizer& tokenizer, int64_t config_vocab_size, const std::string& path);

}  // namespace qlora
