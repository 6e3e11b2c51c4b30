// Hugging Face checkpoints: one model.safetensors, or shards listed by model.safetensors.index.json
// ({"metadata": {"total_size": ...}, "weight_map": {name: shard file}}), behind one lookup.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "qlora/io/safetensors.h"

namespace qlora {

inline constexpr const char* kSafetensorsSingleName = "model.safetensors";
inline constexpr const char* kSafetensorsIndexName = "model.safetensors.index.json";

class Checkpoint {
 public:
  // `path` is a folder holding model.safetensors (preferred, as transformers does) or
  // model.safetensors.index.json; or a .safetensors file; or an .index.json file. Every shard is
  // opened (mapped and validated) once. Errors name the index and the missing shard or tensor.
  static Checkpoint open(const std::string& path);

  const std::string& path() const { return path_; }
  // Sorted by name.
  std::vector<std::string> names() const;
  bool contains(const std::string& name) const { return where_.count(name) != 0; }
  // Throws Error naming the checkpoint, with a did-you-mean.
  const SafetensorsEntry& entry(const std::string& name) const;
  at::Tensor tensor(const std::string& name) const;
  // tensor(name), required to have `shape`: otherwise an Error "<path>: tensor 'name' has shape [a, b],
  // expected [c, d] from the config".
  at::Tensor tensor(const std::string& name, at::IntArrayRef shape) const;
  // The file holding `name`.
  const SafetensorsFile& file_of(const std::string& name) const;
  const std::vector<SafetensorsFile>& files() const { return files_; }

  // Names never passed to tensor() on this object, sorted: what a loader did not consume.
  std::vector<std::string> unread_names() const;
  // A warning naming each unread tensor (at most a few, then a count): a checkpoint tensor that nothing
  // uses means the config and the weights disagree (transformers reports such keys as UNEXPECTED).
  // Names containing one of `ignored` (e.g. "rotary_emb.inv_freq", buffers older savers wrote) are skipped.
  void warn_unread(const std::vector<std::string>& ignored = {}) const;

 private:
  size_t file_index(const std::string& name) const;

  std::string path_;
  std::vector<SafetensorsFile> files_;
  std::map<std::string, size_t> where_;  // tensor name -> index into files_
  mutable std::set<std::string> read_;   // names passed to tensor()
};

// "[2, 3]": a shape for error messages.
std::string shape_string(at::IntArrayRef shape);

// Checkpoint::open.
Checkpoint open_checkpoint(const std::string& path);

struct SaveCheckpointOptions {
  uint64_t max_shard_bytes = 5'000'000'000;           // transformers' default "5GB" (decimal)
  SafetensorsMetadata metadata = {{"format", "pt"}};  // what save_pretrained writes in each file
  std::string prefix = "model";  // file names: PREFIX.safetensors, PREFIX-00001-of-00003...
};

// Writes `tensors` into folder `dir` (created if missing) as save_pretrained does: shards filled in
// the given order, a new shard when the next tensor would pass max_shard_bytes, a tensor larger
// than the limit alone in its shard (huggingface_hub's split_torch_state_dict_into_shards). One
// shard gives PREFIX.safetensors and no index; more give PREFIX-0000i-of-0000n.safetensors plus
// PREFIX.safetensors.index.json with metadata.total_size / total_parameters and a sorted
// weight_map. Stale files of the other layout (and stale shards) with the same prefix are removed
// so that open_checkpoint cannot pick them up. Returns the paths written.
std::vector<std::string> save_checkpoint(const std::string& dir, const NamedTensors& tensors,
                                         const SaveCheckpointOptions& options = {});

}  // namespace qlora
