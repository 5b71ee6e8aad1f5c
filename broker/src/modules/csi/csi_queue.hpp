// What an inactive client (XEP-0352) is spared: the classification of a stanza on its way to the
// client (urgent, or something that may wait), and the queue of what waits.
//
// Both work on the stamped bytes the router delivers, with no DOM: a stanza that reached a
// session passed our tokenizer (well-formed, no comments or processing instructions), so its
// first-level children can be walked by bytes. Whatever the walk does not recognise is urgent:
// a wrong guess costs the client's radio a wake-up, never a late message.
//
// Lives on: the session's shard, in the CSI module's session slot. Pure: no session, no clock.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace starling::modules::csi {

enum class Urgency : std::uint8_t {
    urgent,      // flush what is held, then write it (messages with a body, IQs, subscriptions...)
    presence,    // available/unavailable presence: held, latest per sender full JID wins
    chat_state,  // a XEP-0085 chat state alone: held, latest per sender full JID wins
    data,        // a PubSub notification without body (XEP-0060 §4.3): held, in order, all kept
    bypass,      // the server's own XEP-0199 ping: written at once, what is held stays held
};

struct Classified {
    Urgency urgency = Urgency::urgent;
    std::string_view from;  // the sender (as written, escaped), the coalescing key
};

// Cheap classification of a serialized stanza (see the README's table).
Classified classify(std::string_view stanza) noexcept;

struct QueueLimits {
    // A fleet operator follows thousands of devices: one presence per device is what a coalesced
    // queue holds, so the bounds are sized for that (about 130 bytes per presence).
    std::size_t max_held = 10'000;            // stanzas held at once
    std::size_t max_held_bytes = 1u << 20;    // their bytes
};

// The held stanzas of one inactive session, in delivery order. A presence (or chat state) from
// a full JID that already has one held replaces it: the old one is dropped and the new one
// goes to the end, so what is written is always a subsequence of what was delivered.
// Presence from a bare JID (a probe answered for an account with no resource online) and
// presence from that account's resources replace each other too: the later one is the
// account's state (RFC 6121 §4.3.2: an unavailable from the bare JID says no resource is).
class CsiQueue {
public:
    enum class Push : std::uint8_t {
        held,      // kept
        coalesced, // kept, and an older one from the same sender dropped
        overflow,  // kept, but the queue is past a limit: the caller drains it now
    };

    explicit CsiQueue(QueueLimits limits = {}) : _limits(limits) {}

    // `c` must not be urgent (urgent stanzas are never held).
    Push push(std::string_view stanza, const Classified& c);

    // Hands every held stanza to `out(std::string_view)`, oldest first, and empties the queue.
    // `out` may push to this queue again (re-entrant delivery): what it pushes is kept for later.
    template <class Out>
    std::size_t drain(Out&& out) {
        std::vector<Item> items;
        items.swap(_items);
        _latest.clear();
        _resources.clear();
        _live = 0;
        _bytes = 0;
        std::size_t n = 0;
        for (auto& it : items) {
            if (!it.live) continue;
            ++n;
            out(std::string_view(it.bytes));
        }
        return n;
    }

    std::size_t size() const noexcept { return _live; }
    std::size_t bytes() const noexcept { return _bytes; }
    bool empty() const noexcept { return _live == 0; }
    const QueueLimits& limits() const noexcept { return _limits; }

private:
    struct Item {
        std::string bytes;
        bool live = true;
    };
    void compact();
    // Drops the held item `key` points at, if any.
    void drop(const std::string& key);

    QueueLimits _limits;
    std::vector<Item> _items;  // delivery order; replaced entries are dead until compaction
    std::unordered_map<std::string, std::size_t> _latest;  // kind + sender -> index in _items
    // Bare JID -> full JIDs with a presence held (for bare/full replacement).
    std::unordered_map<std::string, std::vector<std::string>> _resources;
    std::size_t _live = 0;
    std::size_t _bytes = 0;
};

}  // namespace starling::modules::csi
