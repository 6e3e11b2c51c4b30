// The safetensors writer: byte-identical to safetensors.torch.save_file (layout planned in
// safetensors_header.cpp), streamed tensor by tensor through AtomicFile.
#include <ostream>
#include <sstream>
#include <unordered_map>

#include "qlora/core/atomic_file.h"
#include "qlora/core/error.h"
#include "qlora/io/safetensors.h"

namespace qlora {

namespace {

// Writes the header, then each tensor's bytes in layout order.
void write_safetensors(std::ostream& out, const NamedTensors& tensors, const SafetensorsMetadata& metadata,
                       const std::string& path) {
  std::vector<SafetensorsTensorSpec> specs;
  std::unordered_map<std::string, const at::Tensor*> by_name;
  specs.reserve(tensors.size());
  for (const auto& [name, tensor] : tensors) {
    if (!tensor.defined()) fail_at(path, -1, "tensor '" + name + "' is undefined");
    specs.push_back({name, to_safetensors_dtype(tensor.scalar_type(), path + ": tensor '" + name + "'"),
                     tensor.sizes().vec()});
    by_name.emplace(name, &tensor);
  }
  const SafetensorsLayout layout = plan_safetensors(std::move(specs), metadata, path);
  out.write(layout.header.data(), static_cast<std::streamsize>(layout.header.size()));
  for (const auto& entry : layout.entries) {
    if (entry.nbytes() == 0) continue;
    const at::Tensor data = by_name.at(entry.name)->to(at::kCPU).resolve_conj().resolve_neg().contiguous();
    out.write(static_cast<const char*>(data.data_ptr()), static_cast<std::streamsize>(entry.nbytes()));
  }
}

}  // namespace

std::string serialize_safetensors(const NamedTensors& tensors, const SafetensorsMetadata& metadata) {
  std::ostringstream out(std::ios::binary);
  write_safetensors(out, tensors, metadata, "<memory>");
  return out.str();
}

void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const SafetensorsMetadata& metadata) {
  AtomicFile file(path, /*binary=*/true);
  write_safetensors(file.stream(), tensors, metadata, path);
  file.commit();
}

}  // namespace qlora
