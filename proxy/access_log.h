// The access log: one line per finished request, in the cmsweb (Apache FE) format that the CMS
// log shippers parse today, or as one JSON object per line.
//
// Workers never wait for the disk. Each worker formats its line into a slot of its own bounded
// ring and goes on; one writer thread drains every ring into a batch and write(2)s it. When the
// disk (or a FIFO, or a pipe to a slow shipper) stalls, the writer blocks in write(), the rings
// fill, and further lines are dropped and counted: request handling never waits for logging.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <variant>
#include <vector>

#include "proxy/config.h"
#include "proxy/request_record.h"

namespace proxy {

// Appends one cmsweb line and '\n' to `out`:
//   %t %v %a "%r" %>s [data: %I in %O out %b body %D us ] [auth: %{SSL_PROTOCOL}x
//   %{SSL_CIPHER}x "%{SSL_CLIENT_S_DN}x" "%{cms-auth}C" ] [ref: "%{Referer}i" "%{User-Agent}i" ]
//   %{local}p
// Every text field is escaped as Apache's ap_escape_logitem() does, so a line is always exactly
// one line and a client cannot forge fields. The name tables are accepted (and ignored) so both
// formatters share one signature; the cmsweb line has no place for them.
void format_cmsweb(const RequestRecord& r, std::string& out,
                   const std::vector<std::string>* route_names = nullptr,
                   const std::vector<std::string>* backend_names = nullptr);

// Appends one JSON object and '\n' to `out` (keys documented at the definition). With name
// tables, "route" and "backend" are the names instead of the indices.
void format_json(const RequestRecord& r, std::string& out,
                 const std::vector<std::string>* route_names = nullptr,
                 const std::vector<std::string>* backend_names = nullptr);

// The writer: per-worker rings plus one writer thread that owns the file descriptor.
//
// Owner: the server (one per process, built from [access_log]). Lifetime: from start-up until
// after every worker thread has stopped calling log(); the destructor writes what is queued and
// joins the writer. Threads: log() from worker `worker` only (one producer per ring); reopen(),
// written(), dropped() and set_error_handler() from any thread.
//
// Waking the writer: it sleeps in poll() on an eventfd only after announcing so in
// writer_sleeping_ and re-checking the rings (see log() and run() for why no wake is lost).
// A worker that publishes a line and sees that flag clears it and writes the eventfd: one
// non-blocking system call per writer sleep, none at all while the writer is busy, and no lock
// or timed polling anywhere. (A 10 ms poll loop would be simpler, but adds up to 10 ms of
// latency per line and 100 idle wake-ups a second per process.)
//
// Memory: workers × queue_lines strings. Once warm, each slot keeps the capacity of the longest
// line it held (slots above 4 KiB are released when drained), so expect roughly
// workers × queue_lines × 400 bytes: some 25-30 MiB per worker at the default 65536.
class AccessLog {
 public:
  using ErrorHandler = std::function<void(const std::string&)>;

  // path "-" = standard output (never closed, reopen() is a no-op). Otherwise the file is opened
  // now (O_WRONLY|O_APPEND|O_CREAT|O_CLOEXEC, mode 0640); a failure is returned as a message.
  // queue_lines: slots per worker ring (at least 1). The name tables (may be empty) make the
  // JSON format print route and backend names instead of indices.
  static std::variant<std::unique_ptr<AccessLog>, std::string> open(
      const std::string& path, AccessLogFormat format, std::size_t workers, std::size_t queue_lines,
      std::vector<std::string> route_names, std::vector<std::string> backend_names);

  // For open() only (std::make_unique needs a public constructor; the key keeps it private).
  class Key {
    friend class AccessLog;
    Key() = default;
  };
  // Owns the descriptor and closes it; -1 = none (standard output is never owned).
  class Fd {
   public:
    explicit Fd(int fd = -1) : fd_(fd) {}
    Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
    Fd& operator=(Fd&& other) noexcept;
    ~Fd();
    int get() const { return fd_; }

