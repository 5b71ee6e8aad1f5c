// Internal to c2s/session*.cpp: the state of a SASL2 exchange (XEP-0388) and what it asked for
// inline: Bind2 (XEP-0386) with stream management and CSI, and FAST tokens (XEP-0484).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "broker/src/c2s/session.hpp"

namespace starling::c2s {

namespace detail {
inline constexpr std::string_view k_ns_sasl2 = "urn:xmpp:sasl:2";
inline constexpr std::string_view k_ns_bind2 = "urn:xmpp:bind:0";
inline constexpr std::string_view k_ns_fast = "urn:xmpp:fast:0";
inline constexpr std::string_view k_ns_csi = "urn:xmpp:csi:0";
inline constexpr std::size_t k_max_user_agent_id = 128;
inline constexpr std::size_t k_max_bind_tag = 64;
// 86 characters of [A-Za-z0-9]: ~512 bits, and longer than SHA-256's block so that only the
// token's hash need be stored (xmpp/sasl/ht.hpp).
inline constexpr std::size_t k_fast_token_chars = 86;
}  // namespace detail

// Created by <authenticate/>; lives until the success has been written (after the migration to
// the home shard when Bind2 binds) or a failure has been sent. Moves with the session.
struct C2sSession::Sasl2 {
    bool active = false;           // an exchange is in progress
    bool failure_pending = false;  // _pending_failure is to be sent in SASL2 form
    std::string user_agent;        // <user-agent id='..'/>
    // Bind2.
    bool bind = false;
    std::string tag;
    bool sm_enable = false;
    bool sm_resume = false;  // <enable resume='true'/>
    bool csi_inactive = false;
    // XEP-0198 inline resumption (<resume/> inside <authenticate/>), tried before Bind2.
    bool resume = false;
    std::string resume_previd;
    std::uint32_t resume_h = 0;
    std::string sm_failed_xml;  // the resumption failed: said inside the success
    // FAST.
    bool request_token = false;
    std::string_view token_mechanism;  // what the requested token is for (an xmpp/sasl/ht.hpp constant)
    std::optional<std::uint32_t> fast_count;
    bool fast_invalidate = false;
    // The success, completed once bound.
    std::string additional;  // raw bytes, base64 when written
    std::string token_xml;
};

}  // namespace starling::c2s
