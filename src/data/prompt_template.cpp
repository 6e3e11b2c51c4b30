#include "qlora/data/prompt_template.h"

#include "qlora/core/error.h"
#include "qlora/core/suggest.h"
#include "qlora/core/unicode.h"

namespace qlora::data {

namespace {

// tloen/alpaca-lora templates/alpaca.json: the Stanford Alpaca text, ending in "### Response:\n" so
// that the response follows on its own line.
constexpr const char* kAlpacaInput =
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n### Instruction:\n{instruction}\n\n"
    "### Input:\n{input}\n\n### Response:\n";
constexpr const char* kAlpacaNoInput =
    "Below is an instruction that describes a task. Write a response that appropriately completes the "
    "request.\n\n### Instruction:\n{instruction}\n\n### Response:\n";
// vinai/PhoGPT-4B-Chat README PROMPT_TEMPLATE. The README puts any text the task needs into the
// instruction after a newline ("Tóm tắt văn bản:\n{text}"), so that is where a record's input goes.
constexpr const char* kPhoGptInput = "### Câu hỏi: {instruction}\n{input}\n### Trả lời:";
constexpr const char* kPhoGptNoInput = "### Câu hỏi: {instruction}\n### Trả lời:";
// Qwen2-Instruct chat_template: inserted when messages[0] is not a system message.
constexpr const char* kQwen2DefaultSystem = "You are a helpful assistant.";

const std::vector<std::string> kPlaceholders = {"instruction", "input"};

// Python str.format with the fields {instruction} and {input}; "{{" and "}}" are literal braces.
// Throws Error on an unknown field or an unbalanced brace.
std::string format_fields(const std::string& format, const std::string& instruction, const std::string& input,
                          bool* uses_input = nullptr) {
  std::string out;
  for (size_t i = 0; i < format.size(); ++i) {
    const char c = format[i];
    if (c == '}') {
      if (i + 1 < format.size() && format[i + 1] == '}') {
        out += '}';
        ++i;
        continue;
      }
      fail("prompt template: single '}' at byte " + std::to_string(i) + " (write '}}' for a literal brace)");
    }
    if (c != '{') {
      out += c;
      continue;
    }
    if (i + 1 < format.size() && format[i + 1] == '{') {
      out += '{';
      ++i;
      continue;
    }
    const auto close = format.find('}', i);
    if (close == std::string::npos) fail("prompt template: unclosed '{' at byte " + std::to_string(i));
    const std::string field = format.substr(i + 1, close - i - 1);
    if (field == "instruction") {
      out += instruction;
    } else if (field == "input") {
      out += input;
      if (uses_input) *uses_input = true;
    } else {
      fail("prompt template: unknown placeholder {" + field + "}" + did_you_mean(field, kPlaceholders) +
           "; the placeholders are {instruction} and {input}");
    }
    i = close;
  }
  return out;
}

// Python str.isspace() for one code point.
bool is_python_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

void check_roles(const std::vector<ChatMessage>& messages) {
  if (messages.empty()) fail("conversation has no messages");
  for (size_t i = 0; i < messages.size(); ++i) {
    const std::string& role = messages[i].role;
    if (role == "system") {
      if (i != 0) fail("message " + std::to_string(i) + ": a system message is only allowed first");
    } else if (role != "user" && role != "assistant") {
      fail("message " + std::to_string(i) + ": unknown role \"" + role + "\"" +
           did_you_mean(role, {"system", "user", "assistant"}) + " (roles: system, user, assistant)");
    }
  }
}

// Appends text to the segment list, merging with the last segment when `train` is the same.
void push(std::vector<TextSegment>& segments, const std::string& text, bool train) {
  if (text.empty()) return;
  if (!segments.empty() && segments.back().train == train) {
    segments.back().text += text;
  } else {
    segments.push_back({text, train});
  }
}

// Qwen2-Instruct chat_template. The model learns an assistant turn's content and its <|im_end|> (Qwen's
// EOS, where generation stops); the "\n" after it belongs to the next prompt.
std::vector<TextSegment> render_chatml(const std::vector<ChatMessage>& messages) {
  std::vector<TextSegment> segments;
  if (messages.front().role != "system") {
    push(segments, std::string("<|im_start|>system\n") + kQwen2DefaultSystem + "<|im_end|>\n", false);
  }
  for (const auto& message : messages) {
    if (message.role == "assistant") {
      push(segments, "<|im_start|>assistant\n", false);
      push(segments, message.content + "<|im_end|>", true);
      push(segments, "\n", false);
    } else {
      push(segments, "<|im_start|>" + message.role + "\n" + message.content + "<|im_end|>\n", false);
    }
  }
  return segments;
}

// Llama-2-chat chat_template: the system message is folded into the first user turn, roles must
// alternate starting with user, every turn is strip()ped, and an assistant turn is " {content} </s>".
std::vector<TextSegment> render_llama2(const std::vector<ChatMessage>& messages) {
  size_t first = 0;
  std::string system;
  bool has_system = false;
  if (messages.front().role == "system") {
    system = messages.front().content;
    has_system = true;
    first = 1;
  }
  std::vector<TextSegment> segments;
  for (size_t i = first; i < messages.size(); ++i) {
    const size_t turn = i - first;
    const ChatMessage& message = messages[i];
    if ((message.role == "user") != (turn % 2 == 0)) {
      // The template's own raise_exception text.
      fail("message " + std::to_string(i) +
           ": Conversation roles must alternate user/assistant/user/assistant/... (llama-2 template)");
    }
    std::string content = message.content;
    if (turn == 0 && has_system) content = "<<SYS>>\n" + system + "\n<</SYS>>\n\n" + content;
    if (message.role == "user") {
      push(segments, "<s>[INST] " + python_strip(content) + " [/INST]", false);
    } else {
      push(segments, " " + python_strip(content) + " </s>", true);
    }
  }
  return segments;
}

}  // namespace

std::string python_strip(const std::string& text) {
  const std::vector<char32_t> cps = utf8_decode(text);
  size_t begin = 0;
  size_t end = cps.size();
  while (begin < end && is_python_space(cps[begin])) ++begin;
  while (end > begin && is_python_space(cps[end - 1])) --end;
  if (begin == 0 && end == cps.size()) return text;
  return utf8_encode(std::vector<char32_t>(cps.begin() + static_cast<std::ptrdiff_t>(begin),
                                           cps.begin() + static_cast<std::ptrdiff_t>(end)));
}

const std::vector<std::string>& PromptTemplate::names() {
  static const std::vector<std::string> kNames = {"alpaca", "phogpt", "chatml", "llama-2"};
  return kNames;
}

PromptTemplate PromptTemplate::named(const std::string& name) {
  if (name == "alpaca") return PromptTemplate(Kind::kAlpaca, name);
  if (name == "phogpt") return PromptTemplate(Kind::kPhoGpt, name);
  if (name == "chatml") return PromptTemplate(Kind::kChatMl, name);
  if (name == "llama-2") return PromptTemplate(Kind::kLlama2, name);
  fail("unknown prompt template \"" + name + "\"" + did_you_mean(name, names()) +
       " (templates: alpaca, phogpt, chatml, llama-2, or a custom string with {instruction})");
}

PromptTemplate PromptTemplate::custom(const std::string& format) {
  if (format.find("{instruction}") == std::string::npos) {
    fail("prompt template: a custom template needs an {instruction} placeholder: \"" + format + "\"");
  }
  format_fields(format, "", "");  // validates braces and placeholders now, not at the first record
  PromptTemplate result(Kind::kCustom, "custom");
  result.format_ = format;
  return result;
}

std::string PromptTemplate::render_prompt(const std::string& instruction, const std::string& input) const {
  switch (kind_) {
    case Kind::kAlpaca:
      return format_fields(input.empty() ? kAlpacaNoInput : kAlpacaInput, instruction, input);
    case Kind::kPhoGpt:
      return format_fields(input.empty() ? kPhoGptNoInput : kPhoGptInput, instruction, input);
    case Kind::kCustom: {
      bool uses_input = false;
      std::string prompt = format_fields(format_, instruction, input, &uses_input);
      if (!input.empty() && !uses_input) {
        fail("the custom prompt template has no {input} placeholder but the record has an input");
      }
      return prompt;
    }
    case Kind::kChatMl:
    case Kind::kLlama2:
      break;
  }
  fail("prompt template " + name_ + " renders conversations, not single prompts");
}

std::vector<TextSegment> PromptTemplate::render_chat(const std::vector<ChatMessage>& messages) const {
  check_roles(messages);
  if (kind_ == Kind::kChatMl) return render_chatml(messages);
  if (kind_ == Kind::kLlama2) return render_llama2(messages);
  if (messages.size() != 2 || messages[0].role != "user" || messages[1].role != "assistant") {
    fail("prompt template " + name_ +
         " is single-turn: it takes one user message and one assistant reply (got " +
         std::to_string(messages.size()) + " messages" +
         (messages[0].role == "system" ? ", starting with a system message" : "") +
         "); use the chatml or llama-2 template for multi-turn or system messages");
  }
  std::vector<TextSegment> segments;
  push(segments, render_prompt(messages[0].content, ""), false);
  push(segments, messages[1].content, true);
  return segments;
}

}  // namespace qlora::data
