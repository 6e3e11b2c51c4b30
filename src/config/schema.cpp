#include "qlora/config/schema.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <set>
#include <sstream>

#include "qlora/core/error.h"
#include "qlora/core/suggest.h"

namespace qlora::config {

namespace {

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return "";
  const auto e = s.find_last_not_of(" \t");
  return s.substr(b, e - b + 1);
}

int64_t parse_int(const std::string& text) {
  const std::string t = trim(text);
  char* end = nullptr;
  errno = 0;
  const long long v = std::strtoll(t.c_str(), &end, 10);
  if (t.empty() || *end != '\0' || errno == ERANGE) {
    // Accept integral floats written as 1e3 or 100.0.
    char* fend = nullptr;
    const double d = std::strtod(t.c_str(), &fend);
    if (!t.empty() && *fend == '\0' && std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9e18) {
      return static_cast<int64_t>(d);
    }
    fail("expected an integer, got '" + text + "'");
  }
  return v;
}

double parse_float(const std::string& text) {
  const std::string t = trim(text);
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(t.c_str(), &end);
  if (t.empty() || *end != '\0' || errno == ERANGE || !std::isfinite(v)) {
    fail("expected a number, got '" + text + "'");
  }
  return v;
}

bool parse_bool(const std::string& text) {
  std::string t = trim(text);
  std::transform(t.begin(), t.end(), t.begin(), [](unsigned char c) { return std::tolower(c); });
  if (t == "true" || t == "yes" || t == "on" || t == "1") return true;
  if (t == "false" || t == "no" || t == "off" || t == "0") return false;
  fail("expected true or false, got '" + text + "'");
}

std::vector<std::string> parse_list_text(const std::string& text) {
  std::string t = trim(text);
  if (!t.empty() && t.front() == '[') {
    if (t.back() != ']') fail("unterminated list '" + text + "'");
    t = t.substr(1, t.size() - 2);
  }
  std::vector<std::string> out;
  if (trim(t).empty()) return out;
  std::stringstream ss(t);
  std::string item;
  while (std::getline(ss, item, ',')) {
    item = trim(item);
    if (item.size() >= 2 && (item.front() == '"' || item.front() == '\'') && item.back() == item.front()) {
      item = item.substr(1, item.size() - 2);
    }
    if (item.empty()) fail("empty item in list '" + text + "'");
    out.push_back(item);
  }
  return out;
}

const char* type_name(FieldType type) {
  switch (type) {
    case FieldType::Int:
      return "int";
    case FieldType::Float:
      return "float";
    case FieldType::Bool:
      return "bool";
    case FieldType::String:
      return "string";
    case FieldType::StringList:
      return "list";
    case FieldType::Choice:
      return "choice";
  }
  return "?";
}

}  // namespace

void Schema::add_int(const std::string& key, int64_t* target, const std::string& doc) {
  fields_.push_back({key,
                     FieldType::Int,
                     doc,
                     {},
                     [target](const std::string& t) { *target = parse_int(t); },
                     nullptr,
                     [target] { return nlohmann::ordered_json(*target); }});
}

void Schema::add_float(const std::string& key, double* target, const std::string& doc) {
  fields_.push_back({key,
                     FieldType::Float,
                     doc,
                     {},
                     [target](const std::string& t) { *target = parse_float(t); },
                     nullptr,
                     [target] { return nlohmann::ordered_json(*target); }});
}

void Schema::add_bool(const std::string& key, bool* target, const std::string& doc) {
  fields_.push_back({key,
                     FieldType::Bool,
                     doc,
                     {},
                     [target](const std::string& t) { *target = parse_bool(t); },
                     nullptr,
                     [target] { return nlohmann::ordered_json(*target); }});
}

void Schema::add_string(const std::string& key, std::string* target, const std::string& doc) {
  fields_.push_back({key,
                     FieldType::String,
                     doc,
                     {},
                     [target](const std::string& t) { *target = t; },
                     nullptr,
                     [target] { return nlohmann::ordered_json(*target); }});
}

void Schema::add_list(const std::string& key, std::vector<std::string>* target, const std::string& doc) {
  fields_.push_back({key,
                     FieldType::StringList,
                     doc,
                     {},
                     [target](const std::string& t) { *target = parse_list_text(t); },
                     [target](const std::vector<std::string>& items) { *target = items; },
                     [target] { return nlohmann::ordered_json(*target); }});
}

