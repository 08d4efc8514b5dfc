// Base of objects that are destroyed on the next loop turn rather than inside one of their
// own callbacks (see Worker::retire).
#pragma once

namespace proxy {

class Retirable {
 public:
  virtual ~Retirable() = default;
};

}  // namespace proxy
