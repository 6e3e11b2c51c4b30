// Prompt templates for supervised fine-tuning: the text a model is trained on, split into the parts it
// learns (the assistant's response) and the parts it only reads. Named templates reproduce their
// references byte for byte (docs/DATA_FORMATS.md "SFT data"; checked by tools/gen_sft_fixtures.py):
//   alpaca   tloen/alpaca-lora templates/alpaca.json (Stanford Alpaca text, "### Response:\n")
//   phogpt   vinai/PhoGPT-4B-Chat "### Câu hỏi: {instruction}\n### Trả lời:"
//   chatml   Qwen2-Instruct's chat_template (default system message "You are a helpful assistant.")
//   llama-2  Llama-2-chat's chat_template ("<s>[INST] <<SYS>>\n...\n<</SYS>>\n\n... [/INST] ... </s>")
// plus user templates with {instruction} and {input} placeholders.
#pragma once

#include <string>
#include <vector>

namespace qlora::data {

// One chat turn. role: "system" (first message only), "user" or "assistant".
struct ChatMessage {
  std::string role;
  std::string content;
};

// A piece of rendered text; `train` marks text the model learns to produce (assistant output).
struct TextSegment {
  std::string text;
  bool train = false;
};

class PromptTemplate {
 public:
  // "alpaca", "phogpt", "chatml", "llama-2". Throws Error with a did-you-mean on anything else.
  static PromptTemplate named(const std::string& name);
  // A single-turn template: {instruction} and optional {input} placeholders, "{{" / "}}" for literal
  // braces (Python str.format). The response is appended after the rendered prompt. Throws Error on an
  // unknown placeholder, an unbalanced brace or a missing {instruction}.
  static PromptTemplate custom(const std::string& format);
  // The names accepted by named().
  static const std::vector<std::string>& names();

  const std::string& name() const { return name_; }
  // chatml and llama-2 render conversations; the others a single instruction -> response.
  bool is_chat() const { return kind_ == Kind::kChatMl || kind_ == Kind::kLlama2; }

  // Single-turn prompt, alpaca-lora Prompter.generate_prompt(instruction, input) (the response is
  // appended to it unchanged). Throws Error for chat templates, and for a custom template without
  // {input} given a non-empty input.
  std::string render_prompt(const std::string& instruction, const std::string& input) const;

  // A conversation as segments whose concatenation is exactly HF apply_chat_template(messages,
  // tokenize=False) with this template. Adjacent segments differ in `train`. Single-turn templates
  // accept exactly [user, assistant] (prompt = render_prompt(user, ""), response = assistant).
  // Throws Error (message without a place; callers prefix it) on a bad role order, a system message
  // that is not first, or a multi-turn conversation given to a single-turn template.
  std::vector<TextSegment> render_chat(const std::vector<ChatMessage>& messages) const;

 private:
  enum class Kind { kAlpaca, kPhoGpt, kChatMl, kLlama2, kCustom };
  PromptTemplate(Kind kind, std::string name) : kind_(kind), name_(std::move(name)) {}

  Kind kind_;
  std::string name_;
  std::string format_;  // kCustom only
};

// Python str.strip(): removes leading and trailing Unicode whitespace (str.isspace) from UTF-8 text.
// Llama-2's chat template strips every message with it.
std::string python_strip(const std::string& text);

}  // namespace qlora::data
