// The adapter folder: save_adapter (PeftModel.save_pretrained) and load_adapter (PeftModel.from_pretrained).
#include <ATen/ATen.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <set>

#include "lora_plan.h"
#include "qlora/core/atomic_file.h"
#include "qlora/core/error.h"
#include "qlora/core/fs.h"
#include "qlora/core/log.h"
#include "qlora/io/checkpoint.h"
#include "qlora/io/safetensors.h"
#include "qlora/nn/lora_linear.h"
#include "qlora/peft/target_match.h"

namespace qlora::peft {
namespace {

[[noreturn]] void fail_errno(const std::string& what, const std::string& path) {
  fail(path + ": " + what + " failed: " + std::strerror(errno));
}

void rename_or_fail(const std::string& from, const std::string& to) {
  if (std::rename(from.c_str(), to.c_str()) != 0) fail_errno("rename to '" + to + "'", from);
}

// Removes a flat folder (an adapter folder holds files only).
void remove_flat_dir(const std::string& dir) {
  if (!fsys::exists(dir)) return;
  for (const std::string& name : fsys::list_directory(dir)) fsys::remove_file(fsys::join(dir, name));
  if (::rmdir(dir.c_str()) != 0) fail_errno("rmdir", dir);
}

void fsync_dir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

// Puts the complete folder `fresh` at `dir`. An existing `dir` is swapped out in one atomic
// renameat2(RENAME_EXCHANGE) where the file system supports it (else renamed aside first: a kill in that
// instant leaves no folder at `dir`, never a half adapter); its files that the new adapter does not
// replace (README.md, a trainer's state) are moved into the new folder, then the old one is removed.
void install_folder(const std::string& fresh, const std::string& dir) {
  if (!fsys::exists(dir)) {
    rename_or_fail(fresh, dir);
  } else {
    if (!fsys::is_directory(dir)) fail(dir + ": exists and is not a folder; cannot save an adapter there");
    std::string old = fresh;  // after the exchange, `fresh` holds the old folder
    if (::renameat2(AT_FDCWD, fresh.c_str(), AT_FDCWD, dir.c_str(), RENAME_EXCHANGE) != 0) {
      if (errno != EINVAL && errno != ENOSYS)
        fail_errno("renameat2(RENAME_EXCHANGE) with '" + dir + "'", fresh);
      old = dir + ".old." + std::to_string(::getpid());
      remove_flat_dir(old);
      rename_or_fail(dir, old);
      rename_or_fail(fresh, dir);
    }
    for (const std::string& name : fsys::list_directory(old)) {
      if (name == kAdapterConfigName || name == kAdapterWeightsName) continue;
      const std::string target = fsys::join(dir, name);
      if (!fsys::exists(target)) rename_or_fail(fsys::join(old, name), target);
    }
    remove_flat_dir(old);
  }
  fsync_dir(fsys::parent(dir));
}

bool is_redundant_peft_copy(const std::string& key) {
  // bias="all" with modules_to_save makes PEFT also save <m>.original_module.bias (the frozen original)
  // and <m>.modules_to_save.bias (the same tensor as <m>.bias).
  return key.find(".original_module.") != std::string::npos ||
         key.find(".modules_to_save.") != std::string::npos;
}

}  // namespace

std::string save_adapter(const std::string& dir_arg, const PeftModelView& view, const LoraSummary& adapter) {
  std::string dir = dir_arg;  // "out/adapter/" must not stage inside itself
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  LoraConfig config = adapter.config;
  config.inference_mode = true;  // PeftModel.save_pretrained forces it while writing
  if (config.task_type) {
    config.auto_mapping = nullptr;
  } else if (!view.base_model_class.empty()) {
    config.auto_mapping =
        Json{{"base_model_class", view.base_model_class}, {"parent_library", view.parent_library}};
  }
  for (const std::string& m : adapter.adapted) {
    const nn::Linear* l = view.linear(m);
    if (l == nullptr || !l->lora.defined()) fail(dir + ": module '" + m + "' has no LoRA adapter to save");
  }
  NamedTensors tensors;
  for (const AdapterTensor& t : detail::adapter_tensors(view, adapter)) {
    tensors.emplace_back(kPeftKeyPrefix + t.key, t.tensor->detach().to(at::kCPU).contiguous());
  }

  const std::string staging = dir + ".tmp." + std::to_string(::getpid());
  remove_flat_dir(staging);  // left by an earlier process with our pid
  fsys::create_directories(staging);
  try {
    const std::string weights = fsys::join(staging, kAdapterWeightsName);
    save_safetensors(weights, tensors, {{"format", "pt"}});
    write_file_atomic(fsys::join(staging, kAdapterConfigName), lora_config_to_json(config));
    fsync_dir(staging);
    if (!fsys::parent(dir).empty()) fsys::create_directories(fsys::parent(dir));
    install_folder(staging, dir);
  } catch (...) {
    try {
      remove_flat_dir(staging);
    } catch (...) {
    }
    throw;
  }
  return fsys::join(dir, kAdapterWeightsName);
}

LoraSummary load_adapter(PeftModelView& view, const std::string& dir, const LoadAdapterOptions& options,
                         LoadAdapterReport* report) {
  const std::string config_path = fsys::join(dir, kAdapterConfigName);
  const std::string weights_path = fsys::join(dir, kAdapterWeightsName);
  if (!fsys::is_directory(dir)) fail(dir + ": adapter folder not found");
  if (!fsys::exists(config_path)) fail(config_path + ": missing (not a PEFT adapter folder)");
  if (!fsys::exists(weights_path)) {
    if (fsys::exists(fsys::join(dir, "adapter_model.bin"))) {
      fail(weights_path +
           ": missing; the folder holds the legacy pickle adapter_model.bin, which qlora does not "
           "read (re-save it with PEFT's safe_serialization=True)");
    }
    fail(weights_path + ": missing");
  }
  const LoraConfig config = read_lora_config(config_path);
  LoraSummary s = detail::plan_lora(view, config, /*extend_task_heads=*/false, config_path);
  const SafetensorsFile file = SafetensorsFile::open(weights_path);

  // Shape placeholders for the adapters, then every expected tensor is read into its slot.
  for (const std::string& m : s.adapted) {
    nn::Linear* l = view.linear(m);
    const int64_t R = rank_for(s.config, m);
    l->lora = nn::LoraAdapter{};
    l->lora.A = at::empty({R, l->base.in_features()}, at::kFloat);   // [R, in]
    l->lora.B = at::empty({l->base.out_features(), R}, at::kFloat);  // [out, R]
    l->lora.scaling = scaling_for(s.config, m);
    l->lora.dropout = s.config.lora_dropout;
  }
  std::set<std::string> used;
  for (const AdapterTensor& t : detail::adapter_tensors(view, s)) {
    const std::string key = kPeftKeyPrefix + t.key;
    if (!file.contains(key)) {
      fail(weights_path + ": missing tensor '" + key + "' (adapter_config.json: r=" +
           std::to_string(s.config.r) + ", bias=" + to_string(s.config.bias) + ")");
    }
    at::Tensor value = file.tensor(key);
    if (value.sizes() != t.tensor->sizes()) {
      fail(weights_path + ": tensor '" + key + "' has shape " + shape_string(value.sizes()) +
           " but the model expects " + shape_string(t.tensor->sizes()));
    }
    const bool is_lora =
        t.key.find(".lora_A.") != std::string::npos || t.key.find(".lora_B.") != std::string::npos;
    const at::ScalarType dtype = is_lora ? at::kFloat : t.tensor->scalar_type();
    at::Device device = t.tensor->device();
    if (is_lora) device = view.linear(t.key.substr(0, t.key.rfind(".lora_")))->base.device();
    *t.tensor = value.to(device, dtype).clone();
    used.insert(key);
  }
  LoadAdapterReport local;
  LoadAdapterReport& r = report ? *report : local;
  for (const std::string& key : file.names()) {
    if (used.count(key)) continue;
    if (is_redundant_peft_copy(key)) {
      r.ignored.push_back(key);
    } else {
      r.unexpected.push_back(key);
    }
  }
  if (!r.unexpected.empty()) {
    log::warn(weights_path + ": " + std::to_string(r.unexpected.size()) +
              " tensor(s) not used by the config, e.g. '" + r.unexpected.front() + "'");
  }
  detail::set_trainable(view, s, options.is_trainable);
  return s;
}

}  // namespace qlora::peft
