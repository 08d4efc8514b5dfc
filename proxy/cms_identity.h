// The CMS identity material the workers sign with: the user map and the HMAC key, loaded at
// start and kept fresh by one background thread ("user-map"), never on an event loop.
//
// Sources ([auth]): the map file (re-read when its metadata changes, checked every
// file_check_interval), CRIC's URL (fetched every user_map_refresh with the robot certificate),
// and the key file. SIGHUP re-reads all three at once. A source whose new content cannot be
// read, does not parse, is empty, or lost more than user_map_max_drop_percent of its users
// keeps its last good map (and the reason is logged and counted). Every accepted download is
// written to user_map_cache, which is what a start uses while CRIC cannot be reached.
//
// Workers see an immutable Snapshot; a change publishes a new one with the next generation,
// so a connection can tell with one relaxed atomic load whether its cached headers are stale.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "auth/cms_headers.h"
#include "auth/user_map.h"
#include "proxy/config.h"
#include "tls/file_fingerprint.h"
#include "tls/published.h"

namespace proxy {

struct CmsIdentitySnapshot {
  std::shared_ptr<const auth::UserMap> map;  // never null
  std::shared_ptr<const auth::HmacKey> key;  // never null
  std::uint64_t generation = 0;              // 1 for the first snapshot
};

enum class UserMapSource : std::uint8_t { file, url, cache };
inline constexpr std::size_t kUserMapSources = 3;
std::string_view user_map_source_name(UserMapSource source);  // "file", "url", "cache"

enum class UserMapLoadResult : std::uint8_t {
  ok,
  failed,     // unreadable, download failed, not JSON
  refused,    // parsed, but empty or shrunk beyond user_map_max_drop_percent
  unchanged,  // the file was not touched since the last attempt (not counted)
};
inline constexpr std::size_t kUserMapLoadResults = 3;  // the counted ones

// Counters for the metrics endpoint (read from the exporter's thread).
struct CmsIdentityStatus {
  std::uint64_t generation = 0;
  std::size_t users = 0;  // in the published map
  std::size_t dns = 0;
  // [source][result]
  std::uint64_t loads[kUserMapSources][kUserMapLoadResults] = {};
  double last_success[kUserMapSources] = {};  // unix seconds; 0 = never
  std::uint64_t key_reloads_ok = 0;
  std::uint64_t key_reloads_failed = 0;
};

class CmsIdentity {
 public:
  // Loads the key and the map synchronously: errors when the key is unusable or no source
  // yields a map (a frontend must not start with an empty map).
  static std::variant<std::unique_ptr<CmsIdentity>, std::vector<std::string>> create(
      const AuthSettings& settings, Duration file_check_interval);
  ~CmsIdentity();  // stops the thread
  CmsIdentity(const CmsIdentity&) = delete;
  CmsIdentity& operator=(const CmsIdentity&) = delete;

  void start();   // the refresher thread
  void reload();  // SIGHUP: re-read the key and the file and fetch the URL now

  // Cheap: compare with a cached generation, call snapshot() only when it changed.
  std::uint64_t generation() const { return generation_.load(std::memory_order_acquire); }
  std::shared_ptr<const CmsIdentitySnapshot> snapshot() const { return published_.get(); }
  CmsIdentityStatus status() const;

 private:
  CmsIdentity(const AuthSettings& settings, Duration file_check_interval);

  struct Source {
    std::shared_ptr<const auth::UserMap> map;  // last good
    std::optional<std::uint64_t> fingerprint;  // file source: of the last read attempt
  };

  void run();
  // One pass of the thread: what is due (or everything, when forced).
  void refresh(bool force, std::chrono::steady_clock::time_point now);
  bool load_key(std::string& error);
  UserMapLoadResult load_file(bool force, std::string& error);
  UserMapLoadResult fetch_url(std::string& error);
  UserMapLoadResult load_cache(std::string& error);
  // Parses `json`; on success checks it against the source's last good map and adopts it.
  UserMapLoadResult adopt(UserMapSource source, std::string_view json, std::string& error);
  void save_cache(std::string_view json);
  void count(UserMapSource source, UserMapLoadResult result);
  bool has_map() const;
  void publish();
  void release_retired();

  const AuthSettings settings_;
  const Duration file_check_interval_;

  // Written by the refresher (and create() before it starts), read by the exporter.
  mutable std::mutex status_mutex_;
  CmsIdentityStatus status_;

  Source file_;
  Source url_;  // the download or, until the first one succeeds, the cache
  std::shared_ptr<const auth::HmacKey> key_;
  std::optional<std::uint64_t> key_fingerprint_;
  std::chrono::steady_clock::time_point next_fetch_{};

  tls::Published<CmsIdentitySnapshot> published_{nullptr};
  // Replaced snapshots, kept until no worker or connection holds them any more, so that the
  // last reference -- and freeing a large map, ~50 ms for 50,000 users -- is dropped here,
  // never on an event loop. Refresher thread only.
  std::vector<std::shared_ptr<const CmsIdentitySnapshot>> retired_;
  std::atomic<std::uint64_t> generation_{0};

  std::mutex wake_mutex_;
  std::condition_variable wake_;
  bool stop_ = false;
  bool reload_requested_ = false;
  std::thread thread_;
};

}  // namespace proxy
