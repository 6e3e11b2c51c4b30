// Single-file and sharded Hugging Face checkpoints (model.safetensors[.index.json]).
#include "qlora/io/checkpoint.h"

#include <cstdio>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>

#include "qlora/core/atomic_file.h"
#include "qlora/core/error.h"
#include "qlora/core/fs.h"
#include "qlora/core/jsonl.h"
#include "qlora/core/log.h"
#include "qlora/core/suggest.h"

namespace qlora {

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// A shard name from an untrusted index must stay inside the checkpoint folder.
void check_shard_name(const std::string& index_path, const std::string& tensor, const std::string& shard) {
  bool escapes = shard.empty() || shard.front() == '/';
  for (const auto& part : fsys::components(shard)) escapes = escapes || part == "..";
  if (escapes) {
    fail_at(index_path, -1,
            "weight_map['" + tensor + "'] names shard '" + shard + "' outside the checkpoint folder");
  }
}

std::string shard_name(const std::string& prefix, size_t i, size_t n) {
  char buffer[64];
  std::snprintf(buffer, sizeof(buffer), "-%05zu-of-%05zu.safetensors", i, n);
  return prefix + buffer;
}

}  // namespace

Checkpoint Checkpoint::open(const std::string& path) {
  Checkpoint checkpoint;
  checkpoint.path_ = path;
  std::string index_path;
  if (fsys::is_directory(path)) {
    const std::string single = fsys::join(path, kSafetensorsSingleName);
    const std::string index = fsys::join(path, kSafetensorsIndexName);
    if (fsys::exists(single)) {
      checkpoint.files_.push_back(SafetensorsFile::open(single));
    } else if (fsys::exists(index)) {
      index_path = index;
    } else {
      fail(path + ": no " + kSafetensorsSingleName + " or " + kSafetensorsIndexName + " in this folder");
    }
  } else if (ends_with(path, ".json")) {
    index_path = path;
  } else {
    checkpoint.files_.push_back(SafetensorsFile::open(path));
  }

  if (index_path.empty()) {
    for (const auto& e : checkpoint.files_[0].entries()) checkpoint.where_.emplace(e.name, 0);
    return checkpoint;
  }

  const Json index = read_json_file(index_path);
  if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object()) {
    fail_at(index_path, -1, "expected an object with a \"weight_map\" object");
  }
  const std::string folder = fsys::parent(index_path);
  std::map<std::string, size_t> shard_ids;  // shard file name -> index into files_
  for (const auto& [tensor, shard_json] : index["weight_map"].items()) {
    if (!shard_json.is_string()) {
      fail_at(index_path, -1, "weight_map['" + tensor + "'] must be a file name, got " + shard_json.dump());
    }
    const std::string shard = shard_json.get<std::string>();
    check_shard_name(index_path, tensor, shard);
    auto it = shard_ids.find(shard);
    if (it == shard_ids.end()) {
      const std::string shard_path = fsys::join(folder, shard);
      if (!fsys::exists(shard_path)) {
        fail_at(
            index_path, -1,
            "weight_map['" + tensor + "'] names shard '" + shard + "' but " + shard_path + " does not exist");
      }
      it = shard_ids.emplace(shard, checkpoint.files_.size()).first;
      checkpoint.files_.push_back(SafetensorsFile::open(shard_path));
    }
    const SafetensorsFile& file = checkpoint.files_[it->second];
    if (!file.contains(tensor)) {
      fail_at(index_path, -1,
              "weight_map maps tensor '" + tensor + "' to shard '" + shard + "', which has no such tensor" +
                  did_you_mean(tensor, file.names()));
    }
    checkpoint.where_.emplace(tensor, it->second);
  }
  checkpoint.path_ = index_path;
  return checkpoint;
}

Checkpoint open_checkpoint(const std::string& path) { return Checkpoint::open(path); }

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> names;
  names.reserve(where_.size());
  for (const auto& [name, file] : where_) names.push_back(name);
  return names;
}

size_t Checkpoint::file_index(const std::string& name) const {
  const auto it = where_.find(name);
  if (it == where_.end()) fail(path_ + ": no tensor '" + name + "'" + did_you_mean(name, names()));
  return it->second;
}

const SafetensorsEntry& Checkpoint::entry(const std::string& name) const {
  return files_[file_index(name)].entry(name);
}

at::Tensor Checkpoint::tensor(const std::string& name) const {
  at::Tensor t = files_[file_index(name)].tensor(name);
  read_.insert(name);
  return t;
}

