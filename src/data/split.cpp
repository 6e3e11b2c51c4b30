#include "qlora/data/split.h"

#include <cmath>
#include <random>
#include <set>
#include <unordered_map>

#include "qlora/core/atomic_file.h"
#include "qlora/core/error.h"
#include "qlora/core/fs.h"
#include "qlora/core/suggest.h"

namespace qlora::data {

namespace {

// Uniform in [0, m) without modulo bias; see shuffled_indices.
uint64_t uniform_below(std::mt19937_64& rng, uint64_t m) {
  const uint64_t threshold = (0 - m) % m;  // 2^64 mod m
  for (;;) {
    const uint64_t x = rng();
    if (x >= threshold) return x % m;
  }
}

// The text of each line of `path`, indexed by 1-based line number (a trailing '\r' removed).
std::vector<std::string> raw_lines(const std::string& path) {
  const std::string text = read_file(path);
  std::vector<std::string> lines{""};
  size_t begin = 0;
  while (begin < text.size()) {
    size_t end = text.find('\n', begin);
    if (end == std::string::npos) end = text.size();
    size_t stop = end;
    if (stop > begin && text[stop - 1] == '\r') --stop;
    lines.push_back(text.substr(begin, stop - begin));
    begin = end + 1;
  }
  return lines;
}

struct Filter {
  std::string field;
  std::string value;
  bool active() const { return !field.empty(); }
  bool passes(const Json& record) const {
    const auto it = record.find(field);
    if (it == record.end()) return false;
    return it->is_string() ? it->get<std::string>() == value : it->dump() == value;
  }
};

Filter parse_filter(const std::string& spec) {
  if (spec.empty()) return {};
  const auto eq = spec.find('=');
  if (eq == std::string::npos || eq == 0) {
    fail("split: valid filter \"" + spec + "\" must have the form FIELD=VALUE");
  }
  return {spec.substr(0, eq), spec.substr(eq + 1)};
}

struct Group {
  std::vector<int64_t> lines;  // 1-based input lines of its records
  size_t passing = 0;          // records that pass the valid filter
  bool eligible() const { return passing == lines.size(); }
};

}  // namespace

int64_t valid_target(double ratio, int64_t n) {
  if (!(ratio >= 0.0 && ratio <= 1.0))
    fail("split: valid ratio must be in [0, 1], got " + std::to_string(ratio));
  const double wanted = ratio * static_cast<double>(n);
  const double nearest = std::round(wanted);
  if (std::fabs(wanted - nearest) <= 1e-9 * std::max(1.0, wanted)) return static_cast<int64_t>(nearest);
  return static_cast<int64_t>(std::ceil(wanted));
}

std::vector<size_t> shuffled_indices(size_t n, uint64_t seed) {
  std::vector<size_t> order(n);
  for (size_t i = 0; i < n; ++i) order[i] = i;
  std::mt19937_64 rng(seed);
  for (size_t i = n; i-- > 1;) std::swap(order[i], order[uniform_below(rng, i + 1)]);
  return order;
}

Json SplitResult::to_json() const {
  Json out;
  out["counts"] = {{"records", records},           {"train", train},   {"valid", valid},
                   {"target_valid", target_valid}, {"groups", groups}, {"valid_groups", valid_groups},
                   {"eligible", eligible}};
  out["group_field"] = group_field;
  warnings.append_to(out);
  return out;
}

SplitResult split(const SplitOptions& options) {
  if (options.train_output.empty() || options.valid_output.empty())
    fail("split: train and valid outputs are required");
  for (const auto* out : {&options.train_output, &options.valid_output}) {
    if (fsys::same_file(*out, options.input))
      fail("split: output " + *out + " would overwrite the input " + options.input);
  }
  if (fsys::same_file(options.train_output, options.valid_output)) {
    fail("split: train and valid outputs are the same file " + options.train_output);
  }
  const Filter filter = parse_filter(options.valid_filter);
  (void)valid_target(options.valid_ratio, 0);  // validates the ratio before any reading

  SplitResult result;
  std::string group_field = options.group_field == "none" ? "" : options.group_field;
  std::vector<Group> groups;
  std::unordered_map<std::string, size_t> group_of;
  std::set<std::string> fields;  // every field name seen: a misspelt filter field gets a did-you-mean
  for_each_jsonl(options.input, [&](const Json& record, int64_t line) {
    if (filter.active())
      for (const auto& [key, value] : record.items()) fields.insert(key);
    if (result.records == 0 && group_field == "auto")
      group_field = record.contains("context") ? "context" : "";
    ++result.records;
    size_t g = groups.size();
    if (group_field.empty()) {
      groups.emplace_back();
    } else {
      const auto it = record.find(group_field);
      if (it == record.end())
        fail_at(options.input, line, "record has no group field \"" + group_field + "\"");
      const std::string key = it->is_string() ? "s" + it->get<std::string>() : "j" + it->dump();
      const auto [slot, added] = group_of.emplace(key, groups.size());
      if (added) groups.emplace_back();
      g = slot->second;
    }
    groups[g].lines.push_back(line);
    if (!filter.active() || filter.passes(record)) ++groups[g].passing;
  });
  if (filter.active() && result.records > 0 && !fields.count(filter.field)) {
    // Not one record could pass: an empty valid set is never what a misspelt field meant.
    fail(options.input + ": --valid-filter field \"" + filter.field + "\" is in no record" +
         did_you_mean(filter.field, std::vector<std::string>(fields.begin(), fields.end())));
  }
  if (group_field == "auto") group_field = "";  // empty input
  result.group_field = group_field;
  result.groups = static_cast<int64_t>(groups.size());

  int64_t mixed_groups = 0;  // groups with passing and failing records: kept whole, so in train
  for (const auto& group : groups) {
    if (group.eligible()) result.eligible += static_cast<int64_t>(group.lines.size());
    if (group.passing > 0 && !group.eligible()) ++mixed_groups;
  }
  result.target_valid = valid_target(options.valid_ratio, result.records);

  // Walk the groups in shuffled order and take an eligible group when it brings the valid size
  // closer to the target; singleton groups therefore give exactly the target.
  std::vector<bool> in_valid(groups.size(), false);
  for (size_t g : shuffled_indices(groups.size(), options.seed)) {
    if (result.valid >= result.target_valid) break;
    if (!groups[g].eligible()) continue;
    const int64_t size = static_cast<int64_t>(groups[g].lines.size());
    if (size < 2 * (result.target_valid - result.valid)) {
      in_valid[g] = true;
      result.valid += size;
      ++result.valid_groups;
    }
  }
  result.train = result.records - result.valid;

  if (result.records == 0) result.warnings.add(options.input + ": no records; both outputs are empty");
  if (result.eligible < result.target_valid) {
    result.warnings.add("only " + std::to_string(result.eligible) + " records are eligible for valid (" +
                        (filter.active() ? "filter " + options.valid_filter : std::string("all")) +
                        "), fewer than the " + std::to_string(result.target_valid) + " wanted");
  }

  if (mixed_groups > 0) {
    result.warnings.add(std::to_string(mixed_groups) + " groups of \"" + group_field +
                        "\" have records failing the filter " + options.valid_filter +
                        "; groups stay whole, so they all go to train");
  }

  // Copy lines byte for byte, in input order. Both files are complete before either is renamed.
  const auto lines = raw_lines(options.input);
  std::vector<int8_t> destination(lines.size(), -1);  // by line: -1 blank, 0 train, 1 valid
  for (size_t g = 0; g < groups.size(); ++g) {
    for (int64_t line : groups[g].lines) destination[static_cast<size_t>(line)] = in_valid[g] ? 1 : 0;
  }
  AtomicFile train(options.train_output, /*binary=*/true);
  AtomicFile valid(options.valid_output, /*binary=*/true);
  for (size_t line = 1; line < lines.size(); ++line) {
    if (destination[line] < 0) continue;
    (destination[line] == 1 ? valid : train).stream() << lines[line] << '\n';
  }
  train.commit();
  valid.commit();
  return result;
}

}  // namespace qlora::data
