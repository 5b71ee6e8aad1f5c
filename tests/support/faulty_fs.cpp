#include "tests/support/faulty_fs.hpp"

#include <thread>
#include <utility>

namespace starling::test {

// Every write and sync asks the file system first; the rest goes to the real file.
class FaultyWritableFile final : public rocksdb::FSWritableFileOwnerWrapper {
public:
    FaultyWritableFile(std::unique_ptr<rocksdb::FSWritableFile> file, FaultyFileSystem& fs, bool wal)
        : FSWritableFileOwnerWrapper(std::move(file)), _fs(fs), _wal(wal) {}

    rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                             rocksdb::IODebugContext* dbg) override {
        auto st = _fs.on_write(_wal);
        return st.ok() ? FSWritableFileOwnerWrapper::Append(data, options, dbg) : st;
    }
    rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                             const rocksdb::DataVerificationInfo& info, rocksdb::IODebugContext* dbg) override {
        auto st = _fs.on_write(_wal);
        return st.ok() ? FSWritableFileOwnerWrapper::Append(data, options, info, dbg) : st;
    }
    rocksdb::IOStatus PositionedAppend(const rocksdb::Slice& data, std::uint64_t offset,
                                       const rocksdb::IOOptions& options, rocksdb::IODebugContext* dbg) override {
        auto st = _fs.on_write(_wal);
        return st.ok() ? FSWritableFileOwnerWrapper::PositionedAppend(data, offset, options, dbg) : st;
    }
    rocksdb::IOStatus PositionedAppend(const rocksdb::Slice& data, std::uint64_t offset,
                                       const rocksdb::IOOptions& options, const rocksdb::DataVerificationInfo& info,
                                       rocksdb::IODebugContext* dbg) override {
        auto st = _fs.on_write(_wal);
        return st.ok() ? FSWritableFileOwnerWrapper::PositionedAppend(data, offset, options, info, dbg) : st;
    }
    rocksdb::IOStatus Sync(const rocksdb::IOOptions& options, rocksdb::IODebugContext* dbg) override {
        auto st = _fs.on_sync(_wal);
        return st.ok() ? FSWritableFileOwnerWrapper::Sync(options, dbg) : st;
    }
    rocksdb::IOStatus Fsync(const rocksdb::IOOptions& options, rocksdb::IODebugContext* dbg) override {
        auto st = _fs.on_sync(_wal);
        return st.ok() ? FSWritableFileOwnerWrapper::Fsync(options, dbg) : st;
    }
    rocksdb::IOStatus RangeSync(std::uint64_t offset, std::uint64_t n, const rocksdb::IOOptions& options,
                                rocksdb::IODebugContext* dbg) override {
        auto st = _fs.on_sync(_wal);
        return st.ok() ? FSWritableFileOwnerWrapper::RangeSync(offset, n, options, dbg) : st;
    }

private:
    FaultyFileSystem& _fs;
    bool _wal;
};

// Reads of SSTs (and the other non-WAL files) wait for the read latency first.
class SlowRandomAccessFile final : public rocksdb::FSRandomAccessFileOwnerWrapper {
public:
    SlowRandomAccessFile(std::unique_ptr<rocksdb::FSRandomAccessFile> file, FaultyFileSystem& fs)
        : FSRandomAccessFileOwnerWrapper(std::move(file)), _fs(fs) {}

    rocksdb::IOStatus Read(std::uint64_t offset, std::size_t n, const rocksdb::IOOptions& options,
                           rocksdb::Slice* result, char* scratch, rocksdb::IODebugContext* dbg) const override {
        _fs.on_read();
        return FSRandomAccessFileOwnerWrapper::Read(offset, n, options, result, scratch, dbg);
    }
    rocksdb::IOStatus MultiRead(rocksdb::FSReadRequest* reqs, std::size_t num_reqs, const rocksdb::IOOptions& options,
                                rocksdb::IODebugContext* dbg) override {
        _fs.on_read();
        return FSRandomAccessFileOwnerWrapper::MultiRead(reqs, num_reqs, options, dbg);
    }

private:
    FaultyFileSystem& _fs;
};

