#include "auth/policy.h"

#include <gtest/gtest.h>

namespace auth {
namespace {

using tls::ClientIdentity;
using tls::CredentialKind;
using tls::VerifyOutcome;

constexpr std::int64_t kNotAfter = 1795867200;  // 2026-11-28 12:00:00 UTC
constexpr std::int64_t kNow = kNotAfter - 86400;
constexpr Policy kAllPolicies[] = {Policy::none, Policy::optional, Policy::cert,
                                   Policy::cert_limited_proxy};

ClientIdentity verified(CredentialKind kind = CredentialKind::certificate) {
  ClientIdentity identity;
  identity.outcome = VerifyOutcome::ok;
  identity.kind = kind;
  identity.user_dn = "/DC=ch/DC=cern/OU=Users/CN=jdoe";
  identity.leaf_dn = identity.user_dn;
  identity.issuer_dn = "/DC=ch/DC=cern/CN=CERN Grid Certification Authority";
  identity.not_before = kNotAfter - 365 * 86400;
  identity.not_after = kNotAfter;
  return identity;
}

ClientIdentity failed(VerifyOutcome outcome, std::string reason = "") {
  ClientIdentity identity = verified();
  identity.outcome = outcome;
  identity.reason = std::move(reason);
  identity.verify_error = 10;
  identity.error_depth = 0;
  return identity;
}

void expect_decision(Decision decision, Denial denial, bool authenticated) {
  EXPECT_EQ(decision.denial, denial);
  EXPECT_EQ(decision.allowed(), denial == Denial::allowed);
  EXPECT_EQ(decision.authenticated, authenticated);
}

TEST(Policy, NamesMatchTheConfigurationSpelling) {
  EXPECT_EQ(policy_name(Policy::none), "none");
  EXPECT_EQ(policy_name(Policy::optional), "optional");
  EXPECT_EQ(policy_name(Policy::cert), "cert");
  EXPECT_EQ(policy_name(Policy::cert_limited_proxy), "cert+limited-proxy");
}

TEST(Policy, NoneAllowsEveryoneWithoutAuthenticating) {
  for (const ClientIdentity& identity :
       {ClientIdentity{}, verified(), verified(CredentialKind::limited_proxy),
        failed(VerifyOutcome::revoked)}) {
    expect_decision(decide(Policy::none, identity, kNow), Denial::allowed, false);
  }
}

TEST(Policy, OptionalAllowsEveryone) {
  for (const ClientIdentity& identity :
       {ClientIdentity{}, verified(), verified(CredentialKind::limited_proxy),
        failed(VerifyOutcome::unknown_ca)}) {
    EXPECT_TRUE(decide(Policy::optional, identity, kNow).allowed());
    EXPECT_TRUE(decide(Policy::optional, identity, kNotAfter + 1).allowed());
  }
}

TEST(Policy, OptionalAuthenticatesAVerifiedCertificateOrFullProxy) {
  expect_decision(decide(Policy::optional, verified(), kNow), Denial::allowed, true);
  expect_decision(decide(Policy::optional, verified(CredentialKind::proxy), kNow), Denial::allowed,
                  true);
}

TEST(Policy, OptionalDoesNotAuthenticateNoCertificateFailureExpiryOrLimitedProxy) {
  expect_decision(decide(Policy::optional, ClientIdentity{}, kNow), Denial::allowed, false);
  expect_decision(decide(Policy::optional, failed(VerifyOutcome::revoked), kNow), Denial::allowed,
                  false);
  expect_decision(decide(Policy::optional, verified(), kNotAfter), Denial::allowed, false);
  expect_decision(decide(Policy::optional, verified(CredentialKind::limited_proxy), kNow),
                  Denial::allowed, false);
}

TEST(Policy, CertRoutesRefuseAMissingCertificate) {
  for (Policy policy : {Policy::cert, Policy::cert_limited_proxy})
    expect_decision(decide(policy, ClientIdentity{}, kNow), Denial::no_certificate, false);
}

TEST(Policy, CertRoutesRefuseEveryVerificationFailure) {
  for (VerifyOutcome outcome :
       {VerifyOutcome::expired, VerifyOutcome::not_yet_valid, VerifyOutcome::revoked,
        VerifyOutcome::unknown_ca, VerifyOutcome::crl_missing, VerifyOutcome::crl_expired,
        VerifyOutcome::bad_signature, VerifyOutcome::bad_proxy, VerifyOutcome::proxy_forbidden,
        VerifyOutcome::invalid}) {
    for (Policy policy : {Policy::cert, Policy::cert_limited_proxy}) {
      expect_decision(decide(policy, failed(outcome), kNow), Denial::verification_failed, false);
    }
  }
}

TEST(Policy, CertRoutesRefuseAChainThatExpiredSinceTheHandshake) {
  for (Policy policy : {Policy::cert, Policy::cert_limited_proxy}) {
    expect_decision(decide(policy, verified(), kNotAfter), Denial::expired_since, false);
    expect_decision(decide(policy, verified(), kNotAfter + 86400), Denial::expired_since, false);
  }
  expect_decision(decide(Policy::cert, verified(), kNotAfter - 1), Denial::allowed, true);
}

TEST(Policy, ExpiryIsCheckedBeforeTheLimitedProxyRule) {
  expect_decision(decide(Policy::cert, verified(CredentialKind::limited_proxy), kNotAfter),
                  Denial::expired_since, false);
}

TEST(Policy, CertAcceptsCertificatesAndFullProxies) {
  for (CredentialKind kind : {CredentialKind::certificate, CredentialKind::proxy})
    expect_decision(decide(Policy::cert, verified(kind), kNow), Denial::allowed, true);
}

TEST(Policy, CertRefusesALimitedProxy) {
  expect_decision(decide(Policy::cert, verified(CredentialKind::limited_proxy), kNow),
                  Denial::limited_proxy, false);
}

TEST(Policy, CertLimitedProxyAcceptsEveryVerifiedKind) {
  for (CredentialKind kind :
       {CredentialKind::certificate, CredentialKind::proxy, CredentialKind::limited_proxy}) {
    expect_decision(decide(Policy::cert_limited_proxy, verified(kind), kNow), Denial::allowed,
                    true);
  }
}

TEST(Policy, DecisionsDependOnlyOnTheirInputs) {
  for (Policy policy : kAllPolicies) {
    const Decision first = decide(policy, verified(), kNow);
    const Decision second = decide(policy, verified(), kNow);
    EXPECT_EQ(first.denial, second.denial);
    EXPECT_EQ(first.authenticated, second.authenticated);
  }
}

TEST(Policy, DenialLabelsAreStableAndNameTheOutcomeOfAFailure) {
  const ClientIdentity identity = failed(VerifyOutcome::revoked);
  EXPECT_EQ(denial_label(Denial::allowed, identity), "allowed");
  EXPECT_EQ(denial_label(Denial::no_certificate, identity), "no_certificate");
  EXPECT_EQ(denial_label(Denial::verification_failed, identity), "revoked");
  EXPECT_EQ(denial_label(Denial::verification_failed, failed(VerifyOutcome::unknown_ca)),
            "unknown_ca");
  EXPECT_EQ(denial_label(Denial::expired_since, identity), "expired");
  EXPECT_EQ(denial_label(Denial::limited_proxy, identity), "limited_proxy");
  EXPECT_EQ(denial_label(Denial::unknown_user, verified()), "unknown_user");
  EXPECT_EQ(denial_label(Denial::unusable_identity, verified()), "bad_identity");
  // The identity's outcome only names verification failures.
  EXPECT_EQ(denial_label(Denial::unknown_user, identity), "unknown_user");
  EXPECT_EQ(denial_label(Denial::unusable_identity, identity), "bad_identity");
}

// The CMS identity denials: a verified certificate the user map does not know, and one whose
// DN or map entry cannot travel in a header. Neither depends on the certificate's details.
TEST(Policy, CmsIdentityDenialsExplainWhatToDo) {
  const std::string unknown = denial_message(Denial::unknown_user, verified());
  EXPECT_EQ(unknown,
            "Your certificate is valid, but its DN is not registered to a CMS account. Register "
            "the certificate with your CMS account in CRIC; it becomes usable here within "
            "minutes of the registration.");
  EXPECT_EQ(denial_message(Denial::unknown_user, verified(CredentialKind::proxy)), unknown);
  EXPECT_EQ(denial_message(Denial::unusable_identity, verified()),
            "Your certificate's name, or your CMS account's entry, contains characters that "
            "cannot be passed on to the service.");
  for (Denial denial : {Denial::unknown_user, Denial::unusable_identity}) {
    const std::string message = denial_message(denial, verified());
    EXPECT_EQ(message.find(verified().user_dn), std::string::npos) << message;
    EXPECT_NE(message, denial_message(Denial::allowed, verified()));
  }
}

TEST(Policy, ExpiryMessagesGiveTheDateInUtc) {
  EXPECT_EQ(denial_message(Denial::expired_since, verified()),
            "Your certificate has expired (on 2026-11-28 12:00:00 UTC).");
  EXPECT_EQ(denial_message(Denial::verification_failed, failed(VerifyOutcome::expired)),
            "Your certificate has expired (on 2026-11-28 12:00:00 UTC).");
  EXPECT_EQ(denial_message(Denial::expired_since, verified(CredentialKind::proxy)),
            "Your proxy certificate has expired (on 2026-11-28 12:00:00 UTC).");
}

TEST(Policy, NotYetValidMessageGivesTheStartDate) {
  ClientIdentity identity = failed(VerifyOutcome::not_yet_valid);
  identity.not_before = kNotAfter;
  EXPECT_EQ(denial_message(Denial::verification_failed, identity),
            "Your certificate is not valid yet (valid from 2026-11-28 12:00:00 UTC).");
}

TEST(Policy, FailureMessagesExplainEachOutcome) {
  const auto message = [](VerifyOutcome outcome, std::string reason = "") {
    return denial_message(Denial::verification_failed, failed(outcome, std::move(reason)));
  };
  EXPECT_NE(message(VerifyOutcome::revoked).find("revoked"), std::string::npos);
  EXPECT_EQ(message(VerifyOutcome::unknown_ca),
            "Your certificate was issued by a CA this server does not trust.");
  EXPECT_NE(message(VerifyOutcome::crl_missing).find("cannot check whether"), std::string::npos);
  EXPECT_NE(message(VerifyOutcome::crl_missing).find("no revocation list"), std::string::npos);
  EXPECT_NE(message(VerifyOutcome::crl_expired).find("out of date"), std::string::npos);
  EXPECT_NE(message(VerifyOutcome::bad_signature).find("signature"), std::string::npos);
  EXPECT_EQ(message(VerifyOutcome::bad_proxy, "a limited proxy signed a full proxy"),
            "Your proxy certificate is not valid: a limited proxy signed a full proxy.");
  EXPECT_EQ(message(VerifyOutcome::bad_proxy), "Your proxy certificate is not valid.");
  EXPECT_NE(message(VerifyOutcome::proxy_forbidden).find("proxy"), std::string::npos);
  EXPECT_EQ(message(VerifyOutcome::invalid, "path length exceeded."),
            "Your certificate was refused: path length exceeded.");
}

void expect_sentence(const std::string& message) {
  ASSERT_FALSE(message.empty());
  EXPECT_EQ(message.back(), '.') << message;
  EXPECT_TRUE(message.front() >= 'A' && message.front() <= 'Z') << message;
}

TEST(Policy, EveryDenialAndOutcomeHasOneSentence) {
  const ClientIdentity identity = failed(VerifyOutcome::revoked);
  for (Denial denial :
       {Denial::allowed, Denial::no_certificate, Denial::verification_failed, Denial::expired_since,
        Denial::limited_proxy, Denial::unknown_user, Denial::unusable_identity}) {
    expect_sentence(denial_message(denial, identity));
  }
  for (int outcome = 0; outcome <= static_cast<int>(VerifyOutcome::invalid); ++outcome) {
    expect_sentence(
        denial_message(Denial::verification_failed, failed(static_cast<VerifyOutcome>(outcome))));
  }
  EXPECT_NE(denial_message(Denial::limited_proxy, identity).find("limited proxy"),
            std::string::npos);
  EXPECT_NE(denial_message(Denial::no_certificate, ClientIdentity{}).find("certificate"),
            std::string::npos);
}

}  // namespace
}  // namespace auth
