// Byte-level BPE tokenizers against the fixtures written by tools/gen_bpe_fixtures.py from transformers 5.x
// fast tokenizers (tokenizers 0.23): ids, offsets, token types, sequence ids, pairs and decode, text by
// text. vi_bpe and llama3style_bpe are trained and shipped; gpt2 and roberta-base come from ../shared.
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <functional>
#include <sstream>

#include "error_of.h"
#include "qlora/core/fs.h"
#include "qlora/core/jsonl.h"
#include "qlora/tokenizer/byte_level_bpe.h"
#include "qlora/tokenizer/tokenizer.h"

namespace qlora {
namespace {

using qlora_test::error_of;

const std::string kFixtures = std::string(QLORA_FIXTURES_DIR) + "/tokenizers";
const std::string kShared = std::string(QLORA_SOURCE_DIR) + "/../shared/data/tokenizers";

std::string show(const std::string& s) {
  std::ostringstream out;
  out << '"';
  for (unsigned char c : s) {
    if (c == '\n') {
      out << "\\n";
    } else if (c == '\t') {
      out << "\\t";
    } else if (c == '\r') {
      out << "\\r";
    } else {
      out << c;
    }
  }
  out << '"';
  return out.str();
}

std::string join(const std::vector<int64_t>& v) {
  std::string s;
  for (int64_t x : v) s += (s.empty() ? "" : " ") + std::to_string(x);
  return s;
}

std::string join(const std::vector<std::pair<int64_t, int64_t>>& v) {
  std::string s;
  for (const auto& [a, b] : v) s += (s.empty() ? "" : " ") + std::to_string(a) + ":" + std::to_string(b);
  return s;
}

std::vector<std::pair<int64_t, int64_t>> offsets_of(const Json& j) {
  std::vector<std::pair<int64_t, int64_t>> out;
  for (const auto& o : j) out.emplace_back(o[0].get<int64_t>(), o[1].get<int64_t>());
  return out;
}

// Counts compared items and mismatches so the summary shows the tests are not vacuous.
struct Checker {
  std::string where;
  int compared = 0;
  int failed = 0;

  template <typename T>
  void same(const std::string& what, const T& got, const T& want) {
    ++compared;
    if (got == want) return;
    ++failed;
    ADD_FAILURE() << where << ": " << what << " differ\n got      " << text(got) << "\n expected "
                  << text(want);
  }
  static std::string text(const std::string& s) { return show(s); }
  static std::string text(const std::vector<int64_t>& v) { return join(v); }
  static std::string text(const std::vector<int>& v) {
    return join(std::vector<int64_t>(v.begin(), v.end()));
  }
  static std::string text(const std::vector<std::pair<int64_t, int64_t>>& v) { return join(v); }
};

void check_encoding(Checker& c, const Encoding& e, const Json& want) {
  c.same("ids", e.ids, want["ids"].get<std::vector<int64_t>>());
  c.same("offsets", e.offsets, offsets_of(want["offsets"]));
  c.same("token_type_ids", e.token_type_ids, want["token_type_ids"].get<std::vector<int64_t>>());
  c.same("sequence_ids", e.sequence_ids, want["sequence_ids"].get<std::vector<int>>());
}

class BpeFixture : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    doc_ = read_json_file(kFixtures + "/" + GetParam() + ".json");
    const std::string rel = doc_["model_dir"].get<std::string>();
    const bool local_only = doc_["local_only"].get<bool>();
    model_dir_ = (local_only ? kShared : kFixtures) + "/" + rel;
    if (local_only && !fsys::exists(model_dir_)) {
      GTEST_SKIP() << "tokenizer not shipped, absent at " << model_dir_ << " (../shared not present)";
    }
    if (doc_.contains("overrides")) {
      // A variant of a shipped tokenizer: its tokenizer.json with some top-level keys replaced.
      Json spec = read_json_file(model_dir_ + "/tokenizer.json");
      for (const auto& [key, value] : doc_["overrides"].items()) spec[key] = value;
      model_dir_ = "/tmp/qlora_bpe_" + name() + "_" + std::to_string(::getpid());
      fsys::create_directories(model_dir_);
      std::ofstream(model_dir_ + "/tokenizer.json") << spec.dump();
      std::ofstream(model_dir_ + "/tokenizer_config.json") << doc_["tokenizer_config"].dump();
      temp_dir_ = model_dir_;
    }
    tok_ = load_tokenizer(model_dir_);
  }
  void TearDown() override {
    if (!temp_dir_.empty()) fsys::remove_all(temp_dir_);
  }
  std::string name() const { return doc_["name"].get<std::string>(); }

