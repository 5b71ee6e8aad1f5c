// The few helpers every store over RocksDB needs (accounts, and the modules' own stores): byte
// views, the mapping of RocksDB statuses to storage::Errc, durable write options, and aligned
// bytes for FlatBuffers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include <rocksdb/db.h>

#include "broker/src/storage/errc.hpp"
#include "broker/src/storage/store.hpp"

namespace starling::storage {

inline rocksdb::Slice slice(std::string_view s) noexcept { return {s.data(), s.size()}; }

inline Errc errc_of(const rocksdb::Status& st) noexcept {
    if (st.IsNotFound()) return Errc::not_found;
    if (st.IsIncomplete()) return Errc::not_in_memory;  // read_tier = kBlockCacheTier
    if (st.IsCorruption()) return Errc::corrupt;
    if (st.IsBusy() || st.IsTryAgain()) return Errc::busy;
    if (st.IsInvalidArgument()) return Errc::invalid_argument;
    // RocksDB marks ENOSPC as IOError/kNoSpace when it recognises it; a file system that only
    // says so in the message still means a full disk to an operator.
    if (st.IsNoSpace()) return Errc::no_space;
    // (getState() is the message without allocating: this stays noexcept.)
    if (st.IsIOError() && st.getState() != nullptr &&
        (std::strstr(st.getState(), "No space left") != nullptr || std::strstr(st.getState(), "ENOSPC") != nullptr)) {
        return Errc::no_space;
    }
    return Errc::io_error;
}

// DESIGN §6: what is acknowledged is on disk (fsync per batch unless the operator chose
// otherwise in StoreOptions).
inline rocksdb::WriteOptions write_options(const Store& store) noexcept {
    rocksdb::WriteOptions w;
    w.sync = store.options().sync_writes;
    return w;
}

// FlatBuffers reads fields in place and needs them aligned; a RocksDB value need not be. Returns
// `bytes`, or a copy in `scratch` when it is misaligned.
inline std::string_view aligned(std::string_view bytes, std::string& scratch) {
    if (reinterpret_cast<std::uintptr_t>(bytes.data()) % alignof(std::max_align_t) == 0) return bytes;
    scratch.assign(bytes);
    return scratch;
}

}  // namespace starling::storage
