// "Did you mean" suggestions for unknown keys and values.
#pragma once

#include <string>
#include <vector>

namespace qlora {

// Levenshtein distance between two byte strings.
size_t edit_distance(const std::string& a, const std::string& b);

// The candidate nearest to `key`, or "" when none is close enough to be a plausible typo
// (distance at most max(2, key.size() / 3)).
std::string nearest(const std::string& key, const std::vector<std::string>& candidates);

// " (did you mean 'x'?)" or "" — ready to append to an error message.
std::string did_you_mean(const std::string& key, const std::vector<std::string>& candidates);

}  // namespace qlora
