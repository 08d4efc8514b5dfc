#include "proxy/log.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <ctime>
#include <string>
#include <string_view>

#include <atomic>
#include <cstdarg>
#include <cstdio>

namespace proxy {
namespace {
std::atomic<LogLevel> g_level{LogLevel::info};
std::atomic<LogOutput> g_output{LogOutput::text};

// journald sets JOURNAL_STREAM to "device:inode" of the stream it connected to a service's
// stdout/stderr; only then does a "<N>" prefix mean something.
bool stderr_is_journal() {
  static const bool journal = [] {
    const char* stream = std::getenv("JOURNAL_STREAM");
    if (stream == nullptr) return false;
    struct stat info {};
    if (::fstat(STDERR_FILENO, &info) != 0) return false;
    unsigned long long device = 0, inode = 0;
    if (std::sscanf(stream, "%llu:%llu", &device, &inode) != 2) return false;
    return device == static_cast<unsigned long long>(info.st_dev) &&
           inode == static_cast<unsigned long long>(info.st_ino);
  }();
  return journal;
}

int syslog_priority(LogLevel level) {
  switch (level) {
    case LogLevel::debug:
      return 7;
    case LogLevel::info:
      return 6;
    case LogLevel::warning:
      return 4;
    case LogLevel::error:
      return 3;
  }
  return 6;
}

// Appends `text` with control bytes escaped; for JSON also quotes and backslashes.
void append_escaped(std::string& out, std::string_view text, bool json) {
  static constexpr char kHex[] = "0123456789abcdef";
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (json && (c == '"' || c == '\\')) {
      out.push_back('\\');
      out.push_back(c);
    } else if (byte < 0x20 || byte == 0x7f) {
      out.append(json ? "\\u00" : "\\x");
      out.push_back(kHex[byte >> 4]);
      out.push_back(kHex[byte & 15]);
    } else {
      out.push_back(c);
    }
  }
}

const char* level_name(LogLevel level) {
  switch (level) {
    case LogLevel::debug:
      return "debug";
    case LogLevel::info:
      return "info";
    case LogLevel::warning:
      return "warning";
    case LogLevel::error:
      return "error";
  }
  return "?";
}
}  // namespace

void set_log_level(LogLevel level) { g_level.store(level, std::memory_order_relaxed); }

bool log_enabled(LogLevel level) { return level >= g_level.load(std::memory_order_relaxed); }

void set_log_output(LogOutput output) { g_output.store(output, std::memory_order_relaxed); }

void log_line(LogLevel level, const char* format, ...) {
  char message[2048];
  va_list args;
  va_start(args, format);
  const int length = std::vsnprintf(message, sizeof message, format, args);
  va_end(args);
  if (length < 0) return;
  const std::string_view text(message,
                              std::min(static_cast<std::size_t>(length), sizeof message - 1));
  std::string line;
  line.reserve(text.size() + 96);
  if (g_output.load(std::memory_order_relaxed) == LogOutput::json) {
    timespec now{};
    clock_gettime(CLOCK_REALTIME, &now);
    std::tm parts{};
    gmtime_r(&now.tv_sec, &parts);
    char stamp[40];
    const std::size_t used = std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &parts);
    std::snprintf(stamp + used, sizeof stamp - used, ".%06ldZ", now.tv_nsec / 1000);
    line.append("{\"time\":\"").append(stamp).append("\",\"level\":\"");
    line.append(level_name(level)).append("\",\"message\":\"");
    append_escaped(line, text, true);
    line.append("\"}\n");
  } else {
    if (stderr_is_journal()) {
      line.push_back('<');
      line.push_back(static_cast<char>('0' + syslog_priority(level)));
      line.push_back('>');
    }
    line.append("cmsfront[").append(level_name(level)).append("]: ");
    append_escaped(line, text, false);
    line.push_back('\n');
  }
  // One write per line so lines from several workers never interleave.
  [[maybe_unused]] ssize_t written = ::write(STDERR_FILENO, line.data(), line.size());
}

}  // namespace proxy
