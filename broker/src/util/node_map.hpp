// NodeMap: a hash map from strings to values for tables that are looked up on every message and
// are too large for the cache (the archive's users of a shard, issue 14), with stable nodes.
//
// Why not util::StringMap (std::unordered_map): a lookup there reads the bucket array, then the
// node *before* the bucket's first node (libstdc++ links buckets through their predecessor), then
// the node, then the key's heap bytes (a JID is longer than the 15 bytes a std::string keeps
// inline): three cache misses when the table is cold. With a thousand users among the archive's
// buffers that was ~160 ns a lookup. Here the probe reads an array of {hash, node} slots (16 bytes
// each, few enough to stay cached) and then the one node, whose key is stored inline right after
// its value: one miss, and that node is the one the caller was about to use anyway.
//
// Open addressing with linear probing, at most half full, backward-shift deletion (no
// tombstones). Nodes never move: pointers to them stay valid until they are erased. Not
// thread-safe (one per shard).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <new>
#include <string_view>
#include <utility>
#include <vector>

namespace starling::util {

template <class Value>
class NodeMap {
public:
    // `first`: the key (its bytes follow the node in the same allocation); `second`: the value.
    // Named as std::pair's members, so that code written for a std::unordered_map reads the same.
    struct Node {
        std::string_view first;
        Value second;

        Node(std::string_view key_bytes, Value&& v) : first(key_bytes), second(std::move(v)) {}
    };
    using value_type = Node;

    NodeMap() = default;
    NodeMap(const NodeMap&) = delete;
    NodeMap& operator=(const NodeMap&) = delete;
    ~NodeMap() { clear(); }

    std::size_t size() const noexcept { return _size; }
    bool empty() const noexcept { return _size == 0; }

    // The node of `key`, or null.
    Node* find(std::string_view key) const noexcept { return _size == 0 ? nullptr : find_hashed(key, hash(key)); }

    // Asks the CPU for the node `key` probably has (its first slot whose hash matches; the key
    // is not compared, and nothing is read from the node): a caller that knows which key it will
    // look up a few hundred nanoseconds later starts the node's cache miss now.
    void prefetch(std::string_view key) const noexcept {
        if (_size == 0) return;
        const std::uint64_t h = hash(key);
        for (std::size_t i = h & _mask;; i = (i + 1) & _mask) {
            const Slot& s = _slots[i];
            if (s.node == nullptr) return;
            if (s.hash == h) {
                __builtin_prefetch(s.node, 1);
                __builtin_prefetch(reinterpret_cast<const char*>(s.node) + 64, 1);
                return;
            }
        }
    }

    // The node of `key`, made with `value` when there was none; second: whether it was made.
    std::pair<Node*, bool> emplace(std::string_view key, Value value) {
        const std::uint64_t h = hash(key);
        if (Node* n = find_hashed(key, h)) return {n, false};
        if ((_size + 1) * 2 > _slots.size()) grow();
        void* raw = ::operator new(sizeof(Node) + key.size());
        char* bytes = static_cast<char*>(raw) + sizeof(Node);
        if (!key.empty()) std::memcpy(bytes, key.data(), key.size());
        Node* n = nullptr;
        try {
            n = ::new (raw) Node(std::string_view(bytes, key.size()), std::move(value));
        } catch (...) {
            ::operator delete(raw);
            throw;
        }
        place(h, n);
        ++_size;
        return {n, true};
    }

    // Erases a node of this map (the pointer dangles after).
    void erase(Node* n) noexcept {
        std::size_t i = hash(n->first) & _mask;
        while (_slots[i].node != n) i = (i + 1) & _mask;
        destroy(n);
        --_size;
        // Backward shift: every later slot of the run that may sit at `i` moves there.
        for (std::size_t j = (i + 1) & _mask;; j = (j + 1) & _mask) {
            Slot& s = _slots[j];
            if (s.node == nullptr) break;
            const std::size_t home = s.hash & _mask;
            // s may move to i when its home is not in the cyclic range (i, j].
            const bool stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
            if (stays) continue;
            _slots[i] = s;
            i = j;
        }
        _slots[i] = Slot{};
    }

    // Calls f(Node&) for every node, in no particular order; f must not insert or erase.
    template <class F>
    void for_each(F&& f) const {
        for (const Slot& s : _slots) {
            if (s.node != nullptr) f(*s.node);
        }
    }

    void clear() noexcept {
        for (Slot& s : _slots) {
            if (s.node != nullptr) destroy(s.node);
            s = Slot{};
        }
        _size = 0;
    }

private:
    struct Slot {
        std::uint64_t hash = 0;
        Node* node = nullptr;
    };

    static std::uint64_t hash(std::string_view key) noexcept { return std::hash<std::string_view>{}(key); }

    Node* find_hashed(std::string_view key, std::uint64_t h) const noexcept {
        if (_size == 0) return nullptr;
        for (std::size_t i = h & _mask;; i = (i + 1) & _mask) {
            const Slot& s = _slots[i];
            if (s.node == nullptr) return nullptr;
            if (s.hash == h && s.node->first == key) return s.node;
        }
    }

    void place(std::uint64_t h, Node* n) noexcept {
        std::size_t i = h & _mask;
        while (_slots[i].node != nullptr) i = (i + 1) & _mask;
        _slots[i] = Slot{h, n};
    }

    void grow() {
        std::vector<Slot> old(_slots.empty() ? 16 : _slots.size() * 2);
        old.swap(_slots);
        _mask = _slots.size() - 1;
        for (const Slot& s : old) {
            if (s.node != nullptr) place(s.hash, s.node);
        }
    }

    static void destroy(Node* n) noexcept {
        n->~Node();
        ::operator delete(static_cast<void*>(n));
    }

    std::vector<Slot> _slots;
    std::size_t _mask = 0;
    std::size_t _size = 0;
};

}  // namespace starling::util
