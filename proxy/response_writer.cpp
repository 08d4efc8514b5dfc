#include "proxy/response_writer.h"

#include "proxy/failure.h"

namespace proxy {
namespace {

void append_escaped(std::string& out, std::string_view text) {
  for (char c : text) {
    switch (c) {
      case '<':
        out.append("&lt;");
        break;
      case '>':
        out.append("&gt;");
        break;
      case '&':
        out.append("&amp;");
        break;
      case '"':
        out.append("&quot;");
        break;
      default:
        out.push_back(c);
    }
  }
}

}  // namespace

void append_status_line(std::string& out, int status, std::string_view reason) {
  out.append("HTTP/1.1 ");
  out.append(std::to_string(status));
  out.push_back(' ');
  out.append(reason);
  out.append("\r\n");
}

void append_header_line(std::string& out, std::string_view name, std::string_view value) {
  out.append(name);
  out.append(": ");
  out.append(value);
  out.append("\r\n");
}

std::size_t write_local_response(evbuffer* out, std::string& scratch, int status,
                                 std::string_view extra_headers, std::string_view message,
                                 bool keep_alive, bool head_only) {
  const std::string_view reason = status_reason(status);
  std::string body;
  if (!message.empty()) {
    body.append("<!DOCTYPE html>\n<html><head><title>");
    body.append(std::to_string(status));
    body.push_back(' ');
    body.append(reason);
    body.append("</title></head>\n<body><h1>");
    body.append(std::to_string(status));
    body.push_back(' ');
    body.append(reason);
    body.append("</h1>\n<p>");
    append_escaped(body, message);
    body.append("</p></body></html>\n");
  }
  return write_local_body(out, scratch, status, extra_headers,
                          body.empty() ? std::string_view() : "text/html; charset=utf-8", body,
                          keep_alive, head_only);
}

std::size_t write_local_body(evbuffer* out, std::string& scratch, int status,
                             std::string_view extra_headers, std::string_view content_type,
                             std::string_view body, bool keep_alive, bool head_only) {
  scratch.clear();
  append_status_line(scratch, status, status_reason(status));
  scratch.append(extra_headers);
  if (!content_type.empty()) append_header_line(scratch, "Content-Type", content_type);
  scratch.append("Content-Length: ");
  scratch.append(std::to_string(body.size()));
  scratch.append("\r\nCache-Control: no-store\r\n");
  scratch.append(keep_alive ? "" : "Connection: close\r\n");
  scratch.append("\r\n");
  if (!head_only) scratch.append(body);
  evbuffer_add(out, scratch.data(), scratch.size());
  return head_only ? 0 : body.size();
}

}  // namespace proxy
