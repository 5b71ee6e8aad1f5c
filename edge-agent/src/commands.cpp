#include "edge-agent/src/commands.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <vector>

#include "edge-agent/src/log.hpp"
#include "edge-agent/src/process.hpp"
#include "edge-agent/src/xml_util.hpp"

namespace starling::agent {

namespace {

constexpr std::string_view k_ns_commands = "http://jabber.org/protocol/commands";
constexpr std::string_view k_ns_items = "http://jabber.org/protocol/disco#items";
constexpr std::string_view k_ns_info = "http://jabber.org/protocol/disco#info";
constexpr std::string_view k_ns_data = "jabber:x:data";

std::string bare_of(std::string_view jid) {
    const auto slash = jid.find('/');
    std::string b(jid.substr(0, slash));
    std::transform(b.begin(), b.end(), b.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return b;
}

std::string reply_head(const pugi::xml_node& iq, std::string_view type) {
    std::string out = "<iq type='";
    out += type;
    out += "' id='" + xml_escape(iq.attribute("id").value()) + "'";
    if (auto f = iq.attribute("from")) out += " to='" + xml_escape(f.value()) + "'";
    return out;
}

// RFC 6120 §8.3: an error reply. `app` is an extra condition element (XEP-0050 §4.6).
std::string error_reply(const pugi::xml_node& iq, std::string_view type, std::string_view condition,
                        std::string_view app = {}) {
    std::string out = reply_head(iq, "error") + "><error type='";
    out += type;
    out += "'><";
    out += condition;
    out += " xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>";
    if (!app.empty()) {
        out += "<";
        out += app;
        out += " xmlns='http://jabber.org/protocol/commands'/>";
    }
    out += "</error></iq>";
    return out;
}

std::string_view type_name(CommandArg::Type t) {
    switch (t) {
        case CommandArg::Type::integer: return "text-single";
        case CommandArg::Type::boolean: return "boolean";
        case CommandArg::Type::string: return "text-single";
    }
    return "text-single";
}

// The note of a finished `program` command, or its error.
void program_outcome(int rc, std::string out, std::string& note, std::string& error) {
    if (rc != 0) {
        error = rc < 0 ? "program failed to run, was killed or timed out" : "exit status " + std::to_string(rc);
        return;
    }
    while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
    note = out.empty() ? "done" : out;
}

}  // namespace

std::string validate_arg(const CommandArg& a, const std::string& v) {
    switch (a.type) {
        case CommandArg::Type::integer: {
            std::int64_t n = 0;
            const auto r = std::from_chars(v.data(), v.data() + v.size(), n);
            if (v.empty() || r.ec != std::errc{} || r.ptr != v.data() + v.size()) return "not an integer";
            if (n < a.min || n > a.max)
                return "must be between " + std::to_string(a.min) + " and " + std::to_string(a.max);
            return {};
        }
        case CommandArg::Type::boolean:
            if (v == "1" || v == "0" || v == "true" || v == "false") return {};
            return "not a boolean";
        case CommandArg::Type::string: {
            if (v.empty() || v.size() > a.max_len) return "must be 1-" + std::to_string(a.max_len) + " characters";
            for (char c : v) {
                const bool ok = a.pattern_chars.empty()
                                    ? (std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-')
                                    : a.pattern_chars.find(c) != std::string::npos;
                if (!ok) return "contains a character that is not allowed";
            }
            return {};
        }
    }
    return "bad type";
}

std::optional<std::string> Commands::handle(const pugi::xml_node& iq) {
    const std::string_view type = iq.attribute("type").value();
    const bool is_operator = [&] {
        const auto b = bare_of(iq.attribute("from").value());
        return std::find(_cfg.operators.begin(), _cfg.operators.end(), b) != _cfg.operators.end();
    }();
    if (type == "get") {
        if (auto q = child(iq, "query", k_ns_items)) {
            const std::string_view node = q.attribute("node").value();
            if (node != k_ns_commands) return reply_head(iq, "result") + "><query xmlns='http://jabber.org/protocol/disco#items' node='" + xml_escape(node) + "'/></iq>";
            std::string out = reply_head(iq, "result") + "><query xmlns='http://jabber.org/protocol/disco#items' node='http://jabber.org/protocol/commands'>";
            // Strangers see an empty list: the commands of a device are not advertised to them.
            if (is_operator) {
                const std::string me = xml_escape(iq.attribute("to").value());
                for (const auto& c : _cfg.commands) {
                    out += "<item jid='" + me + "' node='" + xml_escape(c.name) + "' name='" + xml_escape(c.title) + "'/>";
                }
            }
            return out + "</query></iq>";
        }
        if (auto q = child(iq, "query", k_ns_info)) {
            const std::string node = q.attribute("node").value();
            std::string out = reply_head(iq, "result") + "><query xmlns='http://jabber.org/protocol/disco#info'";
            if (!node.empty()) out += " node='" + xml_escape(node) + "'";
            out += ">";
            const auto def = std::find_if(_cfg.commands.begin(), _cfg.commands.end(),
                                          [&](const CommandDef& d) { return d.name == node; });
            if (def != _cfg.commands.end()) {
                out += "<identity category='automation' type='command-node' name='" + xml_escape(def->title) + "'/>";
                out += "<feature var='http://jabber.org/protocol/commands'/><feature var='jabber:x:data'/>";
            } else if (node.empty() || node == k_ns_commands) {
                out += "<identity category='client' type='bot' name='starling-agent'/>";
                out += "<feature var='http://jabber.org/protocol/disco#info'/>"
                       "<feature var='http://jabber.org/protocol/disco#items'/>"
                       "<feature var='http://jabber.org/protocol/commands'/><feature var='urn:xmpp:ping'/>";
            } else {
                return error_reply(iq, "cancel", "item-not-found");
            }
            return out + "</query></iq>";
        }
        return std::nullopt;
    }
    if (auto cmd = child(iq, "command", k_ns_commands)) {
        if (!is_operator) {
            ++_refused;
            log(LogLevel::warn, "command.refused", {{"from", iq.attribute("from").value()},
                                                    {"command", cmd.attribute("node").value()}});
            return error_reply(iq, "auth", "forbidden");
        }
        return execute(iq, cmd);
    }
    return std::nullopt;
}

std::string Commands::execute(const pugi::xml_node& iq, const pugi::xml_node& cmd) {
    const std::string node = cmd.attribute("node").value();
    const auto def = std::find_if(_cfg.commands.begin(), _cfg.commands.end(),
                                  [&](const CommandDef& d) { return d.name == node; });
    if (def == _cfg.commands.end()) return error_reply(iq, "cancel", "item-not-found");
    std::string action = cmd.attribute("action").value();
    if (action.empty()) action = "execute";
    std::string session = cmd.attribute("sessionid").value();
    if (!session.empty()) {
        auto it = _sessions.find(session);
        if (it == _sessions.end() || it->second != node) return error_reply(iq, "modify", "bad-request", "bad-sessionid");
    }
    auto head = [&](std::string_view status) {
        return reply_head(iq, "result") + "><command xmlns='http://jabber.org/protocol/commands' node='" +
               xml_escape(node) + "' sessionid='" + xml_escape(session) + "' status='" + std::string(status) + "'";
    };
    if (action == "cancel") {
        _sessions.erase(session);
        return head("canceled") + "/></iq>";
    }
    if (action != "execute" && action != "complete" && action != "next")
        return error_reply(iq, "modify", "bad-request", "malformed-action");
    const auto form = child(cmd, "x", k_ns_data);
    const bool submitted = form && std::string_view(form.attribute("type").value()) == "submit";
    if (!def->args.empty() && !submitted) {
        // First stage: the form (XEP-0050 §3.4). Sessions are bounded: the oldest go first.
        if (_sessions.size() >= 64) _sessions.erase(_sessions.begin());
        session = "s" + std::to_string(++_session_counter);
        _sessions[session] = node;
        std::string out = head("executing") + "><actions execute='complete'><complete/></actions>"
                          "<x xmlns='jabber:x:data' type='form'><title>" + xml_escape(def->title) + "</title>";
        for (const auto& a : def->args) {
            out += "<field var='" + xml_escape(a.name) + "' type='" + std::string(type_name(a.type)) + "' label='" +
                   xml_escape(a.name);
            if (a.type == CommandArg::Type::integer) out += " (" + std::to_string(a.min) + ".." + std::to_string(a.max) + ")";
            out += "'><required/></field>";
        }
        return out + "</x></command></iq>";
    }
    std::map<std::string, std::string> values;
    for (const auto& a : def->args) {
        std::string v;
        bool found = false;
        for (auto f = form.first_child(); f; f = f.next_sibling()) {
            if (local_name(f) == "field" && a.name == f.attribute("var").value()) {
                v = child(f, "value").text().get();
                found = true;
            }
        }
        const std::string why = found ? validate_arg(a, v) : std::string("missing");
        if (!why.empty()) {
            log(LogLevel::warn, "command.bad_argument", {{"command", node}, {"arg", a.name}, {"reason", why}});
            return error_reply(iq, "modify", "bad-request", "bad-payload");
        }
        if (a.type == CommandArg::Type::boolean) v = (v == "1" || v == "true") ? "true" : "false";
        values[a.name] = v;
    }
    _sessions.erase(session);
    const std::string from = iq.attribute("from").value();
    const std::string done_head = head("completed");
    if (def->kind == CommandDef::Kind::program && _runner && _later) {
        // The answer waits for the program; the agent's loop does not (process.hpp).
        std::vector<std::string> argv;
        for (const auto& a : def->argv) {
            if (a.size() > 2 && a.front() == '{' && a.back() == '}') {
                auto it = values.find(a.substr(1, a.size() - 2));
                argv.push_back(it == values.end() ? std::string() : it->second);
            } else {
                argv.push_back(a);
            }
        }
        _runner(argv, def->timeout_ms, 1024, [this, alive = _alive, from, node, done_head](ProgramResult r) {
            if (!*alive) return;
            std::string note;
            std::string error;
            program_outcome(r.status, r.out, note, error);
            _later(finish(from, node, done_head, note, error));
        });
        return {};
    }
    std::string error;
    const std::string note = run(*def, values, error);
    return finish(from, node, done_head, note, error);
}

std::string Commands::finish(const std::string& from, const std::string& node, const std::string& head,
                      const std::string& note, const std::string& error) {
    ++_executed;
    log(error.empty() ? LogLevel::info : LogLevel::warn, "command.executed",
        {{"from", from}, {"command", node}, {"ok", error.empty()}, {"detail", error.empty() ? note : error}});
    return head + "><note type='" + std::string(error.empty() ? "info" : "error") + "'>" +
           xml_escape(error.empty() ? note : error) + "</note></command></iq>";
}

std::string Commands::run(const CommandDef& def, const std::map<std::string, std::string>& args, std::string& error) {
    switch (def.kind) {
        case CommandDef::Kind::shim: {
            if (!_shim) {
                error = "no firmware shim link configured";
                return {};
            }
            error = _shim(def, args);
            return error.empty() ? "sent to the device" : std::string();
        }
        case CommandDef::Kind::file: {
            std::string v = args.begin()->second;
            if (v == "true") v = "1";
            if (v == "false") v = "0";
            v += '\n';
            const int fd = ::open(def.path.c_str(), O_WRONLY | O_CLOEXEC);  // sysfs files exist: never create
            if (fd < 0) {
                error = def.path + ": " + std::strerror(errno);
                return {};
            }
            const ssize_t w = ::write(fd, v.data(), v.size());
            const int saved = errno;
            ::close(fd);
            if (w != static_cast<ssize_t>(v.size())) {
                error = def.path + ": " + (w < 0 ? std::strerror(saved) : "short write");
                return {};
            }
            return "written";
        }
        case CommandDef::Kind::program: {
            std::vector<std::string> argv;
            for (const auto& a : def.argv) {
                if (a.size() > 2 && a.front() == '{' && a.back() == '}') {
                    auto it = args.find(a.substr(1, a.size() - 2));
                    argv.push_back(it == args.end() ? std::string() : it->second);
                } else {
                    argv.push_back(a);
                }
            }
            std::string out;
            const int rc = run_program(argv, def.timeout_ms, 1024, out);
            std::string note;
            program_outcome(rc, out, note, error);
            return note;
        }
    }
    return {};
}

}  // namespace starling::agent
