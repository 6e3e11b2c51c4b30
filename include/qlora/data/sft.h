// Instruction-tuning (SFT) samples: records (Alpaca, prompt/response, chat messages) rendered through a
// PromptTemplate, tokenized with labels = -100 on everything the model only reads, truncated to
// max_seq_length and optionally packed into rows with segment ids. Format: docs/DATA_FORMATS.md "SFT
// data"; reference: tools/gen_sft_fixtures.py (alpaca-lora, transformers apply_chat_template).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "qlora/data/prompt_template.h"
#include "qlora/tokenizer/tokenizer.h"

namespace qlora::data {

constexpr int64_t kIgnoreIndex = -100;  // labels the loss skips (PyTorch CrossEntropyLoss ignore_index)

enum class SftFormat { kAuto, kAlpaca, kPromptResponse, kChat };

// "auto", "alpaca", "prompt_response", "chat"; Error with a did-you-mean otherwise.
SftFormat parse_sft_format(const std::string& name);
std::string sft_format_name(SftFormat format);

// One input record. Alpaca fills instruction/input/output; prompt/response fills instruction (= prompt)
// and output (= response); chat fills messages. Texts are NFC.
struct SftRecord {
  SftFormat format = SftFormat::kAlpaca;
  std::string instruction, input, output;
  std::vector<ChatMessage> messages;
  std::string place;  // "FILE:LINE" or "FILE: [INDEX]", for errors

  // The record as a conversation: [user, assistant], the user text being instruction + "\n" + input
  // when input is non-empty (the PhoGPT convention), or the messages themselves.
  std::vector<ChatMessage> as_messages() const;
};

// Reads a JSONL file or JSON array. kAuto picks the format from the first record's keys ("messages" ->
// chat, "instruction" -> Alpaca, "prompt" -> prompt/response); every record must then have that
// format's keys. Errors name FILE:LINE (FILE: [INDEX]) and the missing or unknown key (with a
// did-you-mean); other keys are ignored.
std::vector<SftRecord> read_sft_records(const std::string& path, SftFormat format = SftFormat::kAuto);

struct SftOptions {
  int64_t max_seq_length =
      512;  // tokens per sample (and per packed row); longer samples are cut on the right
  bool train_on_inputs = false;  // true: labels on every token (alpaca-lora's train_on_inputs)
  // Single-turn templates: EOS after the response (alpaca-lora add_eos_token). Chat templates write
  // their own end marker (<|im_end|>, </s>) and are not affected.
  bool add_eos = true;
  // Single-turn templates encode with the tokenizer's special tokens (BOS for LLaMA), as alpaca-lora's
  // tokenizer(prompt) does. Chat templates never add them: the template writes <s> itself (HF
  // apply_chat_template tokenizes with add_special_tokens=False).
  bool add_special_tokens = true;
  bool packing = false;  // pack samples into rows of max_seq_length (pack_sft_samples)
};

struct SftSample {
  std::vector<int64_t> input_ids;
  std::vector<int64_t> labels;       // kIgnoreIndex or the id at that position (the model shifts)
  std::vector<int64_t> segment_ids;  // packing only: 0, 1, ... per sample within the row; else empty
};

struct SftStats {
  int64_t records = 0;        // records read
  int64_t samples = 0;        // samples kept (before packing)
  int64_t truncated = 0;      // kept samples that were cut to max_seq_length
  int64_t dropped = 0;        // samples removed because no label survived truncation
  int64_t tokens = 0;         // tokens in kept samples
  int64_t masked_tokens = 0;  // of those, labels == kIgnoreIndex
  int64_t rows = 0;           // packed rows (packing), else == samples
};

struct SftDataset {
  std::vector<SftSample> samples;  // or packed rows
  SftStats stats;
};

// One record -> one untruncated sample. Single-turn: alpaca-lora's generate_and_tokenize_prompt:
// ids = encode(prompt + response) (+ EOS), and the first len(encode(prompt)) labels are masked. The
// two encodings are of the full text and of its prefix, so the mask follows the tokens the model sees
// even where a token straddles the prompt/response boundary. Chat: every segment is encoded on its own
// (add_special_tokens=false) and the ids concatenated, so the mask boundary is exact; with SentencePiece
// tokenizers each segment gets its own "▁" prefix, so the ids can differ from encoding the whole text.
// Throws Error naming the record's place on a template/record mismatch.
SftSample tokenize_sft_record(const SftRecord& record, const PromptTemplate& prompt_template,
                              const Tokenizer& tokenizer, const SftOptions& options);

// Tokenizes, truncates (right), drops samples with no label left, and packs when options.packing.
SftDataset build_sft_dataset(const std::vector<SftRecord>& records, const PromptTemplate& prompt_template,
                             const Tokenizer& tokenizer, const SftOptions& options);

// Greedy in-order packing: a sample goes into the current row when it fits, else starts a new row; no
// sample is split. segment_ids count samples within the row from 0 (CausalLmInputs::segment_ids: no
// attention across samples, positions restart). The first label of every sample becomes kIgnoreIndex,
// as HF DataCollatorWithFlattening does, so that no sample's first token is predicted from the previous
// sample (unpacked, that label is never used: the model shifts labels left). Throws Error when a sample
// is longer than max_seq_length.
std::vector<SftSample> pack_sft_samples(const std::vector<SftSample>& samples, int64_t max_seq_length);

}  // namespace qlora::data
