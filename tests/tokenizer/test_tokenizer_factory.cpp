// load_tokenizer's choice of flavour, its errors, and the vocab-size check.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>

#include "qlora/core/error.h"
#include "qlora/core/jsonl.h"
#include "qlora/tokenizer/tokenizer.h"

namespace qlora {
namespace {

namespace fs = std::filesystem;
const std::string kFixtures = std::string(QLORA_FIXTURES_DIR) + "/tokenizers";

// A scratch folder removed at the end of the test.
struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& name) {
    path = fs::temp_directory_path() / ("qlora_tok_" + name + "_" + std::to_string(::getpid()));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  void write(const std::string& file, const std::string& content) const {
    std::ofstream(path / file, std::ios::binary) << content;
  }
  void copy(const std::string& from, const std::string& file) const { fs::copy_file(from, path / file); }
};

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(TokenizerFactory, PicksFlavourFromFixtureFolders) {
  EXPECT_EQ(detect_tokenizer_kind(kFixtures + "/aidreams260K"), TokenizerKind::kLlama);
  EXPECT_EQ(detect_tokenizer_kind(kFixtures + "/t5-small"), TokenizerKind::kT5);
  EXPECT_EQ(detect_tokenizer_kind(kFixtures + "/xlmr-viwiki"), TokenizerKind::kXlmRoberta);
  EXPECT_EQ(load_tokenizer(kFixtures + "/t5-small")->kind(), TokenizerKind::kT5);
}

TEST(TokenizerFactory, FallsBackToModelTypeThenToFileNames) {
  TempDir by_type("by_type");
  by_type.copy(kFixtures + "/aidreams260K/tokenizer.model", "tokenizer.model");
  by_type.write("config.json", R"({"model_type": "llama"})");
  EXPECT_EQ(detect_tokenizer_kind(by_type.path.string()), TokenizerKind::kLlama);

  TempDir by_file("by_file");
  by_file.copy(kFixtures + "/t5-small/spiece.model", "spiece.model");
  EXPECT_EQ(detect_tokenizer_kind(by_file.path.string()), TokenizerKind::kT5);
  // No tokenizer_config.json: defaults (T5: eos appended, 100 sentinels).
  const auto t5 = load_tokenizer(by_file.path.string());
  EXPECT_EQ(t5->token_to_id("<extra_id_0>"), 32099);
  EXPECT_EQ(t5->encode("<extra_id_0>").ids, (std::vector<int64_t>{32099, 1}));
}

TEST(TokenizerFactory, FastClassNamesAreAccepted) {
  TempDir dir("fast_class");
  dir.copy(kFixtures + "/xlmr-viwiki/sentencepiece.bpe.model", "sentencepiece.bpe.model");
  dir.write("tokenizer_config.json", R"({"tokenizer_class": "XLMRobertaTokenizerFast"})");
  EXPECT_EQ(detect_tokenizer_kind(dir.path.string()), TokenizerKind::kXlmRoberta);
}

TEST(TokenizerFactory, ExplicitKindOverridesDetection) {
  // aidreams' folder says LlamaTokenizer; forcing T5 looks for spiece.model and says so.
  const std::string msg = error_of([] { load_tokenizer(kFixtures + "/aidreams260K", TokenizerKind::kT5); });
  EXPECT_NE(msg.find("spiece.model"), std::string::npos) << msg;
  EXPECT_NE(msg.find("aidreams260K"), std::string::npos) << msg;
}

TEST(TokenizerFactory, EmptyFolderNamesFolderAndFilesLookedFor) {
  TempDir dir("empty");
  const std::string msg = error_of([&] { load_tokenizer(dir.path.string()); });
  EXPECT_NE(msg.find(dir.path.string()), std::string::npos) << msg;
  for (const char* f : {"tokenizer_config.json", "config.json", "tokenizer.model", "spiece.model",
                        "sentencepiece.bpe.model", "tokenizer.json"}) {
    EXPECT_NE(msg.find(f), std::string::npos) << "message does not mention " << f << ": " << msg;
  }
}

TEST(TokenizerFactory, UnknownTokenizerClassIsAnError) {
  TempDir dir("unknown_class");
  dir.write("tokenizer_config.json", R"({"tokenizer_class": "BertTokenizer"})");
  const std::string msg = error_of([&] { load_tokenizer(dir.path.string()); });
  EXPECT_NE(msg.find("BertTokenizer"), std::string::npos) << msg;
}

TEST(TokenizerFactory, ByteLevelBpeIsReservedNotImplemented) {
  TempDir dir("bpe");
  dir.write("tokenizer.json", "{}");
  EXPECT_EQ(detect_tokenizer_kind(dir.path.string()), TokenizerKind::kByteLevelBpe);
  EXPECT_NE(error_of([&] { load_tokenizer(dir.path.string()); }).find("not implemented"), std::string::npos);
}

// A folder as transformers 5 saves it (tokenizer.json, no SentencePiece model) loads through detection.
TEST(TokenizerFactory, TokenizerJsonOnlyFoldersLoad) {
  for (const auto& [dir, kind] :
       {std::pair{"aidreams260K-json", TokenizerKind::kLlama}, std::pair{"t5-small-json", TokenizerKind::kT5},
        std::pair{"xlmr-viwiki-json", TokenizerKind::kXlmRoberta}}) {
    const std::string path = kFixtures + "/" + dir;
    EXPECT_FALSE(fs::exists(path + "/tokenizer.model") || fs::exists(path + "/spiece.model") ||
                 fs::exists(path + "/sentencepiece.bpe.model"));
    EXPECT_EQ(detect_tokenizer_kind(path), kind) << dir;
    EXPECT_EQ(load_tokenizer(path)->kind(), kind) << dir;
  }
}

// aidreams260K-json with one edit to its tokenizer.json; returns load_tokenizer's error.
std::string error_of_edited_llama_json(const std::string& name, const std::function<void(Json&)>& edit) {
  TempDir dir(name);
  const std::string src = kFixtures + "/aidreams260K-json";
  dir.copy(src + "/tokenizer_config.json", "tokenizer_config.json");
  Json j = read_json_file(src + "/tokenizer.json");
  edit(j);
  dir.write("tokenizer.json", j.dump());
  const std::string msg = error_of([&] { load_tokenizer(dir.path.string()); });
  EXPECT_NE(msg.find((dir.path / "tokenizer.json").string()), std::string::npos) << msg;
  return msg;
}

TEST(TokenizerFactory, TokenizerJsonUnsupportedNormalizerNamesFileAndPath) {
  const std::string msg = error_of_edited_llama_json("json_norm", [](Json& j) {
    j["normalizer"] = {{"type", "Lowercase"}};
  });
  EXPECT_NE(msg.find("normalizer"), std::string::npos) << msg;
  EXPECT_NE(msg.find("Lowercase"), std::string::npos) << msg;
}

TEST(TokenizerFactory, TokenizerJsonUnsupportedPreTokenizerAndModelNameFileAndPath) {
  std::string msg = error_of_edited_llama_json("json_pre", [](Json& j) {
    j["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", false}};
  });
  EXPECT_NE(msg.find("pre_tokenizer"), std::string::npos) << msg;
  msg = error_of_edited_llama_json("json_model", [](Json& j) { j["model"]["type"] = "WordPiece"; });
  EXPECT_NE(msg.find("model.type"), std::string::npos) << msg;
  msg = error_of_edited_llama_json("json_merge", [](Json& j) { j["model"]["merges"][3] = {"zq", "qz"}; });
  EXPECT_NE(msg.find("model.merges[3]"), std::string::npos) << msg;
  msg = error_of_edited_llama_json("json_added", [](Json& j) { j["added_tokens"][1]["id"] = 7; });
  EXPECT_NE(msg.find("added_tokens[1]"), std::string::npos) << msg;
}

