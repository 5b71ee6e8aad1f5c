// The agent: every interval it collects readings from the sources, appends one batch per
// `max_readings_per_batch` to the disk queue, and publishes queued batches in order to its
// PubSub node (a window of `publish_window` IQs in flight); a batch leaves the queue when its
// IQ result arrives. Ad-hoc commands (commands.hpp) and the status socket hang off it too.
// Lives on: the agent's io_context thread; one per process.
#pragma once

#include <asio.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "edge-agent/src/commands.hpp"
#include "edge-agent/src/config.hpp"
#include "edge-agent/src/disk_queue.hpp"
#include "edge-agent/src/link.hpp"
#include "edge-agent/src/shim_link.hpp"
#include "edge-agent/src/sources.hpp"

namespace starling::agent {

// The item payload (edge-agent/README.md "Payload"): one <readings/> element.
std::string batch_payload(const std::string& device, const std::vector<Reading>& readings, std::size_t begin,
                          std::size_t end, std::uint64_t dropped);

class Agent {
public:
    Agent(asio::io_context& io, const AgentConfig& cfg);  // throws QueueError, TlsConfigError
    ~Agent();
    void start();
    void stop();
    std::string status_line() const;

private:
    void tick();
    void arm_tick();
    bool enqueue(std::vector<Reading>& readings);  // false if a batch could not be queued
    void on_online(bool resumed);
    void create_node();
    void restart_publishing();
    void pump();
    void on_publish_reply(std::uint64_t gen, std::uint64_t seq, const IqReply& r);
    void start_status_socket();
    void accept_status();

    asio::io_context& _io;
    const AgentConfig& _cfg;
    DiskQueue _queue;
    Sources _sources;
    Link _link;
    Commands _commands;
    ShimLink _shim;
    asio::steady_timer _tick;
    asio::steady_timer _retry;
    std::unique_ptr<asio::local::stream_protocol::acceptor> _status;
    std::string _node;
    std::string _service;
    bool _node_ready = false;
    bool _node_checked = false;
    std::uint64_t _gen = 0;       // publishing generation: replies of older ones only ack
    std::uint64_t _sent_upto = 0;  // highest seq sent in this generation
    std::uint32_t _inflight = 0;
    std::uint64_t _published = 0;
    std::uint64_t _rejected = 0;
    std::uint64_t _timeouts = 0;
    std::uint64_t _readings = 0;
    std::int64_t _last_publish_ms = 0;
    std::chrono::steady_clock::time_point _started = std::chrono::steady_clock::now();
};

}  // namespace starling::agent
