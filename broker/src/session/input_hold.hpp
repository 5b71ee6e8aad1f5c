// InputHold: keeps one session's input stopped while a module's store read is off the reactor
// (issue 14). A module starts the read, then arms the hold: if the read already completed
// (inline: overlay, memtable, block cache) nothing is held; else the session handles none of
// its client's later stanzas until the completion calls done(). The hold refers to the session
// weakly: a session gone meanwhile is not touched.
//
//   auto hold = std::make_shared<session::InputHold>(session);
//   store.read_async(..., [hold, ...](auto r) { ...answer...; hold->done(); });
//   hold->arm();
//
// Lives on: the session's shard (shared by the module's call and its completion).
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>

#include "broker/src/router/router.hpp"
#include "broker/src/session/session.hpp"

namespace starling::session {

class InputHold {
public:
    explicit InputHold(Session& session) : _session(session.shared()) {}
    InputHold(const InputHold&) = delete;
    InputHold& operator=(const InputHold&) = delete;
    ~InputHold() { done(); }  // a completion dropped unrun (shutdown) must not keep it held

    // After starting the read: holds the session's input unless done() ran already.
    void arm() noexcept {
        if (_done || _held) return;
        if (auto s = _session.lock()) {
            _ticket = s->hold_input();
            _held = true;
        }
    }
    // From the completion: releases the hold, if armed.
    void done() noexcept {
        _done = true;
        if (!_held) return;
        _held = false;
        if (auto s = _session.lock()) s->release_input(_ticket);
    }
    bool held() const noexcept { return _held; }

private:
    std::weak_ptr<Session> _session;
    std::uint32_t _ticket = 0;
    bool _done = false;
    bool _held = false;
};

// The armed hold of the session that sent a stanza from `from`, when that session is bound on
// this shard (`router`'s); null otherwise (a sender on another shard is not held). For a
// stanza that waits for a read: the sender handles none of its later stanzas (an XEP-0198 <r/>
// among them) until done(), so its order is kept and its <a/> counts only what was handled.
inline std::unique_ptr<InputHold> hold_sender(const router::ShardRouter& router, std::string_view from) {
    auto* ep = router.find(from);
    auto* sender = ep != nullptr ? as_session(*ep) : nullptr;
    if (sender == nullptr) return nullptr;
    auto hold = std::make_unique<InputHold>(*sender);
    hold->arm();
    return hold;
}

}  // namespace starling::session
