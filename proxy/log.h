// The error log: leveled lines on stderr. Never pass keys, cookies, tokens or HMACs here.
// Messages about a connection or request start "conn <id>:" so its lines can be followed.
// Control characters in a message (a DN, a reason from a certificate) are escaped, so a line is
// always one line. Thread-safe: each line is formatted first and written with one write().
//
// Formats: text, `cmsfront[level]: message` — under systemd (JOURNAL_STREAM names stderr) each
// line starts with a `<N>` syslog priority that journald strips and records as the entry's
// level; or json, `{"time":"...","level":"...","message":"..."}` per line for log shippers.
#pragma once

#include <cstdint>

namespace proxy {

enum class LogLevel : std::uint8_t { debug, info, warning, error };

enum class LogOutput : std::uint8_t { text, json };

void set_log_level(LogLevel level);
void set_log_output(LogOutput output);
bool log_enabled(LogLevel level);
void log_line(LogLevel level, const char* format, ...) __attribute__((format(printf, 2, 3)));

}  // namespace proxy

#define CMSFRONT_LOG(level, ...)                                            \
  do {                                                                      \
    if (::proxy::log_enabled(level)) ::proxy::log_line(level, __VA_ARGS__); \
  } while (0)
#define LOG_DEBUG(...) CMSFRONT_LOG(::proxy::LogLevel::debug, __VA_ARGS__)
#define LOG_INFO(...) CMSFRONT_LOG(::proxy::LogLevel::info, __VA_ARGS__)
#define LOG_WARN(...) CMSFRONT_LOG(::proxy::LogLevel::warning, __VA_ARGS__)
#define LOG_ERROR(...) CMSFRONT_LOG(::proxy::LogLevel::error, __VA_ARGS__)
