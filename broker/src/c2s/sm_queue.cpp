#include "broker/src/c2s/sm_queue.hpp"

namespace starling::c2s {

bool SmQueue::push(std::string_view stanza) {
    _items.emplace_back(stanza);
    _bytes += stanza.size();
    return size() <= _max;
}

SmQueue::Ack SmQueue::ack(std::uint32_t h) noexcept {
    const std::uint32_t fresh = h - _acked;  // mod 2^32
    if (fresh > size()) {
        // Behind what we already know (a late duplicate) rather than ahead of what we sent: the
        // distance backwards is the short one.
        const std::uint32_t behind = _acked - h;
        return behind < 0x8000'0000u ? Ack::stale : Ack::too_high;
    }
    for (std::uint32_t i = 0; i < fresh; ++i) {
        _bytes -= _items[_head].size();
        std::string().swap(_items[_head]);
        ++_head;
    }
    _acked = h;
    compact();
    return Ack::ok;
}

std::vector<std::string> SmQueue::take_unacked() {
    std::vector<std::string> out;
    out.reserve(size());
    for (std::size_t i = _head; i < _items.size(); ++i) out.push_back(std::move(_items[i]));
    _items.clear();
    _head = 0;
    _bytes = 0;
    // sent() is now acked(): the resent stanzas are counted again as they are pushed.
    return out;
}

// Acknowledged slots are reclaimed once they are half the vector, and all memory once empty (an
// idle device's session keeps nothing).
void SmQueue::compact() {
    if (_head == _items.size()) {
        std::vector<std::string>().swap(_items);
        _head = 0;
    } else if (_head > 32 && _head * 2 >= _items.size()) {
        _items.erase(_items.begin(), _items.begin() + static_cast<std::ptrdiff_t>(_head));
        _head = 0;
    }
}

}  // namespace starling::c2s
