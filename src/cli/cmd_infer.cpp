// qlora infer: answer questions (extractive QA) or generate text with a model and adapter.
#include <ATen/ATen.h>

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
#include "qlora/infer/seq2seq_generate.h"
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
  std::string attn_implementation = "sdpa";  // sdpa or eager (nn/attention.h)
  std::string prompt_template;  // alpaca, phogpt, chatml, llama-2 or a {instruction} string; empty = raw
  std::string input_text;       // the template's {input}
  std::string system;           // chat templates: system message
  bool chat = false;            // interactive multi-turn session on stdin
  bool merge = false;           // fold the adapter into the weights before generating
  int64_t num_beams = 1;        // seq2seq (T5) beam search
  double length_penalty = 1.0;  // T5 beam search
  int64_t no_repeat_ngram_size = 0;
  int64_t min_new_tokens = 0;
  std::string input_ids;      // "1,2,3": the prompt as token ids (no tokenizer needed)
  int64_t output_scores = 0;  // > 0: the top-K log-probs of each generated token
  int64_t n_best = 0;         // qa: > 0 prints the K best spans with their logits
  bool load_in_4bit = false;  // NF4 + double quant base (bitsandbytes format), compute in --dtype
  bool load_in_8bit = false;  // int8 base (LLM.int8 with threshold 6)
};

nn::AttnImplementation attn_implementation(const InferOptions& opts) {
  return nn::parse_attn_implementation(opts.attn_implementation, "--attn-implementation");
}

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
  if (opts.n_best < 0) fail("--n-best must be >= 0, got " + std::to_string(opts.n_best));
  const auto model = tasks::load_qa_model(opts.model, "", opts.adapter, opts.dtype);
  model.model->config.attn_implementation = attn_implementation(opts);
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
    if (opts.n_best > 0) {
      Json nbest = qa::nbest_to_json(p)["nbest"];
      if (static_cast<int64_t>(nbest.size()) > opts.n_best)
        nbest.erase(nbest.begin() + opts.n_best, nbest.end());
      line["nbest"] = nbest;
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

// "1,2,3" -> {1, 2, 3}.
std::vector<int64_t> parse_ids(const std::string& text) {
  std::vector<int64_t> ids;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t comma = std::min(text.find(',', start), text.size());
    const std::string item = text.substr(start, comma - start);
    size_t used = 0;
    try {
      ids.push_back(std::stoll(item, &used));
    } catch (const std::exception&) {
      used = std::string::npos;
    }
    if (used != item.size() || ids.back() < 0)
      fail("--input-ids: expected comma-separated token ids, got '" + item + "' in '" + text + "'");
    start = comma + 1;
  }
  return ids;
}

// Decoders decode greedily or by sampling: beam search settings are refused, naming where they came from.
void refuse_beam_search(const InferOptions& opts, const GenerationConfig& g) {
  if (was_given(opts, "--num-beams") && opts.num_beams != 1)
    fail("--num-beams " + std::to_string(opts.num_beams) +
         ": beam search is for T5 models (decoders: greedy or sampling)");
  if (was_given(opts, "--length-penalty")) fail("--length-penalty: beam search only, which is for T5 models");
  if (!was_given(opts, "--num-beams") && g.num_beams > 1) {
    fail(opts.model + "/generation_config.json: key 'num_beams' = " + std::to_string(g.num_beams) +
         ": beam search is for T5 models in qlora; pass --num-beams 1 to decode greedily");
  }
}

// The sampling and processor options both families share, applied over `o` (GenerateOptions or
// GenerationConfig: the same field names) where the command line gave them.
template <typename Settings>
void apply_shared_overrides(const InferOptions& opts, Settings& o) {
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
  if (was_given(opts, "--no-repeat-ngram-size")) o.no_repeat_ngram_size = opts.no_repeat_ngram_size;
  if (was_given(opts, "--min-new-tokens")) o.min_new_tokens = opts.min_new_tokens;
}

