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

enum class Delivery : std::uint8_t { pass, handled };

class RouterHooks {
public:
    virtual ~RouterHooks() = default;
    // A stanza for a local account on its home shard, before the directory (probes,
    // subscriptions, blocking, carbons, archive). `handled`: consumed; the router stops there.
    virtual Delivery inbound(Envelope& env) const = 0;
    // A message no session takes (RFC 6121 §8.5.2.2): `handled` when kept (offline storage).
    virtual Delivery undeliverable(Envelope& env) const = 0;
};

}  // namespace starling::router
