// XEP-0050 ad-hoc commands built from configuration ([[command]]): listed by disco#items on
// the node http://jabber.org/protocol/commands, described by disco#info, executed with a data
// form (XEP-0004) when they take arguments. Kinds: `shim` (forwarded to the firmware shim),
// `file` (the one argument written to a sysfs file: a GPIO, an LED), `program` (an allow-listed
// program, fixed argv with validated arguments substituted, no shell).
// Only the bare JIDs in xmpp.operators may list or execute them; others get <forbidden/>.
// Lives on: the agent's thread.
#pragma once

#include <pugixml.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "edge-agent/src/config.hpp"
#include "edge-agent/src/process.hpp"

namespace starling::agent {

// Where a `shim` command goes: returns "" when it was handed to the device, or why not.
using ShimForward = std::function<std::string(const CommandDef& command, const std::map<std::string, std::string>& args)>;
// Starts a `program` command's argv without waiting (spawn_program on the agent's io_context).
using ProgramRunner = std::function<void(const std::vector<std::string>& argv, std::uint32_t timeout_ms,
                                         std::uint32_t max_output, ProgramDone done)>;
// Sends an answer that was not ready when handle() returned.
using ReplyLater = std::function<void(std::string stanza)>;

class Commands {
public:
    explicit Commands(const AgentConfig& cfg) : _cfg(cfg) {}
    ~Commands() { *_alive = false; }
    Commands(const Commands&) = delete;
    Commands& operator=(const Commands&) = delete;
    void set_shim(ShimForward f) { _shim = std::move(f); }
    // With a runner and a ReplyLater, `program` commands run without blocking the caller; without
    // them (unit tests) they run to completion inside handle().
    void set_program_runner(ProgramRunner r, ReplyLater later) {
        _runner = std::move(r);
        _later = std::move(later);
    }
    // Handles an IQ get/set addressed to the agent; returns the answer stanza, "" when the answer
    // goes out later through ReplyLater, or nullopt if the IQ is not ours (then the caller
    // answers service-unavailable).
    std::optional<std::string> handle(const pugi::xml_node& iq);
    std::uint64_t executed() const noexcept { return _executed; }
    std::uint64_t refused() const noexcept { return _refused; }

private:
    std::string execute(const pugi::xml_node& iq, const pugi::xml_node& cmd);
    std::string run(const CommandDef& def, const std::map<std::string, std::string>& args, std::string& error);
    std::string finish(const std::string& from, const std::string& node, const std::string& head, const std::string& note,
                const std::string& error);

    const AgentConfig& _cfg;
    ShimForward _shim;
    ProgramRunner _runner;
    ReplyLater _later;
    std::shared_ptr<bool> _alive = std::make_shared<bool>(true);
    std::uint64_t _session_counter = 0;
    std::map<std::string, std::string> _sessions;  // sessionid -> command name (form sent)
    std::uint64_t _executed = 0;
    std::uint64_t _refused = 0;
};

// Validates one submitted value against its argument definition; "" if fine, else why.
std::string validate_arg(const CommandArg& a, const std::string& value);

}  // namespace starling::agent