TEST(TokenizerFactory, MissingModelFileNamesThePath) {
  TempDir dir("missing");
  dir.write("tokenizer_config.json", R"({"tokenizer_class": "LlamaTokenizer"})");
  const std::string msg = error_of([&] { load_tokenizer(dir.path.string()); });
  EXPECT_NE(msg.find("tokenizer.model"), std::string::npos) << msg;
  EXPECT_NE(msg.find(dir.path.string()), std::string::npos) << msg;
}

TEST(TokenizerFactory, CorruptModelFileNamesThePath) {
  TempDir dir("corrupt");
  dir.write("tokenizer.model", "this is not a sentencepiece model\n");
  const std::string msg = error_of([&] { load_tokenizer(dir.path.string()); });
  EXPECT_NE(msg.find((dir.path / "tokenizer.model").string()), std::string::npos) << msg;

  TempDir truncated("truncated");
  std::ifstream in(kFixtures + "/aidreams260K/tokenizer.model", std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  truncated.write("tokenizer.model", bytes.substr(0, bytes.size() / 2));
  const std::string msg2 = error_of([&] { load_tokenizer(truncated.path.string(), TokenizerKind::kLlama); });
  EXPECT_NE(msg2.find("tokenizer.model"), std::string::npos) << msg2;
}

TEST(TokenizerFactory, WrongFlavourForModelIsAnError) {
  // A LLaMA model (<unk>,<s>,</s> at 0,1,2) forced to T5, which expects <pad>,</s>,<unk>.
  TempDir dir("wrong");
  dir.copy(kFixtures + "/aidreams260K/tokenizer.model", "spiece.model");
  const std::string msg = error_of([&] { load_tokenizer(dir.path.string(), TokenizerKind::kT5); });
  EXPECT_NE(msg.find("spiece.model"), std::string::npos) << msg;
}

TEST(TokenizerKindNames, ParseAndSuggest) {
  EXPECT_EQ(parse_tokenizer_kind("xlm-roberta"), TokenizerKind::kXlmRoberta);
  EXPECT_EQ(tokenizer_kind_name(TokenizerKind::kT5), "t5");
  const std::string msg = error_of([] { parse_tokenizer_kind("lama"); });
  EXPECT_NE(msg.find("did you mean 'llama'"), std::string::npos) << msg;
}

TEST(CheckVocabSize, TokenizerLargerThanEmbeddingIsAnError) {
  const auto t5 = load_tokenizer(kFixtures + "/t5-small");          // 32100 ids
  EXPECT_NO_THROW(check_vocab_size(*t5, 32128, "t5/config.json"));  // padded embedding is fine
  EXPECT_NO_THROW(check_vocab_size(*t5, 32100, "t5/config.json"));
  const std::string msg = error_of([&] { check_vocab_size(*t5, 32000, "t5/config.json"); });
  EXPECT_NE(msg.find("t5/config.json"), std::string::npos) << msg;
  EXPECT_NE(msg.find("32100"), std::string::npos) << msg;
}

TEST(TokenizerIds, OutOfRangeIdsAreErrors) {
  const auto llama = load_tokenizer(kFixtures + "/aidreams260K");
  EXPECT_THROW(llama->id_to_token(512), Error);
  EXPECT_THROW(llama->decode({1, -1}), Error);
  EXPECT_EQ(llama->token_to_id("no-such-piece"), -1);
}

TEST(TokenizerInput, MalformedUtf8IsAnError) {
  const auto t5 = load_tokenizer(kFixtures + "/t5-small");
  EXPECT_THROW(t5->encode(std::string("ab\xC3", 3)), Error);
}

}  // namespace
}  // namespace qlora
