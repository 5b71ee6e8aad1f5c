// PubsubService's internals shared by its source files (pubsub_service.cpp, pubsub_items.cpp,
// pubsub_owner.cpp, pubsub_cold.cpp): the parsed request and small helpers. Not for other code.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>

#include <pugixml.hpp>

#include "broker/src/modules/pubsub/pubsub_service.hpp"
#include "broker/src/router/router.hpp"
#include "broker/src/util/dom.hpp"
#include "xmpp/jid.hpp"
#include "xmpp/stream_error.hpp"

namespace starling::modules::pubsub {

namespace detail {

using xmpp::bare_of;

inline std::int64_t now_unix_ms() noexcept {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

// XEP-0004 §3.3 boolean true.
inline bool is_true(std::string_view v) noexcept { return v == "1" || v == "true"; }

// An IQ reply from the service (`from`) to the requester: the envelope, its bytes holding the
// start tag without its closing '>' (the caller adds "/>" or content and "</iq>").
router::Envelope reply_envelope(std::string_view from, std::string_view to, std::string_view id, std::string_view type);
// An IQ error from the service, whole.
router::Envelope error_envelope(std::string_view from, std::string_view to, std::string_view id,
                                xmpp::StanzaError condition, std::string_view app_condition, std::string_view text,
                                std::string_view feature);

// Marks a node (by key) as known missing in PubsubService::_absent for one scope, so that the
// requests handled in it do not read it again; unmarked on the way out, exceptions included.
class KnownMissing {
public:
    KnownMissing(std::unordered_set<std::string>& absent, std::string key, bool on)
        : _absent(absent), _key(std::move(key)), _on(on) {
        if (_on) _absent.insert(_key);
    }
    ~KnownMissing() {
        if (_on) _absent.erase(_key);
    }
    KnownMissing(const KnownMissing&) = delete;
    KnownMissing& operator=(const KnownMissing&) = delete;

private:
    std::unordered_set<std::string>& _absent;
    std::string _key;
    bool _on;
};

}  // namespace detail

// An IQ to the service, parsed once on the shard that handles it.
struct PubsubService::Request {
    router::Envelope& env;
    util::StanzaDom& dom;
    std::string service;  // the service's bare JID (env.to may carry a resource)
    std::string bare;     // the requester's bare JID
    bool get = false;
    pugi::xml_node payload;  // <pubsub/> or a disco <query/>
    pugi::xml_node action;   // the first element of <pubsub/>
    std::string_view ns;
    std::string_view action_name;
    // Set by PubsubService::stored: the reply waits for the writes (and `touched` stays cached).
    bool wrote = false;
    bool erased = false;  // the writes delete `touched`
    Node* touched = nullptr;
};

}  // namespace starling::modules::pubsub