// generation_config.json, then the command-line options that were given.
infer::GenerateOptions decoding_options(const InferOptions& opts, int64_t prompt_length) {
  const GenerationConfig g = GenerationConfig::load(opts.model);
  refuse_beam_search(opts, g);
  infer::GenerateOptions o = infer::generate_options_from(g, prompt_length);
  apply_shared_overrides(opts, o);
  o.seed = opts.seed;
  o.stop_strings = opts.stop;
  o.output_scores = opts.output_scores > 0;
  return o;
}

// The top-K log-probs of each of the first `n` generated tokens of `row`: log_softmax of the scores after
// every logits processor and warper (transformers' output_scores); the chosen id's entry equals
// compute_transition_scores(..., normalize_logits=True).
Json top_logprobs(const std::vector<at::Tensor>& scores, int64_t row, size_t n, int64_t k) {
  Json out = Json::array();
  for (size_t t = 0; t < n && t < scores.size(); ++t) {
    const at::Tensor logprobs = at::log_softmax(scores[t][row], -1);
    const auto [values, ids] = at::topk(logprobs, std::min<int64_t>(k, logprobs.size(0)));
    Json step = Json::array();
    for (int64_t i = 0; i < values.size(0); ++i)
      step.push_back({{"id", ids[i].item<int64_t>()}, {"logprob", values[i].item<double>()}});
    out.push_back(step);
  }
  return out;
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
  std::vector<int64_t> ids;  // --input-ids: the token ids, used as they are
};

