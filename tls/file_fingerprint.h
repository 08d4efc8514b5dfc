// Cheap change detection for files cmsfront loads once and reloads when they change (CA
// directory and CRLs, server certificates, ticket keys): a hash of each file's identity and
// metadata (inode, size, mtime with nanoseconds), never its contents. fetch-crl and
// certificate renewals replace files by rename, which changes the inode; an in-place rewrite
// changes mtime. Reading the metadata of a few hundred files costs microseconds.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace tls {

// Fingerprint of one file (following symlinks); nullopt when it cannot be stat()ed.
std::optional<std::uint64_t> fingerprint_file(const std::string& path);

// Fingerprint of several files; a missing file contributes a distinct marker, so a file that
// disappears or appears also changes the result.
std::uint64_t fingerprint_files(const std::vector<std::string>& paths);

// Fingerprint of a directory's entries whose names pass `relevant` (names and metadata,
// following symlinks); nullopt when the directory cannot be read.
std::optional<std::uint64_t> fingerprint_directory(const std::string& path,
                                                   bool (*relevant)(const std::string& name));

}  // namespace tls
