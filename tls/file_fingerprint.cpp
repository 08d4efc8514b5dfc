#include "tls/file_fingerprint.h"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <memory>

namespace tls {
namespace {

// FNV-1a, 64 bit: not cryptographic, only a change detector over local metadata.
class Fnv1a {
 public:
  void add(const void* data, std::size_t size) {
    const auto* bytes = static_cast<const unsigned char*>(data);
    for (std::size_t i = 0; i < size; ++i) {
      hash_ = (hash_ ^ bytes[i]) * 0x100000001b3ull;
    }
  }
  template <typename T>
  void add_value(const T& value) {
    add(&value, sizeof value);
  }
  std::uint64_t value() const { return hash_; }

 private:
  std::uint64_t hash_ = 0xcbf29ce484222325ull;
};

void add_stat(Fnv1a& hash, const struct stat& info) {
  hash.add_value(info.st_dev);
  hash.add_value(info.st_ino);
  hash.add_value(info.st_size);
  hash.add_value(info.st_mtim.tv_sec);
  hash.add_value(info.st_mtim.tv_nsec);
}

struct DirCloser {
  void operator()(DIR* dir) const noexcept { closedir(dir); }
};

}  // namespace

std::optional<std::uint64_t> fingerprint_file(const std::string& path) {
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0) return std::nullopt;
  Fnv1a hash;
  add_stat(hash, info);
  return hash.value();
}

std::uint64_t fingerprint_files(const std::vector<std::string>& paths) {
  Fnv1a hash;
  for (const std::string& path : paths) {
    hash.add(path.data(), path.size());
    if (const auto file = fingerprint_file(path)) {
      hash.add_value(*file);
    } else {
      hash.add("missing", 7);
    }
  }
  return hash.value();
}

std::optional<std::uint64_t> fingerprint_directory(const std::string& path,
                                                   bool (*relevant)(const std::string& name)) {
  const std::unique_ptr<DIR, DirCloser> dir(::opendir(path.c_str()));
  if (!dir) return std::nullopt;
  std::vector<std::string> names;
  while (const dirent* entry = ::readdir(dir.get())) {
    std::string name = entry->d_name;
    if (relevant(name)) names.push_back(std::move(name));
  }
  std::sort(names.begin(), names.end());  // readdir order is not stable across rewrites
  Fnv1a hash;
  // The directory's own mtime changes when entries are added, removed or renamed.
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0) return std::nullopt;
  add_stat(hash, info);
  for (const std::string& name : names) {
    hash.add(name.data(), name.size() + 1);
    struct stat file_info {};
    if (::stat((path + "/" + name).c_str(), &file_info) == 0) {
      add_stat(hash, file_info);
    } else {
      hash.add("missing", 7);
    }
  }
  return hash.value();
}

}  // namespace tls
