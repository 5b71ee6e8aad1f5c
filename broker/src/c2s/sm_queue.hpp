// SmQueue: the server's side of XEP-0198 acknowledgements: how many stanzas it sent, how many the
// client acknowledged, and copies of those in between (to resend on resumption, or to reroute
// when the session ends without them acknowledged). Counters are mod 2^32 (§4: "the value of
// 'h' ... MUST wrap around to 0 after 2^32 - 1").
//
// Lives on: inside the C2sSession that owns it (its home shard). Pure: no I/O, no clock.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace starling::c2s {

inline constexpr std::string_view k_ns_sm = "urn:xmpp:sm:3";

class SmQueue {
public:
    enum class Ack : std::uint8_t {
        ok,        // acknowledged (possibly nothing new)
        stale,     // an h behind one already received: ignored
        too_high,  // acknowledges stanzas never sent (§4: handled-count-too-high)
    };

    // `start`: the count both sides begin at (0 after <enable/>, §4; other values let tests
    // cross the 2^32 wrap without sending four billion stanzas).
    explicit SmQueue(std::size_t max_stanzas, std::uint32_t start = 0) noexcept : _acked(start), _max(max_stanzas) {}

    // A stanza written to the client. Always kept; false when that made the queue longer than
    // its bound: the caller ends the stream, and the stanza is rerouted with the rest (never a
    // silent loss).
    bool push(std::string_view stanza);
    // The client's h (from <a/> or <resume/>): drops the stanzas it covers.
    Ack ack(std::uint32_t h) noexcept;

    std::uint32_t sent() const noexcept { return static_cast<std::uint32_t>(_acked + size()); }
    std::uint32_t acked() const noexcept { return _acked; }
    std::size_t size() const noexcept { return _items.size() - _head; }
    std::size_t bytes() const noexcept { return _bytes; }
    bool empty() const noexcept { return size() == 0; }
    std::size_t capacity() const noexcept { return _max; }

    // Everything not acknowledged, oldest first; the queue is then empty and sent() == acked()
    // (what is resent counts as sent again, §5).
    std::vector<std::string> take_unacked();

private:
    void compact();

    std::vector<std::string> _items;
    std::size_t _head = 0;  // _items[0.._head) are acknowledged and moved out
    std::size_t _bytes = 0;
    std::uint32_t _acked = 0;
    std::size_t _max;
};

}  // namespace starling::c2s
