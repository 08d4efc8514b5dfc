// CmsIdentity: the user map and HMAC key kept fresh off the event loops. A bad replacement
// (unreadable, not JSON, empty, shrunk too much) never replaces the last good map; a good one
// is published with the next generation; SIGHUP (reload()) re-reads at once; no map at all
// refuses to start.

#include "proxy/cms_identity.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

namespace proxy {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

const std::string kDn = "/DC=ch/DC=cern/OU=Organic Units/OU=Users/CN=jdoe/CN=123456/CN=John Doe";

std::string map_json(const std::string& login, int fillers) {
  std::string json = "[{\"DN\": \"" + kDn + "\", \"ID\": 1, \"LOGIN\": \"" + login +
                     "\", \"NAME\": \"John Doe\", \"ROLES\": {\"admin\": [\"group:das\"]}}";
  for (int i = 0; i < fillers; ++i) {
    json += ", {\"DN\": \"/DC=org/CN=filler " + std::to_string(i) + "\", \"LOGIN\": \"f" +
            std::to_string(i) + "\"}";
  }
  return json + "]";
}

class CmsIdentityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/cmsfront-identity-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    dir_ = pattern;
    settings_.hmac_key = dir_ + "/hmac.key";
    settings_.user_map = dir_ + "/usermap.json";
    write(settings_.hmac_key, "0123456789abcdefghij");
    write(settings_.user_map, map_json("jdoe", 9));
  }
  void TearDown() override { fs::remove_all(dir_); }

  // As a cron job should: a temporary file renamed over the target.
  static void write(const std::string& path, const std::string& content) {
    const std::string temporary = path + ".new";
    std::ofstream(temporary, std::ios::binary) << content;
    fs::rename(temporary, path);
  }

  std::unique_ptr<CmsIdentity> create() {
    auto created = CmsIdentity::create(settings_, 20ms);
    if (auto* errors = std::get_if<std::vector<std::string>>(&created)) {
      ADD_FAILURE() << (errors->empty() ? "?" : errors->front());
      return nullptr;
    }
    return std::move(std::get<std::unique_ptr<CmsIdentity>>(created));
  }

  // Waits until `done` holds or 5 s pass.
  template <typename Predicate>
  static bool eventually(Predicate done) {
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(10ms);
    }
    return true;
  }

  static std::string login(const CmsIdentity& identity) {
    const auth::UserRecord* user = identity.snapshot()->map->find(kDn);
    return user != nullptr ? user->login : "";
  }

  std::string dir_;
  AuthSettings settings_;
};

constexpr auto kFile = static_cast<std::size_t>(UserMapSource::file);
constexpr auto kOk = static_cast<std::size_t>(UserMapLoadResult::ok);
constexpr auto kFailed = static_cast<std::size_t>(UserMapLoadResult::failed);
constexpr auto kRefused = static_cast<std::size_t>(UserMapLoadResult::refused);

TEST_F(CmsIdentityTest, StartsWithTheMapAndTheKey) {
  auto identity = create();
  ASSERT_NE(identity, nullptr);
  const auto snapshot = identity->snapshot();
  EXPECT_EQ(snapshot->generation, 1u);
  EXPECT_EQ(identity->generation(), 1u);
  EXPECT_EQ(snapshot->map->users(), 10u);
  EXPECT_EQ(snapshot->key->bytes(), "0123456789abcdefghij");
  EXPECT_EQ(login(*identity), "jdoe");
  EXPECT_EQ(identity->status().loads[kFile][kOk], 1u);
}

TEST_F(CmsIdentityTest, BadReplacementsKeepTheLastGoodMap) {
  auto identity = create();
  ASSERT_NE(identity, nullptr);
  identity->start();
  const struct {
    const char* what;
    std::string content;
    std::size_t result;
  } bad[] = {
      {"not JSON", "[{\"DN\": ", kFailed},
      {"not an array", "{\"DN\": \"/CN=x\"}", kFailed},
      {"empty", "[]", kRefused},
      {"no usable record", "[{\"NAME\": \"no DN, no LOGIN\"}]", kRefused},
      {"shrunk by 90%", map_json("shrunk", 0), kRefused},
  };
  for (const auto& attempt : bad) {
    SCOPED_TRACE(attempt.what);
    const std::uint64_t before = identity->status().loads[kFile][attempt.result];
    write(settings_.user_map, attempt.content);
    ASSERT_TRUE(
        eventually([&] { return identity->status().loads[kFile][attempt.result] > before; }));
    EXPECT_EQ(identity->generation(), 1u);
    EXPECT_EQ(login(*identity), "jdoe");
  }
  // A deleted file is one more failure that changes nothing.
  fs::remove(settings_.user_map);
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(login(*identity), "jdoe");
  // A good file is taken, with the next generation.
  write(settings_.user_map, map_json("jdoe2", 9));
  ASSERT_TRUE(eventually([&] { return identity->generation() == 2; }));
  EXPECT_EQ(login(*identity), "jdoe2");
}

TEST_F(CmsIdentityTest, ShrinkLimitIsConfigurable) {
  settings_.user_map_max_drop_percent = 100;  // the check is off
  auto identity = create();
  ASSERT_NE(identity, nullptr);
  identity->start();
  write(settings_.user_map, map_json("alone", 0));
  ASSERT_TRUE(eventually([&] { return identity->generation() == 2; }));
  EXPECT_EQ(identity->snapshot()->map->users(), 1u);
}

TEST_F(CmsIdentityTest, ReloadRereadsAnUnchangedFileAndTheKey) {
  auto identity = create();
  ASSERT_NE(identity, nullptr);
  identity->start();
  std::this_thread::sleep_for(100ms);  // a few checks: nothing changed, nothing published
  EXPECT_EQ(identity->generation(), 1u);
  identity->reload();
  ASSERT_TRUE(eventually([&] { return identity->status().loads[kFile][kOk] == 2; }));
  ASSERT_TRUE(eventually([&] { return identity->generation() == 2; }));
  // A new key is picked up by itself, too.
  write(settings_.hmac_key, "another key");
  ASSERT_TRUE(eventually([&] { return identity->snapshot()->key->bytes() == "another key"; }));
  EXPECT_EQ(login(*identity), "jdoe");
}

TEST_F(CmsIdentityTest, AnUnreadableKeyKeepsThePreviousOne) {
  auto identity = create();
  ASSERT_NE(identity, nullptr);
  identity->start();
  write(settings_.hmac_key, "");  // an empty key file is refused
  ASSERT_TRUE(eventually([&] { return identity->status().key_reloads_failed >= 1; }));
  EXPECT_EQ(identity->snapshot()->key->bytes(), "0123456789abcdefghij");
}

TEST_F(CmsIdentityTest, NoMapRefusesToStart) {
  write(settings_.user_map, "[]");
  auto created = CmsIdentity::create(settings_, 20ms);
  auto* errors = std::get_if<std::vector<std::string>>(&created);
  ASSERT_NE(errors, nullptr);
  ASSERT_FALSE(errors->empty());
  EXPECT_NE(errors->back().find("no user map could be loaded"), std::string::npos);
}

TEST_F(CmsIdentityTest, NoKeyRefusesToStart) {
  fs::remove(settings_.hmac_key);
  auto created = CmsIdentity::create(settings_, 20ms);
  auto* errors = std::get_if<std::vector<std::string>>(&created);
  ASSERT_NE(errors, nullptr);
  ASSERT_FALSE(errors->empty());
  EXPECT_NE(errors->front().find("hmac_key"), std::string::npos);
}

}  // namespace
}  // namespace proxy
