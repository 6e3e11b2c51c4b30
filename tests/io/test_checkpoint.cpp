// Single-file and sharded checkpoints, against transformers' save_pretrained output
// (tests/fixtures/io/tiny_llama: a random LlamaForCausalLM in 3 shards of at most 8 KB).
#include "io/io_test_util.h"
#include "qlora/io/checkpoint.h"

namespace qlora::test {
namespace {

const Json& llama() { return expected_json().at("tiny_llama"); }

TEST(Checkpoint, OpensShardedTransformersCheckpoint) {
  const Checkpoint checkpoint = open_checkpoint(io_fixture("tiny_llama"));
  EXPECT_EQ(checkpoint.files().size(), 3u);
  std::vector<std::string> expected_names;
  for (const auto& [name, spec] : llama().at("tensors").items()) {
    SCOPED_TRACE(name);
    expected_names.push_back(name);
    const at::Tensor t = checkpoint.tensor(name);
    EXPECT_EQ(t.scalar_type(), at::kFloat);
    EXPECT_EQ(t.sizes().vec(), spec.at("shape").get<std::vector<int64_t>>());
    EXPECT_EQ(base_name(checkpoint.file_of(name).path()), spec.at("shard").get<std::string>());
    // Sum in float64 of float32 values: the same numbers summed in another order differ by a few
    // ulps of the sum; 1e-12 relative is far below any real mismatch.
    const double sum = t.to(at::kDouble).sum().item<double>();
    EXPECT_NEAR(sum, spec.at("sum").get<double>(), 1e-12 * std::max(1.0, std::abs(sum)));
    const auto first = spec.at("first").get<std::vector<double>>();
    const at::Tensor flat = t.flatten();
    for (size_t i = 0; i < first.size(); ++i) EXPECT_EQ(flat[i].item<float>(), static_cast<float>(first[i]));
  }
  std::sort(expected_names.begin(), expected_names.end());
  EXPECT_EQ(checkpoint.names(), expected_names);
  expect_error([&] { checkpoint.tensor("model.norm.weights"); },
               {"model.safetensors.index.json", "'model.norm.weights'", "did you mean 'model.norm.weight'"});
}

TEST(Checkpoint, OpensAFileAnIndexOrAFolder) {
  const Checkpoint from_index = open_checkpoint(io_fixture("tiny_llama/model.safetensors.index.json"));
  EXPECT_EQ(from_index.names().size(), llama().at("tensors").size());
  const Checkpoint single = open_checkpoint(io_fixture("dtypes.safetensors"));
  EXPECT_EQ(single.files().size(), 1u);
  EXPECT_TRUE(single.contains("bf16"));

  ScratchDir dir;
  copy_file(io_fixture("dtypes.safetensors"), dir.file("model.safetensors"));
  EXPECT_TRUE(open_checkpoint(dir.str()).contains("bf16"));
  expect_error([&] { open_checkpoint(dir.file("nope")); }, {"nope", "cannot open"});
  ::unlink(dir.file("model.safetensors").c_str());
  expect_error([&] { open_checkpoint(dir.str()); }, {dir.str(), "model.safetensors.index.json"});
}

// A copy of the tiny_llama folder whose index can be edited.
std::string copy_llama(const ScratchDir& dir) {
  for (const auto& name : list_dir(io_fixture("tiny_llama")))
    copy_file(io_fixture("tiny_llama/" + name), dir.file(name));
  return dir.file("model.safetensors.index.json");
}

void edit_index(const std::string& index_path, const std::function<void(Json&)>& edit) {
  Json index = read_json_file(index_path);
  edit(index);
  write_file_atomic(index_path, index.dump(2));
}

TEST(Checkpoint, IndexNamingAMissingShard) {
  ScratchDir dir;
  const std::string index = copy_llama(dir);
  ::unlink(dir.file("model-00002-of-00003.safetensors").c_str());
  expect_error([&] { open_checkpoint(dir.str()); },
               {"model.safetensors.index.json", "model-00002-of-00003.safetensors", "does not exist"});
}

TEST(Checkpoint, IndexNamingATensorTheShardLacks) {
  ScratchDir dir;
  const std::string index = copy_llama(dir);
  edit_index(index, [](Json& j) { j["weight_map"]["lm_head.weight"] = "model-00001-of-00003.safetensors"; });
  expect_error([&] { open_checkpoint(dir.str()); },
               {"model.safetensors.index.json", "'lm_head.weight'", "model-00001-of-00003.safetensors"});
}

TEST(Checkpoint, IndexEscapingTheFolderOrMalformed) {
  ScratchDir dir;
  const std::string index = copy_llama(dir);
  edit_index(index,
             [](Json& j) { j["weight_map"]["lm_head.weight"] = "../model-00003-of-00003.safetensors"; });
  expect_error([&] { open_checkpoint(dir.str()); },
               {"model.safetensors.index.json", "'lm_head.weight'", "outside"});
  edit_index(index, [](Json& j) { j["weight_map"]["lm_head.weight"] = 3; });
  expect_error([&] { open_checkpoint(dir.str()); }, {"model.safetensors.index.json", "'lm_head.weight'"});
  edit_index(index, [](Json& j) { j.erase("weight_map"); });
  expect_error([&] { open_checkpoint(dir.str()); }, {"model.safetensors.index.json", "weight_map"});
}

// The tiny Llama's tensors in state-dict order (the order of expected.json).
NamedTensors llama_tensors() {
  const Checkpoint checkpoint = open_checkpoint(io_fixture("tiny_llama"));
  NamedTensors tensors;
  for (const auto& item : llama().at("tensors").items())
    tensors.emplace_back(item.key(), checkpoint.tensor(item.key()));
  return tensors;
}

TEST(CheckpointWriter, ShardsLikeSavePretrained) {
  ScratchDir dir;
  SaveCheckpointOptions options;
  options.max_shard_bytes = 8000;  // save_pretrained(max_shard_size="8KB")
  const auto written = save_checkpoint(dir.str(), llama_tensors(), options);
  ASSERT_EQ(written.size(), 4u);
  for (const auto& name : list_dir(io_fixture("tiny_llama"))) {
    if (name.rfind("model", 0) != 0) continue;  // config files are not ours
    SCOPED_TRACE(name);
    EXPECT_EQ(read_file(dir.file(name)), read_file(io_fixture("tiny_llama/" + name)))
        << "differs from transformers'";
  }
  const Json index = read_json_file(dir.file("model.safetensors.index.json"));
  EXPECT_EQ(index.at("metadata").at("total_size").get<uint64_t>(), llama().at("total_size").get<uint64_t>());
}

TEST(CheckpointWriter, RoundTripsAndRemovesStaleLayouts) {
  ScratchDir dir;
  const NamedTensors tensors = llama_tensors();
  SaveCheckpointOptions small;
  small.max_shard_bytes = 4000;
  save_checkpoint(dir.str(), tensors, small);
  const Checkpoint sharded = open_checkpoint(dir.str());
  EXPECT_GT(sharded.files().size(), 3u);
  for (const auto& [name, t] : tensors) EXPECT_TRUE(at::equal(sharded.tensor(name), t)) << name;

  // A larger limit gives one file; the old shards and index must go, or a later open could mix them.
  save_checkpoint(dir.str(), tensors);
  EXPECT_EQ(list_dir(dir.str()), std::vector<std::string>{"model.safetensors"});
  const Checkpoint single = open_checkpoint(dir.str());
  EXPECT_EQ(single.files().size(), 1u);
  EXPECT_EQ(single.files()[0].metadata().at("format"), "pt");
  for (const auto& [name, t] : tensors) EXPECT_TRUE(at::equal(single.tensor(name), t)) << name;

  // And back to shards: model.safetensors would shadow the index, so it is removed.
  save_checkpoint(dir.str(), tensors, small);
  EXPECT_FALSE(path_exists(dir.file("model.safetensors")));
  EXPECT_GT(open_checkpoint(dir.str()).files().size(), 3u);
}

TEST(CheckpointWriter, OversizedTensorGetsItsOwnShard) {
  ScratchDir dir;
  SaveCheckpointOptions options;
  options.max_shard_bytes = 100;
  save_checkpoint(dir.str(), {{"a", at::ones({4})}, {"big", at::ones({64})}, {"b", at::ones({4})}}, options);
  const Checkpoint checkpoint = open_checkpoint(dir.str());
  // huggingface_hub closes the oversized tensor's shard at once and keeps filling the open one.
  ASSERT_EQ(checkpoint.files().size(), 2u);
  EXPECT_EQ(base_name(checkpoint.file_of("big").path()), "model-00001-of-00002.safetensors");
  EXPECT_EQ(base_name(checkpoint.file_of("a").path()), "model-00002-of-00002.safetensors");
  EXPECT_EQ(base_name(checkpoint.file_of("b").path()), "model-00002-of-00002.safetensors");
}

}  // namespace
}  // namespace qlora::test
