#include "qlora/data/sft.h"

#include <algorithm>

#include "qlora/core/error.h"
#include "qlora/core/suggest.h"
#include "qlora/data/record_io.h"

namespace qlora::data {

namespace {

const std::vector<std::string> kFormatNames = {"auto", "alpaca", "prompt_response", "chat"};

// The keys a format requires, for messages and did-you-mean hints.
std::vector<std::string> required_keys(SftFormat format) {
  switch (format) {
    case SftFormat::kAlpaca:
      return {"instruction", "output"};
    case SftFormat::kPromptResponse:
      return {"prompt", "response"};
    case SftFormat::kChat:
      return {"messages"};
    case SftFormat::kAuto:
      break;
  }
  return {};
}

// " (is \"ouput\" a misspelling of \"output\"?)" for the first record key near `missing`, else "".
std::string misspelling_hint(const Json& record, const std::string& missing) {
  for (const auto& item : record.items()) {
    if (item.key() != missing && !nearest(item.key(), {missing}).empty()) {
      return " (is \"" + item.key() + "\" a misspelling of \"" + missing + "\"?)";
    }
  }
  return "";
}

std::string key_list(const Json& record) {
  std::string keys;
  for (const auto& item : record.items()) keys += (keys.empty() ? "" : ", ") + item.key();
  return keys.empty() ? "none" : keys;
}

SftFormat detect_format(const Json& record, const RecordPlace& place) {
  if (record.contains("messages")) return SftFormat::kChat;
  if (record.contains("instruction")) return SftFormat::kAlpaca;
  if (record.contains("prompt")) return SftFormat::kPromptResponse;
  std::string hint;
  for (const char* key : {"messages", "instruction", "prompt"}) {
    hint = misspelling_hint(record, key);
    if (!hint.empty()) break;
  }
  fail_record(place, "cannot tell the record format from its keys (" + key_list(record) +
                         "): expected \"messages\" (chat), \"instruction\" (Alpaca) or \"prompt\" "
                         "(prompt/response)" +
                         hint);
}

// text_field's problem, with a did-you-mean when the key is missing.
std::string required_text(const Json& record, const std::string& key, bool allow_blank,
                          const RecordPlace& place) {
  TextField field = text_field(record, key, /*required=*/true, allow_blank);
  if (!field.ok())
    fail_record(place, field.problem + (record.contains(key) ? "" : misspelling_hint(record, key)));
  return field.text;
}

std::vector<ChatMessage> read_messages(const Json& record, const RecordPlace& place) {
  const Json& list = record.at("messages");
  if (!list.is_array() || list.empty()) {
    fail_record(place,
                "field \"messages\" must be a non-empty array of {role, content}, got " + preview(list));
  }
  std::vector<ChatMessage> messages;
  bool has_assistant = false;
  for (size_t i = 0; i < list.size(); ++i) {
    const Json& item = list[i];
    const std::string where = "messages[" + std::to_string(i) + "]";
    if (!item.is_object())
      fail_record(place, where + ": expected an object {role, content}, got " + preview(item));
    for (const std::string key : {"role", "content"}) {
      if (!item.contains(key))
        fail_record(place, where + ": missing key \"" + key + "\"" + misspelling_hint(item, key));
    }
    if (!item["role"].is_string())
      fail_record(place, where + ": \"role\" must be a string, got " + preview(item["role"]));
    const std::string role = item["role"].get<std::string>();
    if (role != "system" && role != "user" && role != "assistant") {
      fail_record(place, where + ": unknown role \"" + role + "\"" +
                             did_you_mean(role, {"system", "user", "assistant"}) +
                             " (roles: system, user, assistant)");
    }
    TextField content = text_field(item, "content", /*required=*/true, /*allow_blank=*/true);
    if (!content.ok()) fail_record(place, where + ": " + content.problem);
    has_assistant = has_assistant || role == "assistant";
    messages.push_back({role, std::move(content.text)});
  }
  if (!has_assistant) fail_record(place, "the conversation has no assistant message to learn");
  return messages;
}

SftRecord read_record(const Json& record, SftFormat format, const RecordPlace& place) {
  SftRecord out;
  out.format = format;
  out.place = place.describe();
  for (const std::string& key : required_keys(format)) {
    if (!record.contains(key)) {
      fail_record(place, "missing key \"" + key + "\" of a " + sft_format_name(format) + " record" +
                             misspelling_hint(record, key) + " (keys: " + key_list(record) + ")");
    }
  }
  switch (format) {
    case SftFormat::kAlpaca: {
      out.instruction = required_text(record, "instruction", false, place);
      TextField input = text_field(record, "input", /*required=*/false, /*allow_blank=*/true);
      if (!input.ok()) fail_record(place, input.problem);
      out.input = std::move(input.text);
      out.output = required_text(record, "output", false, place);
      break;
    }
    case SftFormat::kPromptResponse:
      out.instruction = required_text(record, "prompt", false, place);
      out.output = required_text(record, "response", false, place);
      break;
    case SftFormat::kChat:
      out.messages = read_messages(record, place);
      break;
    case SftFormat::kAuto:
      break;
  }
  return out;
}

std::vector<int64_t> encode_ids(const Tokenizer& tokenizer, const std::string& text,
                                bool add_special_tokens) {
  return tokenizer.encode(text, add_special_tokens).ids;
}

// alpaca-lora's generate_and_tokenize_prompt, before truncation (see sft.h).
SftSample tokenize_single_turn(const std::string& prompt, const std::string& response,
                               const Tokenizer& tokenizer, const SftOptions& options) {
  SftSample sample;
  sample.input_ids = encode_ids(tokenizer, prompt + response, options.add_special_tokens);
  const int64_t eos = tokenizer.special_ids().eos;
  if (options.add_eos) {
    if (eos < 0) fail("add_eos is set but the tokenizer has no EOS token");
    if (sample.input_ids.empty() || sample.input_ids.back() != eos) sample.input_ids.push_back(eos);
  }
  sample.labels = sample.input_ids;
  if (!options.train_on_inputs) {
    const size_t prompt_len =
        std::min(encode_ids(tokenizer, prompt, options.add_special_tokens).size(), sample.labels.size());
    std::fill(sample.labels.begin(), sample.labels.begin() + static_cast<std::ptrdiff_t>(prompt_len),
              kIgnoreIndex);
  }
  return sample;
}

}  // namespace

SftFormat parse_sft_format(const std::string& name) {
  if (name == "auto") return SftFormat::kAuto;
  if (name == "alpaca") return SftFormat::kAlpaca;
  if (name == "prompt_response") return SftFormat::kPromptResponse;
  if (name == "chat") return SftFormat::kChat;
  fail("unknown SFT record format \"" + name + "\"" + did_you_mean(name, kFormatNames) +
       " (formats: auto, alpaca, prompt_response, chat)");
}

std::string sft_format_name(SftFormat format) {
  switch (format) {
    case SftFormat::kAuto:
      return "auto";
    case SftFormat::kAlpaca:
      return "alpaca";
    case SftFormat::kPromptResponse:
      return "prompt_response";
    case SftFormat::kChat:
      return "chat";
  }
  return "?";
}

std::vector<ChatMessage> SftRecord::as_messages() const {
  if (format == SftFormat::kChat) return messages;
  return {{"user", input.empty() ? instruction : instruction + "\n" + input}, {"assistant", output}};
}

std::vector<SftRecord> read_sft_records(const std::string& path, SftFormat format) {
  std::vector<SftRecord> records;
  for_each_record(path, [&](const Json& record, const RecordPlace& place) {
    if (format == SftFormat::kAuto) format = detect_format(record, place);
    records.push_back(read_record(record, format, place));
  });
  return records;
}

SftSample tokenize_sft_record(const SftRecord& record, const PromptTemplate& prompt_template,
                              const Tokenizer& tokenizer, const SftOptions& options) {
  std::vector<TextSegment> segments;
  std::string prompt, response;
  try {
    if (prompt_template.is_chat()) {
      segments = prompt_template.render_chat(record.as_messages());
    } else if (record.format == SftFormat::kChat) {
      // A [user, assistant] conversation through a single-turn template (render_chat checks the shape
      // and renders the prompt, then the response).
      segments = prompt_template.render_chat(record.messages);
      prompt = segments.front().text;
      response = segments.size() > 1 ? segments[1].text : "";
    } else {
      prompt = prompt_template.render_prompt(record.instruction, record.input);
      response = record.output;
    }
  } catch (const Error& error) {
    fail(record.place + ": " + error.what());
  }
  if (!prompt_template.is_chat()) return tokenize_single_turn(prompt, response, tokenizer, options);

  // Each segment on its own, so that the label mask starts and ends exactly at the assistant's text.
  SftSample sample;
  for (const TextSegment& segment : segments) {
    const std::vector<int64_t> ids = encode_ids(tokenizer, segment.text, /*add_special_tokens=*/false);
    sample.input_ids.insert(sample.input_ids.end(), ids.begin(), ids.end());
    if (segment.train || options.train_on_inputs) {
      sample.labels.insert(sample.labels.end(), ids.begin(), ids.end());
    } else {
      sample.labels.insert(sample.labels.end(), ids.size(), kIgnoreIndex);
    }
  }
  return sample;
}

SftDataset build_sft_dataset(const std::vector<SftRecord>& records, const PromptTemplate& prompt_template,
                             const Tokenizer& tokenizer, const SftOptions& options) {
  if (options.max_seq_length < 1)
    fail("max_seq_length must be at least 1, got " + std::to_string(options.max_seq_length));
  SftDataset dataset;
  SftStats& stats = dataset.stats;
  const auto max_len = static_cast<size_t>(options.max_seq_length);
  for (const SftRecord& record : records) {
    ++stats.records;
    SftSample sample = tokenize_sft_record(record, prompt_template, tokenizer, options);
    const bool cut = sample.input_ids.size() > max_len;
    if (cut) {
      sample.input_ids.resize(max_len);
      sample.labels.resize(max_len);
    }
    const auto masked = std::count(sample.labels.begin(), sample.labels.end(), kIgnoreIndex);
    if (static_cast<size_t>(masked) == sample.labels.size()) {
      ++stats.dropped;  // nothing left to learn: the response was cut entirely (or was empty)
      continue;
    }
    stats.truncated += cut ? 1 : 0;
    stats.tokens += static_cast<int64_t>(sample.input_ids.size());
    stats.masked_tokens += masked;
    dataset.samples.push_back(std::move(sample));
  }
  stats.samples = static_cast<int64_t>(dataset.samples.size());
  if (options.packing) dataset.samples = pack_sft_samples(dataset.samples, options.max_seq_length);
  stats.rows = static_cast<int64_t>(dataset.samples.size());
  return dataset;
}

std::vector<SftSample> pack_sft_samples(const std::vector<SftSample>& samples, int64_t max_seq_length) {
  const auto max_len = static_cast<size_t>(std::max<int64_t>(max_seq_length, 0));
  std::vector<SftSample> rows;
  for (size_t i = 0; i < samples.size(); ++i) {
    const SftSample& sample = samples[i];
    if (sample.input_ids.size() > max_len) {
      fail("pack: sample " + std::to_string(i) + " has " + std::to_string(sample.input_ids.size()) +
           " tokens, more than max_seq_length " + std::to_string(max_seq_length));
    }
    if (sample.input_ids.empty()) continue;
    if (rows.empty() || rows.back().input_ids.size() + sample.input_ids.size() > max_len) rows.emplace_back();
    SftSample& row = rows.back();
    const int64_t segment = row.segment_ids.empty() ? 0 : row.segment_ids.back() + 1;
    row.input_ids.insert(row.input_ids.end(), sample.input_ids.begin(), sample.input_ids.end());
    row.labels.push_back(kIgnoreIndex);  // see sft.h: never predicted across samples
    row.labels.insert(row.labels.end(), sample.labels.begin() + 1, sample.labels.end());
    row.segment_ids.insert(row.segment_ids.end(), sample.input_ids.size(), segment);
  }
  return rows;
}

}  // namespace qlora::data
