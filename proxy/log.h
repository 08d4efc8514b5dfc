// The error log: leveled lines on stderr (journald adds the time). Never pass keys, cookies,
// tokens or HMACs here. Thread-safe: each line is formatted first and written with one write().
#pragma once

#include <cstdint>

namespace proxy {

enum class LogLevel : std::uint8_t { debug, info, warning, error };

void set_log_level(LogLevel level);
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