std::vector<std::string> Checkpoint::unread_names() const {
  std::vector<std::string> out;
  for (const auto& [name, file] : where_)
    if (!read_.count(name)) out.push_back(name);
  return out;
}

void Checkpoint::warn_unread(const std::vector<std::string>& ignored) const {
  std::vector<std::string> unused;
  for (const std::string& name : unread_names()) {
    bool skip = false;
    for (const std::string& part : ignored) skip = skip || name.find(part) != std::string::npos;
    if (!skip) unused.push_back(name);
  }
  if (unused.empty()) return;
  constexpr size_t kShown = 5;
  std::string list;
  for (size_t i = 0; i < unused.size() && i < kShown; ++i) list += (i ? ", '" : "'") + unused[i] + "'";
  if (unused.size() > kShown) list += " and " + std::to_string(unused.size() - kShown) + " more";
  log::warn(path_ + ": " + std::to_string(unused.size()) + " tensor" + (unused.size() == 1 ? "" : "s") +
            " not used by the model as config.json describes it: " + list);
}

at::Tensor Checkpoint::tensor(const std::string& name, at::IntArrayRef shape) const {
  at::Tensor t = tensor(name);
  if (t.sizes() != shape) {
    fail(path_ + ": tensor '" + name + "' has shape " + shape_string(t.sizes()) + ", expected " +
         shape_string(shape) + " from the config");
  }
  return t;
}

std::string shape_string(at::IntArrayRef shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

const SafetensorsFile& Checkpoint::file_of(const std::string& name) const { return files_[file_index(name)]; }

std::vector<std::string> save_checkpoint(const std::string& dir, const NamedTensors& tensors,
                                         const SaveCheckpointOptions& options) {
  fsys::create_directories(dir);

  // huggingface_hub.split_torch_state_dict_into_shards, tensor by tensor in caller order.
  std::vector<NamedTensors> shards;
  NamedTensors current;
  uint64_t current_bytes = 0, total_bytes = 0, total_parameters = 0;
  for (const auto& named : tensors) {
    if (!named.second.defined()) fail_at(dir, -1, "tensor '" + named.first + "' is undefined");
    const uint64_t bytes = named.second.numel() * named.second.element_size();
    total_bytes += bytes;
    total_parameters += named.second.numel();
    if (bytes > options.max_shard_bytes) {
      shards.push_back({named});
      continue;
    }
    if (current_bytes + bytes > options.max_shard_bytes && !current.empty()) {
      shards.push_back(std::move(current));
      current.clear();
      current_bytes = 0;
    }
    current.push_back(named);
    current_bytes += bytes;
  }
  if (!current.empty() || shards.empty()) shards.push_back(std::move(current));

  const std::string& folder = dir;
  const std::string single = options.prefix + ".safetensors";
  const std::string index_name = options.prefix + ".safetensors.index.json";
  std::vector<std::string> written;
  std::set<std::string> keep;
  if (shards.size() == 1) {
    written.push_back(fsys::join(folder, single));
    save_safetensors(written.back(), shards[0], options.metadata);
    keep.insert(single);
  } else {
    nlohmann::json weight_map = nlohmann::json::object();
    for (size_t i = 0; i < shards.size(); ++i) {
      const std::string name = shard_name(options.prefix, i + 1, shards.size());
      written.push_back(fsys::join(folder, name));
      save_safetensors(written.back(), shards[i], options.metadata);
      keep.insert(name);
      for (const auto& named : shards[i]) weight_map[named.first] = name;
    }
    // json.dumps(index, indent=2, sort_keys=True) + "\n", as transformers writes it.
    nlohmann::json index;
    index["metadata"] = {{"total_parameters", total_parameters}, {"total_size", total_bytes}};
    index["weight_map"] = std::move(weight_map);
    written.push_back(fsys::join(folder, index_name));
    write_file_atomic(written.back(), index.dump(2, ' ', /*ensure_ascii=*/true) + "\n");
    keep.insert(index_name);
  }

  // Remove what a previous save with another shard count left behind.
  const std::regex stale_shard(
      std::regex_replace(options.prefix, std::regex(R"([.^$|()\[\]{}*+?\\])"), R"(\$&)") +
      R"(-\d{5}-of-\d{5}\.safetensors)");
  for (const std::string& name : fsys::list_directory(dir)) {
    const bool ours = name == single || name == index_name || std::regex_match(name, stale_shard);
    if (ours && keep.count(name) == 0) fsys::remove_file(fsys::join(folder, name));
  }
  return written;
}

}  // namespace qlora