std::vector<PromptRecord> generate_inputs(const InferOptions& opts) {
  std::vector<PromptRecord> out;
  if (was_given(opts, "--input-ids")) {
    if (!opts.input.empty() || was_given(opts, "--prompt")) fail("--input-ids replaces --prompt and --input");
    const std::vector<int64_t> ids = parse_ids(opts.input_ids);
    out.push_back({Json{{"input_ids", ids}}, "", ids});
    return out;
  }
  if (opts.input.empty()) {
    out.push_back({Json{{"prompt", opts.prompt}}, render_prompt(opts, opts.prompt, opts.input_text, {}), {}});
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
    out.push_back({r, render_prompt(opts, r[key].get<std::string>(), input, {}), {}});
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

// Checks shared by decoder and T5 generation.
void check_generate_options(const InferOptions& opts) {
  const bool from_ids = was_given(opts, "--input-ids");
  if (opts.input.empty() && !was_given(opts, "--prompt") && !from_ids)
    fail("generate needs --prompt TEXT, --input prompts.jsonl or --input-ids 1,2,3");
  if (opts.input.empty() && !opts.output.empty()) fail("--output needs --input (a JSONL of prompts)");
  if (opts.batch_size < 1) fail("--batch-size must be >= 1");
  if (opts.output_scores < 0) fail("--output-scores must be >= 0, got " + std::to_string(opts.output_scores));
  if (was_given(opts, "--n-best")) fail("--n-best is for --task qa");
}

Json run_generate(const InferOptions& opts) {
  check_generate_options(opts);
  const bool from_ids = was_given(opts, "--input-ids");
  auto lm = tasks::load_causal_lm_bundle(opts.model, "", opts.adapter, opts.dtype, opts.merge,
                                         quantize_options(opts), /*tokenizer_optional=*/from_ids);
  lm.model->set_attn_implementation(attn_implementation(opts));
  const Tokenizer* tok = lm.tokenizer.get();
  if (!tok && !opts.stop.empty()) fail("--stop needs a tokenizer in " + opts.model);
  const std::vector<PromptRecord> prompts = generate_inputs(opts);
  const bool stream = !opts.json && opts.input.empty() && tok;
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
      ids.push_back(from_ids ? prompts[i].ids
                             : tok->encode(prompts[i].prompt, !opts.no_bos && !chat_template(opts)).ids);
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
    if (tok) cb.decode = [&](const std::vector<int64_t>& v) { return tok->decode(v, true); };
    std::unique_ptr<TextStreamer> streamer;
    if (stream) {
      streamer = std::make_unique<TextStreamer>(*tok, o.stop_strings);
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
      line["ids"] = row.ids;
      last = {{"text", row.text},
              {"ids", row.ids},
              {"prompt_ids", ids[i - first]},
              {"finish_reason", row.finish_reason}};
      if (opts.output_scores > 0) {
        line["top_logprobs"] = last["top_logprobs"] =
            top_logprobs(r.scores, static_cast<int64_t>(i - first), row.ids.size(), opts.output_scores);
      }
      lines.push_back(line);
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
  lm.model->set_attn_implementation(attn_implementation(opts));
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

// generation_config.json (as transformers reads it), then the command-line options that were given.
GenerationConfig seq2seq_config(const InferOptions& opts, const tasks::T5Bundle& t5) {
  GenerationConfig g = GenerationConfig::load(opts.model);
  if (g.eos_token_ids.empty() && t5.tokenizer) g.eos_token_ids = {t5.tokenizer->special_ids().eos};
  if (!g.pad_token_id) g.pad_token_id = t5.model->config.pad_token_id;
  apply_shared_overrides(opts, g);
  if (was_given(opts, "--num-beams")) g.num_beams = opts.num_beams;
  if (was_given(opts, "--length-penalty")) g.length_penalty = opts.length_penalty;
  if (opts.output_scores > 0 && g.num_beams > 1) {
    fail("--output-scores: greedy search and sampling only, but num_beams is " + std::to_string(g.num_beams) +
         " (pass --num-beams 1)");
  }
  return g;
}

// Generated ids of one output row [1 + N]: without the decoder start token, up to and including the
// first eos (what follows is padding).
std::vector<int64_t> generated_ids(const at::Tensor& row, const std::vector<int64_t>& eos) {
  const at::Tensor c = row.contiguous();
  std::vector<int64_t> ids;
  for (int64_t t = 1; t < c.size(0); ++t) {
    ids.push_back(c[t].item<int64_t>());
    if (std::find(eos.begin(), eos.end(), ids.back()) != eos.end()) break;
  }
  return ids;
}

// T5 / mT5 / ViT5: the prompt is the encoder input; greedy search, sampling or beam search.
Json run_seq2seq(const InferOptions& opts) {
  check_generate_options(opts);
  // Options of decoder generation that T5 generation has no use for are refused, not ignored.
  for (const char* name :
       {"--stop", "--chat", "--merge", "--load-in-4bit", "--load-in-8bit", "--log", "--no-bos", "--system"}) {
    if (was_given(opts, name))
      fail(std::string(name) + " is for decoder models; " + opts.model + " is a T5 model");
  }
  const bool from_ids = was_given(opts, "--input-ids");
  const auto t5 =
      tasks::load_t5_bundle(opts.model, "", opts.adapter, opts.dtype, /*tokenizer_optional=*/from_ids);
  t5.model->config.attn_implementation = attn_implementation(opts);
  const GenerationConfig g = seq2seq_config(opts, t5);
  infer::Seq2SeqOptions so;
  so.seed = opts.seed;
  so.output_scores = opts.output_scores > 0;
  const std::vector<PromptRecord> prompts = generate_inputs(opts);
  const int64_t pad = *g.pad_token_id;
  std::vector<Json> lines;
  Json last;
  for (size_t first = 0; first < prompts.size(); first += static_cast<size_t>(opts.batch_size)) {
    const size_t end = std::min(prompts.size(), first + static_cast<size_t>(opts.batch_size));
    std::vector<std::vector<int64_t>> rows;
    size_t longest = 0;
    for (size_t i = first; i < end; ++i) {
      rows.push_back(from_ids ? prompts[i].ids : t5.tokenizer->encode(prompts[i].prompt, true).ids);
      if (rows.back().empty()) fail("prompt " + std::to_string(i) + " encodes to no tokens");
      longest = std::max(longest, rows.back().size());
    }
    const int64_t B = static_cast<int64_t>(rows.size()), S = static_cast<int64_t>(longest);
    at::Tensor ids = at::full({B, S}, pad, at::kLong), mask = at::zeros({B, S}, at::kLong);  // right padded
    for (int64_t b = 0; b < B; ++b) {
      const auto& r = rows[static_cast<size_t>(b)];
      ids[b].narrow(0, 0, static_cast<int64_t>(r.size())).copy_(at::tensor(r, at::kLong));
      mask[b].narrow(0, 0, static_cast<int64_t>(r.size())).fill_(1);
    }
    const infer::Seq2SeqGeneration out = infer::seq2seq_generate(*t5.model, ids, mask, g, so);
    for (int64_t b = 0; b < B; ++b) {
      const std::vector<int64_t> generated = generated_ids(out.sequences[b], g.eos_token_ids);
      const std::string text =
          t5.tokenizer ? t5.tokenizer->decode(generated, /*skip_special_tokens=*/true) : "";
      Json line = prompts[first + static_cast<size_t>(b)].record;
      line["response"] = text;
      line["ids"] = generated;
      if (opts.output_scores > 0)
        line["top_logprobs"] = top_logprobs(out.scores, b, generated.size(), opts.output_scores);
      if (!opts.json && opts.input.empty()) std::cout << text << std::endl;
      last = {{"text", text}, {"ids", generated}, {"prompt_ids", rows[static_cast<size_t>(b)]}};
      if (line.contains("top_logprobs")) last["top_logprobs"] = line["top_logprobs"];
      lines.push_back(line);
    }
  }
  Json out = {{"task", "generate"}, {"prompts", prompts.size()}, {"num_beams", g.num_beams}};
  if (!opts.output.empty()) {
    write_jsonl_atomic(opts.output, lines);
    out["output"] = opts.output;
  }
  if (opts.input.empty())
    out.update(last);
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
  opts->given["--log"] =
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
  opts->given["--no-repeat-ngram-size"] = sub->add_option(
      "--no-repeat-ngram-size", opts->no_repeat_ngram_size, "ban repeating n-grams of this size (0: off)");
  opts->given["--min-new-tokens"] = sub->add_option("--min-new-tokens", opts->min_new_tokens,
                                                    "no eos before this many new tokens (0: off)");
  sub->add_option("--seed", opts->seed, "sampling seed (as torch.manual_seed)")->capture_default_str();
  opts->given["--stop"] =
      sub->add_option("--stop", opts->stop, "stop when the generated text contains this (repeatable)")
          ->allow_extra_args(false);
  opts->given["--no-bos"] =
      sub->add_flag("--no-bos", opts->no_bos, "encode the prompt without special tokens (no BOS)");
  opts->given["--input-ids"] =
      sub->add_option("--input-ids", opts->input_ids,
                      "the prompt as token ids, e.g. 1,2,3 (no tokenizer needed; no BOS added)");
  sub->add_option("--output-scores", opts->output_scores,
                  "print the top-K log-probs of each generated token (log_softmax of the processed scores, "
                  "as transformers' output_scores; greedy and sampling)");
  opts->given["--n-best"] =
      sub->add_option("--n-best", opts->n_best, "qa: print the K best spans with their start/end logits");
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
  sub->add_option("--attn-implementation", opts->attn_implementation,
                  "attention: sdpa (fused kernels) or eager (transformers' reference form)")
      ->capture_default_str();
  sub->add_option(
      "--template", opts->prompt_template,
      "render --prompt with a template: alpaca, phogpt, chatml, llama-2, or a {instruction} string");
  sub->add_option("--input-text", opts->input_text, "the template's {input} (alpaca's ### Input)");
  opts->given["--system"] = sub->add_option("--system", opts->system, "chat templates: system message");
  opts->given["--chat"] =
      sub->add_flag("--chat", opts->chat, "interactive multi-turn chat on the terminal (chatml / llama-2)");
  opts->given["--merge"] =
      sub->add_flag("--merge", opts->merge, "merge the adapter into the weights before generating (faster)");
  opts->given["--load-in-4bit"] = sub->add_flag("--load-in-4bit", opts->load_in_4bit,
                                                "quantize the base to NF4 + double quant (bitsandbytes)");
  opts->given["--load-in-8bit"] =
      sub->add_flag("--load-in-8bit", opts->load_in_8bit, "quantize the base to int8 (LLM.int8, threshold 6)")
          ->excludes("--load-in-4bit");
  opts->given["--num-beams"] = sub->add_option(
      "--num-beams", opts->num_beams, "T5: beam search width (1: greedy; default: generation_config)");
  opts->given["--length-penalty"] =
      sub->add_option("--length-penalty", opts->length_penalty,
                      "T5 beam search: exponent on length (default: generation_config)");
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
