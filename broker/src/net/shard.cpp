#include "broker/src/net/shard.hpp"

#include <pthread.h>

#include <string>

namespace starling::net {

namespace {
thread_local std::optional<ShardId> t_current;
}

Shard::Shard(ShardId id) : _id(id) {}

Shard::~Shard() { stop(); }

void Shard::start() {
    _guard.emplace(asio::make_work_guard(_io));
    _thread = std::thread([this] {
        t_current = _id;
        const std::string name = "shard-" + std::to_string(_id);
        pthread_setname_np(pthread_self(), name.c_str());
        _io.run();
        t_current.reset();
    });
}

void Shard::stop() {
    _guard.reset();
    _io.stop();
    if (_thread.joinable()) _thread.join();
}

std::optional<ShardId> Shard::current() noexcept { return t_current; }

bool Shard::is_current() const noexcept { return t_current == _id; }

ShardSet::ShardSet(std::size_t count) {
    if (count == 0) count = std::max(1u, std::thread::hardware_concurrency());
    for (std::size_t i = 0; i < count; ++i) _shards.push_back(std::make_unique<Shard>(static_cast<ShardId>(i)));
}

ShardSet::~ShardSet() { stop(); }

void ShardSet::start() {
    for (auto& s : _shards) s->start();
}

void ShardSet::stop() {
    for (auto it = _shards.rbegin(); it != _shards.rend(); ++it) (*it)->stop();
}

}  // namespace starling::net
