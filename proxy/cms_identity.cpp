#include "proxy/cms_identity.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <fstream>
#include <sstream>

#include "proxy/https_fetch.h"
#include "proxy/log.h"

namespace proxy {
namespace {

constexpr std::size_t kMaxMapBytes = 256u * 1024 * 1024;
// After a failed download, the next attempt comes this soon (or at user_map_refresh when that
// is shorter), so a short CRIC outage does not leave the map a whole period behind.
constexpr auto kFetchRetry = std::chrono::seconds(30);

bool read_whole_file(const std::string& path, std::string& out, std::string& error) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    error = "cannot open " + path + ": " + std::strerror(errno);
    return false;
  }
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  if (size < 0 || static_cast<std::uint64_t>(size) > kMaxMapBytes) {
    error = path + " is larger than " + std::to_string(kMaxMapBytes) + " bytes";
    return false;
  }
  in.seekg(0);
  out.resize(static_cast<std::size_t>(size));
  if (size > 0 && !in.read(out.data(), size)) {
    error = "cannot read " + path + ": " + std::strerror(errno);
    return false;
  }
  return true;
}

double unix_now() { return static_cast<double>(std::time(nullptr)); }

}  // namespace

std::string_view user_map_source_name(UserMapSource source) {
  switch (source) {
    case UserMapSource::file:
      return "file";
    case UserMapSource::url:
      return "url";
    case UserMapSource::cache:
      return "cache";
  }
  return "file";
}

CmsIdentity::CmsIdentity(const AuthSettings& settings, Duration file_check_interval)
    : settings_(settings), file_check_interval_(file_check_interval) {}

std::variant<std::unique_ptr<CmsIdentity>, std::vector<std::string>> CmsIdentity::create(
    const AuthSettings& settings, Duration file_check_interval) {
  std::unique_ptr<CmsIdentity> identity(new CmsIdentity(settings, file_check_interval));
  std::vector<std::string> errors;
  std::string error;
  if (!identity->load_key(error)) errors.push_back("[auth] hmac_key: " + error);

  std::vector<std::string> map_problems;
  if (!settings.user_map.empty() && identity->load_file(true, error) != UserMapLoadResult::ok) {
    map_problems.push_back("user_map: " + error);
  }
  if (!settings.user_map_url.empty()) {
    // A kept copy starts us at once; the thread downloads a fresh map right after. Without
    // one (first start) the download is waited for.
    if (identity->load_cache(error) != UserMapLoadResult::ok) {
      map_problems.push_back("user_map_cache: " + error);
      if (identity->fetch_url(error) != UserMapLoadResult::ok) {
        map_problems.push_back("user_map_url: " + error);
      } else {
        identity->next_fetch_ = std::chrono::steady_clock::now() + settings.user_map_refresh;
      }
    }
  }
  if (!identity->has_map()) {
    for (auto& problem : map_problems) errors.push_back("[auth] " + problem);
    errors.push_back("[auth] no user map could be loaded: refusing to start with an empty map");
  } else {
    for (const auto& problem : map_problems) LOG_WARN("[auth] %s", problem.c_str());
  }
  if (!errors.empty()) return errors;
  identity->publish();
  return identity;
}

