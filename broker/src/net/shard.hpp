// Shard: one thread running one asio::io_context (DESIGN §2). Everything a shard owns is touched
// only from its thread; other shards reach it through the mailboxes. ShardSet starts the shards
// and stops them in reverse order.
//
// Lives on: created and destroyed by the main thread; run() on the shard's own thread.
#pragma once

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

namespace starling::net {

using ShardId = std::uint16_t;

class Shard {
public:
    explicit Shard(ShardId id);
    ~Shard();
    Shard(const Shard&) = delete;
    Shard& operator=(const Shard&) = delete;

    ShardId id() const noexcept { return _id; }
    asio::io_context& io() noexcept { return _io; }
    // True on this shard's own thread (for STARLING_DCHECK_SHARD-style checks).
    bool is_current() const noexcept;

    // Starts the thread; the io_context runs until stop().
    void start();
    // Asks the loop to end and joins the thread. Idempotent.
    void stop();

    // The shard whose thread is calling, or nullopt off any shard thread.
    static std::optional<ShardId> current() noexcept;

private:
    ShardId _id;
    asio::io_context _io{1};  // concurrency hint 1: one thread, no internal locking needed
    std::optional<asio::executor_work_guard<asio::io_context::executor_type>> _guard;
    std::thread _thread;
};

class ShardSet {
public:
    // `count` 0 means one shard per core.
    explicit ShardSet(std::size_t count);
    ~ShardSet();

    std::size_t size() const noexcept { return _shards.size(); }
    Shard& operator[](std::size_t i) noexcept { return *_shards[i]; }

    void start();
    void stop();

private:
    std::vector<std::unique_ptr<Shard>> _shards;
};

}  // namespace starling::net