  Json doc_;
  std::string model_dir_, temp_dir_;
  std::unique_ptr<Tokenizer> tok_;
};

TEST_P(BpeFixture, DetectedAsByteLevelBpe) {
  EXPECT_EQ(detect_tokenizer_kind(model_dir_), TokenizerKind::kByteLevelBpe);
  EXPECT_EQ(tok_->kind(), TokenizerKind::kByteLevelBpe);
}

TEST_P(BpeFixture, SingleTextsMatchHfFast) {
  Checker c;
  for (const Json& k : doc_["cases"]) {
    const std::string text = k["text"].get<std::string>();
    c.where = name() + " text " + show(text);
    check_encoding(c, tok_->encode(text, true), k);
    // The generator stores the no-specials encoding only where it is not the one above minus the
    // template's specials (sequence id -1).
    std::vector<int64_t> ids;
    std::vector<std::pair<int64_t, int64_t>> offsets;
    if (k.contains("ids_no_special")) {
      ids = k["ids_no_special"].get<std::vector<int64_t>>();
      offsets = offsets_of(k["offsets_no_special"]);
    } else {
      const auto all_ids = k["ids"].get<std::vector<int64_t>>();
      const auto all_offsets = offsets_of(k["offsets"]);
      const auto seq = k["sequence_ids"].get<std::vector<int>>();
      for (size_t i = 0; i < seq.size(); ++i) {
        if (seq[i] == -1) continue;
        ids.push_back(all_ids[i]);
        offsets.push_back(all_offsets[i]);
      }
    }
    const Encoding plain = tok_->encode(text, false);
    c.same("ids (no specials)", plain.ids, ids);
    c.same("offsets (no specials)", plain.offsets, offsets);
  }
  std::cout << name() << ": " << doc_["cases"].size() << " texts, " << c.compared << " comparisons, "
            << c.failed << " differ\n";
  EXPECT_GE(doc_["cases"].size(), 80u) << "fixture has too few texts";
}

// Random strings built from pieces that stress the pre-tokenizer regexes and added-token matching.
TEST_P(BpeFixture, RandomTextsMatchHfFast) {
  Checker c;
  for (const Json& k : doc_["random_cases"]) {
    const std::string text = k["text"].get<std::string>();
    c.where = name() + " random text " + show(text);
    const Encoding e = tok_->encode(text, true);
    c.same("ids", e.ids, k["ids"].get<std::vector<int64_t>>());
    c.same("offsets", e.offsets, offsets_of(k["offsets"]));
  }
  std::cout << name() << ": " << doc_["random_cases"].size() << " random texts, " << c.failed << " differ\n";
  EXPECT_GE(c.compared, 2 * 100);
}

TEST_P(BpeFixture, PairsMatchHfFast) {
  Checker c;
  for (const Json& k : doc_["pairs"]) {
    const std::string a = k["a"].get<std::string>(), b = k["b"].get<std::string>();
    c.where = name() + " pair " + show(a) + " / " + show(b);
    check_encoding(c, tok_->encode_pair(a, b, true), k);
  }
  std::cout << name() << ": " << doc_["pairs"].size() << " pairs, " << c.failed << " differ\n";
  EXPECT_GE(c.compared, 4 * 6);
}

TEST_P(BpeFixture, DecodeMatchesHf) {
  Checker c;
  for (const char* list : {"cases", "pairs", "decodes"}) {
    for (const Json& k : doc_[list]) {
      const auto ids = k["ids"].get<std::vector<int64_t>>();
      c.where = name() + " decode of ids " + join(ids);
      c.same("decode", tok_->decode(ids, false), k["decode"].get<std::string>());
      c.same("decode(skip_special_tokens)", tok_->decode(ids, true),
             k["decode_skip_special"].get<std::string>());
    }
  }
  std::cout << name() << ": " << c.compared << " decodes (" << doc_["decodes"].size()
            << " of random id lists), " << c.failed << " differ\n";
  EXPECT_GE(c.compared, 2 * 120);
}

