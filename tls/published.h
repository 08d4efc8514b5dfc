// An immutable object that a reloader replaces while workers use it: readers take a
// shared_ptr snapshot (one atomic load) and keep it as long as they need; the reloader
// publishes a new object and the old one is freed when its last reader lets go. Used for
// the trust store, ticket keys and server contexts.
#pragma once

#include <atomic>
#include <memory>

namespace tls {

template <typename T>
class Published {
 public:
  explicit Published(std::shared_ptr<const T> initial) : current_(std::move(initial)) {}
  Published(const Published&) = delete;
  Published& operator=(const Published&) = delete;

  std::shared_ptr<const T> get() const { return current_.load(std::memory_order_acquire); }
  void publish(std::shared_ptr<const T> next) {
    current_.store(std::move(next), std::memory_order_release);
  }

 private:
  std::atomic<std::shared_ptr<const T>> current_;
};

}  // namespace tls
