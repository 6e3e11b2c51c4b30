// Every tokenizer against the fixtures written by tools/gen_tokenizer_fixtures.py from transformers
// 5.x fast tokenizers: ids, offsets, token types, sequence ids, pairs and decode, text by text.
#include <gtest/gtest.h>
#include <sentencepiece_processor.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "qlora/core/atomic_file.h"
#include "qlora/core/fs.h"
#include "qlora/core/jsonl.h"
#include "qlora/tokenizer/sentencepiece_tokenizer.h"
#include "qlora/tokenizer/tokenizer.h"

namespace qlora {
namespace {

const std::string kFixtures = std::string(QLORA_FIXTURES_DIR) + "/tokenizers";
const std::string kLlama2Dir = std::string(QLORA_SOURCE_DIR) + "/../shared/data/tokenizers/llama2-spm";

bool exists(const std::string& path) { return static_cast<bool>(std::ifstream(path)); }

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

template <typename T>
std::string first_difference(const std::vector<T>& got, const std::vector<T>& want) {
  const size_t n = std::min(got.size(), want.size());
  for (size_t i = 0; i < n; ++i) {
    if (!(got[i] == want[i])) return "first difference at position " + std::to_string(i);
  }
  if (got.size() != want.size()) {
    return "length " + std::to_string(got.size()) + " vs expected " + std::to_string(want.size());
  }
  return "";
}

std::string join(const std::vector<int64_t>& v) {
  std::string s;
  for (int64_t x : v) s += (s.empty() ? "" : " ") + std::to_string(x);
  return s;
}

std::vector<std::pair<int64_t, int64_t>> offsets_of(const Json& j) {
  std::vector<std::pair<int64_t, int64_t>> out;
  for (const auto& o : j) out.emplace_back(o[0].get<int64_t>(), o[1].get<int64_t>());
  return out;
}

// Counts compared values so the summary shows the tests are not vacuous.
struct Checker {
  std::string where;
  int compared = 0;