TEST_P(BpeFixture, SpecialIdsAndSizesMatchHf) {
  const SpecialTokenIds& s = tok_->special_ids();
  const Json& want = doc_["special_ids"];
  EXPECT_EQ(s.bos, want["bos"].get<int64_t>());
  EXPECT_EQ(s.eos, want["eos"].get<int64_t>());
  EXPECT_EQ(s.pad, want["pad"].get<int64_t>());
  EXPECT_EQ(s.unk, want["unk"].get<int64_t>());
  EXPECT_EQ(s.mask, want["mask"].get<int64_t>());
  EXPECT_EQ(s.cls, want["cls"].get<int64_t>());
  EXPECT_EQ(s.sep, want["sep"].get<int64_t>());
  EXPECT_EQ(tok_->vocab_size(), doc_["vocab_size"].get<int64_t>());
  EXPECT_EQ(tok_->num_special_tokens_to_add(false),
            doc_["num_special_tokens_to_add"]["single"].get<int64_t>());
  EXPECT_EQ(tok_->num_special_tokens_to_add(true), doc_["num_special_tokens_to_add"]["pair"].get<int64_t>());
}

TEST_P(BpeFixture, TokenStringsRoundTrip) {
  int checked = 0;
  for (const Json& k : doc_["cases"]) {
    const auto ids = k["ids"].get<std::vector<int64_t>>();
    const auto tokens = k["tokens"].get<std::vector<std::string>>();
    for (size_t i = 0; i < ids.size(); ++i, ++checked) {
      EXPECT_EQ(tok_->id_to_token(ids[i]), tokens[i]) << "text " << show(k["text"].get<std::string>());
      EXPECT_EQ(tok_->token_to_id(tokens[i]), ids[i]) << "token " << tokens[i];
    }
  }
  EXPECT_GT(checked, 500);
}

TEST_P(BpeFixture, BadInputsAreErrors) {
  EXPECT_NE(error_of([&] { tok_->encode("bad \xC3( utf8"); }).find("malformed UTF-8"), std::string::npos);
  EXPECT_NE(error_of([&] { tok_->decode({tok_->vocab_size()}); }).find("outside"), std::string::npos);
  EXPECT_NE(error_of([&] { tok_->id_to_token(-1); }).find("outside"), std::string::npos);
  EXPECT_EQ(tok_->token_to_id("no such token \xF0\x9F\x98\x80"), -1);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, BpeFixture,
                         ::testing::Values("vi_bpe", "llama3style_bpe", "prefix_bpe", "gpt2_bpe",
                                           "roberta_bpe"),
                         [](const auto& info) { return info.param; });

// ---- configuration errors --------------------------------------------------------------------------

// A copy of a shipped tokenizer folder whose tokenizer.json is edited by `edit`.
struct EditedTokenizer {
  std::string dir;
  explicit EditedTokenizer(const std::string& name, const std::function<void(Json&)>& edit) {
    dir = "/tmp/qlora_bpe_" + name + "_" + std::to_string(::getpid());
    fsys::remove_all(dir);
    fsys::create_directories(dir);
    Json j = read_json_file(kFixtures + "/vi_bpe/tokenizer.json");
    edit(j);
    std::ofstream(dir + "/tokenizer.json") << j.dump();
  }
  ~EditedTokenizer() { fsys::remove_all(dir); }
};

TEST(ByteLevelBpeErrors, UnknownSplitRegexNamesFileAndJsonPath) {
  EditedTokenizer t(
      "regex", [](Json& j) { j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "\\w+|\\s+"; });
  const std::string msg = error_of([&] { load_tokenizer(t.dir); });
  EXPECT_NE(msg.find(t.dir + "/tokenizer.json"), std::string::npos) << msg;
  EXPECT_NE(msg.find("pre_tokenizer.pretokenizers[0].pattern.Regex"), std::string::npos) << msg;
  EXPECT_NE(msg.find("\\w+|\\s+"), std::string::npos) << msg;
}

