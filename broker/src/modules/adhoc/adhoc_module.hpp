// XEP-0050 ad-hoc commands on the server's own JID, with the XEP-0133 service administration
// commands an operator needs (add, delete and re-key accounts, list and count online users,
// end sessions, announce), for the administrators listed in [adhoc] admins and nobody else.
//
// Command IQs between clients (an operator driving a device's commands) need nothing from this
// module: they are IQs to a full JID and are routed as such.
//
// A command runs in two steps (XEP-0050 §3.4): execute returns the form and a session id; the
// submitted form (complete, or execute/next carrying it) runs the command and ends the session.
// An execute that already carries the submitted form runs at once (one round trip for scripts).
// Sessions are per shard (an account's IQs to the server are handled on its home shard),
// bounded in number and lifetime.
//
// Lives on: every shard. Its sessions are this shard's; work on other shards (online users,
// ending sessions, announcements) is posted to them through session::ShardPeers.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "broker/src/modules/api.hpp"

namespace starling::util {
struct SubmittedForm;
}

namespace starling::modules {

namespace adhoc {

struct CommandDef;  // one XEP-0133 command (adhoc_module.cpp)

struct AdhocOptions {
    std::vector<std::string> admins;  // bare JIDs, normalised
    std::uint32_t max_sessions = 64;  // open command sessions per shard
    std::uint32_t session_timeout_s = 600;
    std::uint32_t max_online_list = 10'000;  // JIDs in one get-online-users-list result
};

struct AdhocCounters {
    std::uint64_t executed = 0;  // commands completed
    std::uint64_t refused = 0;   // by a requester not in the admin list
    std::uint64_t failed = 0;    // answered with an error after the form was submitted
};

}  // namespace adhoc

class AdhocModule final : public Module {
public:
    explicit AdhocModule(adhoc::AdhocOptions options);
    ~AdhocModule() override;
    static ModuleSpec spec();
    std::string_view name() const noexcept override { return "adhoc"; }
    void install(ModuleContext& ctx) override;

private:
    struct OpenSession {
        std::string node;
        std::string owner;  // the full JID that started it
        std::chrono::steady_clock::time_point expires;
    };

    Handled on_command(IqEvent& ev);
    Handled on_disco_items(IqEvent& ev);
    Handled on_disco_info(IqEvent& ev);
    // Runs `c` with its submitted form and answers (at once, or once other shards have).
    void run(IqEvent& ev, const adhoc::CommandDef& c, const util::SubmittedForm& form, const std::string& sessionid);
    bool is_admin(const IqEvent& ev) const;
    void expire_sessions();

    adhoc::AdhocOptions _options;
    adhoc::AdhocCounters _counters;
    session::ShardServices* _shard = nullptr;
    std::map<std::string, OpenSession> _sessions;  // by session id
    // Completions of cross-shard work hold a weak reference: one that arrives after the module
    // is gone does nothing.
    std::shared_ptr<AdhocModule*> _alive;
};

}  // namespace starling::modules
