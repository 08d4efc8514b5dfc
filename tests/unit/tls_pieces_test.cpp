// Unit tests for the small tls/ pieces: slash_form, VerificationCache, the file fingerprints and
// TicketKeys. (TrustStore and verify_client_chain: chain_verifier_test.cpp.)
#include <fcntl.h>
#include <gtest/gtest.h>
#include <openssl/asn1.h>
#include <openssl/objects.h>
#include <openssl/x509.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <system_error>
#include <variant>
#include <vector>

#include "tls/distinguished_name.h"
#include "tls/file_fingerprint.h"
#include "tls/openssl_ptr.h"
#include "tls/ticket_keys.h"
#include "tls/trust_store.h"
#include "tls/verification_cache.h"

namespace tls {
namespace {

// ---- slash_form -----------------------------------------------------------------------------

const unsigned char* bytes(const char* text) {
  return reinterpret_cast<const unsigned char*>(text);
}

// Appends `field=value` (value UTF-8; OpenSSL picks the string type, UTF8String for non-ASCII).
void add(X509_NAME* name, const char* field, const char* value) {
  ASSERT_EQ(X509_NAME_add_entry_by_txt(name, field, MBSTRING_UTF8, bytes(value), -1, -1, 0), 1)
      << field;
}

// The string type of the last entry, to make sure a test encodes what it claims to.
int last_entry_type(const X509_NAME* name) {
  const X509_NAME_ENTRY* entry = X509_NAME_get_entry(name, X509_NAME_entry_count(name) - 1);
  return ASN1_STRING_type(X509_NAME_ENTRY_get_data(entry));
}

constexpr const char* kJoseUtf8 = "Jos\xC3\xA9 M\xC3\xBCller";

TEST(SlashForm, PrintsEntriesInCertificateOrderWithANumericCnInTheMiddle) {
  const X509NamePtr name(X509_NAME_new());
  add(name.get(), "DC", "ch");
  add(name.get(), "DC", "cern");
  add(name.get(), "OU", "Organic Units");
  add(name.get(), "OU", "Users");
  add(name.get(), "CN", "jdoe");
  add(name.get(), "CN", "123456");
  add(name.get(), "CN", "John Doe");
  EXPECT_EQ(slash_form(name.get()),
            "/DC=ch/DC=cern/OU=Organic Units/OU=Users/CN=jdoe/CN=123456/CN=John Doe");
}

TEST(SlashForm, PrintsAUtf8StringValueAsRawUtf8) {
  const X509NamePtr name(X509_NAME_new());
  add(name.get(), "CN", kJoseUtf8);
  ASSERT_EQ(last_entry_type(name.get()), V_ASN1_UTF8STRING);
  EXPECT_EQ(slash_form(name.get()), std::string("/CN=") + kJoseUtf8);
}

TEST(SlashForm, PrintsABmpStringValueAsRawUtf8) {
  // "José Müller" in UCS-2 big-endian, as some older CAs encode names.
  const unsigned char ucs2[] = {0,   'J', 0,    'o', 0,   's', 0,   0xE9, 0,   ' ', 0,
                                'M', 0,   0xFC, 0,   'l', 0,   'l', 0,    'e', 0,   'r'};
  const X509NamePtr name(X509_NAME_new());
  add(name.get(), "DC", "org");
  ASSERT_EQ(X509_NAME_add_entry_by_NID(name.get(), NID_commonName, V_ASN1_BMPSTRING, ucs2,
                                       sizeof ucs2, -1, 0),
            1);
  ASSERT_EQ(last_entry_type(name.get()), V_ASN1_BMPSTRING);
  EXPECT_EQ(slash_form(name.get()), std::string("/DC=org/CN=") + kJoseUtf8);
}

TEST(SlashForm, PrintsEmailAddressByItsShortName) {
  const X509NamePtr name(X509_NAME_new());
  add(name.get(), "CN", "John Doe");
  add(name.get(), "emailAddress", "john.doe@cern.ch");
  EXPECT_EQ(slash_form(name.get()), "/CN=John Doe/emailAddress=john.doe@cern.ch");
}

TEST(SlashForm, PrintsAnUnknownAttributeTypeAsADottedOid) {
  const X509NamePtr name(X509_NAME_new());
  add(name.get(), "O", "Example");
  add(name.get(), "1.3.6.1.4.1.99999.7", "custom");
  add(name.get(), "CN", "host.example.org");
  EXPECT_EQ(slash_form(name.get()), "/O=Example/1.3.6.1.4.1.99999.7=custom/CN=host.example.org");
}

TEST(SlashForm, PrintsAnUnconvertibleValueAsHex) {
  // A name value may be any string type; a BIT STRING has no character set to convert from.
  const unsigned char bits[] = {0x01, 0xA2};
  const X509NamePtr name(X509_NAME_new());
  add(name.get(), "DC", "org");
  ASSERT_EQ(X509_NAME_add_entry_by_NID(name.get(), NID_x500UniqueIdentifier, V_ASN1_BIT_STRING,
                                       bits, sizeof bits, -1, 0),
            1);
  EXPECT_EQ(slash_form(name.get()), "/DC=org/x500UniqueIdentifier=#01a2");
}

TEST(SlashForm, PrintsNothingForANullOrEmptyName) {
  EXPECT_EQ(slash_form(nullptr), "");
  const X509NamePtr name(X509_NAME_new());
  EXPECT_EQ(slash_form(name.get()), "");
}

// ---- VerificationCache ----------------------------------------------------------------------

ChainDigest digest_of(unsigned char seed) {
  ChainDigest digest{};
  digest.fill(seed);
  return digest;
}

CachedVerdict verdict_for(const std::string& user_dn) {
  ClientIdentity identity;
  identity.outcome = VerifyOutcome::ok;
  identity.kind = CredentialKind::certificate;
  identity.user_dn = user_dn;
  CachedVerdict verdict;
  verdict.session_data = encode_identity(identity);
  verdict.identity = std::make_shared<const ClientIdentity>(std::move(identity));
  return verdict;
}

constexpr std::int64_t kNow = 1'800'000'000;

TEST(VerificationCache, FindsWhatWasInserted) {
  VerificationCache cache(10);
  const CachedVerdict verdict = verdict_for("/CN=a");
  cache.insert(digest_of(1), verdict, kNow + 100, kNow);
  CachedVerdict found;
  ASSERT_TRUE(cache.find(digest_of(1), kNow, found));
  EXPECT_EQ(found.identity, verdict.identity);  // the same shared identity, not a copy
  EXPECT_EQ(found.session_data, verdict.session_data);
  EXPECT_FALSE(cache.find(digest_of(2), kNow, found));
  EXPECT_EQ(cache.size(), 1u);
}

TEST(VerificationCache, EntryExpiresAtItsExpiryTime) {
  VerificationCache cache(10);
  cache.insert(digest_of(1), verdict_for("/CN=a"), kNow + 100, kNow);
  CachedVerdict found;
  EXPECT_TRUE(cache.find(digest_of(1), kNow + 99, found));
  EXPECT_FALSE(cache.find(digest_of(1), kNow + 100, found));
}

TEST(VerificationCache, ExpiredEntryIsRemoved) {
  VerificationCache cache(10);
  cache.insert(digest_of(1), verdict_for("/CN=a"), kNow + 100, kNow);
  ASSERT_EQ(cache.size(), 1u);
  CachedVerdict found;
  EXPECT_FALSE(cache.find(digest_of(1), kNow + 200, found));
  EXPECT_EQ(cache.size(), 0u);
  // ... for good: going back in time does not bring it back.
  EXPECT_FALSE(cache.find(digest_of(1), kNow, found));
}

TEST(VerificationCache, EntryLivesAtMostMaxAge) {
  VerificationCache cache(10);
  cache.insert(digest_of(1), verdict_for("/CN=a"), kNow + 365 * 86400, kNow);
  CachedVerdict found;
  EXPECT_TRUE(cache.find(digest_of(1), kNow + VerificationCache::kMaxAge - 1, found));
  EXPECT_FALSE(cache.find(digest_of(1), kNow + VerificationCache::kMaxAge, found));
}

TEST(VerificationCache, AlreadyExpiredVerdictIsNotStored) {
  VerificationCache cache(10);
  cache.insert(digest_of(1), verdict_for("/CN=a"), kNow, kNow);
  cache.insert(digest_of(2), verdict_for("/CN=b"), kNow - 5, kNow);
  EXPECT_EQ(cache.size(), 0u);
}

TEST(VerificationCache, EvictsTheOldestEntriesWhenFull) {
  VerificationCache cache(3);
  for (unsigned char i = 1; i <= 5; ++i) {
    cache.insert(digest_of(i), verdict_for("/CN=" + std::to_string(i)), kNow + 100, kNow);
  }
  EXPECT_EQ(cache.size(), 3u);
  CachedVerdict found;
  EXPECT_FALSE(cache.find(digest_of(1), kNow, found));
  EXPECT_FALSE(cache.find(digest_of(2), kNow, found));
  for (unsigned char i = 3; i <= 5; ++i) {
    ASSERT_TRUE(cache.find(digest_of(i), kNow, found)) << int{i};
    EXPECT_EQ(found.identity->user_dn, "/CN=" + std::to_string(i));
  }
}

TEST(VerificationCache, ReinsertingReplacesTheVerdictWithoutGrowing) {
  VerificationCache cache(3);
  cache.insert(digest_of(1), verdict_for("/CN=old"), kNow + 100, kNow);
  cache.insert(digest_of(1), verdict_for("/CN=new"), kNow + 100, kNow);
  EXPECT_EQ(cache.size(), 1u);
  CachedVerdict found;
  ASSERT_TRUE(cache.find(digest_of(1), kNow, found));
  EXPECT_EQ(found.identity->user_dn, "/CN=new");
}

TEST(VerificationCache, EntryStoredAgainAfterExpiringIsEvictedByItsNewAge) {
  // Capacity 2: A and B stored, A expires (and is removed by find), A is stored again, then C
  // arrives. The oldest live entry is B; A is the newest but one.
  VerificationCache cache(2);
  cache.insert(digest_of(0xA), verdict_for("/CN=A"), kNow + 10, kNow);
  cache.insert(digest_of(0xB), verdict_for("/CN=B"), kNow + 100, kNow);
  CachedVerdict found;
  ASSERT_FALSE(cache.find(digest_of(0xA), kNow + 20, found));
  cache.insert(digest_of(0xA), verdict_for("/CN=A"), kNow + 100, kNow + 20);
  cache.insert(digest_of(0xC), verdict_for("/CN=C"), kNow + 100, kNow + 20);
  EXPECT_EQ(cache.size(), 2u);
  EXPECT_TRUE(cache.find(digest_of(0xA), kNow + 20, found)) << "the newest entry was evicted";
  EXPECT_FALSE(cache.find(digest_of(0xB), kNow + 20, found));
  EXPECT_TRUE(cache.find(digest_of(0xC), kNow + 20, found));
}

TEST(VerificationCache, CapacityZeroStoresNothing) {
  VerificationCache cache(0);
  cache.insert(digest_of(1), verdict_for("/CN=a"), kNow + 100, kNow);
  EXPECT_EQ(cache.size(), 0u);
  CachedVerdict found;
  EXPECT_FALSE(cache.find(digest_of(1), kNow, found));
}

TEST(VerificationCache, StaysBoundedWhenEntriesExpireBeforeEviction) {
  VerificationCache cache(4);
  CachedVerdict found;
  for (int round = 0; round < 200; ++round) {
    const std::int64_t now = kNow + round * 10;
    const auto seed = static_cast<unsigned char>(round);
    cache.insert(digest_of(seed), verdict_for("/CN=x"), now + 5, now);
    EXPECT_FALSE(cache.find(digest_of(seed), now + 6, found));  // expired and removed
  }
  EXPECT_EQ(cache.size(), 0u);
}

// ---- File fingerprints ----------------------------------------------------------------------

// A fresh directory for one test, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "cmsfront-tls-XXXXXX").string();
    if (::mkdtemp(pattern.data()) != nullptr) path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    if (!path_.empty()) std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

void write_file(const std::string& path, const std::string& content) {
  std::ofstream file(path, std::ios::binary | std::ios::trunc);
  file << content;
  ASSERT_TRUE(file.good()) << path;
}

// Sets a file's mtime exactly, so tests do not depend on the clock's granularity.
void set_mtime(const std::string& path, std::int64_t seconds, long nanoseconds = 0) {
  const timespec times[2] = {{static_cast<time_t>(seconds), 0},
                             {static_cast<time_t>(seconds), nanoseconds}};
  ASSERT_EQ(::utimensat(AT_FDCWD, path.c_str(), times, 0), 0) << path;
}

ino_t inode_of(const std::string& path) {
  struct stat info {};
  EXPECT_EQ(::stat(path.c_str(), &info), 0) << path;
  return info.st_ino;
}

TEST(FileFingerprint, IsStableWhileNothingChanges) {
  const TempDir dir;
  write_file(dir / "a", "content");
  const auto first = fingerprint_file(dir / "a");
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(fingerprint_file(dir / "a"), first);
}

TEST(FileFingerprint, ChangesWhenTheFileIsRewrittenInPlace) {
  const TempDir dir;
  write_file(dir / "a", "aaaa");
  set_mtime(dir / "a", kNow);
  const ino_t inode = inode_of(dir / "a");
  const auto before = fingerprint_file(dir / "a");
  write_file(dir / "a", "bbbb");  // same size, same inode: only the mtime tells
  set_mtime(dir / "a", kNow, 1);
  ASSERT_EQ(inode_of(dir / "a"), inode);
  EXPECT_NE(fingerprint_file(dir / "a"), before);
}

TEST(FileFingerprint, ChangesWhenTheFileIsReplacedByRename) {
  const TempDir dir;
  write_file(dir / "a", "aaaa");
  set_mtime(dir / "a", kNow);
  const auto before = fingerprint_file(dir / "a");
  const ino_t old_inode = inode_of(dir / "a");
  write_file(dir / "a.new", "aaaa");  // same size and mtime: only the inode tells
  set_mtime(dir / "a.new", kNow);
  ASSERT_EQ(std::rename((dir / "a.new").c_str(), (dir / "a").c_str()), 0);
  ASSERT_NE(inode_of(dir / "a"), old_inode);
  EXPECT_NE(fingerprint_file(dir / "a"), before);
}

TEST(FileFingerprint, IsNulloptForAMissingFile) {
  const TempDir dir;
  EXPECT_FALSE(fingerprint_file(dir / "missing").has_value());
}

TEST(FileFingerprint, FollowsSymlinks) {
  const TempDir dir;
  write_file(dir / "target", "x");
  ASSERT_EQ(::symlink((dir / "target").c_str(), (dir / "link").c_str()), 0);
  EXPECT_EQ(fingerprint_file(dir / "link"), fingerprint_file(dir / "target"));
}

TEST(FileFingerprint, FilesChangeWhenOneDisappearsOrAppears) {
  const TempDir dir;
  write_file(dir / "a", "a");
  write_file(dir / "b", "b");
  const std::vector<std::string> paths = {dir / "a", dir / "b"};
  const std::uint64_t both = fingerprint_files(paths);
  EXPECT_EQ(fingerprint_files(paths), both);
  ASSERT_EQ(std::remove((dir / "b").c_str()), 0);
  const std::uint64_t without_b = fingerprint_files(paths);
  EXPECT_NE(without_b, both);
  write_file(dir / "b", "b");
  const std::uint64_t with_b_again = fingerprint_files(paths);
  EXPECT_NE(with_b_again, without_b);
}

TEST(FileFingerprint, FilesChangeWhenOneIsRewritten) {
  const TempDir dir;
  write_file(dir / "a", "a");
  write_file(dir / "b", "b");
  set_mtime(dir / "b", kNow);
  const std::vector<std::string> paths = {dir / "a", dir / "b"};
  const std::uint64_t before = fingerprint_files(paths);
  set_mtime(dir / "b", kNow + 1);
  EXPECT_NE(fingerprint_files(paths), before);
}

TEST(FileFingerprint, DirectoryChangesWhenARelevantFileAppearsOrDisappears) {
  const TempDir dir;
  write_file(dir / "0123abcd.0", "ca");
  const auto without_crl = fingerprint_directory(dir.path(), TrustStore::is_store_file);
  ASSERT_TRUE(without_crl.has_value());
  EXPECT_EQ(fingerprint_directory(dir.path(), TrustStore::is_store_file), without_crl);
  write_file(dir / "0123abcd.r0", "crl");
  const auto with_crl = fingerprint_directory(dir.path(), TrustStore::is_store_file);
  EXPECT_NE(with_crl, without_crl);
  ASSERT_EQ(std::remove((dir / "0123abcd.r0").c_str()), 0);
  EXPECT_NE(fingerprint_directory(dir.path(), TrustStore::is_store_file), with_crl);
}

TEST(FileFingerprint, DirectoryChangesWhenARelevantFileIsRewrittenOrReplaced) {
  const TempDir dir;
  write_file(dir / "0123abcd.r0", "crl1");
  set_mtime(dir / "0123abcd.r0", kNow);
  const auto before = fingerprint_directory(dir.path(), TrustStore::is_store_file);
  set_mtime(dir / "0123abcd.r0", kNow + 1);  // in place: the directory's mtime stays
  const auto rewritten = fingerprint_directory(dir.path(), TrustStore::is_store_file);
  EXPECT_NE(rewritten, before);
  write_file(dir / "tmp-fetch-crl", "crl2");  // fetch-crl style: write aside, rename over
  set_mtime(dir / "tmp-fetch-crl", kNow + 1);
  ASSERT_EQ(std::rename((dir / "tmp-fetch-crl").c_str(), (dir / "0123abcd.r0").c_str()), 0);
  EXPECT_NE(fingerprint_directory(dir.path(), TrustStore::is_store_file), rewritten);
}

TEST(FileFingerprint, DirectoryIgnoresChangesToFilesTheFilterRejects) {
  const TempDir dir;
  write_file(dir / "0123abcd.0", "ca");
  write_file(dir / "0123abcd.info", "info 1");
  write_file(dir / "README", "readme");
  const auto before = fingerprint_directory(dir.path(), TrustStore::is_store_file);
  write_file(dir / "0123abcd.info", "info version 2");  // in place: new size and mtime
  set_mtime(dir / "0123abcd.info", kNow);
  write_file(dir / "README", "readme, longer");
  EXPECT_EQ(fingerprint_directory(dir.path(), TrustStore::is_store_file), before);
}

TEST(FileFingerprint, DirectoryIsNulloptWhenItCannotBeRead) {
  const TempDir dir;
  EXPECT_FALSE(fingerprint_directory(dir / "missing", TrustStore::is_store_file).has_value());
  write_file(dir / "plain", "not a directory");
  EXPECT_FALSE(fingerprint_directory(dir / "plain", TrustStore::is_store_file).has_value());
}

// ---- TicketKeys -----------------------------------------------------------------------------

// `count` keys whose bytes count up from `first`, so every field is recognisable.
std::string key_bytes(std::size_t count, unsigned char first = 1) {
  std::string out;
  for (std::size_t i = 0; i < count * TicketKey::kFileSize; ++i) {
    out.push_back(static_cast<char>(static_cast<unsigned char>(first + i)));
  }
  return out;
}

template <std::size_t N>
std::string as_string(const std::array<unsigned char, N>& field) {
  return std::string(reinterpret_cast<const char*>(field.data()), N);
}

void expect_key_matches(const TicketKey& key, const std::string& file, std::size_t index) {
  const std::string bytes_of_key = file.substr(index * TicketKey::kFileSize, TicketKey::kFileSize);
  EXPECT_EQ(as_string(key.name), bytes_of_key.substr(0, 16));
  EXPECT_EQ(as_string(key.hmac_key), bytes_of_key.substr(16, 32));
  EXPECT_EQ(as_string(key.aes_key), bytes_of_key.substr(48, 32));
}

std::shared_ptr<const TicketKeys> load_keys(const std::string& path) {
  auto loaded = TicketKeys::load(path);
  if (const std::string* message = std::get_if<std::string>(&loaded)) {
    ADD_FAILURE() << *message;
    return nullptr;
  }
  return std::get<std::shared_ptr<const TicketKeys>>(std::move(loaded));
}

std::string load_error(const std::string& path) {
  auto loaded = TicketKeys::load(path);
  const std::string* message = std::get_if<std::string>(&loaded);
  if (message == nullptr) {
    ADD_FAILURE() << path << " loaded";
    return {};
  }
  return *message;
}

TEST(TicketKeys, LoadsOneKeyFrom80Bytes) {
  const TempDir dir;
  const std::string file = key_bytes(1);
  write_file(dir / "ticket.key", file);
  const auto keys = load_keys(dir / "ticket.key");
  ASSERT_NE(keys, nullptr);
  EXPECT_EQ(keys->size(), 1u);
  expect_key_matches(keys->encryption_key(), file, 0);
  bool is_current = false;
  const TicketKey* found = keys->find(keys->encryption_key().name.data(), is_current);
  EXPECT_EQ(found, &keys->encryption_key());
  EXPECT_TRUE(is_current);
}

TEST(TicketKeys, FirstOf160BytesEncryptsAndBothDecrypt) {
  const TempDir dir;
  const std::string file = key_bytes(2, 7);
  write_file(dir / "ticket.key", file);
  const auto keys = load_keys(dir / "ticket.key");
  ASSERT_NE(keys, nullptr);
  ASSERT_EQ(keys->size(), 2u);
  expect_key_matches(keys->encryption_key(), file, 0);

  bool is_current = false;
  const auto* current_name = reinterpret_cast<const unsigned char*>(file.data());
  const TicketKey* current = keys->find(current_name, is_current);
  ASSERT_NE(current, nullptr);
  EXPECT_TRUE(is_current);
  EXPECT_EQ(current, &keys->encryption_key());

  is_current = true;
  const auto* old_name = reinterpret_cast<const unsigned char*>(file.data()) + 80;
  const TicketKey* old = keys->find(old_name, is_current);
  ASSERT_NE(old, nullptr);
  EXPECT_FALSE(is_current);
  expect_key_matches(*old, file, 1);

  const unsigned char unknown[16] = {0xFF, 0xFE};
  EXPECT_EQ(keys->find(unknown, is_current), nullptr);
}

TEST(TicketKeys, RefusesAnEmptyFile) {
  const TempDir dir;
  write_file(dir / "ticket.key", "");
  const std::string message = load_error(dir / "ticket.key");
  EXPECT_NE(message.find("0 bytes found"), std::string::npos) << message;
  EXPECT_NE(message.find(dir / "ticket.key"), std::string::npos) << message;
}

TEST(TicketKeys, RefusesASizeThatIsNotAMultipleOf80) {
  const TempDir dir;
  write_file(dir / "ticket.key", key_bytes(1) + "x");
  const std::string message = load_error(dir / "ticket.key");
  EXPECT_NE(message.find("81 bytes found"), std::string::npos) << message;
}

TEST(TicketKeys, ReportsAMissingFile) {
  const TempDir dir;
  const std::string message = load_error(dir / "missing.key");
  EXPECT_NE(message.find("cannot read session ticket keys"), std::string::npos) << message;
  EXPECT_NE(message.find("missing.key"), std::string::npos) << message;
}

TEST(TicketKeys, RandomMakesOneFreshKey) {
  const auto first = TicketKeys::random();
  const auto second = TicketKeys::random();
  ASSERT_NE(first, nullptr);
  ASSERT_NE(second, nullptr);
  EXPECT_EQ(first->size(), 1u);
  EXPECT_NE(as_string(first->encryption_key().name), as_string(second->encryption_key().name));
  EXPECT_NE(as_string(first->encryption_key().aes_key),
            as_string(second->encryption_key().aes_key));
  bool is_current = false;
  EXPECT_EQ(first->find(first->encryption_key().name.data(), is_current), &first->encryption_key());
  EXPECT_TRUE(is_current);
}

}  // namespace
}  // namespace tls
