// Responses cmsfront writes itself (error pages, redirects): always a complete, correctly
// framed HTTP/1.1 message with a small HTML body.
#pragma once

#include <event2/buffer.h>

#include <string>
#include <string_view>

namespace proxy {

// Appends the response to `out`. `scratch` is reused storage; `extra_headers` are complete
// "Name: value\r\n" lines; `message` is the human sentence of the page (HTML-escaped here).
void write_local_response(evbuffer* out, std::string& scratch, int status,
                          std::string_view extra_headers, std::string_view message, bool keep_alive,
                          bool head_only);

}  // namespace proxy