CmsIdentity::~CmsIdentity() {
  {
    std::lock_guard lock(wake_mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void CmsIdentity::start() {
  thread_ = std::thread([this] { run(); });
}

void CmsIdentity::reload() {
  {
    std::lock_guard lock(wake_mutex_);
    reload_requested_ = true;
  }
  wake_.notify_all();
}

CmsIdentityStatus CmsIdentity::status() const {
  std::lock_guard lock(status_mutex_);
  return status_;
}

void CmsIdentity::run() {
  // The map file and the key are checked as often as the TLS files; the URL every
  // user_map_refresh. The first download after a start from the cache is due at once.
  const Duration tick = std::min(file_check_interval_, settings_.user_map_refresh);
  std::unique_lock lock(wake_mutex_);
  while (!stop_) {
    wake_.wait_for(lock, tick, [this] { return stop_ || reload_requested_; });
    if (stop_) break;
    const bool force = reload_requested_;
    reload_requested_ = false;
    lock.unlock();
    refresh(force, std::chrono::steady_clock::now());
    release_retired();
    lock.lock();
  }
}

void CmsIdentity::refresh(bool force, std::chrono::steady_clock::time_point now) {
  bool changed = false;
  std::string error;
  const auto key_before = key_;
  if (force || tls::fingerprint_file(settings_.hmac_key) != key_fingerprint_) {
    if (!load_key(error)) {
      LOG_ERROR("[auth] hmac_key: %s; keeping the previous key", error.c_str());
    }
    changed = changed || key_ != key_before;
  }
  if (!settings_.user_map.empty()) {
    const auto result = load_file(force, error);
    if (result == UserMapLoadResult::ok) {
      changed = true;
    } else if (result != UserMapLoadResult::unchanged) {
      LOG_ERROR("[auth] user_map: %s; keeping the last good map", error.c_str());
    }
  }
  if (!settings_.user_map_url.empty() && (force || now >= next_fetch_)) {
    const auto result = fetch_url(error);
    next_fetch_ = now + (result == UserMapLoadResult::failed
                             ? std::min<Duration>(kFetchRetry, settings_.user_map_refresh)
                             : settings_.user_map_refresh);
    if (result == UserMapLoadResult::ok) {
      changed = true;
    } else {
      LOG_ERROR("[auth] user_map_url: %s; keeping the last good map", error.c_str());
    }
  }
  if (changed) publish();
}

bool CmsIdentity::load_key(std::string& error) {
  // Fingerprint first: a key replaced between the read and the stat is read again next time.
  key_fingerprint_ = tls::fingerprint_file(settings_.hmac_key);
  auto key = auth::HmacKey::load(settings_.hmac_key, error);
  std::lock_guard lock(status_mutex_);
  if (!key) {
    ++status_.key_reloads_failed;
    return false;
  }
  ++status_.key_reloads_ok;
  if (key_ == nullptr || key_->bytes() != key->bytes()) key_ = std::move(key);
  return true;
}

UserMapLoadResult CmsIdentity::load_file(bool force, std::string& error) {
  error.clear();
  // Metadata first: a file replaced after this stat is read again at the next check. A file
  // that failed stays failed until it changes (one log line, not one per check).
  const auto fingerprint = tls::fingerprint_file(settings_.user_map);
  if (!force && fingerprint == file_.fingerprint) return UserMapLoadResult::unchanged;
  file_.fingerprint = fingerprint;
  std::string json;
  if (!read_whole_file(settings_.user_map, json, error)) {
    count(UserMapSource::file, UserMapLoadResult::failed);
    return UserMapLoadResult::failed;
  }
  return adopt(UserMapSource::file, json, error);
}

UserMapLoadResult CmsIdentity::fetch_url(std::string& error) {
  FetchSettings fetch;
  fetch.url = settings_.user_map_url;
  fetch.certificate = settings_.user_map_certificate;
  fetch.key = settings_.user_map_key;
  fetch.ca_file = settings_.user_map_ca_file;
  fetch.ca_dir = settings_.user_map_ca_dir;
  fetch.timeout = settings_.user_map_timeout;
  fetch.max_bytes = kMaxMapBytes;
  const auto started = std::chrono::steady_clock::now();
  FetchResult fetched = https_get(fetch);
  if (!fetched.ok) {
    error = fetched.error;
    count(UserMapSource::url, UserMapLoadResult::failed);
    return UserMapLoadResult::failed;
  }
  const auto result = adopt(UserMapSource::url, fetched.body, error);
  if (result == UserMapLoadResult::ok) {
    const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - started);
    LOG_INFO("[auth] user map downloaded from %s: %zu bytes in %lld ms",
             settings_.user_map_url.c_str(), fetched.body.size(),
             static_cast<long long>(took.count()));
    save_cache(fetched.body);
  }
  return result;
}

UserMapLoadResult CmsIdentity::load_cache(std::string& error) {
  std::string json;
  if (!read_whole_file(settings_.user_map_cache, json, error)) {
    count(UserMapSource::cache, UserMapLoadResult::failed);
    return UserMapLoadResult::failed;
  }
  return adopt(UserMapSource::cache, json, error);
}

UserMapLoadResult CmsIdentity::adopt(UserMapSource source, std::string_view json,
                                     std::string& error) {
  // The cache stands in for the URL source until the first download.
  Source& slot = source == UserMapSource::file ? file_ : url_;
  const auto started = std::chrono::steady_clock::now();
  auth::UserMapLimits limits;
  limits.max_bytes = kMaxMapBytes;
  auto map = auth::UserMap::parse(json, error, limits);
  if (map == nullptr) {
    count(source, UserMapLoadResult::failed);
    return UserMapLoadResult::failed;
  }
  const auth::UserMap::Stats& stats = map->stats();
  if (map->users() == 0) {
    error = "the new map has no usable user (" + std::to_string(stats.records) + " records" +
            (stats.first_problem.empty() ? "" : ", first problem: " + stats.first_problem) + ")";
    count(source, UserMapLoadResult::refused);
    return UserMapLoadResult::refused;
  }
  if (slot.map != nullptr && settings_.user_map_max_drop_percent < 100) {
    const std::size_t before = slot.map->users();
    const std::size_t floor = before * (100 - settings_.user_map_max_drop_percent) / 100;
    if (map->users() < floor) {
      error = "the new map has " + std::to_string(map->users()) + " users, the last good one " +
              std::to_string(before) + ": more than " +
              std::to_string(settings_.user_map_max_drop_percent) +
              "% fewer looks like a partial answer (user_map_max_drop_percent)";
      count(source, UserMapLoadResult::refused);
      return UserMapLoadResult::refused;
    }
  }
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - started);
  LOG_INFO("[auth] user map from %s: %zu users, %zu DNs, parsed in %lld ms",
           std::string(user_map_source_name(source)).c_str(), map->users(), stats.dns,
           static_cast<long long>(took.count()));
  if (stats.skipped > 0) {
    LOG_WARN("[auth] user map from %s: %zu records skipped (first: %s)",
             std::string(user_map_source_name(source)).c_str(), stats.skipped,
             stats.first_problem.c_str());
  }
  slot.map = std::move(map);
  count(source, UserMapLoadResult::ok);
  return UserMapLoadResult::ok;
}

void CmsIdentity::save_cache(std::string_view json) {
  // Written beside the target and renamed over it: a crash leaves the old copy or the new
  // one, never half of one.
  const std::string temporary = settings_.user_map_cache + ".tmp";
  const int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  bool ok = fd >= 0;
  std::size_t written = 0;
  while (ok && written < json.size()) {
    const ssize_t n = ::write(fd, json.data() + written, json.size() - written);
    if (n < 0 && errno == EINTR) continue;
    ok = n > 0;
    if (ok) written += static_cast<std::size_t>(n);
  }
  ok = ok && ::fsync(fd) == 0;
  const int saved_errno = errno;
  if (fd >= 0) ::close(fd);
  ok = ok && ::rename(temporary.c_str(), settings_.user_map_cache.c_str()) == 0;
  if (!ok) {
    LOG_ERROR("[auth] cannot keep the downloaded user map in %s: %s",
              settings_.user_map_cache.c_str(), std::strerror(errno ? errno : saved_errno));
    ::unlink(temporary.c_str());
  }
}

void CmsIdentity::count(UserMapSource source, UserMapLoadResult result) {
  std::lock_guard lock(status_mutex_);
  ++status_.loads[static_cast<std::size_t>(source)][static_cast<std::size_t>(result)];
  if (result == UserMapLoadResult::ok) {
    status_.last_success[static_cast<std::size_t>(source)] = unix_now();
  }
}

void CmsIdentity::release_retired() {
  // use_count() == 1: only this list holds it; an unpublished snapshot gains no new holder.
  std::erase_if(retired_, [](const auto& snapshot) { return snapshot.use_count() == 1; });
}

bool CmsIdentity::has_map() const { return file_.map != nullptr || url_.map != nullptr; }

void CmsIdentity::publish() {
  auto next = std::make_shared<CmsIdentitySnapshot>();
  if (file_.map != nullptr && url_.map != nullptr) {
    next->map = auth::UserMap::merge(*file_.map, *url_.map);
  } else {
    next->map = file_.map != nullptr ? file_.map : url_.map;
  }
  next->key = key_;
  auto current = published_.get();
  next->generation = (current != nullptr ? current->generation : 0) + 1;
  if (current != nullptr) retired_.push_back(std::move(current));
  {
    std::lock_guard lock(status_mutex_);
    status_.generation = next->generation;
    status_.users = next->map->users();
    status_.dns = next->map->stats().dns;
  }
  published_.publish(std::move(next));
  generation_.store(published_.get()->generation, std::memory_order_release);
}

}  // namespace proxy
