// XEP-0077 In-Band Registration, for the server itself:
// - before authentication, when registration is open: the stream feature, the form (username
//   and password) and account creation (§3.1), rate-limited per remote address per shard;
// - after authentication: what the account has on file (§3.1 <registered/>), password change
//   (§3.3) and cancellation (§3.2: the account is removed, then every stream of it is closed
//   with <not-authorized/>). These two have their own switches, on by default, independent of
//   open registration: a fleet provisioned with starlingctl still rotates device passwords.
//
// Lives on: every shard. The limiter is per shard; per-stream state (one registration per
// stream, §3.1.1) is a session slot. Whether the name is taken is read without touching the
// disk on the shard thread (AccountStore::get_async, the stream's input held meanwhile); key
// derivation (PBKDF2, two hashes) and the account's creation run synchronously on the shard
// thread: registration is rare and rate-limited.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include <pugixml.hpp>

#include "broker/src/modules/api.hpp"

namespace starling::util {
class StanzaDom;
}

namespace starling::modules {

class RegistrationLimiter;

struct RegisterOptions {
    bool open = false;                   // accounts.registration = "open"
    bool allow_password_change = true;   // §3.3 for authenticated users
    bool allow_cancel = true;            // §3.2 for authenticated users
    std::uint32_t per_ip_per_window = 5; // registration attempts per address per window, per shard; 0: no limit
    std::chrono::seconds window{60};
};

class RegisterModule final : public Module {
public:
    // Options from the shard's C2sOptions once it carries them (see the README), else the
    // defaults above: registration closed.
    RegisterModule();
    explicit RegisterModule(RegisterOptions options);
    ~RegisterModule() override;

    // Its name, options and factory, for the module list and the configuration.
    static ModuleSpec spec();
    std::string_view name() const noexcept override { return "register"; }
    void install(ModuleContext& ctx) override;

private:
    std::optional<RegisterOptions> _options;
    std::unique_ptr<RegistrationLimiter> _limiter;
};

// The fields of a <query xmlns='jabber:iq:register'/>, from the plain elements or from a
// submitted data form (XEP-0077 §4, FORM_TYPE jabber:iq:register). Exposed for tests.
struct RegisterFields {
    std::optional<std::string> username;
    std::optional<std::string> password;
    bool remove = false;
    bool has_other_children = false;  // anything besides <remove/> (§3.2 bad-request)
};
RegisterFields parse_register_fields(const util::StanzaDom& dom, pugi::xml_node query);

}  // namespace starling::modules
