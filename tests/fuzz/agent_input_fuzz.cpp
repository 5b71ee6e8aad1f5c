// starling-agent's parsers on arbitrary bytes (the first byte picks one): the TOML
// configuration, a program source's output line, the XEP-0050 / disco IQs an operator (or
// anyone) sends, and a command argument's validation. No crash, no sanitizer report, and:
// every answer to an IQ is well-formed XML (what it echoes back is escaped), a parsed program
// line has a bounded name and a finite value, and an accepted argument obeys its definition.
#include <pugixml.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "edge-agent/src/commands.hpp"
#include "edge-agent/src/config.hpp"
#include "edge-agent/src/sources.hpp"

namespace {

using namespace starling::agent;

// Commands of every kind that does not start a process (a fuzzer must not fork): `shim`
// (forwarded to a stub) and `file` (written to /dev/null).
const AgentConfig& command_config() {
    static const AgentConfig c = parse_config(R"(
[xmpp]
jid = "dev@example.com"
password = "x"
operators = ["op@example.com"]
[[command]]
name = "set-led"
kind = "shim"
args = [{ name = "on", type = "boolean" }]
[[command]]
name = "set-interval"
kind = "shim"
args = [{ name = "ms", type = "integer", min = 100, max = 3600000 }, { name = "tag", type = "string", max_len = 8 }]
[[command]]
name = "relay"
kind = "file"
path = "/dev/null"
args = [{ name = "value", type = "integer", min = 0, max = 1 }]
[[command]]
name = "ping"
kind = "shim"
)",
                                              "fuzz");
    return c;
}

void fuzz_config(std::string_view text) {
    try {
        const AgentConfig c = parse_config(text, "fuzz");
        // What a config that parsed promises: bounded numbers the agent sizes things with.
        if (c.publish_window < 1 || c.publish_window > 128 || c.max_readings_per_batch < 1) std::abort();
        (void)c.node_name();
        (void)c.pubsub_service();
    } catch (const ConfigError&) {
    }
}

void fuzz_program_line(std::string_view text) {
    Reading r;
    if (!parse_program_line(text, r)) return;
    if (r.name.empty() || r.name.size() > 64 || r.unit.size() > 32 || !std::isfinite(r.value)) std::abort();
}

void fuzz_iq(std::string_view text) {
    static Commands& commands = [] () -> Commands& {
        static Commands c(command_config());
        c.set_shim([](const CommandDef&, const std::map<std::string, std::string>&) { return std::string(); });
        return c;
    }();
    pugi::xml_document doc;
    if (!doc.load_buffer(text.data(), text.size(), pugi::parse_default, pugi::encoding_utf8)) return;
    const auto iq = doc.first_child();
    if (!iq) return;
    const auto answer = commands.handle(iq);
    if (!answer || answer->empty()) return;
    pugi::xml_document out;
    if (!out.load_string(answer->c_str())) std::abort();
    if (std::string_view(out.first_child().name()) != "iq") std::abort();
}

void fuzz_argument(std::uint8_t kind, std::string_view text) {
    const auto& cmds = command_config().commands;
    const auto& a = cmds[1].args[kind % 2];  // ms (integer 100..3600000) or tag (string, 8)
    const std::string v(text);
    if (!validate_arg(a, v).empty()) return;
    if (a.type == CommandArg::Type::integer) {
        const long long n = std::stoll(v);
        if (n < a.min || n > a.max) std::abort();
    } else if (v.empty() || v.size() > a.max_len) {
        std::abort();
    }
    (void)validate_arg(cmds[0].args[0], v);  // boolean
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
    switch (data[0] % 4) {
        case 0: fuzz_config(rest); break;
        case 1: fuzz_program_line(rest); break;
        case 2: fuzz_iq(rest); break;
        default: fuzz_argument(data[0] / 4, rest); break;
    }
    return 0;
}
