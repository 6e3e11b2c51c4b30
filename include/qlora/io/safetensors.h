// Reading and writing single .safetensors files as at::Tensor.
//
// Reading memory-maps the file and returns tensors that alias the mapping (zero copy) whenever the
// data is aligned for the dtype, which is always the case for files written by the Python library
// or by save_safetensors(). The mapping is copy-on-write (MAP_PRIVATE): an in-place op on a
// returned tensor changes that process's copy only, never the file, and is seen by later
// tensor() calls for the same name. clone() when independent storage is needed.
#pragma once

#include <ATen/ATen.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "qlora/io/safetensors_header.h"

namespace qlora {

// Name -> tensor, in caller order (the sharded writer keeps that order; a single file sorts).
using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;

at::ScalarType to_scalar_type(SafetensorsDtype dtype);
// Throws Error naming `what` for types safetensors cannot store (e.g. complex128, float4).
SafetensorsDtype to_safetensors_dtype(at::ScalarType type, const std::string& what);

class SafetensorsFile {
 public:
  // Maps and validates `path`; throws Error naming the path and the offending tensor or key.
  static SafetensorsFile open(const std::string& path);
  // Same over an in-memory copy of a file; `source` names it in errors.
  static SafetensorsFile from_bytes(std::string bytes, const std::string& source = "<memory>");

  const std::string& path() const { return path_; }
  const SafetensorsHeader& header() const { return header_; }
  // In data order (ascending offsets).
  const std::vector<SafetensorsEntry>& entries() const { return header_.entries; }
  // Sorted by name.
  std::vector<std::string> names() const;
  bool contains(const std::string& name) const { return header_.find(name) != nullptr; }
  // Throws Error "PATH: no tensor 'x' (did you mean 'y'?)".
  const SafetensorsEntry& entry(const std::string& name) const;
  // CPU tensor of the stored dtype and shape; see the note at the top on aliasing.
  at::Tensor tensor(const std::string& name) const;
  const SafetensorsMetadata& metadata() const { return header_.metadata; }

 private:
  struct Buffer;
  SafetensorsFile(std::string path, std::shared_ptr<const Buffer> buffer);

  std::string path_;
  std::shared_ptr<const Buffer> buffer_;  // shared with every tensor that aliases it
  SafetensorsHeader header_;
};

// The exact bytes safetensors.torch.save_file writes for these tensors and metadata (see
// plan_safetensors for ordering). Tensors are made contiguous and copied to CPU. Empty metadata
// writes no "__metadata__" (Python's metadata=None).
std::string serialize_safetensors(const NamedTensors& tensors, const SafetensorsMetadata& metadata = {});

// Writes serialize_safetensors' bytes to `path` atomically (temp file + rename), streaming one
// tensor at a time rather than building the whole file in memory.
void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const SafetensorsMetadata& metadata = {});

}  // namespace qlora
