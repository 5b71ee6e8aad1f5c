// Session: a bound client stream as modules see it (CONVENTIONS §5). It is an Endpoint for the
// router, plus what modules need of the stream it lives on: the shard's services, the peer's
// address, the domain it asked for, whether it is encrypted, when it last spoke. Modules include
// this, never c2s/: the client-stream layer implements it (c2s::C2sSession), and other kinds of
// streams (BOSH, WebSocket) can later.
//
// Lives on: the session's shard (the home shard of its bare JID once bound).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "broker/src/router/endpoint.hpp"

namespace starling::session {

struct ShardServices;
class Session;

enum class Filtered : std::uint8_t {
    pass,      // the session writes the stanza now
    consumed,  // the filter took it (held, or already written by a flush it made)
};

// A module's look at every stanza delivered to one session before it is written (XEP-0352:
// held while the client is inactive). Installed with Session::set_delivery_filter() only while
// it has work to do: an active session has none, and delivering to it costs one null test.
// A filter that writes held stanzas calls session.deliver() again and must answer `pass` to
// those re-entrant calls.
//
// Lives on: the session's shard; owned by the module (usually in the session's slot), which
// removes it before destroying it.
class DeliveryFilter {
public:
    virtual ~DeliveryFilter() = default;
    virtual Filtered filter(Session& session, std::string_view stanza) = 0;
};

class Session : public router::Endpoint {
public:
    Session() noexcept : router::Endpoint(Kind::client_session) {}

    // The filter delivery goes through, or null (the usual case). One per session: the module
    // that installs it owns it.
    void set_delivery_filter(DeliveryFilter* filter) noexcept { _delivery_filter = filter; }
    DeliveryFilter* delivery_filter() const noexcept { return _delivery_filter; }

    // A strong reference, for work that must outlive the current call (closing after a walk).
    virtual std::shared_ptr<Session> shared() = 0;
    virtual ShardServices& shard() noexcept = 0;
    // Remote address, for logs and per-address limits.
    virtual const std::string& peer_address() const noexcept = 0;
    // The domain the client's stream is for (empty before its header).
    virtual const std::string& domain() const noexcept = 0;
    virtual bool is_secure() const noexcept = 0;
    // When the client last sent anything (XEP-0199 server pings use it).
    virtual std::chrono::steady_clock::time_point last_read() const noexcept = 0;
    // How much more may be written to this session before one of its own limits ends the
    // stream (XEP-0198's unacknowledged stanzas, the output queue's bytes): modules that write
    // in bursts (XEP-0352 flushes) stay well inside it.
    struct OutputBudget {
        std::size_t stanzas = SIZE_MAX;
        std::size_t bytes = SIZE_MAX;
    };
    virtual OutputBudget output_budget() const noexcept { return {}; }

    // Stops handling this session's input after the stanza being handled, until every hold
    // taken is released: a module whose answer waits for a store read off the reactor (issue
    // 14) takes one, so that the client's later stanzas are not handled before that answer
    // (nothing is reordered). Holds nest (a count). hold_input() returns a ticket for
    // release_input(); a ticket from before the stream ended releases nothing. Take one from a
    // handler of this session's input only when the read did not complete inline; release it
    // from the completion (input resumes in a handler of its own, never inside the call).
    // Sessions without input of their own keep the defaults: nothing is held.
    virtual std::uint32_t hold_input() noexcept { return 0; }
    virtual void release_input(std::uint32_t ticket) noexcept { (void)ticket; }

private:
    DeliveryFilter* _delivery_filter = nullptr;
};

// The session behind a directory entry, or null when the endpoint is not a client session.
inline Session* as_session(router::Endpoint& e) noexcept {
    return e.kind() == router::Endpoint::Kind::client_session ? static_cast<Session*>(&e) : nullptr;
}

}  // namespace starling::session