  template <typename T>
  void same(const std::string& what, const std::vector<T>& got, const std::vector<T>& want) {
    ++compared;
    const std::string diff = first_difference(got, want);
    if (!diff.empty()) ADD_FAILURE() << where << ": " << what << " differ, " << diff;
  }
  void same(const std::string& what, const std::string& got, const std::string& want) {
    ++compared;
    if (got != want)
      ADD_FAILURE() << where << ": " << what << " = " << show(got) << ", expected " << show(want);
  }
};

void check_encoding(Checker& c, const Encoding& e, const Json& want) {
  c.same("ids", e.ids, want["ids"].get<std::vector<int64_t>>());
  if (e.ids != want["ids"].get<std::vector<int64_t>>()) {
    ADD_FAILURE() << c.where << ": got ids " << join(e.ids) << "\n expected "
                  << join(want["ids"].get<std::vector<int64_t>>());
  }
  c.same("offsets", e.offsets, offsets_of(want["offsets"]));
  c.same("token_type_ids", e.token_type_ids, want["token_type_ids"].get<std::vector<int64_t>>());
  c.same("sequence_ids", e.sequence_ids, want["sequence_ids"].get<std::vector<int>>());
}

struct FixtureCase {
  std::string fixture;  // file name under tests/fixtures/tokenizers
  bool local_only;
};

class TokenizerFixture : public ::testing::TestWithParam<FixtureCase> {
 protected:
  void SetUp() override {
    doc_ = read_json_file(kFixtures + "/" + GetParam().fixture);
    const std::string rel = doc_["model_dir"].get<std::string>();
    model_dir_ = GetParam().local_only ? kLlama2Dir : kFixtures + "/" + rel;
    if (GetParam().local_only && !exists(model_dir_ + "/tokenizer.model")) {
      GTEST_SKIP() << "local-only model not present at " << model_dir_ << " (not shipped: Llama 2 licence)";
    }
    TokenizerKind kind = parse_tokenizer_kind(
        doc_["kind"].get<std::string>() == "xlmr" ? "xlm-roberta" : doc_["kind"].get<std::string>());
    tok_ = load_tokenizer(model_dir_, kind);
  }
  Json doc_;
  std::string model_dir_;
  std::unique_ptr<Tokenizer> tok_;
};

TEST_P(TokenizerFixture, SingleTextsMatchHfFast) {
  Checker c;
  for (const Json& k : doc_["cases"]) {
    const std::string text = k["text"].get<std::string>();
    c.where = doc_["name"].get<std::string>() + " text " + show(text);
    check_encoding(c, tok_->encode(text, true), k);
    const Encoding plain = tok_->encode(text, false);
    c.same("ids (no specials)", plain.ids, k["ids_no_special"].get<std::vector<int64_t>>());
    c.same("offsets (no specials)", plain.offsets, offsets_of(k["offsets_no_special"]));
  }
  EXPECT_GE(c.compared, 6 * 20) << "fixture has too few cases";
}

TEST_P(TokenizerFixture, PairsMatchHfFast) {
  Checker c;
  for (const Json& k : doc_["pairs"]) {
    const std::string a = k["a"].get<std::string>(), b = k["b"].get<std::string>();
    c.where = doc_["name"].get<std::string>() + " pair " + show(a) + " / " + show(b);
    check_encoding(c, tok_->encode_pair(a, b, true), k);
  }
  EXPECT_GE(c.compared, 4 * 4);
}

TEST_P(TokenizerFixture, DecodeMatchesHf) {
  Checker c;
  for (const auto* list : {&doc_["cases"], &doc_["pairs"]}) {
    for (const Json& k : *list) {
      const auto ids = k["ids"].get<std::vector<int64_t>>();
      c.where = doc_["name"].get<std::string>() + " decode of ids " + join(ids);
      c.same("decode", tok_->decode(ids, false), k["decode"].get<std::string>());
      c.same("decode(skip_special_tokens)", tok_->decode(ids, true),
             k["decode_skip_special"].get<std::string>());
    }
  }
  EXPECT_GE(c.compared, 2 * 24);
}

TEST_P(TokenizerFixture, SpecialIdsAndSizesMatchHf) {
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

TEST_P(TokenizerFixture, TokenStringsRoundTrip) {
  for (const Json& k : doc_["cases"]) {
    if (!k.contains("tokens")) continue;
    const auto ids = k["ids"].get<std::vector<int64_t>>();
    const auto tokens = k["tokens"].get<std::vector<std::string>>();
    for (size_t i = 0; i < ids.size(); ++i) {
      EXPECT_EQ(tok_->id_to_token(ids[i]), tokens[i])
          << "text " << show(k["text"].get<std::string>()) << " position " << i;
      EXPECT_EQ(tok_->token_to_id(tokens[i]), ids[i]) << "token " << tokens[i];
    }
  }
}

// libsentencepiece (Debian 0.1.97) against the Python sentencepiece (0.2.2) that wrote the fixtures,
// on the unmodified model: plain spm ids must agree.
// (tokenizer.json-only folders: the SentencePiece folder they were saved from.)
TEST_P(TokenizerFixture, CppSentencePieceMatchesPython) {
  const std::string file = doc_["kind"] == "llama" ? "tokenizer.model"
                           : doc_["kind"] == "t5"  ? "spiece.model"
                                                   : "sentencepiece.bpe.model";
  const std::string dir =
      doc_.contains("sp_model_dir") ? kFixtures + "/" + doc_["sp_model_dir"].get<std::string>() : model_dir_;
  sentencepiece::SentencePieceProcessor sp;
  ASSERT_TRUE(sp.Load(dir + "/" + file).ok());
  for (const Json& k : doc_["cases"]) {
    std::vector<int> ids;
    ASSERT_TRUE(sp.Encode(k["text"].get<std::string>(), &ids).ok());
    EXPECT_EQ(ids, k["spm_ids"].get<std::vector<int>>()) << "text " << show(k["text"].get<std::string>());
  }
}

// A tokenizer.json-only folder (transformers 5 save_pretrained) against the SentencePiece folder it was saved
// from: our two loaders agree exactly where HF's do (same_as_sp_folder), text by text.
TEST_P(TokenizerFixture, JsonOnlyFolderAgreesWithSentencePieceFolderWhereHfDoes) {
  if (!doc_.contains("sp_model_dir")) GTEST_SKIP() << "not a tokenizer.json-only fixture";
  EXPECT_FALSE(exists(model_dir_ + "/tokenizer.model") || exists(model_dir_ + "/spiece.model") ||
               exists(model_dir_ + "/sentencepiece.bpe.model"))
      << model_dir_ << " must have no SentencePiece model";
  const auto sp = load_tokenizer(kFixtures + "/" + doc_["sp_model_dir"].get<std::string>());
  int same = 0, compared = 0;
  auto agree = [](const Encoding& x, const Encoding& y) {
    return x.ids == y.ids && x.offsets == y.offsets && x.token_type_ids == y.token_type_ids;
  };
  for (const Json& k : doc_["cases"]) {
    const std::string text = k["text"].get<std::string>();
    const bool ours = agree(tok_->encode(text, true), sp->encode(text, true)) &&
                      agree(tok_->encode(text, false), sp->encode(text, false));
    EXPECT_EQ(ours, k["same_as_sp_folder"].get<bool>()) << "text " << show(text);
    same += ours;
    ++compared;
  }
  for (const Json& k : doc_["pairs"]) {
    const std::string a = k["a"].get<std::string>(), b = k["b"].get<std::string>();
    const bool ours = agree(tok_->encode_pair(a, b, true), sp->encode_pair(a, b, true));
    EXPECT_EQ(ours, k["same_as_sp_folder"].get<bool>()) << "pair " << show(a) << " / " << show(b);
    same += ours;
    ++compared;
  }
  EXPECT_GE(compared, 24);
  EXPECT_GT(same, 0);
}

INSTANTIATE_TEST_SUITE_P(
    Fixtures, TokenizerFixture,
    ::testing::Values(FixtureCase{"llama_aidreams.json", false}, FixtureCase{"t5_small.json", false},
                      FixtureCase{"xlmr_viwiki.json", false}, FixtureCase{"llama2.json", true},
                      FixtureCase{"llama_aidreams_json.json", false},
                      FixtureCase{"llama_aidreams_json_edited.json", false},
                      FixtureCase{"t5_small_json.json", false}, FixtureCase{"xlmr_viwiki_json.json", false}),
    [](const auto& info) {
      std::string n = info.param.fixture.substr(0, info.param.fixture.find('.'));
      return n;
    });

// The hub's t5-small tokenizer.json, written by an older tokenizers (its model has no "type" tag), read
// alone (as in a folder saved without spiece.model): it encodes the fixture texts as HF's fast tokenizer.
TEST(TokenizerHubLayouts, T5SmallTokenizerJsonWithoutModelTypeMatchesHf) {
  const std::string hub = std::string(QLORA_SOURCE_DIR) + "/../shared/data/tokenizers/t5-small";
  if (!exists(hub + "/tokenizer.json")) GTEST_SKIP() << "absent: " << hub;
  const std::string dir = "/tmp/qlora_t5_small_json_" + std::to_string(::getpid());
  fsys::remove_all(dir);
  fsys::create_directories(dir);
  for (const char* f : {"tokenizer.json", "tokenizer_config.json"})
    write_file_atomic(fsys::join(dir, f), read_file(fsys::join(hub, f)));
  const Json doc = read_json_file(kFixtures + "/t5_small.json");
  const auto tok = load_tokenizer(dir);
  fsys::remove_all(dir);
  EXPECT_EQ(tok->kind(), TokenizerKind::kT5);
  EXPECT_EQ(tok->vocab_size(), doc["vocab_size"].get<int64_t>());
  Checker c;
  for (const Json& k : doc["cases"]) {
    c.where = "hub t5-small text " + show(k["text"].get<std::string>());
    check_encoding(c, tok->encode(k["text"].get<std::string>(), true), k);
  }
  EXPECT_GE(c.compared, 20);
}

}  // namespace
}  // namespace qlora
