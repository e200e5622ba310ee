// tests/test_readme.cpp — the docs tell the truth: README's snippet runs and prints
// what it says it prints, and every file path and code symbol that README.md and
// docs/*.md name in backticks still exists.
#include <doctest/doctest.h>

#include <cctype>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <regex>
#include <set>
#include <sstream>
#include <unordered_set>

void readme_snippet();  // generated from README.md (tests/CMakeLists.txt)

namespace fs = std::filesystem;

namespace {
std::string read_text(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}
const fs::path kRoot = MINIDL_SOURCE_DIR;

// Every word (maximal run of letters, digits and '_') of every source file,
// once: a symbol the docs name must be one of them. (A std::regex "\bname\b"
// per symbol over the whole text did the same in 10 s; the set takes 0.1.)
const std::unordered_set<std::string>& source_words() {
  static const std::unordered_set<std::string> words = [] {
    std::string t;
    for (const char* dir : {"core", "ops", "nn", "cuda", "compress", "compile", "tools", "tests", "examples", "fuzz", "cmake"})
      for (const auto& e : fs::recursive_directory_iterator(kRoot / dir))
        if (e.is_regular_file()) {
          const std::string ext = e.path().extension().string();
          if (ext == ".h" || ext == ".cpp" || ext == ".cu" || ext == ".cuh" || ext == ".py" || ext == ".sh" || ext == ".txt" ||
              ext == ".in")
            t += read_text(e.path());
        }
    t += read_text(kRoot / "CMakeLists.txt") + read_text(kRoot / "CMakePresets.json") + read_text(kRoot / ".ci/run");
    std::unordered_set<std::string> w;
    auto word_char = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; };
    for (size_t i = 0; i < t.size();) {
      if (!word_char(t[i])) {
        ++i;
        continue;
      }
      size_t end = i;
      while (end < t.size() && word_char(t[end])) ++end;
      w.insert(t.substr(i, end - i));
      i = end;
    }
    return w;
  }();
  return words;
}
}  // namespace

TEST_CASE("README's snippet compiles, runs and prints the line it shows") {
  const std::string readme = read_text(kRoot / "README.md");
  // The line after `std::cout << loss ...;  // `: what the snippet says it prints.
  std::smatch m;
  REQUIRE(std::regex_search(readme, m, std::regex(R"(std::cout << loss << "\\n";\s*// (tensor\([^\n]*?\))(\s|$))")));
  const std::string expected = m[1];
  std::ostringstream captured;
  std::streambuf* old = std::cout.rdbuf(captured.rdbuf());
  readme_snippet();
  std::cout.rdbuf(old);
  std::string printed = captured.str();
  while (!printed.empty() && printed.back() == '\n') printed.pop_back();
  CHECK(printed == expected);
}

TEST_CASE("every path and code symbol the docs name in backticks exists") {
  std::vector<fs::path> docs = {kRoot / "README.md"};
  for (const auto& e : fs::directory_iterator(kRoot / "docs"))
    if (e.path().extension() == ".md") docs.push_back(e.path());
  const std::regex code_span("`([^`\n]+)`");
  // A path: starts with one of the repository's top-level folders (or is a root
  // file), optionally with :line. A symbol: a C++ name with :: or a call's ().
  const std::regex path_like(
      R"(^(core|ops|nn|cuda|compress|compile|tools|tests|docs|examples|fuzz|cmake|\.ci)/[\w./-]*$|^[\w-]+\.(md|txt|json|h)$)");
  const std::regex symbol_like(R"(^(?:[a-z_][\w]*::)*([A-Za-z_]\w*)(\(\))?$)");
  int paths = 0, symbols = 0;
  std::set<std::string> missing;
  for (const fs::path& doc : docs) {
    const std::string text = read_text(doc);
    for (auto it = std::sregex_iterator(text.begin(), text.end(), code_span); it != std::sregex_iterator(); ++it) {
      std::string span = (*it)[1];
      std::smatch sm;
      std::string path = span.substr(0, span.find(':'));
      if (std::regex_match(span.substr(0, span.find(':') == std::string::npos ? span.size() : span.find(':')),
                           path_like)) {
        ++paths;
        // Build outputs and run outputs are named but not committed.
        if (path.rfind("build/", 0) == 0 || path.rfind("runs/", 0) == 0) continue;
        if (!fs::exists(kRoot / path)) missing.insert(doc.filename().string() + ": path `" + span + "`");
        continue;
      }
      if (std::regex_match(span, sm, symbol_like) &&
          (span.find("::") != std::string::npos || sm[2].matched || span.find('_') != std::string::npos)) {
        if (span.rfind("std::", 0) == 0 || span.rfind("__builtin", 0) == 0) continue;  // not minidl's
        ++symbols;
        const std::string name = sm[1];
        if (!source_words().count(name)) missing.insert(doc.filename().string() + ": symbol `" + span + "`");
      }
    }
  }
  MESSAGE(paths << " paths and " << symbols << " symbols checked");
  for (const std::string& m : missing) FAIL_CHECK(m);
  CHECK(paths > 20);
  CHECK(symbols > 20);
}
