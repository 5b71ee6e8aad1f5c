// Internal to c2s/session*.cpp: constants and small helpers the three parts share.
#pragma once

#include <charconv>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "xmpp/xml/tokenizer.hpp"

namespace starling::c2s::detail {

using xmpp::StanzaError;
using xmpp::StreamError;
using xmpp::xml::ElementView;
using xmpp::xml::EventKind;

inline constexpr std::string_view k_ns_session = "urn:ietf:params:xml:ns:xmpp-session";
inline constexpr std::string_view k_ns_ping = "urn:xmpp:ping";
inline constexpr std::string_view k_ns_disco_info = "http://jabber.org/protocol/disco#info";
inline constexpr std::string_view k_ns_disco_items = "http://jabber.org/protocol/disco#items";
inline constexpr std::string_view k_ns_version = "jabber:iq:version";
inline constexpr std::string_view k_ns_compress = "http://jabber.org/protocol/compress";  // XEP-0138
inline constexpr std::size_t k_max_sasl_payload = 8 * 1024;  // base64 of a SCRAM or PLAIN message
inline constexpr std::chrono::milliseconds k_close_grace{5'000};
// After our last words, what the peer still sends is read and dropped for this long (or until
// this much), so that closing does not reset the connection before it has read them.
inline constexpr std::chrono::milliseconds k_linger{2'000};
inline constexpr std::size_t k_linger_bytes = 64u << 20;
// The first reservation of a session's output buffer after a write (C2sSession::deliver).
inline constexpr std::size_t k_output_reserve = 4096;
// ShardContext::spare_strings: how many, and the largest kept.
inline constexpr std::size_t k_spare_strings = 256;
inline constexpr std::size_t k_spare_string_bytes = 64 * 1024;

// The character data of a simple element: what lies between its start and end tags.
inline std::string_view inner_text(const ElementView& el) {
    const std::string_view bytes = el.bytes();
    const std::size_t start = el.start_tag().size();
    if (start >= bytes.size()) return {};
    const std::size_t end = bytes.rfind('<');
    return end <= start ? std::string_view() : bytes.substr(start, end - start);
}

inline bool is_ns(const ElementView& el, std::string_view ns) { return el.ns().equals(ns); }

inline std::string unescaped(xmpp::xml::RawText t) { return t.present() ? t.unescape() : std::string(); }

// An integer with surrounding whitespace allowed; `fallback` for anything else.
inline std::int64_t to_int(std::string_view s, std::int64_t fallback) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\n' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\n' || s.back() == '\t')) s.remove_suffix(1);
    std::int64_t v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    return ec == std::errc() && p == s.data() + s.size() ? v : fallback;
}

}  // namespace starling::c2s::detail
