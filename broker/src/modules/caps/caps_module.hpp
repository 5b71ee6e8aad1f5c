// XEP-0115 Entity Capabilities, as the server uses them: which PEP nodes (XEP-0163 §4.2) each
// client session wants notifications for.
//
// A client's available presence carries <c hash node ver/>. The `ver` is a hash of the
// client's disco#info (§5.1); a shard that has not seen it asks the client once
// (<query node='node#ver'/>, §6.2), checks the answer hashes to `ver` (§5.4) and caches the
// "+notify" features under it: the next session with the same software costs nothing. An
// answer that does not hash to `ver` (or a hash other than sha-1) serves its own session only.
// The session's interests are then known: the module answers RouterHooks::interested for PEP
// fan-out and tells the other modules (SessionEvent::interests) so that they can send the last
// published items (§4.3.4).
//
// Lives on: every shard; its cache and its queries in flight are that shard's (no locks). The
// per-session state is a session slot.
#pragma once

#include <cstdint>
#include <deque>
#include <list>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "broker/src/modules/api.hpp"

namespace starling::modules {

// Shared with the disco module (which answers for the server's own caps).
inline constexpr std::string_view k_ns_caps = "http://jabber.org/protocol/caps";
inline constexpr std::string_view k_ns_disco_info = "http://jabber.org/protocol/disco#info";

// XEP-0115 §5.1 verification string, hashed with SHA-1 and base64-encoded. `identities`:
// "category/type/lang/name"; `forms`: the extended information (XEP-0128) as
// (FORM_TYPE, fields (var, values)); every list is sorted here.
struct CapsForm {
    std::string form_type;
    std::vector<std::pair<std::string, std::vector<std::string>>> fields;
};
std::string caps_ver(std::vector<std::string> identities, std::vector<std::string> features,
                     std::vector<CapsForm> forms = {});

// The PEP nodes one client software wants notifications for ("<node>+notify" features),
// sorted; shared by every session with the same caps.
struct CapsInterests {
    std::vector<std::string> nodes;
    bool contains(std::string_view node) const noexcept;
};

struct CapsOptions {
    std::uint32_t max_cached = 10'000;  // verified caps per shard (least recently added dropped)
    std::uint32_t max_pending = 1'000;  // disco#info queries in flight per shard
};

struct CapsCounters {
    std::uint64_t queries = 0;        // disco#info queries sent to clients
    std::uint64_t cache_hits = 0;     // presences whose caps were already known
    std::uint64_t unverified = 0;     // answers that did not hash to their ver
};

class CapsModule final : public Module {
public:
    explicit CapsModule(CapsOptions options = {});
    ~CapsModule() override;

    static ModuleSpec spec();
    std::string_view name() const noexcept override { return "caps"; }
    void install(ModuleContext& ctx) override;

    const CapsCounters& counters() const noexcept { return _counters; }
    // The interests of `session` (null until known).
    static const CapsInterests* interests_of(const Session& session) noexcept;

private:
    struct Pending {
        std::string ver;     // what the answer must hash to ("" when it cannot be verified)
        std::string key;     // cache key: hash + ver
        std::vector<std::weak_ptr<Session>> waiting;
    };
    Handled on_presence(OutboundEvent& ev);
    Handled on_response(Session& session, const xmpp::xml::ElementView& el);
    void set_interests(Session& session, std::shared_ptr<const CapsInterests> interests);
    void remember(const std::string& key, std::shared_ptr<const CapsInterests> interests);

    CapsOptions _options;
    ShardServices* _shard = nullptr;
    std::unordered_map<std::string, std::shared_ptr<const CapsInterests>> _cache;  // by hash + ver
    std::deque<std::string> _cache_order;                                          // insertion order
    std::unordered_map<std::string, Pending> _pending;                             // by query id
    std::unordered_map<std::string, std::string> _pending_by_key;                  // key -> query id
    std::deque<std::string> _pending_order;
    std::uint64_t _next_id = 1;
    CapsCounters _counters;
};

}  // namespace starling::modules
