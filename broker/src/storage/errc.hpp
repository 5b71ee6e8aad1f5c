// Storage error codes (CONVENTIONS §3: one enum per layer).
#pragma once

#include <cstdint>
#include <string_view>

namespace starling::storage {

enum class Errc : std::uint8_t {
    not_found,
    corrupt,      // a record that does not verify against its schema
    io_error,     // RocksDB reported an I/O or other failure
    busy,         // the store is locked by another process (a running broker)
    invalid_argument,
    no_space,     // the disk is full (Status::NoSpace, or an I/O error carrying ENOSPC)
    stopped,      // the write path was stopped before this write could be committed
    not_in_memory,  // a read limited to the memtable and block cache would need the disk
};

constexpr std::string_view to_string(Errc e) noexcept {
    switch (e) {
    case Errc::not_found: return "not-found";
    case Errc::corrupt: return "corrupt";
    case Errc::io_error: return "io-error";
    case Errc::busy: return "busy";
    case Errc::invalid_argument: return "invalid-argument";
    case Errc::no_space: return "no-space";
    case Errc::stopped: return "stopped";
    case Errc::not_in_memory: return "not-in-memory";
    }
    return "io-error";
}

}  // namespace starling::storage
