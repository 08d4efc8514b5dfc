#include "tls/client_identity.h"

#include <gtest/gtest.h>

#include <cstddef>
#include <set>

namespace tls {
namespace {

ClientIdentity full_identity() {
  ClientIdentity identity;
  identity.outcome = VerifyOutcome::bad_proxy;
  identity.kind = CredentialKind::limited_proxy;
  identity.user_dn = "/DC=ch/DC=cern/OU=Users/CN=jdoe/CN=123456/CN=J\xC3\xB6rg Doe";
  identity.leaf_dn = identity.user_dn + "/CN=limited proxy";
  identity.issuer_dn = "/DC=ch/DC=cern/CN=CERN Grid Certification Authority";
  identity.not_before = -86400;  // negative values must survive too
  identity.not_after = 1795867200;
  identity.verify_error = 40;
  identity.error_depth = 1;
  identity.reason = "a limited proxy signed a full proxy";
  identity.resumed = true;
  return identity;
}

void expect_same_except_resumed(const ClientIdentity& a, const ClientIdentity& b) {
  EXPECT_EQ(a.outcome, b.outcome);
  EXPECT_EQ(a.kind, b.kind);
  EXPECT_EQ(a.user_dn, b.user_dn);
  EXPECT_EQ(a.leaf_dn, b.leaf_dn);
  EXPECT_EQ(a.issuer_dn, b.issuer_dn);
  EXPECT_EQ(a.not_before, b.not_before);
  EXPECT_EQ(a.not_after, b.not_after);
  EXPECT_EQ(a.verify_error, b.verify_error);
  EXPECT_EQ(a.error_depth, b.error_depth);
  EXPECT_EQ(a.reason, b.reason);
}

TEST(ClientIdentity, EveryOutcomeHasItsOwnLabel) {
  const std::pair<VerifyOutcome, std::string_view> expected[] = {
      {VerifyOutcome::ok, "ok"},
      {VerifyOutcome::no_certificate, "no_certificate"},
      {VerifyOutcome::expired, "expired"},
      {VerifyOutcome::not_yet_valid, "not_yet_valid"},
      {VerifyOutcome::revoked, "revoked"},
      {VerifyOutcome::unknown_ca, "unknown_ca"},
      {VerifyOutcome::crl_missing, "crl_missing"},
      {VerifyOutcome::crl_expired, "crl_expired"},
      {VerifyOutcome::bad_signature, "bad_signature"},
      {VerifyOutcome::bad_proxy, "bad_proxy"},
      {VerifyOutcome::proxy_forbidden, "proxy_forbidden"},
      {VerifyOutcome::invalid, "invalid"},
  };
  for (const auto& [outcome, label] : expected) EXPECT_EQ(outcome_label(outcome), label);
}

TEST(ClientIdentity, NoCertificateIdentityIsSharedAndOffersNothing) {
  const IdentityPtr& identity = no_certificate_identity();
  ASSERT_NE(identity, nullptr);
  EXPECT_EQ(identity.get(), no_certificate_identity().get());
  EXPECT_FALSE(identity->offered());
  EXPECT_FALSE(identity->verified());
  EXPECT_FALSE(identity->is_proxy());
  EXPECT_EQ(identity->kind, CredentialKind::none);
  EXPECT_TRUE(identity->user_dn.empty());
}

TEST(ClientIdentity, EncodingRoundTripsEveryFieldButResumed) {
  const ClientIdentity original = full_identity();
  const std::optional<ClientIdentity> decoded = decode_identity(encode_identity(original));
  ASSERT_TRUE(decoded.has_value());
  expect_same_except_resumed(original, *decoded);
  EXPECT_FALSE(decoded->resumed);
}

TEST(ClientIdentity, EncodingRoundTripsTheDefaultIdentity) {
  const std::optional<ClientIdentity> decoded = decode_identity(encode_identity(ClientIdentity{}));
  ASSERT_TRUE(decoded.has_value());
  expect_same_except_resumed(ClientIdentity{}, *decoded);
}

TEST(ClientIdentity, EncodingRoundTripsBinaryStringsAndExtremeNumbers) {
  ClientIdentity identity = full_identity();
  identity.user_dn = std::string("\0\xff\x01/CN=x", 7);
  identity.reason = std::string(3000, 'r');
  identity.not_before = INT64_MIN;
  identity.not_after = INT64_MAX;
  identity.verify_error = INT32_MIN;
  identity.error_depth = -1;
  const std::optional<ClientIdentity> decoded = decode_identity(encode_identity(identity));
  ASSERT_TRUE(decoded.has_value());
  expect_same_except_resumed(identity, *decoded);
}

TEST(ClientIdentity, EncodingIsCompact) {
  const ClientIdentity identity = full_identity();
  const std::size_t text = identity.user_dn.size() + identity.leaf_dn.size() +
                           identity.issuer_dn.size() + identity.reason.size();
  EXPECT_LE(encode_identity(identity).size(), text + 64);
}

TEST(ClientIdentity, DecodeRejectsEveryTruncation) {
  const std::string encoded = encode_identity(full_identity());
  for (std::size_t length = 0; length < encoded.size(); ++length)
    EXPECT_FALSE(decode_identity(std::string_view(encoded).substr(0, length))) << length;
}

TEST(ClientIdentity, DecodeRejectsTrailingBytes) {
  const std::string encoded = encode_identity(full_identity());
  EXPECT_FALSE(decode_identity(encoded + '\0'));
  EXPECT_FALSE(decode_identity(encoded + encoded));
}

TEST(ClientIdentity, DecodeRejectsOtherVersions) {
  std::string encoded = encode_identity(full_identity());
  for (int version : {0, 2, 0x7f, 0xff}) {
    encoded[0] = static_cast<char>(version);
    EXPECT_FALSE(decode_identity(encoded)) << version;
  }
}

TEST(ClientIdentity, DecodeRejectsOutOfRangeEnumValues) {
  const std::string valid = encode_identity(full_identity());
  std::string encoded = valid;
  encoded[1] = static_cast<char>(static_cast<int>(VerifyOutcome::invalid) + 1);
  EXPECT_FALSE(decode_identity(encoded));
  encoded[1] = static_cast<char>(0xff);
  EXPECT_FALSE(decode_identity(encoded));

  encoded = valid;
  encoded[2] = static_cast<char>(static_cast<int>(CredentialKind::limited_proxy) + 1);
  EXPECT_FALSE(decode_identity(encoded));
  encoded[2] = static_cast<char>(0xff);
  EXPECT_FALSE(decode_identity(encoded));
}

TEST(ClientIdentity, DecodeRejectsLengthsBeyondTheInput) {
  const std::string valid = encode_identity(full_identity());
  // The first string length follows 3 + 8 + 8 + 4 + 4 = 27 fixed bytes.
  constexpr std::size_t kFirstLength = 27;
  for (int high : {0x01, 0x7f, 0xff}) {
    std::string encoded = valid;
    encoded[kFirstLength] = static_cast<char>(high);
    EXPECT_FALSE(decode_identity(encoded)) << high;
  }
  std::string encoded = valid;
  encoded[kFirstLength + 3] = static_cast<char>(encoded[kFirstLength + 3] + 1);
  EXPECT_FALSE(decode_identity(encoded));
}

TEST(ClientIdentity, DecodeSurvivesEverySingleByteChange) {
  // Not a fuzzer, but every position and a few values: any outcome is fine except a crash.
  const std::string valid = encode_identity(full_identity());
  std::set<std::size_t> accepted_positions;
  for (std::size_t i = 0; i < valid.size(); ++i) {
    for (int value : {0x00, 0x01, 0x80, 0xff}) {
      std::string encoded = valid;
      encoded[i] = static_cast<char>(value);
      if (encoded != valid && decode_identity(encoded)) accepted_positions.insert(i);
    }
  }
  EXPECT_FALSE(accepted_positions.contains(0));  // the version byte
}

}  // namespace
}  // namespace tls
