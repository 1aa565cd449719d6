// Error helpers shared by every kernel file. Kernels throw std::invalid_argument /
// std::out_of_range; the pybind11 layer turns them into ValueError / IndexError, so a bad
// input never takes the interpreter down.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace sqf {

template <typename... Args>
std::string str_cat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

}  // namespace sqf

#define SQF_CHECK(cond, ...)                                              \
  do {                                                                    \
    if (!(cond)) throw std::invalid_argument(::sqf::str_cat(__VA_ARGS__)); \
  } while (0)

#define SQF_CHECK_INDEX(cond, ...)                                        \
  do {                                                                    \
    if (!(cond)) throw std::out_of_range(::sqf::str_cat(__VA_ARGS__));    \
  } while (0)
