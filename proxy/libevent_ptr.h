// Owning handles for libevent objects: the only place their *_free functions are named.
#pragma once

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include <memory>

namespace proxy {

struct EventBaseDeleter {
  void operator()(event_base* base) const noexcept { event_base_free(base); }
};
struct EventConfigDeleter {
  void operator()(event_config* config) const noexcept { event_config_free(config); }
};
struct EventDeleter {
  void operator()(event* ev) const noexcept { event_free(ev); }
};
struct BufferEventDeleter {
  void operator()(bufferevent* bev) const noexcept { bufferevent_free(bev); }
};
struct ListenerDeleter {
  void operator()(evconnlistener* listener) const noexcept { evconnlistener_free(listener); }
};
struct EvBufferDeleter {
  void operator()(evbuffer* buffer) const noexcept { evbuffer_free(buffer); }
};

using EventBasePtr = std::unique_ptr<event_base, EventBaseDeleter>;
using EventConfigPtr = std::unique_ptr<event_config, EventConfigDeleter>;
using EventPtr = std::unique_ptr<event, EventDeleter>;
using BufferEventPtr = std::unique_ptr<bufferevent, BufferEventDeleter>;
using ListenerPtr = std::unique_ptr<evconnlistener, ListenerDeleter>;
using EvBufferPtr = std::unique_ptr<evbuffer, EvBufferDeleter>;

}  // namespace proxy
