// ShardRouter: where a stanza goes (RFC 6120 §10, RFC 6121 §8). Every bare JID has a home shard,
// hash(bare JID) % N, and every bound session of that user lives there (the session migrates
// after binding, DESIGN §2). So a stanza costs at most one hop: the sender's shard hands it to
// the recipient's home shard, which writes it to the recipient's sockets.
//
// Lives on: one per shard; its directory holds only sessions of this shard.
#pragma once

#include <array>
#include <cstdint>
#include <iterator>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "broker/src/router/endpoint.hpp"
#include "broker/src/router/mailboxes.hpp"
#include "broker/src/util/string_map.hpp"
#include "xmpp/stream_error.hpp"

namespace starling::router {

enum class StanzaKind : std::uint8_t { message, presence, iq };

// A cross-shard message. Moves by value; nothing in it points into another shard's memory
// except the endpoint being handed over (adopt), which its old shard no longer touches, and the
// fan-out payload, which is immutable and reference-counted (CONVENTIONS §4).
//   deliver  a stanza to route on the recipient's home shard (RFC 6121 §8.5)
//   adopt    a session moving to its home shard after binding
//   service  a stanza for the local service of `to`'s domain, moved to the shard that must
//            handle it (e.g. a PubSub node's home shard); handed to Service::receive there
//   fan_out  messages for many recipients of the destination shard (DESIGN §2): each recipient
//            gets, for each of fan_out->messages in order,
//            <message from='from' to='r' type='type' id='m.id'> + *m.payload + </message>
//
// One pointer for fan-out (not the payload and the list inline): every ring slot is an
// Envelope, so each byte here is paid capacity x shards² times.
struct FanOut {
    struct Message {
        std::string id;
        std::shared_ptr<const std::string> payload;  // the message's content, shared by all shards
    };
    // One or more: a service that sends several messages to the same recipients in one turn
    // (a burst of publishes to one node) sends them in one envelope, and each recipient is
    // looked up and written to once for all of them rather than once per message.
    std::vector<Message> messages;
    // Normalised JIDs homed on the destination shard. Shared and immutable: a PubSub node keeps
    // its subscribers grouped by shard and hands the same list to every publish until it changes.
    std::shared_ptr<const std::vector<std::string>> recipients;
    // Filtered notifications (XEP-0163 §4.2): when set, the recipients are bare JIDs and each
    // gets the message at those of its available resources that RouterHooks::interested() says
    // want `interest` (a PEP node), addressed to that resource's full JID (§4.3.1).
    std::string interest;
};

struct Envelope {
    enum class Kind : std::uint8_t { deliver, adopt, service, fan_out };
    Kind kind = Kind::deliver;
    StanzaKind stanza = StanzaKind::message;
    std::string to;     // normalised bare or full JID of the recipient
    std::string from;   // normalised full JID of the sender, for bounces
    std::string type;   // the stanza's type attribute, unescaped
    std::string id;     // the stanza's id attribute, unescaped, for bounces (fan_out: per message)
    std::string bytes;  // the stanza as it is to be written: start tag stamped
    std::int64_t routed_ns = 0;                // steady clock when routed (a client's stanza: when its bytes were read), for the latency histogram
    std::shared_ptr<Endpoint> session;         // adopt: the session moving here
    int fd = -1;                               // adopt: its socket
    std::shared_ptr<const FanOut> fan_out;     // fan_out: immutable, read by the destination
};

// Routing latency buckets (upper bounds in microseconds; the last is +Inf).
inline constexpr std::int64_t k_latency_bounds_us[] = {10, 25, 50, 100, 250, 500, 1'000, 2'500,
                                                      5'000, 10'000, 25'000, 100'000};
inline constexpr std::size_t k_latency_buckets = std::size(k_latency_bounds_us) + 1;

struct RouterCounters {
    std::uint64_t delivered = 0;
    std::uint64_t hops = 0;        // handed to another shard
    std::uint64_t bounced = 0;     // answered with an error
    std::uint64_t dropped = 0;     // silently, as the RFC says for that case
    std::uint64_t mailbox_full = 0;
    std::uint64_t fan_outs = 0;    // fan-out envelopes handed to another shard
    std::array<std::uint64_t, k_latency_buckets> latency{};  // non-cumulative counts
    double latency_sum_us = 0;
};

class ShardRouter {
public:
    using Adopt = std::function<void(Envelope&&)>;

