// Endpoint: what the router delivers to (DESIGN §1). A bound client session today; local
// services (PubSub), server-to-server links and components plug in through the same interface.
// The router never names a concrete session type, so nothing below `session/` and `c2s/` has to
// know them.
//
// RouterHooks: how the router lets the layer above it (the shard's module hook table) see a
// stanza for a local account before the directory picks sessions, and keep what no session
// takes. The router calls down into nothing: it is handed these interfaces.
//
// Lives on: an endpoint lives on one shard (a client session: the home shard of its bare JID
// once bound); the router of that shard holds a plain pointer to it while it is in the directory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "xmpp/jid.hpp"
#include "xmpp/stream_error.hpp"

namespace starling::router {

struct Envelope;

std::size_t next_slot_id() noexcept;
template <class T>
std::size_t slot_id() noexcept {
    static const std::size_t id = next_slot_id();
    return id;
}

class Endpoint {
public:
    // What is behind the interface, for the few places that need more than the router does (a
    // checked downcast without RTTI: session::as_session).
    enum class Kind : std::uint8_t { client_session, service };

    explicit Endpoint(Kind kind) noexcept : _kind(kind) {}
    Endpoint(const Endpoint&) = delete;
    Endpoint& operator=(const Endpoint&) = delete;
    virtual ~Endpoint() = default;

    Kind kind() const noexcept { return _kind; }

    // The address the directory knows it by (a full JID for a client session); null until bound.
    virtual const xmpp::Jid* jid() const noexcept = 0;
    // RFC 6121 §4.2: sent initial presence and not yet unavailable presence.
    virtual bool is_available() const noexcept = 0;
    // RFC 6121 §4.7.2.3: -128..127; picks who gets messages to the bare JID.
    virtual int priority() const noexcept = 0;
    // The available presence it broadcasts, stamped, as it is broadcast (empty when
    // unavailable). Presence probes are answered from it (RFC 6121 §4.3.2).
    virtual const std::string& last_presence() const noexcept = 0;
    // Appends a stanza to the endpoint's output (written at the end of this reactor turn).
    virtual void deliver(std::string_view stanza) = 0;
    // Ends the stream with an error (e.g. conflict when replaced by a newer session).
    virtual void close(xmpp::StreamError condition, std::string_view text = {}) = 0;

    // Per-endpoint state of a module (CONVENTIONS §5): created on first use, destroyed with the
    // endpoint. One slot per type T.
    template <class T>
    T& slot() {
        const std::size_t id = slot_id<T>();
        if (_slots.size() <= id) _slots.resize(id + 1);
        if (!_slots[id]) _slots[id] = std::make_shared<T>();
        return *static_cast<T*>(_slots[id].get());
    }
    template <class T>
    T* find_slot() const noexcept {
        const std::size_t id = slot_id<T>();
        return id < _slots.size() ? static_cast<T*>(_slots[id].get()) : nullptr;
    }

protected:
    // Another endpoint's module state becomes this one's (a resumed stream takes over the
    // session it continues, XEP-0198 §5).
    void take_slots_from(Endpoint& other) noexcept { _slots = std::move(other._slots); }

private:
    Kind _kind;
    std::vector<std::shared_ptr<void>> _slots;  // module state, by slot_id<T>()
};

// A local service (DESIGN §1): it owns a whole domain (`pubsub.example.org`) on every shard. The
// router hands it each stanza addressed to that domain or to a resource of it, as the stamped
// envelope (a service needs the sender and the stanza's addressing, not just bytes), on the
// shard where the stanza is routed. A service that keeps state on one shard (a PubSub node's
// home shard, DESIGN §2) moves the envelope on with ShardRouter::send_to (Envelope::Kind::service).
//
// Lives on: one instance per shard, registered with that shard's router for its domains before
// traffic (ShardRouter::add_service); it must stay alive while the router routes (the broker
// stops the shards before it destroys their modules).
class Service : public Endpoint {
public:
    Service() noexcept : Endpoint(Kind::service) {}

    // A stanza for the service, on this shard.
    virtual void receive(Envelope&& env) = 0;

    // Endpoint: a service is always there and has no presence or stream of its own.
    const xmpp::Jid* jid() const noexcept override { return nullptr; }
    bool is_available() const noexcept override { return true; }
    int priority() const noexcept override { return 0; }
    const std::string& last_presence() const noexcept override;
    // A service is reached with receive(); bare bytes carry no sender, so they are dropped.
    void deliver(std::string_view) override {}
    void close(xmpp::StreamError, std::string_view) override {}
};

enum class Delivery : std::uint8_t { pass, handled };

class RouterHooks {
public:
    virtual ~RouterHooks() = default;
    // A stanza for a local account on its home shard, before the directory (probes,
    // subscriptions, blocking, carbons, archive). `handled`: consumed; the router stops there.
    virtual Delivery inbound(Envelope& env) const = 0;
    // A message no session takes (RFC 6121 §8.5.2.2): `handled` when kept (offline storage).
    virtual Delivery undeliverable(Envelope& env) const = 0;
    // Whether `endpoint` wants notifications for `interest` (XEP-0163 §4.2: its entity
    // capabilities list "<node>+notify"). Asked for filtered fan-out (FanOut::interest).
    virtual bool interested(const Endpoint& endpoint, std::string_view interest) const = 0;
};

}  // namespace starling::router
