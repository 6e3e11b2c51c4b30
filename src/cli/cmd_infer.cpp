// qlora infer: answer questions (extractive QA) or generate text with a model and adapter.
#include <algorithm>
#include <chrono>
#include <ctime>
#include <fstream>
#include <iostream>
#include <map>

#include "command.h"
#include "qlora/core/error.h"
#include "qlora/core/log.h"
#include "qlora/data/prompt_template.h"
#include "qlora/infer/generate.h"
#include "qlora/io/hf_config.h"
#include "qlora/tasks/qa_task.h"
#include "qlora/tasks/seq2seq_task.h"
#include "qlora/tasks/sft_task.h"

namespace qlora::cli {

namespace {

struct InferOptions {
  std::string task = "generate";
  std::string model;
  std::string adapter;
  std::string prompt;
  std::string question;
  std::string context;
  std::string input;
  std::string output;
  std::string log;  // generate: append prompts and responses with timestamps
  // Decoding: each option left unset (count 0) keeps the model's generation_config.json value.
  int64_t max_new_tokens = 128;
  double temperature = 0.0;  // 0: greedy; > 0: sampling at this temperature
  int64_t top_k = 50;
  double top_p = 1.0;
  double repetition_penalty = 1.0;
  uint64_t seed = 0;
  std::vector<std::string> stop;
  bool no_bos = false;  // encode prompts without the tokenizer's special tokens (BOS)
  int64_t batch_size = 1;
  bool json = false;                                // the global --json: no streaming
  std::map<std::string, const CLI::Option*> given;  // decoding options as parsed, to tell set from default
  int64_t max_seq_length = 384;
  int64_t doc_stride = 128;
  int64_t n_best_size = 20;
  int64_t max_answer_length = 30;
  bool version_2_with_negative = false;
  std::string dtype = "fp32";
  std::string prompt_template;  // alpaca, phogpt, chatml, llama-2 or a {instruction} string; empty = raw
  std::string input_text;       // the template's {input}
  std::string system;           // chat templates: system message
  bool chat = false;            // interactive multi-turn session on stdin
  bool merge = false;           // fold the adapter into the weights before generating
  int64_t num_beams = 1;        // seq2seq (T5) beam search
  bool load_in_4bit = false;    // NF4 + double quant base (bitsandbytes format), compute in --dtype
  bool load_in_8bit = false;    // int8 base (LLM.int8 with threshold 6)
};

models::QuantizeOptions quantize_options(const InferOptions& opts) {
  models::QuantizeOptions q;
  q.load_in_4bit = opts.load_in_4bit;
  q.load_in_8bit = opts.load_in_8bit;
  q.compute_dtype = opts.dtype == "bf16" ? at::kBFloat16 : opts.dtype == "fp16" ? at::kHalf : at::kFloat;
  return q;
}

// The prompt the model sees: raw text, a single-turn template, or a chat template rendered up to the
// assistant's turn (HF apply_chat_template with add_generation_prompt=True: everything before the
// assistant text the model is trained to produce).
std::string render_prompt(const InferOptions& opts, const std::string& instruction, const std::string& input,
                          const std::vector<data::ChatMessage>& history) {
  if (opts.prompt_template.empty()) return instruction;
  const auto& names = data::PromptTemplate::names();
  const bool named = std::find(names.begin(), names.end(), opts.prompt_template) != names.end() ||
                     opts.prompt_template.find('{') == std::string::npos;
  const data::PromptTemplate t = named ? data::PromptTemplate::named(opts.prompt_template)
                                       : data::PromptTemplate::custom(opts.prompt_template);
  if (!t.is_chat()) {
    if (!history.empty())
      fail("--chat with template '" + opts.prompt_template + "' keeps no history: use chatml or llama-2");
    return t.render_prompt(instruction, input);
  }
  std::vector<data::ChatMessage> messages;
  if (!opts.system.empty()) messages.push_back({"system", opts.system});
  messages.insert(messages.end(), history.begin(), history.end());
  messages.push_back({"user", input.empty() ? instruction : instruction + "\n" + input});
  messages.push_back({"assistant", ""});
  const auto segments = t.render_chat(messages);
  size_t last_trained = segments.size();
  for (size_t i = 0; i < segments.size(); ++i)
    if (segments[i].train) last_trained = i;
  std::string text;
  for (size_t i = 0; i < last_trained; ++i) text += segments[i].text;
  return text;
}

bool chat_template(const InferOptions& opts) {
  return opts.prompt_template == "chatml" || opts.prompt_template == "llama-2";
}

// Questions from --question/--context or a JSONL file of {"id"?, "question", "context"} (the
// prepared MRC format works as it is).
std::vector<qa::QaExample> qa_inputs(const InferOptions& opts) {
  std::vector<qa::QaExample> out;
  if (!opts.input.empty()) {
    for_each_jsonl(opts.input, [&](const Json& r, int64_t line) {
      if (!r.contains("question") || !r["question"].is_string() || !r.contains("context") ||
          !r["context"].is_string()) {
        fail_at(opts.input, line, "expected string fields \"question\" and \"context\"");
      }
      qa::QaExample ex;
      ex.id = r.contains("id") && r["id"].is_string() ? r["id"].get<std::string>()
                                                      : "line-" + std::to_string(line);
      ex.question = r["question"].get<std::string>();
      ex.context = r["context"].get<std::string>();
      out.push_back(std::move(ex));
    });
  } else {
    if (opts.question.empty() || opts.context.empty())
      fail("--task qa needs --question and --context, or --input");
    out.push_back({"q0", opts.context, opts.question, {}, false});
  }
  return out;
}

Json run_qa(const InferOptions& opts) {
  const auto model = tasks::load_qa_model(opts.model, "", opts.adapter, opts.dtype);
  const auto examples = qa_inputs(opts);
  tasks::QaPredictOptions po;
  po.features = {opts.max_seq_length, opts.doc_stride};
  po.postprocess.n_best_size = opts.n_best_size;
  po.postprocess.max_answer_length = opts.max_answer_length;
  po.postprocess.version_2_with_negative = opts.version_2_with_negative;
  const auto predictions = tasks::predict_qa(model, examples, po);
  Json answers = Json::array();
  std::vector<Json> lines;
  for (const auto& p : predictions.answers) {
    Json line = qa::prediction_to_json(p, opts.version_2_with_negative);
    if (!p.nbest.empty()) {
      line["score"] = p.nbest.front().score;
      line["probability"] = p.nbest.front().probability;
    }
    lines.push_back(line);
    answers.push_back(line);
  }
  Json out = {{"task", "qa"}, {"questions", examples.size()}};
  if (!opts.output.empty()) {
    write_jsonl_atomic(opts.output, lines);
    out["output"] = opts.output;
  }
  if (examples.size() <= 100) out["answers"] = answers;
  return out;
}

bool was_given(const InferOptions& opts, const std::string& name) {
  const auto it = opts.given.find(name);
  return it != opts.given.end() && it->second->count() > 0;
}

// generation_config.json, then the command-line options that were given.
infer::GenerateOptions decoding_options(const InferOptions& opts, int64_t prompt_length) {
  infer::GenerateOptions o = infer::generate_options_from(GenerationConfig::load(opts.model), prompt_length);
  if (was_given(opts, "--max-new-tokens")) o.max_new_tokens = opts.max_new_tokens;
  if (was_given(opts, "--temperature")) {
    if (opts.temperature < 0)
      fail("--temperature must be >= 0 (0 = greedy), got " + std::to_string(opts.temperature));
    o.do_sample = opts.temperature > 0;
    if (o.do_sample) o.temperature = opts.temperature;
  }
  if (was_given(opts, "--top-k")) o.top_k = opts.top_k;
  if (was_given(opts, "--top-p")) o.top_p = opts.top_p;
  if (was_given(opts, "--repetition-penalty")) o.repetition_penalty = opts.repetition_penalty;
  o.seed = opts.seed;
  o.stop_strings = opts.stop;
  return o;
}

std::string utc_now() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

struct PromptRecord {
  Json record;  // the input line (fields copied to the output), or {"prompt": ...}
  std::string prompt;
};

std::vector<PromptRecord> generate_inputs(const InferOptions& opts) {
  std::vector<PromptRecord> out;
  if (opts.input.empty()) {
    out.push_back({Json{{"prompt", opts.prompt}}, render_prompt(opts, opts.prompt, opts.input_text, {})});
    return out;
  }
  for_each_jsonl(opts.input, [&](const Json& r, int64_t line) {
    // "prompt", or Alpaca's "instruction" (+ "input") when a template renders it.
    const char* key = r.contains("prompt") ? "prompt" : "instruction";
    if (!r.contains(key) || !r[key].is_string()) {
      fail_at(opts.input, line, "expected a string field \"prompt\" (or \"instruction\" with --template)");
    }
    const std::string input =
        r.contains("input") && r["input"].is_string() ? r["input"].get<std::string>() : "";
    out.push_back({r, render_prompt(opts, r[key].get<std::string>(), input, {})});
  });
  return out;
}

// Prints the decoded text as it grows, holding back what a stop string could still remove and what
// is not yet a stable prefix (a byte-fallback character split over tokens).
class TextStreamer {
 public:
  TextStreamer(const Tokenizer& tokenizer, const std::vector<std::string>& stops) : tokenizer_(tokenizer) {
    for (const auto& s : stops) holdback_ = std::max(holdback_, s.size());
  }
  void add(int64_t token) {
    ids_.push_back(token);
    const std::string text = tokenizer_.decode(ids_, true);
    if (text.size() <= holdback_ || text.compare(0, printed_.size(), printed_) != 0) return;
    const std::string safe = text.substr(0, text.size() - holdback_);
    if (safe.size() > printed_.size()) {
      std::cout << safe.substr(printed_.size()) << std::flush;
      printed_ = safe;
    }
  }
  void finish(const std::string& final_text) {
    if (final_text.compare(0, printed_.size(), printed_) == 0)
      std::cout << final_text.substr(printed_.size());
    std::cout << std::endl;
  }