TEST(ByteLevelBpeErrors, UnsupportedNormalizerNamesFileAndJsonPath) {
  EditedTokenizer t("norm", [](Json& j) {
    j["normalizer"] = Json{{"type", "Sequence"},
                           {"normalizers", Json::array({Json{{"type", "NFC"}}, Json{{"type", "NFKC"}}})}};
  });
  const std::string msg = error_of([&] { load_tokenizer(t.dir); });
  EXPECT_NE(msg.find(t.dir + "/tokenizer.json"), std::string::npos) << msg;
  EXPECT_NE(msg.find("normalizer.normalizers[1]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("NFKC"), std::string::npos) << msg;
}

TEST(ByteLevelBpeErrors, DropoutAndByteFallbackAreRejected) {
  EditedTokenizer dropout("dropout", [](Json& j) { j["model"]["dropout"] = 0.1; });
  EXPECT_NE(error_of([&] { load_tokenizer(dropout.dir); }).find("model.dropout"), std::string::npos);
  EditedTokenizer fallback("fallback", [](Json& j) { j["model"]["byte_fallback"] = true; });
  EXPECT_NE(error_of([&] { load_byte_level_bpe_tokenizer(fallback.dir); }).find("model.byte_fallback"),
            std::string::npos);
}

TEST(ByteLevelBpeErrors, MergesInStringFormEncodeTheSame) {
  // tokenizers writes merges as [a, b]; older files (roberta-base) as "a b". Both must give the same ids.
  EditedTokenizer t("string_merges", [](Json& j) {
    for (Json& m : j["model"]["merges"]) m = m[0].get<std::string>() + " " + m[1].get<std::string>();
  });
  std::ofstream(t.dir + "/tokenizer_config.json")
      << std::ifstream(kFixtures + "/vi_bpe/tokenizer_config.json").rdbuf();
  const auto a = load_tokenizer(t.dir);
  const auto b = load_tokenizer(kFixtures + "/vi_bpe");
  const Json doc = read_json_file(kFixtures + "/vi_bpe.json");
  for (const Json& k : doc["cases"]) {
    const std::string text = k["text"].get<std::string>();
    EXPECT_EQ(a->encode(text).ids, b->encode(text).ids) << show(text);
  }
}

// LLaMA-2's tokenizer.json is a SentencePiece-style BPE (Metaspace, byte fallback): it is not byte-level
// and must not be read as such.
TEST(ByteLevelBpeErrors, Llama2TokenizerJsonIsNotByteLevel) {
  const std::string dir = kShared + "/llama2";
  if (!fsys::exists(dir + "/tokenizer.json")) GTEST_SKIP() << "../shared llama2 tokenizer absent at " << dir;
  // Its tokenizer_config.json says LlamaTokenizer: the SentencePiece path, from tokenizer.json alone. Its
  // merges include "   " (a space piece), which cannot be split into two pieces: an error, as in transformers
  // 5.17 ("expected tuple of length 2").
  EXPECT_EQ(detect_tokenizer_kind(dir), TokenizerKind::kLlama);
  const std::string split = error_of([&] { load_tokenizer(dir); });
  EXPECT_NE(split.find("model.merges["), std::string::npos) << split;
  const std::string forced = error_of([&] { load_tokenizer(dir, TokenizerKind::kByteLevelBpe); });
  EXPECT_NE(forced.find("byte_fallback"), std::string::npos) << forced;
  // Without the config, detection looks at tokenizer.json itself.
  const std::string copy = "/tmp/qlora_bpe_llama2_" + std::to_string(::getpid());
  fsys::remove_all(copy);
  fsys::create_directories(copy);
  std::ofstream(copy + "/tokenizer.json") << std::ifstream(dir + "/tokenizer.json").rdbuf();
  const std::string msg = error_of([&] { detect_tokenizer_kind(copy); });
  fsys::remove_all(copy);
  EXPECT_NE(msg.find("SentencePiece-style"), std::string::npos) << msg;
}

}  // namespace
}  // namespace qlora
