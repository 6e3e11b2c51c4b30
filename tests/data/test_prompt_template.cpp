// Prompt templates: alpaca / phogpt / chatml / llama-2 rendered byte-equal to the references
// (tests/fixtures/data/sft/expected.json from tools/gen_sft_fixtures.py: alpaca-lora's Prompter and
// transformers' apply_chat_template with the official Qwen2-Instruct and Llama-2-chat templates),
// custom templates, and the errors for conversations a template cannot render.
#include <gtest/gtest.h>

#include "data_test_util.h"
#include "qlora/data/prompt_template.h"
#include "qlora/data/sft.h"

namespace {

using qlora::Json;
using qlora::data::ChatMessage;
using qlora::data::PromptTemplate;
using qlora::data::TextSegment;
using namespace qlora_test;

const Json& expected_cases() {
  static const Json cases = qlora::read_json_file(fixture("sft/expected.json"))["cases"];
  return cases;
}

std::string joined(const std::vector<TextSegment>& segments) {
  std::string text;
  for (const auto& segment : segments) text += segment.text;
  return text;
}

TEST(PromptTemplate, RendersLikeTheReferences) {
  int checked = 0;
  for (const Json& c : expected_cases()) {
    SCOPED_TRACE(c["name"].get<std::string>());
    const auto records = qlora::data::read_sft_records(fixture("sft/" + c["input"].get<std::string>()));
    const auto tmpl = PromptTemplate::named(c["template"]);
    const Json& renders = c["renders"];
    ASSERT_EQ(renders.size(), records.size());
    for (size_t i = 0; i < records.size(); ++i) {
      SCOPED_TRACE(records[i].place);
      if (tmpl.is_chat()) {
        const auto segments = tmpl.render_chat(records[i].as_messages());
        EXPECT_EQ(joined(segments), renders[i]["text"].get<std::string>());  // apply_chat_template output
        ASSERT_EQ(segments.size(), renders[i]["segments"].size());
        for (size_t s = 0; s < segments.size(); ++s) {
          EXPECT_EQ(segments[s].text, renders[i]["segments"][s]["text"].get<std::string>());
          EXPECT_EQ(segments[s].train, renders[i]["segments"][s]["train"].get<bool>());
        }
      } else {
        const std::string prompt = tmpl.render_prompt(records[i].instruction, records[i].input);
        EXPECT_EQ(prompt, renders[i]["prompt"].get<std::string>());  // alpaca-lora Prompter
        EXPECT_EQ(prompt + records[i].output, renders[i]["text"].get<std::string>());
      }
      ++checked;
    }
  }
  EXPECT_GE(checked, 60);
}

// The alpaca-lora text itself (templates/alpaca.json), independent of the generator.
TEST(PromptTemplate, AlpacaTextIsAlpacaLoras) {
  const auto alpaca = PromptTemplate::named("alpaca");
  EXPECT_EQ(
      alpaca.render_prompt("Say hi.", ""),
      "Below is an instruction that describes a task. Write a response that appropriately completes the "
      "request.\n\n### Instruction:\nSay hi.\n\n### Response:\n");
  EXPECT_EQ(
      alpaca.render_prompt("Translate.", "Xin chào"),
      "Below is an instruction that describes a task, paired with an input that provides further context. "
      "Write a response that appropriately completes the request.\n\n### Instruction:\nTranslate.\n\n"
      "### Input:\nXin chào\n\n### Response:\n");
  EXPECT_EQ(PromptTemplate::named("phogpt").render_prompt("Tóm tắt văn bản:", "Hà Nội."),
            "### Câu hỏi: Tóm tắt văn bản:\nHà Nội.\n### Trả lời:");
}

TEST(PromptTemplate, SingleTurnTemplateTakesOneExchange) {
  const auto alpaca = PromptTemplate::named("alpaca");
  const auto segments = alpaca.render_chat({{"user", "Say hi."}, {"assistant", "Hi."}});
  ASSERT_EQ(segments.size(), 2u);
  EXPECT_EQ(segments[0].text, alpaca.render_prompt("Say hi.", ""));
  EXPECT_FALSE(segments[0].train);
  EXPECT_EQ(segments[1].text, "Hi.");
  EXPECT_TRUE(segments[1].train);

  const std::vector<ChatMessage> multi = {
      {"user", "a"}, {"assistant", "b"}, {"user", "c"}, {"assistant", "d"}};
  const std::string message = error_of([&] { alpaca.render_chat(multi); });
  EXPECT_CONTAINS(message, "single-turn");
  EXPECT_CONTAINS(message, "4 messages");
  EXPECT_CONTAINS(message, "chatml or llama-2");
  EXPECT_CONTAINS(
      error_of([&] {
        PromptTemplate::named("phogpt").render_chat({{"system", "s"}, {"user", "u"}, {"assistant", "a"}});
      }),
      "system message");
}

TEST(PromptTemplate, ChatTemplatesCheckRoles) {
  const auto llama = PromptTemplate::named("llama-2");
  EXPECT_CONTAINS(error_of([&] {
                    llama.render_chat({{"assistant", "a"}, {"user", "u"}});
                  }),
                  "Conversation roles must alternate user/assistant/user/assistant/...");
  EXPECT_CONTAINS(error_of([&] { llama.render_chat({{"user", "a"}, {"user", "u"}}); }), "must alternate");
  const auto chatml = PromptTemplate::named("chatml");
  EXPECT_CONTAINS(error_of([&] {
                    chatml.render_chat({{"user", "u"}, {"system", "s"}});
                  }),
                  "a system message is only allowed first");
  EXPECT_CONTAINS(error_of([&] { chatml.render_chat({{"usr", "u"}}); }), "did you mean 'user'");
  EXPECT_CONTAINS(error_of([&] { chatml.render_chat({}); }), "no messages");
  EXPECT_CONTAINS(error_of([&] { chatml.render_prompt("a", ""); }), "renders conversations");
}

TEST(PromptTemplate, UnknownNameSuggests) {
  const std::string message = error_of([] { PromptTemplate::named("llama2"); });
  EXPECT_CONTAINS(message, "unknown prompt template \"llama2\"");
  EXPECT_CONTAINS(message, "did you mean 'llama-2'");
}

TEST(PromptTemplate, CustomTemplate) {
  const auto t = PromptTemplate::custom("Q: {instruction}\nContext: {input}\n{{A}}: ");
  EXPECT_EQ(t.render_prompt("Why?", "Because."), "Q: Why?\nContext: Because.\n{A}: ");
  EXPECT_FALSE(t.is_chat());
  const auto no_input = PromptTemplate::custom("<{instruction}>");
  EXPECT_EQ(no_input.render_prompt("x", ""), "<x>");
  EXPECT_CONTAINS(error_of([&] { no_input.render_prompt("x", "y"); }), "no {input} placeholder");
  EXPECT_CONTAINS(error_of([] { PromptTemplate::custom("Q: {input}"); }), "needs an {instruction}");
  EXPECT_CONTAINS(error_of([] { PromptTemplate::custom("{instruction} {inptu}"); }), "did you mean 'input'");
  EXPECT_CONTAINS(error_of([] { PromptTemplate::custom("{instruction} {"); }), "unclosed '{'");
  EXPECT_CONTAINS(error_of([] { PromptTemplate::custom("{instruction} }"); }), "single '}'");
}

TEST(PromptTemplate, PythonStrip) {
  using qlora::data::python_strip;
  EXPECT_EQ(python_strip("  \t\na b\r\n "), "a b");
  EXPECT_EQ(python_strip("\xc2\xa0x\xe3\x80\x80"), "x");      // U+00A0 and U+3000 are str.isspace()
  EXPECT_EQ(python_strip("\xe2\x80\x8bx"), "\xe2\x80\x8bx");  // U+200B (zero width space) is not
  EXPECT_EQ(python_strip("   "), "");
  EXPECT_EQ(python_strip("Việt"), "Việt");
}

}  // namespace