 private:
  const Tokenizer& tokenizer_;
  std::vector<int64_t> ids_;
  std::string printed_;
  size_t holdback_ = 0;
};

Json run_generate(const InferOptions& opts) {
  if (opts.input.empty() && !was_given(opts, "--prompt"))
    fail("generate needs --prompt TEXT or --input prompts.jsonl");
  if (opts.input.empty() && !opts.output.empty()) fail("--output needs --input (a JSONL of prompts)");
  if (opts.batch_size < 1) fail("--batch-size must be >= 1");
  auto lm = tasks::load_causal_lm_bundle(opts.model, "", opts.adapter, opts.dtype, opts.merge,
                                         quantize_options(opts));
  const Tokenizer& tok = *lm.tokenizer;
  const std::vector<PromptRecord> prompts = generate_inputs(opts);
  const bool stream = !opts.json && opts.input.empty();
  std::ofstream log_file;
  if (!opts.log.empty()) {
    log_file.open(opts.log, std::ios::app);
    if (!log_file) fail(opts.log + ": cannot open the log for appending");
  }

  std::vector<Json> lines;
  Json last;
  int64_t generated = 0;
  double seconds = 0;
  for (size_t first = 0; first < prompts.size(); first += static_cast<size_t>(opts.batch_size)) {
    const size_t end = std::min(prompts.size(), first + static_cast<size_t>(opts.batch_size));
    std::vector<std::vector<int64_t>> ids;
    size_t longest = 0;
    for (size_t i = first; i < end; ++i) {
      // Chat templates write <s> themselves (apply_chat_template tokenizes without special tokens).
      ids.push_back(tok.encode(prompts[i].prompt, !opts.no_bos && !chat_template(opts)).ids);
      if (ids.back().empty()) fail("prompt " + std::to_string(i) + " encodes to no tokens (drop --no-bos?)");
      longest = std::max(longest, ids.back().size());
    }
    infer::GenerateOptions o = decoding_options(opts, static_cast<int64_t>(longest));
    if (lm.model->max_sequence_length() > 0 &&
        static_cast<int64_t>(longest) + o.max_new_tokens > lm.model->max_sequence_length()) {
      const int64_t room =
          std::max<int64_t>(0, lm.model->max_sequence_length() - static_cast<int64_t>(longest));
      log::warn(opts.model + ": " + std::to_string(longest) + " prompt tokens + " +
                std::to_string(o.max_new_tokens) + " new tokens pass the model's " +
                std::to_string(lm.model->max_sequence_length()) + " positions; generating " +
                std::to_string(room));
      o.max_new_tokens = room;
    }
    infer::GenerateCallbacks cb;
    cb.decode = [&](const std::vector<int64_t>& v) { return tok.decode(v, true); };
    std::unique_ptr<TextStreamer> streamer;
    if (stream) {
      streamer = std::make_unique<TextStreamer>(tok, o.stop_strings);
      cb.on_token = [&](int64_t, int64_t token) { streamer->add(token); };
    }
    const auto t0 = std::chrono::steady_clock::now();
    const infer::GenerateResult r = infer::generate(*lm.model, ids, o, cb);
    seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    for (size_t i = first; i < end; ++i) {
      const infer::GeneratedRow& row = r.rows[i - first];
      if (streamer) streamer->finish(row.text);
      generated += static_cast<int64_t>(row.ids.size());
      Json line = prompts[i].record;
      line["response"] = row.text;
      line["finish_reason"] = row.finish_reason;
      line["generated_tokens"] = row.ids.size();
      lines.push_back(line);
      last = {{"text", row.text},
              {"ids", row.ids},
              {"prompt_ids", ids[i - first]},
              {"finish_reason", row.finish_reason}};
      if (log_file) {
        log_file << "[" << utc_now() << "] prompt: " << prompts[i].prompt << "\n"
                 << "[" << utc_now() << "] response (" << row.ids.size() << " tokens, " << row.finish_reason
                 << "): " << row.text << "\n";
      }
    }
  }
  Json out = {{"task", "generate"}, {"prompts", prompts.size()}, {"generated_tokens", generated}};
  out["tokens_per_second"] = seconds > 0 ? static_cast<double>(generated) / seconds : 0.0;
  if (lm.has_adapter) out["adapter"] = opts.adapter;
  if (!opts.input.empty()) {
    if (!opts.output.empty()) {
      write_jsonl_atomic(opts.output, lines);
      out["output"] = opts.output;
    }
    if (lines.size() <= 100) out["results"] = lines;
  } else if (opts.json) {
    out.update(last);
  } else {
    out["finish_reason"] = last["finish_reason"];  // the text itself was streamed
  }
  if (!opts.log.empty()) out["log"] = opts.log;
  return out;
}

// Interactive multi-turn chat on stdin/stdout with the model's template; "/reset" clears the history,
// "/exit" or end of input ends the session.
Json run_chat(const InferOptions& opts) {
  if (!chat_template(opts)) fail("--chat needs --template chatml or --template llama-2");
  auto lm = tasks::load_causal_lm_bundle(opts.model, "", opts.adapter, opts.dtype, opts.merge,
                                         quantize_options(opts));
  const Tokenizer& tok = *lm.tokenizer;
  std::vector<data::ChatMessage> history;
  int64_t turns = 0;
  std::string line;
  while (true) {
    std::cerr << "you> " << std::flush;
    if (!std::getline(std::cin, line) || line == "/exit") break;
    if (line == "/reset") {
      history.clear();
      continue;
    }
    if (line.empty()) continue;
    const std::string prompt = render_prompt(opts, line, "", history);
    const std::vector<int64_t> ids = tok.encode(prompt, false).ids;
    infer::GenerateOptions o = decoding_options(opts, static_cast<int64_t>(ids.size()));
    if (lm.model->max_sequence_length() > 0 &&
        static_cast<int64_t>(ids.size()) + o.max_new_tokens > lm.model->max_sequence_length()) {
      log::warn("the conversation no longer fits the model's context; history cleared");
      history.clear();
      continue;
    }
    infer::GenerateCallbacks cb;
    cb.decode = [&](const std::vector<int64_t>& v) { return tok.decode(v, true); };
    TextStreamer streamer(tok, o.stop_strings);
    cb.on_token = [&](int64_t, int64_t token) { streamer.add(token); };
    std::cout << "model> " << std::flush;
    const auto r = infer::generate(*lm.model, {ids}, o, cb);
    streamer.finish(r.rows[0].text);
    history.push_back({"user", line});
    history.push_back({"assistant", r.rows[0].text});
    ++turns;
  }
  return {{"task", "chat"}, {"turns", turns}};
}

// T5 / mT5 / ViT5: the prompt is the encoder input; greedy or beam search.
Json run_seq2seq(const InferOptions& opts) {
  const auto t5 = tasks::load_t5_bundle(opts.model, "", opts.adapter, opts.dtype);
  const std::vector<PromptRecord> prompts = generate_inputs(opts);
  std::vector<tasks::Seq2SeqSample> samples;
  for (const auto& p : prompts)
    samples.push_back({t5.tokenizer->encode(p.prompt, true).ids, {}, p.prompt, ""});
  config::GenerationSection g;
  g.max_new_tokens = opts.max_new_tokens;
  g.num_beams = opts.num_beams;
  const auto texts = tasks::generate_texts(t5, samples, g, opts.batch_size);
  std::vector<Json> lines;
  for (size_t i = 0; i < prompts.size(); ++i) {
    Json line = prompts[i].record;
    line["response"] = texts[i];
    lines.push_back(line);
    if (!opts.json && opts.input.empty()) std::cout << texts[i] << std::endl;
  }
  Json out = {{"task", "generate"}, {"prompts", prompts.size()}};
  if (!opts.output.empty()) {
    write_jsonl_atomic(opts.output, lines);
    out["output"] = opts.output;
  }
  if (opts.input.empty())
    out["text"] = texts[0];
  else if (lines.size() <= 100)
    out["results"] = lines;
  return out;
}

Json run_infer(const InferOptions& opts) {
  if (opts.model.empty()) fail("--model is required");
  if (opts.task == "qa") return run_qa(opts);
  const std::string type = HfConfig::load(opts.model).model_type();
  if (type == "t5" || type == "mt5") return run_seq2seq(opts);
  if (opts.chat) return run_chat(opts);
  return run_generate(opts);
}

}  // namespace

void add_infer_command(CLI::App& app, Registry& registry, const GlobalOptions& global) {
  auto opts = std::make_shared<InferOptions>();
  auto* sub = app.add_subcommand("infer", "Answer questions or generate text with a model (+ adapter)");
  sub->add_option("--task", opts->task, "qa (extractive) or generate")
      ->check(CLI::IsMember({"qa", "generate"}))
      ->capture_default_str();
  sub->add_option("--model", opts->model, "model folder (Hugging Face layout)");
  sub->add_option("--adapter", opts->adapter, "PEFT adapter folder");
  opts->given["--prompt"] =
      sub->add_option("--prompt", opts->prompt, "prompt text (generate; '' = BOS only)");
  sub->add_option("--question", opts->question, "question (qa)");
  sub->add_option("--context", opts->context, "context passage (qa)");
  sub->add_option("--input", opts->input, "JSONL of prompts or question/context records");
  sub->add_option("--output", opts->output, "JSONL predictions file");
  sub->add_option("--log", opts->log, "generate: append each prompt and response, timestamped");
  sub->add_option("--batch-size", opts->batch_size, "generate: prompts per left-padded batch")
      ->capture_default_str();
  // Unset decoding options keep the model's generation_config.json.
  opts->given["--max-new-tokens"] = sub->add_option("--max-new-tokens", opts->max_new_tokens,
                                                    "tokens to generate (default: generation_config)");
  opts->given["--temperature"] =
      sub->add_option("--temperature", opts->temperature,
                      "0: greedy; > 0: sample at this temperature (default: generation_config)");
  opts->given["--top-k"] =
      sub->add_option("--top-k", opts->top_k, "sampling: keep the k best tokens (0: off)");
  opts->given["--top-p"] = sub->add_option("--top-p", opts->top_p, "sampling: nucleus mass (1: off)");
  opts->given["--repetition-penalty"] =
      sub->add_option("--repetition-penalty", opts->repetition_penalty, "HF repetition penalty (1: off)");
  sub->add_option("--seed", opts->seed, "sampling seed")->capture_default_str();
  sub->add_option("--stop", opts->stop, "stop when the generated text contains this (repeatable)")
      ->allow_extra_args(false);
  sub->add_flag("--no-bos", opts->no_bos, "encode the prompt without special tokens (no BOS)");
  sub->add_option("--max-seq-length", opts->max_seq_length, "qa: tokens per window")->capture_default_str();
  sub->add_option("--doc-stride", opts->doc_stride, "qa: token overlap between windows")
      ->capture_default_str();
  sub->add_option("--n-best-size", opts->n_best_size, "qa: candidate starts/ends kept")
      ->capture_default_str();
  sub->add_option("--max-answer-length", opts->max_answer_length, "qa: longest answer in tokens")
      ->capture_default_str();
  sub->add_flag("--version-2-with-negative", opts->version_2_with_negative,
                "qa: the model may answer 'no answer' (SQuAD v2 / UIT-ViQuAD 2.0)");
  sub->add_option("--dtype", opts->dtype, "fp32, bf16 or fp16")->capture_default_str();
  sub->add_option(
      "--template", opts->prompt_template,
      "render --prompt with a template: alpaca, phogpt, chatml, llama-2, or a {instruction} string");
  sub->add_option("--input-text", opts->input_text, "the template's {input} (alpaca's ### Input)");
  sub->add_option("--system", opts->system, "chat templates: system message");
  sub->add_flag("--chat", opts->chat, "interactive multi-turn chat on the terminal (chatml / llama-2)");
  sub->add_flag("--merge", opts->merge, "merge the adapter into the weights before generating (faster)");
  sub->add_flag("--load-in-4bit", opts->load_in_4bit,
                "quantize the base to NF4 + double quant (bitsandbytes)");
  sub->add_flag("--load-in-8bit", opts->load_in_8bit, "quantize the base to int8 (LLM.int8, threshold 6)")
      ->excludes("--load-in-4bit");
  sub->add_option("--num-beams", opts->num_beams, "T5: beam search width (1: greedy)")->capture_default_str();
  sub->footer(example_footer(
      "  qlora infer --task qa --model runs/xlmr/best --question 'Ai ...?' --context '...'\n"
      "  qlora infer --model ../shared/data/models/aidreams260K --prompt '' --max-new-tokens 100 --json\n"
      "  qlora infer --model models/Qwen2-0.5B-Instruct --template chatml --chat\n"
      "  qlora infer --model data/models/aidreams260K --adapter runs/demo_sft/best --template alpaca "
      "--prompt 'Describe a dream.'\n"
      "  qlora infer --model models/flan-t5-base --prompt 'question: ... context: ...' --num-beams 4\n"));
  registry.add(sub, [opts, &global] {
    opts->json = global.json;
    return run_infer(*opts);
  });
}

}  // namespace qlora::cli