namespace {

bool is_wal(const std::string& name) {
    return name.size() > 4 && name.compare(name.size() - 4, 4, ".log") == 0;
}

}  // namespace

FaultyFileSystem::FaultyFileSystem(std::shared_ptr<rocksdb::FileSystem> base) : FileSystemWrapper(base) {}

rocksdb::IOStatus FaultyFileSystem::injected(Fault f) {
    if (f == Fault::none) return rocksdb::IOStatus::OK();
    _injected.fetch_add(1);
    if (f == Fault::no_space) return rocksdb::IOStatus::NoSpace("injected: No space left on device");
    return rocksdb::IOStatus::IOError("injected: I/O error");
}

rocksdb::IOStatus FaultyFileSystem::on_write(bool wal) {
    if (wal) {
        _wal_appends.fetch_add(1);
        if (const auto ms = _wal_latency_ms.load(); ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    }
    return injected(wal ? _wal_write_fault.load() : _table_write_fault.load());
}

rocksdb::IOStatus FaultyFileSystem::on_sync(bool wal) {
    if (wal) {
        _wal_syncs.fetch_add(1);
        if (const auto ms = _wal_latency_ms.load(); ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    }
    return injected(_sync_fault.load());
}

void FaultyFileSystem::on_read() {
    _table_reads.fetch_add(1);
    if (const auto ms = _read_latency_ms.load(); ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(ms));
}

rocksdb::IOStatus FaultyFileSystem::NewRandomAccessFile(const std::string& name, const rocksdb::FileOptions& options,
                                                        std::unique_ptr<rocksdb::FSRandomAccessFile>* result,
                                                        rocksdb::IODebugContext* dbg) {
    std::unique_ptr<rocksdb::FSRandomAccessFile> file;
    auto st = target()->NewRandomAccessFile(name, options, &file, dbg);
    if (st.ok()) {
        if (is_wal(name)) *result = std::move(file);
        else *result = std::make_unique<SlowRandomAccessFile>(std::move(file), *this);
    }
    return st;
}

rocksdb::IOStatus FaultyFileSystem::NewWritableFile(const std::string& name, const rocksdb::FileOptions& options,
                                                    std::unique_ptr<rocksdb::FSWritableFile>* result,
                                                    rocksdb::IODebugContext* dbg) {
    std::unique_ptr<rocksdb::FSWritableFile> file;
    auto st = target()->NewWritableFile(name, options, &file, dbg);
    if (st.ok()) *result = std::make_unique<FaultyWritableFile>(std::move(file), *this, is_wal(name));
    return st;
}

rocksdb::IOStatus FaultyFileSystem::ReopenWritableFile(const std::string& name, const rocksdb::FileOptions& options,
                                                       std::unique_ptr<rocksdb::FSWritableFile>* result,
                                                       rocksdb::IODebugContext* dbg) {
    std::unique_ptr<rocksdb::FSWritableFile> file;
    auto st = target()->ReopenWritableFile(name, options, &file, dbg);
    if (st.ok()) *result = std::make_unique<FaultyWritableFile>(std::move(file), *this, is_wal(name));
    return st;
}

rocksdb::IOStatus FaultyFileSystem::ReuseWritableFile(const std::string& name, const std::string& old_name,
                                                      const rocksdb::FileOptions& options,
                                                      std::unique_ptr<rocksdb::FSWritableFile>* result,
                                                      rocksdb::IODebugContext* dbg) {
    std::unique_ptr<rocksdb::FSWritableFile> file;
    auto st = target()->ReuseWritableFile(name, old_name, options, &file, dbg);
    if (st.ok()) *result = std::make_unique<FaultyWritableFile>(std::move(file), *this, is_wal(name));
    return st;
}

}  // namespace starling::test
