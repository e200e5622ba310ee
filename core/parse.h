// core/parse.h — reading the numbers a person types (command-line options,
// environment variables, shape specs like "128x784x512") strictly: the whole
// text is the number, or it is not one. No leading spaces, no trailing
// characters, no hexadecimal, no wrap-around, no infinities or NaN.
//
// Each reader returns nothing rather than throwing, so that the caller writes
// the error a person reads ("--epochs: must be a whole number >= 1, got 'x'").
// fuzz/targets.h holds them to their promise (fuzz_text).
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

namespace minidl {

// "42", "-7", "+3" -> the int64; nothing for "", "4.0", " 4", "4 ", "0x10",
// "9223372036854775808" (out of range) or "--4".
std::optional<int64_t> parse_int(std::string_view text);

// "0.5", "-1e-3", "+2", ".5" -> the double; nothing for "", "inf", "nan",
// "1e999" (out of range), "1,5" or "0x1p3".
std::optional<double> parse_real(std::string_view text);

// "128x784x512" -> {128, 784, 512}: one or more whole numbers >= 1 joined by
// 'x' (no signs, no spaces); nothing otherwise. The caller checks the count.
std::optional<std::vector<int64_t>> parse_dims(std::string_view text);

}  // namespace minidl
