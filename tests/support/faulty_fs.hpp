// FaultyFileSystem: a RocksDB FileSystem over the real one that can be told, at any moment and
// from any thread, to fail writes or syncs (disk full, I/O error) and to add latency, so that
// tests force the faults the write path must survive instead of hoping for them
// (CONVENTIONS §7). Test and bench only: never linked into the broker.
//
// Lives on: any thread (all settings are atomics). Give it to Store through
// StoreOptions::file_system; it must outlive the Store (the shared_ptr sees to that).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include <rocksdb/file_system.h>

namespace starling::test {

enum class Fault : std::uint8_t { none, no_space, io_error };
// Which files a fault hits: the write-ahead logs, the other files (SSTs, MANIFEST), or all.
enum class Files : std::uint8_t { all, wal, tables };

class FaultyFileSystem final : public rocksdb::FileSystemWrapper {
public:
    explicit FaultyFileSystem(std::shared_ptr<rocksdb::FileSystem> base = rocksdb::FileSystem::Default());

    static const char* kClassName() { return "StarlingFaultyFileSystem"; }
    const char* Name() const override { return kClassName(); }

    // Appends to files opened for writing fail with `f`: a full disk hits the WAL of a write
    // (Files::wal) or a flush of the memtable to an SST (Files::tables) first.
    void fail_writes(Fault f, Files which = Files::all) noexcept {
        if (which != Files::tables) _wal_write_fault.store(f);
        if (which != Files::wal) _table_write_fault.store(f);
    }
    // Sync/Fsync/RangeSync of those files fail with `f`.
    void fail_syncs(Fault f) noexcept { _sync_fault.store(f); }
    // Added to every append and sync of a WAL file (a slow disk).
    void set_wal_latency(std::chrono::milliseconds d) noexcept { _wal_latency_ms.store(d.count()); }
    // Added to every read of a file other than a WAL (an SST block not in the block cache: a
    // cold read from a slow disk).
    void set_read_latency(std::chrono::milliseconds d) noexcept { _read_latency_ms.store(d.count()); }
    void heal() noexcept {
        fail_writes(Fault::none);
        fail_syncs(Fault::none);
        set_wal_latency(std::chrono::milliseconds(0));
        set_read_latency(std::chrono::milliseconds(0));
    }

    // Seen since construction (successful or not).
    std::uint64_t wal_appends() const noexcept { return _wal_appends.load(); }
    std::uint64_t wal_syncs() const noexcept { return _wal_syncs.load(); }
    std::uint64_t injected_faults() const noexcept { return _injected.load(); }
    std::uint64_t table_reads() const noexcept { return _table_reads.load(); }

    rocksdb::IOStatus NewRandomAccessFile(const std::string& name, const rocksdb::FileOptions& options,
                                          std::unique_ptr<rocksdb::FSRandomAccessFile>* result,
                                          rocksdb::IODebugContext* dbg) override;
    rocksdb::IOStatus NewWritableFile(const std::string& name, const rocksdb::FileOptions& options,
                                      std::unique_ptr<rocksdb::FSWritableFile>* result,
                                      rocksdb::IODebugContext* dbg) override;
    rocksdb::IOStatus ReopenWritableFile(const std::string& name, const rocksdb::FileOptions& options,
                                         std::unique_ptr<rocksdb::FSWritableFile>* result,
                                         rocksdb::IODebugContext* dbg) override;
    rocksdb::IOStatus ReuseWritableFile(const std::string& name, const std::string& old_name,
                                        const rocksdb::FileOptions& options,
                                        std::unique_ptr<rocksdb::FSWritableFile>* result,
                                        rocksdb::IODebugContext* dbg) override;

private:
    friend class FaultyWritableFile;
    friend class SlowRandomAccessFile;
    void on_read();  // the read latency, if any
    rocksdb::IOStatus on_write(bool wal);  // the fault to return, after the latency
    rocksdb::IOStatus on_sync(bool wal);
    rocksdb::IOStatus injected(Fault f);

    std::atomic<Fault> _wal_write_fault{Fault::none};
    std::atomic<Fault> _table_write_fault{Fault::none};
    std::atomic<Fault> _sync_fault{Fault::none};
    std::atomic<std::int64_t> _wal_latency_ms{0};
    std::atomic<std::int64_t> _read_latency_ms{0};
    std::atomic<std::uint64_t> _table_reads{0};
    std::atomic<std::uint64_t> _wal_appends{0};
    std::atomic<std::uint64_t> _wal_syncs{0};
    std::atomic<std::uint64_t> _injected{0};
};

}  // namespace starling::test