void Schema::add_choice(const std::string& key, std::string* target, std::vector<std::string> choices,
                        const std::string& doc) {
  auto allowed = choices;
  fields_.push_back({key, FieldType::Choice, doc, choices,
                     [target, allowed](const std::string& t) {
                       const std::string v = trim(t);
                       if (std::find(allowed.begin(), allowed.end(), v) == allowed.end()) {
                         std::string list;
                         for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
                         fail("'" + v + "' is not one of " + list + did_you_mean(v, allowed));
                       }
                       *target = v;
                     },
                     nullptr, [target] { return nlohmann::ordered_json(*target); }});
}

const Field* Schema::find(const std::string& key) const {
  for (const auto& f : fields_) {
    if (f.key == key) return &f;
  }
  return nullptr;
}

std::vector<std::string> Schema::keys() const {
  std::vector<std::string> out;
  for (const auto& f : fields_) out.push_back(f.key);
  return out;
}

std::vector<std::string> Schema::sections() const {
  std::vector<std::string> out;
  for (const auto& f : fields_) {
    const std::string section = f.key.substr(0, f.key.find('.'));
    if (std::find(out.begin(), out.end(), section) == out.end()) out.push_back(section);
  }
  return out;
}

void Schema::apply_yaml_file(const std::string& path) const {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    fail(path + ": cannot open config file");
  } catch (const YAML::Exception& e) {
    fail_at(path, e.mark.line + 1, "malformed YAML: " + e.msg);
  }
  if (root.IsNull()) return;  // An empty file keeps every default.
  if (!root.IsMap()) fail_at(path, root.Mark().line + 1, "a config file must be a mapping of sections");
  const auto known_sections = sections();
  std::set<std::string> seen;
  for (const auto& section : root) {
    const std::string name = section.first.as<std::string>();
    const int64_t line = section.first.Mark().line + 1;
    if (std::find(known_sections.begin(), known_sections.end(), name) == known_sections.end()) {
      fail_at(path, line, "unknown section '" + name + "'" + did_you_mean(name, known_sections));
    }
    if (section.second.IsNull()) continue;
    if (!section.second.IsMap()) fail_at(path, line, "section '" + name + "' must be a mapping of keys");
    for (const auto& entry : section.second) {
      const std::string key = name + "." + entry.first.as<std::string>();
      const int64_t key_line = entry.first.Mark().line + 1;
      if (!seen.insert(key).second) fail_at(path, key_line, "duplicate key '" + key + "'");
      const Field* field = find(key);
      if (!field) fail_at(path, key_line, "unknown key '" + key + "'" + did_you_mean(key, keys()));
      try {
        const YAML::Node& value = entry.second;
        if (field->type == FieldType::StringList && value.IsSequence()) {
          std::vector<std::string> items;
          for (const auto& item : value) {
            if (!item.IsScalar()) fail("list items must be strings");
            items.push_back(item.as<std::string>());
          }
          field->set_list(items);
        } else if (value.IsNull() &&
                   (field->type == FieldType::String || field->type == FieldType::StringList)) {
          field->set_text("");
        } else if (value.IsScalar()) {
          field->set_text(value.as<std::string>());
        } else {
          fail(std::string("expected a ") + type_name(field->type) + " value");
        }
      } catch (const Error& e) {
        fail_at(path, key_line, "key '" + key + "': " + e.what());
      }
    }
  }
}

void Schema::apply_override(const std::string& assignment) const {
  const auto eq = assignment.find('=');
  if (eq == std::string::npos) fail("--set '" + assignment + "': expected section.key=value");
  const std::string key = trim(assignment.substr(0, eq));
  const Field* field = find(key);
  if (!field) fail("--set: unknown key '" + key + "'" + did_you_mean(key, keys()));
  try {
    field->set_text(assignment.substr(eq + 1));
  } catch (const Error& e) {
    fail("--set " + key + ": " + e.what());
  }
}

nlohmann::ordered_json Schema::to_json() const {
  nlohmann::ordered_json out = nlohmann::ordered_json::object();
  for (const auto& f : fields_) {
    const auto dot = f.key.find('.');
    out[f.key.substr(0, dot)][f.key.substr(dot + 1)] = f.get();
  }
  return out;
}

std::string Schema::describe() const {
  std::ostringstream out;
  for (const auto& f : fields_) {
    out << "  " << f.key << " (" << type_name(f.type) << ", default " << f.get().dump() << ")";
    if (!f.choices.empty()) {
      out << " one of:";
      for (const auto& c : f.choices) out << " " << c;
    }
    out << "\n      " << f.doc << "\n";
  }
  return out.str();
}

}  // namespace qlora::config
