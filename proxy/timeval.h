// Durations as libevent wants them.
#pragma once

#include <sys/time.h>

#include <chrono>

namespace proxy {

inline timeval to_timeval(std::chrono::milliseconds duration) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(duration.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((duration.count() % 1000) * 1000);
  return tv;
}

}  // namespace proxy
