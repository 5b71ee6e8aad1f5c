// Internal to c2s/session*.cpp: the XEP-0198 state a session carries once the client enabled
// stream management.
#pragma once

#include <asio/steady_timer.hpp>

#include <cstdint>
#include <memory>
#include <string>

#include "broker/src/c2s/session.hpp"
#include "broker/src/c2s/sm_queue.hpp"

namespace starling::c2s {

struct C2sSession::StreamMgmt {
    explicit StreamMgmt(std::size_t max_unacked) : queue(max_unacked) {}

    SmQueue queue;                // what we sent and the client has not acknowledged
    std::uint32_t handled = 0;    // stanzas received from the client (§4 'h', mod 2^32)
    std::string id;               // resumption id; empty when the client did not ask to resume
    bool answer_pending = false;  // the client sent <r/>: answer with <a/> in this turn's batch
    bool request_pending = false; // we sent <r/> and wait for its <a/>
    std::uint32_t requested_at = 0;  // sent() when we last asked
    std::unique_ptr<asio::steady_timer> hibernation;  // while hibernating: the resume deadline
};

}  // namespace starling::c2s