    ShardRouter(ShardId self, Mailboxes<Envelope>& mailboxes, Adopt adopt);

    // The shard's modules see stanzas for local accounts before the directory does (DESIGN §4).
    void set_hooks(const RouterHooks* hooks) noexcept { _hooks = hooks; }

    ShardId self() const noexcept { return _self; }
    ShardId home_of(std::string_view bare_jid) const noexcept;
    std::size_t shard_count() const noexcept;

    // Routes a stanza from a session of this shard (RFC 6121 §8.5 decides who gets it on the
    // home shard). False when the destination's mailbox is full: the stanza is not taken; the
    // caller answers it with resource-constraint and slows its reader (back-pressure).
    bool route(Envelope&& env);
    // Answers `env` to its sender with a stanza error (never for type='error', RFC 6120 §8.3.1).
    void bounce_to_sender(const Envelope& env, xmpp::StanzaError condition) { bounce(env, condition); }
    // Hands a session to its home shard (or adopts it here when that is this shard).
    bool send_session(ShardId to, Envelope&& env);
    // Hands a service or fan_out envelope to shard `to` (handled here, now, when that is this
    // shard). False when the mailbox is full: `env` is left intact.
    bool send_to(ShardId to, Envelope&& env);

    // Local services (DESIGN §1): stanzas to `domain` or its resources go to `service` on the
    // shard where they are routed. Before traffic; the service stays alive while this routes.
    void add_service(std::string domain, Service* service);
    // The service owning the domain of `jid` (a JID without localpart), or null.
    Service* service_for(std::string_view jid) const noexcept;
    // The service that answers for local accounts' bare JIDs (XEP-0163: every account is a
    // PubSub service): Envelope::Kind::service envelopes to an account go to it. Before traffic.
    void set_account_service(Service* service) noexcept { _account_service = service; }
    // Mail from another shard.
    void on_mail(Envelope&& env);
    // Wakes the shards that got mail during this turn.
    void flush();

    // The directory of bound sessions on this shard.
    // Returns the session it replaced (same full JID), if any: the caller kicks it.
    Endpoint* add(Endpoint* session);
    void remove(Endpoint* session) noexcept;
    Endpoint* find(std::string_view full_jid) const noexcept;
    // Every bound session of an account on this shard (its home shard); empty if none.
    const std::vector<Endpoint*>& sessions_of(std::string_view bare_jid) const noexcept;
    std::size_t resource_count(std::string_view bare_jid) const noexcept;
    std::size_t session_count() const noexcept { return _by_full.size(); }
    void for_each_session(const std::function<void(Endpoint&)>& f) const;

    const RouterCounters& counters() const noexcept { return _counters; }

private:
    void deliver_local(Envelope&& env);
    void deliver_fan_out(Envelope&& env);
    void deliver_to_bare(Envelope&& env);
    void deliver_to(Endpoint& session, const Envelope& env);
    void bounce(const Envelope& env, xmpp::StanzaError condition);

    ShardId _self;
    Mailboxes<Envelope>& _mailboxes;
    Adopt _adopt;
    const RouterHooks* _hooks = nullptr;
    // Transparent hashing: lookups by string_view, no temporary string per delivered stanza.
    util::StringMap<Endpoint*> _by_full;
    util::StringMap<std::vector<Endpoint*>> _by_bare;
    util::StringMap<Service*> _services;
    Service* _account_service = nullptr;
    RouterCounters _counters;
    // While deliver_fan_out writes one fan-out: the clock read once for all its recipients.
    std::int64_t _fan_out_now = 0;
};

}  // namespace starling::router
