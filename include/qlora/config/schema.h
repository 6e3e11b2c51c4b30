// A typed schema over plain config structs: each field is bound once to a struct member with its
// type, default (the member's initial value), allowed values and a one-line doc. YAML files and
// `--set section.key=value` overrides go through the same setters, so unknown keys and bad values
// give one error that names the place and suggests the nearest valid key.
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace qlora::config {

enum class FieldType { Int, Float, Bool, String, StringList, Choice };

struct Field {
  std::string key;  // "section.name"
  FieldType type;
  std::string doc;
  std::vector<std::string> choices;  // Choice only
  // Parse and store a scalar given as text (YAML scalar or --set value). Lists accept
  // "a,b,c" or a YAML/JSON flow list "[a, b]". Throws Error(what is wrong) without location.
  std::function<void(const std::string&)> set_text;
  std::function<void(const std::vector<std::string>&)> set_list;  // StringList only
  std::function<nlohmann::ordered_json()> get;
};

class Schema {
 public:
  void add_int(const std::string& key, int64_t* target, const std::string& doc);
  void add_float(const std::string& key, double* target, const std::string& doc);
  void add_bool(const std::string& key, bool* target, const std::string& doc);
  void add_string(const std::string& key, std::string* target, const std::string& doc);
  void add_list(const std::string& key, std::vector<std::string>* target, const std::string& doc);
  void add_choice(const std::string& key, std::string* target, std::vector<std::string> choices,
                  const std::string& doc);

  const std::vector<Field>& fields() const { return fields_; }
  // nullptr when absent.
  const Field* find(const std::string& key) const;
  std::vector<std::string> keys() const;
  std::vector<std::string> sections() const;

  // Apply a YAML file: every key must exist; errors name FILE:LINE and the key.
  void apply_yaml_file(const std::string& path) const;
  // Apply "section.key=value"; errors name the override.
  void apply_override(const std::string& assignment) const;
  // Current values, nested by section.
  nlohmann::ordered_json to_json() const;
  // "section.key (type, default ...): doc" lines for --help and docs.
  std::string describe() const;

 private:
  std::vector<Field> fields_;
};

}  // namespace qlora::config
