#include "auth/cms_headers.h"

#include <openssl/x509_vfy.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <string>
#include <vector>

namespace auth {
namespace {

using tls::ClientIdentity;
using tls::CredentialKind;
using tls::VerifyOutcome;

// The contract's test vectors (docs: cms-contract.md, section 1.3).
constexpr std::string_view kKey = "0123456789abcdefghij";
constexpr std::string_view kDnA =
    "/DC=ch/DC=cern/OU=Organic Units/OU=Users/CN=jdoe/CN=123456/CN=John Doe";
constexpr std::string_view kMessageA =
    "hcv46hfv4h10v9hev8hfv16h12v19#"
    "cms-authn-dn/DC=ch/DC=cern/OU=Organic Units/OU=Users/CN=jdoe/CN=123456/CN=John Doe"
    "cms-authn-loginjdoe"
    "cms-authn-methodX509Proxy"
    "cms-authn-nameJohn Doe"
    "cms-authz-admingroup:das group:reqmgr"
    "cms-authz-operatorgroup:dbs site:t1-ch-cern";
constexpr std::string_view kHmacA = "978045a91ebbdc60e5bb8b9d2b6dcf86d6ffd00b";
constexpr std::string_view kMessageC = "hfv4h10v8#cms-authn-loginjdoecms-authn-methodX509Cert";
constexpr std::string_view kHmacC = "bb701cfc7ba7a8ecce6dcc5c12a0af10f626f049";
constexpr std::string_view kHmacCKeyNewline = "562ef8ea6652ac1adbf683e9c9ddd6f4dd673023";
constexpr std::string_view kMessageE = "h10v4#cms-authn-methodNone";
constexpr std::string_view kHmacE = "e9322c689744a1dc68d83d4648705535f2c98bc3";

const std::vector<HeaderView> kVectorA = {
    {"cms-authn-method", "X509Proxy"},
    {"cms-authn-dn", kDnA},
    {"cms-authn-login", "jdoe"},
    {"cms-authn-name", "John Doe"},
    {"cms-authz-admin", "group:das group:reqmgr"},
    {"cms-authz-operator", "group:dbs site:t1-ch-cern"},
};

// "José Müller" in UTF-8, and a user DN ending with it.
constexpr std::string_view kNonAsciiName = "Jos\xC3\xA9 M\xC3\xBCller";
constexpr std::string_view kNonAsciiDn =
    "/DC=ch/DC=cern/OU=Organic Units/OU=Users/CN=jmuller/CN=654321/CN=Jos\xC3\xA9 M\xC3\xBCller";
const std::vector<HeaderView> kNonAscii = {
    {"cms-authn-method", "X509Cert"},
    {"cms-authn-dn", kNonAsciiDn},
    {"cms-authn-login", "jmuller"},
    {"cms-authn-name", kNonAsciiName},
};
// Both obtained with the real Python 3 (/usr/bin/python3), building the message exactly as a
// WMCore backend does from the header bytes decoded as Latin-1:
//   hs = {n.decode('latin-1').lower(): v.decode('latin-1') for n, v in headers}
//   prefix = suffix = ""
//   for hk in sorted(hs):
//       if hk[0:9] in ("cms-authn", "cms-authz") and hk != "cms-authn-hmac":
//           prefix += "h%xv%x" % (len(hk), len(hs[hk])); suffix += "%s%s" % (hk, hs[hk])
//   msg_str = prefix + "#" + suffix
// python3: hmac.new(key, msg_str.encode('utf-8'), hashlib.sha1).hexdigest()
// raw:     hmac.new(key, msg_str.encode('latin-1'), hashlib.sha1).hexdigest()  (the wire bytes)
constexpr std::string_view kNonAsciiHmacPython3 = "081ca59208bfca2ebba7f7b5ca73961643941401";
constexpr std::string_view kNonAsciiHmacRaw = "7500562df877f448609cd86695273751b0dca96e";

// ---- signature ---------------------------------------------------------------------------------

TEST(CmsHeadersSignature, VectorA) {
  for (HmacEncoding encoding : {HmacEncoding::python3, HmacEncoding::raw}) {
    const std::string message = signed_message(kVectorA, encoding);
    EXPECT_EQ(message, kMessageA);
    EXPECT_EQ(hmac_sha1_hex(kKey, message), kHmacA);
  }
}

TEST(CmsHeadersSignature, VectorCWithBothKeys) {
  const std::vector<HeaderView> headers = {{"cms-authn-method", "X509Cert"},
                                           {"cms-authn-login", "jdoe"}};
  const std::string message = signed_message(headers, HmacEncoding::python3);
  EXPECT_EQ(message, kMessageC);
  EXPECT_EQ(hmac_sha1_hex(kKey, message), kHmacC);
  EXPECT_EQ(hmac_sha1_hex(std::string(kKey) + "\n", message), kHmacCKeyNewline);
}

TEST(CmsHeadersSignature, VectorE) {
  const std::vector<HeaderView> headers = {{"cms-authn-method", "None"}};
  const std::string message = signed_message(headers, HmacEncoding::python3);
  EXPECT_EQ(message, kMessageE);
  EXPECT_EQ(hmac_sha1_hex(kKey, message), kHmacE);
}

TEST(CmsHeadersSignature, LeavesOutUnsignedHeadersAndLowercasesNames) {
  // Vector A as a backend might receive it: other case, other order, and the headers that
  // start with cms-auth but not with cms-authn/cms-authz (first 9 characters), plus the HMAC.
  const std::vector<HeaderView> headers = {
      {"Cms-Authz-Operator", "group:dbs site:t1-ch-cern"},
      {"cms-auth-status", "OK"},
      {"CMS-AUTHN-HMAC", "0000"},
      {"cms-authn-login", "jdoe"},
      {"Cms-Auth-Cert", kDnA},
      {"cms-request-uri", "/dbs/prod"},
      {"CMS-AUTHN-DN", kDnA},
      {"cms-authn-name", "John Doe"},
      {"host", "cmsweb.cern.ch"},
      {"cms-authz-admin", "group:das group:reqmgr"},
      {"Cms-Authn-Method", "X509Proxy"},
  };
  EXPECT_EQ(signed_message(headers, HmacEncoding::python3), kMessageA);
}

TEST(CmsHeadersSignature, PrefixTestIsOnNineCharacters) {
  // "cms-authnx" starts with "cms-authn": signed; "cms-auth" alone is not.
  const std::vector<HeaderView> headers = {
      {"cms-authnx", "1"}, {"cms-auth", "2"}, {"cms-authzz", "3"}, {"cms-authn-hmacx", "4"}};
  EXPECT_EQ(signed_message(headers, HmacEncoding::raw),
            "hfv1hav1hav1#cms-authn-hmacx4cms-authnx1cms-authzz3");
}

TEST(CmsHeadersSignature, SortsByLowercasedNameInByteOrder) {
  // Raw, "CMS-AUTHZ-Z" would sort first ('C' < 'c'); lowercased it sorts last. A name sorts
  // before its extensions, and '-' (0x2d) before letters.
  const std::vector<HeaderView> headers = {
      {"CMS-AUTHZ-Z", "z"}, {"cms-authz-a", "a"}, {"cms-authz-a-b", "ab"}, {"cms-authz-ab", "x"}};
  EXPECT_EQ(signed_message(headers, HmacEncoding::raw),
            "hbv1hdv2hcv1hbv1#cms-authz-aacms-authz-a-babcms-authz-abxcms-authz-zz");
}

TEST(CmsHeadersSignature, LengthsAreUnpaddedLowercaseHex) {
  const std::string value(0x1ab, 'x');
  const std::vector<HeaderView> headers = {{"cms-authn-dn", value}};
  const std::string message = signed_message(headers, HmacEncoding::raw);
  EXPECT_EQ(message.substr(0, message.find('#')), "hcv1ab");
}

TEST(CmsHeadersSignature, AsciiIsTheSameInBothEncodings) {
  std::string all_ascii;
  for (int c = 0x20; c < 0x7f; ++c) all_ascii.push_back(static_cast<char>(c));
  const std::vector<HeaderView> headers = {{"cms-authn-name", all_ascii},
                                           {"cms-authn-method", "X509Cert"}};
  EXPECT_EQ(signed_message(headers, HmacEncoding::python3),
            signed_message(headers, HmacEncoding::raw));
}

TEST(CmsHeadersSignature, NonAsciiPython3MatchesWhatCherryPyComputes) {
  const std::string message = signed_message(kNonAscii, HmacEncoding::python3);
  // Prefix lengths stay byte counts (0x4e = 78 bytes of DN, 0xd = 13 bytes of name); in the
  // suffix each byte >= 0x80 is its Latin-1 character's UTF-8 form: C3 -> C3 83, A9 -> C2 A9.
  EXPECT_EQ(message,
            "hcv4ehfv7h10v8hevd#cms-authn-dn/DC=ch/DC=cern/OU=Organic Units/OU=Users/CN=jmuller"
            "/CN=654321/CN=Jos\xC3\x83\xC2\xA9 M\xC3\x83\xC2\xBCller"
            "cms-authn-loginjmuller"
            "cms-authn-methodX509Cert"
            "cms-authn-nameJos\xC3\x83\xC2\xA9 M\xC3\x83\xC2\xBCller");
  EXPECT_EQ(hmac_sha1_hex(kKey, message), kNonAsciiHmacPython3);
}

TEST(CmsHeadersSignature, NonAsciiRawHashesTheWireBytes) {
  const std::string message = signed_message(kNonAscii, HmacEncoding::raw);
  EXPECT_EQ(message,
            "hcv4ehfv7h10v8hevd#cms-authn-dn/DC=ch/DC=cern/OU=Organic Units/OU=Users/CN=jmuller"
            "/CN=654321/CN=Jos\xC3\xA9 M\xC3\xBCller"
            "cms-authn-loginjmuller"
            "cms-authn-methodX509Cert"
            "cms-authn-nameJos\xC3\xA9 M\xC3\xBCller");
  EXPECT_EQ(hmac_sha1_hex(kKey, message), kNonAsciiHmacRaw);
}

TEST(CmsHeadersSignature, EmptyInputIsJustTheSeparator) {
  EXPECT_EQ(signed_message({}, HmacEncoding::python3), "#");
}

TEST(HmacSha1, KnownAnswerRfc2202) {
  // RFC 2202 test case 2.
  EXPECT_EQ(hmac_sha1_hex("Jefe", "what do ya want for nothing?"),
            "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79");
}

TEST(HmacSha1, EmptyKeyIsAKey) {
  // Python: hmac.new(b"", b"", hashlib.sha1).hexdigest()
  EXPECT_EQ(hmac_sha1_hex("", ""), "fbdb1d1b18aa6c08324b7d64b71fb76370690e1d");
}

TEST(HmacEncodingName, SpellsTheOptionValues) {
  EXPECT_EQ(hmac_encoding_name(HmacEncoding::python3), "python3");
  EXPECT_EQ(hmac_encoding_name(HmacEncoding::raw), "raw");
}

// ---- the key file ------------------------------------------------------------------------------

class HmacKeyFile : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ =
        std::filesystem::temp_directory_path() /
        ("cms_headers_test_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) +
         "_" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string write(const std::string& name, std::string_view bytes) {
    const std::filesystem::path path = dir_ / name;
    std::ofstream(path, std::ios::binary)
        .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    return path.string();
  }

  std::filesystem::path dir_;
};

TEST_F(HmacKeyFile, LoadsEveryByteAsIs) {
  const std::string bytes("\x00\x01\xff key\r\n", 9);
  std::string error;
  const auto key = HmacKey::load(write("key", bytes), error);
  ASSERT_NE(key, nullptr) << error;
  EXPECT_EQ(key->bytes(), bytes);
  EXPECT_TRUE(error.empty());
}

TEST_F(HmacKeyFile, TrailingNewlineIsPartOfTheKey) {
  std::string error;
  const auto key = HmacKey::load(write("key", std::string(kKey) + "\n"), error);
  ASSERT_NE(key, nullptr) << error;
  EXPECT_EQ(hmac_sha1_hex(key->bytes(), kMessageC), kHmacCKeyNewline);
}

TEST_F(HmacKeyFile, MissingFileNamesPathAndCause) {
  const std::string path = (dir_ / "absent").string();
  std::string error;
  EXPECT_EQ(HmacKey::load(path, error), nullptr);
  EXPECT_NE(error.find(path), std::string::npos) << error;
  EXPECT_NE(error.find("No such file or directory"), std::string::npos) << error;
}

TEST_F(HmacKeyFile, EmptyFileIsAnError) {
  const std::string path = write("empty", "");
  std::string error;
  EXPECT_EQ(HmacKey::load(path, error), nullptr);
  EXPECT_NE(error.find(path), std::string::npos) << error;
  EXPECT_NE(error.find("empty"), std::string::npos) << error;
}

TEST_F(HmacKeyFile, DirectoryIsAnError) {
  std::string error;
  EXPECT_EQ(HmacKey::load(dir_.string(), error), nullptr);
  EXPECT_NE(error.find(dir_.string()), std::string::npos) << error;
  EXPECT_NE(error.find("Is a directory"), std::string::npos) << error;
}

TEST_F(HmacKeyFile, HugeFileIsRefused) {
  std::string error;
  EXPECT_EQ(HmacKey::load(write("big", std::string(100 * 1024, 'k')), error), nullptr);
  EXPECT_NE(error.find("larger than"), std::string::npos) << error;
}

// ---- the identity block ------------------------------------------------------------------------

ClientIdentity verified_identity(CredentialKind kind, std::string_view user_dn) {
  ClientIdentity identity;
  identity.outcome = VerifyOutcome::ok;
  identity.kind = kind;
  identity.user_dn = user_dn;
  identity.leaf_dn =
      std::string(user_dn) + (kind == CredentialKind::certificate ? "" : "/CN=proxy");
  return identity;
}

UserRecord vector_a_user() {
  UserRecord user;
  user.login = "jdoe";
  user.name = "John Doe";
  user.id = 123456;
  user.dns = {std::string(kDnA)};
  user.roles = {{"admin", "group:das group:reqmgr"}, {"operator", "group:dbs site:t1-ch-cern"}};
  return user;
}

// "name: value\r\n" for each pair: the expected block.
std::string lines(std::initializer_list<HeaderView> headers) {
  std::string text;
  for (const auto& [name, value] : headers) {
    text.append(name).append(": ").append(value).append("\r\n");
  }
  return text;
}

std::string block_of(const IdentityHeadersInput& input,
                     HmacEncoding encoding = HmacEncoding::python3) {
  std::string out;
  EXPECT_TRUE(append_identity_headers(input, kKey, encoding, out));
  return out;
}

TEST(CmsHeadersIdentity, MappedProxyUserIsVectorA) {
  const ClientIdentity identity = verified_identity(CredentialKind::proxy, kDnA);
  const UserRecord user = vector_a_user();
  EXPECT_EQ(block_of({&identity, true, &user}),
            "cms-auth-status: OK\r\n"
            "cms-authn-method: X509Proxy\r\n"
            "cms-authn-dn: /DC=ch/DC=cern/OU=Organic Units/OU=Users/CN=jdoe/CN=123456/CN=John "
            "Doe\r\n"
            "cms-authn-login: jdoe\r\n"
            "cms-authn-name: John Doe\r\n"
            "cms-authz-admin: group:das group:reqmgr\r\n"
            "cms-authz-operator: group:dbs site:t1-ch-cern\r\n"
            "cms-authn-hmac: 978045a91ebbdc60e5bb8b9d2b6dcf86d6ffd00b\r\n"
            "cms-auth-cert: /DC=ch/DC=cern/OU=Organic Units/OU=Users/CN=jdoe/CN=123456/CN=John "
            "Doe\r\n"
            "ssl_client_s_dn: /DC=ch/DC=cern/OU=Organic Units/OU=Users/CN=jdoe/CN=123456/CN=John "
            "Doe/CN=proxy\r\n"
            "ssl_client_verify: SUCCESS\r\n");
}

TEST(CmsHeadersIdentity, MethodFollowsTheCredentialKind) {
  const UserRecord user = vector_a_user();
  const std::pair<CredentialKind, std::string_view> cases[] = {
      {CredentialKind::certificate, "cms-authn-method: X509Cert\r\n"},
      {CredentialKind::proxy, "cms-authn-method: X509Proxy\r\n"},
      {CredentialKind::limited_proxy, "cms-authn-method: X509LimitedProxy\r\n"},
  };
  for (const auto& [kind, line] : cases) {
    const ClientIdentity identity = verified_identity(kind, kDnA);
    EXPECT_NE(block_of({&identity, true, &user}).find(line), std::string::npos) << line;
  }
}

TEST(CmsHeadersIdentity, EmptyNameIsOmittedAndStillSigned) {
  const ClientIdentity identity = verified_identity(CredentialKind::certificate, kDnA);
  UserRecord user = vector_a_user();
  user.name.clear();
  user.roles.clear();
  const std::vector<HeaderView> expected_signed = {
      {"cms-authn-method", "X509Cert"}, {"cms-authn-dn", kDnA}, {"cms-authn-login", "jdoe"}};
  const std::string hmac =
      hmac_sha1_hex(kKey, signed_message(expected_signed, HmacEncoding::python3));
  EXPECT_EQ(block_of({&identity, true, &user}), lines({{"cms-auth-status", "OK"},
                                                       {"cms-authn-method", "X509Cert"},
                                                       {"cms-authn-dn", kDnA},
                                                       {"cms-authn-login", "jdoe"},
                                                       {"cms-authn-hmac", hmac},
                                                       {"cms-auth-cert", kDnA},
                                                       {"ssl_client_s_dn", kDnA},
                                                       {"ssl_client_verify", "SUCCESS"}}));
}

TEST(CmsHeadersIdentity, UnmappedUserGetsMethodAndDnOnly) {
  const ClientIdentity identity = verified_identity(CredentialKind::certificate, kDnA);
  const std::vector<HeaderView> expected_signed = {{"cms-authn-method", "X509Cert"},
                                                   {"cms-authn-dn", kDnA}};
  const std::string block = block_of({&identity, true, nullptr});
  EXPECT_EQ(block.find("cms-authn-login"), std::string::npos);
  EXPECT_EQ(block.find("cms-authz-"), std::string::npos);
  EXPECT_NE(block.find("cms-authn-hmac: " +
                       hmac_sha1_hex(kKey, signed_message(expected_signed, HmacEncoding::python3)) +
                       "\r\n"),
            std::string::npos)
      << block;
}

TEST(CmsHeadersIdentity, NoCertificateIsVectorE) {
  const ClientIdentity identity;  // nothing presented
  const std::string expected =
      "cms-auth-status: NONE\r\n"
      "cms-authn-method: None\r\n"
      "cms-authn-hmac: e9322c689744a1dc68d83d4648705535f2c98bc3\r\n"
      "ssl_client_verify: NONE\r\n";
  EXPECT_EQ(block_of({&identity, false, nullptr}), expected);
  EXPECT_EQ(block_of({nullptr, false, nullptr}), expected);  // no identity: none presented
}

TEST(CmsHeadersIdentity, UnauthenticatedSendsNeitherDnNorUser) {
  // An optional route with a verified certificate the policy did not accept (e.g. unmapped):
  // only NONE is signed, the DN appears as mod_ssl's variable only.
  const ClientIdentity identity = verified_identity(CredentialKind::certificate, kDnA);
  const UserRecord user = vector_a_user();
  EXPECT_EQ(block_of({&identity, false, &user}), lines({{"cms-auth-status", "NONE"},
                                                        {"cms-authn-method", "None"},
                                                        {"cms-authn-hmac", kHmacE},
                                                        {"ssl_client_s_dn", kDnA},
                                                        {"ssl_client_verify", "SUCCESS"}}));
}

TEST(CmsHeadersIdentity, FailedVerificationUsesOpenSslReason) {
  ClientIdentity identity = verified_identity(CredentialKind::certificate, kDnA);
  identity.outcome = VerifyOutcome::expired;
  identity.verify_error = X509_V_ERR_CERT_HAS_EXPIRED;
  identity.reason = "the certificate expired on ...";
  const std::string block = block_of({&identity, false, nullptr});
  EXPECT_NE(block.find("ssl_client_s_dn: " + std::string(kDnA) + "\r\n"), std::string::npos);
  EXPECT_NE(block.find("ssl_client_verify: FAILED:certificate has expired\r\n"), std::string::npos)
      << block;
}

TEST(CmsHeadersIdentity, FailedWithoutOpenSslCodeUsesOutcomeLabel) {
  ClientIdentity identity = verified_identity(CredentialKind::proxy, kDnA);
  identity.outcome = VerifyOutcome::proxy_forbidden;
  identity.verify_error = 0;
  EXPECT_NE(
      block_of({&identity, false, nullptr}).find("ssl_client_verify: FAILED:proxy_forbidden\r\n"),
      std::string::npos);
}

TEST(CmsHeadersIdentity, NonAsciiUserSignsPerEncoding) {
  const ClientIdentity identity = verified_identity(CredentialKind::certificate, kNonAsciiDn);
  UserRecord user;
  user.login = "jmuller";
  user.name = std::string(kNonAsciiName);
  const std::string python3 = block_of({&identity, true, &user}, HmacEncoding::python3);
  EXPECT_NE(python3.find("cms-authn-hmac: " + std::string(kNonAsciiHmacPython3) + "\r\n"),
            std::string::npos)
      << python3;
  // The values themselves go out as the raw UTF-8 bytes either way.
  EXPECT_NE(python3.find("cms-authn-name: " + std::string(kNonAsciiName) + "\r\n"),
            std::string::npos);
  const std::string raw = block_of({&identity, true, &user}, HmacEncoding::raw);
  EXPECT_NE(raw.find("cms-authn-hmac: " + std::string(kNonAsciiHmacRaw) + "\r\n"),
            std::string::npos)
      << raw;
}

TEST(CmsHeadersIdentity, AppendsAfterExistingText) {
  const ClientIdentity identity;
  std::string out = "host: cmsweb\r\n";
  ASSERT_TRUE(append_identity_headers({&identity, false, nullptr}, kKey, HmacEncoding::raw, out));
  EXPECT_EQ(out.rfind("host: cmsweb\r\ncms-auth-status: NONE\r\n", 0), 0u) << out;
}

TEST(CmsHeadersIdentity, EdgeSpacesAreTrimmedBeforeSigning) {
  // HTTP parsers drop spaces around a value: what is signed must be what the backend reads.
  const ClientIdentity identity = verified_identity(CredentialKind::proxy, kDnA);
  UserRecord user = vector_a_user();
  user.name = "  John Doe ";
  user.login = "jdoe ";
  EXPECT_NE(block_of({&identity, true, &user}).find("cms-authn-hmac: " + std::string(kHmacA)),
            std::string::npos);
  user.name = "   ";  // nothing left: omitted like an empty name
  EXPECT_EQ(block_of({&identity, true, &user}).find("cms-authn-name"), std::string::npos);
}

// A value that would break the header line refuses the whole block and appends nothing.
TEST(CmsHeadersIdentity, ControlCharactersRefuseTheBlock) {
  const auto refused = [](const ClientIdentity& identity, const UserRecord* user,
                          bool authenticated) {
    std::string out = "keep\r\n";
    const bool ok =
        append_identity_headers({&identity, authenticated, user}, kKey, HmacEncoding::python3, out);
    if (!ok) {
      EXPECT_EQ(out, "keep\r\n");
    }
    return !ok;
  };
  const ClientIdentity good = verified_identity(CredentialKind::proxy, kDnA);
  const UserRecord good_user = vector_a_user();
  ASSERT_FALSE(refused(good, &good_user, true));

  for (std::string_view bad : std::initializer_list<std::string_view>{
           "\r", "\n", "\t", std::string_view("\0", 1), "\x1f", "\x7f"}) {
    const std::string text = "/CN=a" + std::string(bad) + "b";
    ClientIdentity identity = good;
    identity.user_dn = text;
    EXPECT_TRUE(refused(identity, &good_user, true)) << "user DN";
    identity = good;
    identity.leaf_dn = text;
    EXPECT_TRUE(refused(identity, &good_user, true)) << "leaf DN, authenticated";
    EXPECT_TRUE(refused(identity, nullptr, false)) << "leaf DN, unauthenticated";
    UserRecord user = good_user;
    user.login = text;
    EXPECT_TRUE(refused(good, &user, true)) << "login";
    user = good_user;
    user.name = text;
    EXPECT_TRUE(refused(good, &user, true)) << "name";
    user = good_user;
    user.roles[1].second = "group:dbs " + text;
    EXPECT_TRUE(refused(good, &user, true)) << "role items";
  }
}

TEST(CmsHeadersIdentity, NonTokenRoleNameRefusesTheBlock) {
  const ClientIdentity identity = verified_identity(CredentialKind::proxy, kDnA);
  for (std::string role : {"", "admin: x", "Admin", "a b"}) {
    UserRecord user = vector_a_user();
    user.roles[0].first = role;
    std::string out;
    EXPECT_FALSE(
        append_identity_headers({&identity, true, &user}, kKey, HmacEncoding::python3, out))
        << role;
    EXPECT_TRUE(out.empty());
  }
}

TEST(CmsHeadersIdentity, AuthenticatedWithoutCertificateIsRefused) {
  // A caller bug (no credential kind to name in cms-authn-method): refuse rather than send OK.
  const ClientIdentity identity;
  std::string out;
  EXPECT_FALSE(
      append_identity_headers({&identity, true, nullptr}, kKey, HmacEncoding::python3, out));
  EXPECT_TRUE(out.empty());
}

}  // namespace
}  // namespace auth
