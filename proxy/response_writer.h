// Responses cmsfront writes itself (error pages, redirects): always a complete, correctly
// framed HTTP/1.1 message with a small HTML body.
#pragma once

#include <event2/buffer.h>

#include <string>
#include <string_view>

namespace proxy {

// "HTTP/1.1 <status> <reason>\r\n"
void append_status_line(std::string& out, int status, std::string_view reason);
// "<name>: <value>\r\n"
void append_header_line(std::string& out, std::string_view name, std::string_view value);

// Appends the response to `out`. `scratch` is reused storage; `extra_headers` are complete
// "Name: value\r\n" lines; `message` is the human sentence of the page (HTML-escaped here).
// Both return the number of body bytes written (0 for HEAD).
std::size_t write_local_response(evbuffer* out, std::string& scratch, int status,
                                 std::string_view extra_headers, std::string_view message,
                                 bool keep_alive, bool head_only);

// The same with a body of the caller's (e.g. an auth page): `content_type` empty = none.
std::size_t write_local_body(evbuffer* out, std::string& scratch, int status,
                             std::string_view extra_headers, std::string_view content_type,
                             std::string_view body, bool keep_alive, bool head_only);

}  // namespace proxy