   private:
    int fd_;
  };
  AccessLog(Key, std::string path, Fd file, Fd wake, AccessLogFormat format, std::size_t workers,
            std::size_t queue_lines, std::vector<std::string> route_names,
            std::vector<std::string> backend_names);
  ~AccessLog();
  AccessLog(const AccessLog&) = delete;
  AccessLog& operator=(const AccessLog&) = delete;

  // Worker thread `worker` (0..workers-1) only. Formats into the worker's next free ring slot
  // and wakes the writer if it sleeps. Never blocks; allocates only while a slot's string grows
  // to the longest line it has held. A full ring drops the line and counts it.
  void log(std::size_t worker, const RequestRecord& record) noexcept;

  // Any thread (async-signal-safe, too: an atomic store and an eventfd write). The writer
  // reopens the path before its next write: the new file is opened first, then replaces the
  // old descriptor; if the open fails the old one stays and the error handler is told.
  // Lines queued meanwhile are not lost: they go to one file or the other.
  void reopen() noexcept;

  // Called on the writer thread for reopen failures and write errors (ENOSPC, EIO, ...); a
  // write error is reported once until a write succeeds again. Without a handler, errors are
  // only counted.
  void set_error_handler(ErrorHandler handler);

  std::uint64_t written() const;  // lines written
  std::uint64_t dropped() const;  // lines lost: ring full, write error, or formatting failure

 private:
  // One single-producer/single-consumer ring. `head` is written by the worker only, `tail` by
  // the writer only (both count lines forever; slot = count % size). Slots [tail, head) hold
  // queued lines and belong to the writer; the others are free and belong to the worker. Each
  // slot's string keeps its capacity, so a warm ring never allocates.
  struct Ring {
    explicit Ring(std::size_t slots) : lines(slots) {}
    std::vector<std::string> lines;
    alignas(64) std::atomic<std::size_t> head{0};       // next slot the worker fills
    alignas(64) std::atomic<std::size_t> tail{0};       // next slot the writer drains
    alignas(64) std::atomic<std::uint64_t> dropped{0};  // written by the worker only
  };

  void run();                     // the writer thread's loop
  std::size_t drain();            // moves queued lines into batch_; returns how many
  bool anything_pending() const;  // a ring holds lines, or reopen/stop was asked for
  void sleep_until_woken(
      std::chrono::milliseconds timeout);  // -1: no timeout       // blocks on wake_
  void wake() noexcept;                    // writes to wake_
  void write_batch();                      // writes batch_ (batch_lines_ lines) to out_fd_
  void reopen_now();                       // writer thread: swap in a newly opened descriptor
  void report(const std::string& message);

  const std::string path_;
  const AccessLogFormat format_;
  const std::vector<std::string> route_names_;
  const std::vector<std::string> backend_names_;
  std::vector<std::unique_ptr<Ring>> rings_;  // one per worker; fixed after construction

  // Writer thread only (after construction).
  Fd file_;     // the open log file; none for standard output
  int out_fd_;  // where lines go: file_ or STDOUT_FILENO
  std::string batch_;
  std::size_t batch_lines_ = 0;
  std::size_t drain_start_ = 0;  // the ring drain() begins with, rotated for fairness
  bool write_failing_ = false;   // an error was reported; the next success re-arms reporting

  const Fd wake_;  // eventfd: producers, reopen() and the destructor wake the writer
  std::atomic<bool> writer_sleeping_{false};
  std::atomic<bool> reopen_requested_{false};
  std::atomic<bool> stopping_{false};
  // When the final flush stops waiting for a stalled output (set before stopping_; read by
  // the writer only after it sees stopping_).
  std::chrono::steady_clock::time_point give_up_at_{};
  std::atomic<std::uint64_t> written_{0};
  std::atomic<std::uint64_t> write_dropped_{0};

  std::mutex handler_mutex_;  // guards error_handler_ (set by the owner, read by the writer)
  ErrorHandler error_handler_;

  std::thread writer_;  // last: starts after every member above is built
};

}  // namespace proxy
