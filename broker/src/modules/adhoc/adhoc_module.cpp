#include "broker/src/modules/adhoc/adhoc_module.hpp"

#include <algorithm>
#include <set>

#include "broker/src/router/endpoint.hpp"
#include "broker/src/session/hooks.hpp"
#include "broker/src/session/shard_peers.hpp"
#include "broker/src/session/shard_services.hpp"
#include "broker/src/storage/account_ops.hpp"
#include "broker/src/util/data_form.hpp"
#include "broker/src/util/dom.hpp"
#include "broker/src/util/log.hpp"
#include "broker/src/util/random.hpp"
#include "xmpp/jid.hpp"
#include "xmpp/xml/writer.hpp"

namespace starling::modules {

using util::SubmittedForm;
using xmpp::StanzaError;

namespace {

constexpr std::string_view k_ns_commands = "http://jabber.org/protocol/commands";
constexpr std::string_view k_ns_admin = "http://jabber.org/protocol/admin";  // XEP-0133 FORM_TYPE
constexpr std::string_view k_ns_disco_info = "http://jabber.org/protocol/disco#info";
constexpr std::string_view k_ns_disco_items = "http://jabber.org/protocol/disco#items";

}  // namespace

namespace adhoc {

enum class Cmd : std::uint8_t { add_user, delete_user, change_password, end_session, online_num, online_list, announce };

struct CommandDef {
    Cmd cmd;
    std::string_view node;
    std::string_view name;
    bool needs_input;  // false: execute runs it at once (XEP-0133 §4.15 and the like)
};

}  // namespace adhoc

namespace {

using adhoc::Cmd;
using adhoc::CommandDef;

// XEP-0133 §4: the node names are the admin namespace with the command's fragment.
constexpr CommandDef k_commands[] = {
    {Cmd::add_user, "http://jabber.org/protocol/admin#add-user", "Add a User", true},
    {Cmd::delete_user, "http://jabber.org/protocol/admin#delete-user", "Delete a User", true},
    {Cmd::change_password, "http://jabber.org/protocol/admin#change-user-password", "Change User Password", true},
    {Cmd::end_session, "http://jabber.org/protocol/admin#end-user-session", "End User Session", true},
    {Cmd::online_num, "http://jabber.org/protocol/admin#get-online-users-num", "Get Number of Online Users", false},
    {Cmd::online_list, "http://jabber.org/protocol/admin#get-online-users-list", "Get List of Online Users", true},
    {Cmd::announce, "http://jabber.org/protocol/admin#announce", "Send Announcement to Online Users", true},
};

const CommandDef* find_command(std::string_view node) noexcept {
    for (const auto& c : k_commands) {
        if (c.node == node) return &c;
    }
    return nullptr;
}

// XEP-0050 §4.6: <bad-request/> with one of the commands namespace's conditions.
std::string commands_condition(std::string_view name) {
    std::string out;
    xmpp::xml::Writer w(out);
    w.open(name).attr("xmlns", k_ns_commands).close();
    return out;
}

// The <x type='form'/> a command asks to be filled in (XEP-0133 §4's fields).
void write_form(xmpp::xml::Writer& w, const CommandDef& c) {
    using util::write_field;
    w.open("x").attr("xmlns", util::k_ns_data).attr("type", "form");
    w.leaf("title", c.name);
    write_field(w, "FORM_TYPE", "hidden", {}, {k_ns_admin});
    switch (c.cmd) {
        case Cmd::add_user:
            w.leaf("instructions", "Fill out this form to add a user.");
            write_field(w, "accountjid", "jid-single", "The Jabber ID for the account to be added", {}, true);
            write_field(w, "password", "text-private", "The password for this account", {}, true);
            write_field(w, "password-verify", "text-private", "Retype password", {}, true);
            break;
        case Cmd::delete_user:
            w.leaf("instructions", "Fill out this form to delete accounts; their sessions end.");
            write_field(w, "accountjids", "jid-multi", "The Jabber ID(s) to delete", {}, true);
            break;
        case Cmd::change_password:
            w.leaf("instructions", "Fill out this form to change a user's password.");
            write_field(w, "accountjid", "jid-single", "The Jabber ID for this account", {}, true);
            write_field(w, "password", "text-private", "The new password for this account", {}, true);
            break;
        case Cmd::end_session:
            w.leaf("instructions", "Fill out this form to end sessions (a bare JID ends all of the account's).");
            write_field(w, "accountjids", "jid-multi", "The Jabber ID(s) whose sessions to end", {}, true);
            break;
        case Cmd::online_list:
            w.open("field").attr("var", "max_items").attr("type", "list-single").attr("label", "Maximum number of items");
            w.leaf("value", "100");
            for (std::string_view v : {"25", "50", "75", "100", "150", "200", "none"}) {
                w.open("option").attr("label", v).leaf("value", v).close();
            }
            w.close();
            break;
        case Cmd::announce:
            w.leaf("instructions", "Fill out this form to send a message to every online session.");
            write_field(w, "subject", "text-single", "Subject");
            write_field(w, "announcement", "text-multi", "Announcement", {}, true);
            break;
        case Cmd::online_num: break;
    }
    w.close();
}

// <command status=.../> with `inner` (notes, forms), serialized.
std::string command_xml(const CommandDef& c, std::string_view sessionid, std::string_view status,
                        std::string_view inner = {}) {
    std::string out;
    xmpp::xml::Writer w(out);
    w.open("command").attr("xmlns", k_ns_commands).attr("node", c.node).attr("sessionid", sessionid).attr("status", status);
    if (!inner.empty()) w.raw(inner);
    w.close();
    w.finish();
    return out;
}

std::string note(std::string_view type, std::string_view text) {
    std::string out;
    xmpp::xml::Writer w(out);
    w.open("note").attr("type", type).text(text).close();
    return out;
}

// The JIDs of a jid-multi field, or of a jid-single one, each parsed; `bad` gets the first
// value that is not a JID.
std::vector<xmpp::Jid> jids_of(const SubmittedForm& form, std::string_view var, std::string& bad) {
    std::vector<xmpp::Jid> out;
    if (const auto* f = form.field(var)) {
        for (auto v : f->values) {
            if (v.empty()) continue;
            auto jid = xmpp::Jid::parse(v);
            if (!jid || !jid->has_localpart()) {
                if (bad.empty()) bad = std::string(v);
                continue;
            }
            out.push_back(*std::move(jid));
        }
    }
    return out;
}

}  // namespace

AdhocModule::AdhocModule(adhoc::AdhocOptions options)
    : _options(std::move(options)), _alive(std::make_shared<AdhocModule*>(this)) {}

AdhocModule::~AdhocModule() = default;

void AdhocModule::install(ModuleContext& ctx) {
    _shard = &ctx.shard();
    ctx.add_disco_feature(k_ns_commands);
    ctx.on_iq(IqType::set, k_ns_commands, "command", [this](IqEvent& ev) { return on_command(ev); });
    // Before the disco module's handlers (this module comes first in module_list.cpp): the
    // commands nodes are answered here, every other query falls through to disco.
    ctx.on_iq(IqType::get, k_ns_disco_items, "query", [this](IqEvent& ev) { return on_disco_items(ev); });
    ctx.on_iq(IqType::get, k_ns_disco_info, "query", [this](IqEvent& ev) { return on_disco_info(ev); });
    ctx.add_counter("starling_adhoc_commands_total", "XEP-0133 administration commands, by outcome",
                    {{"outcome", "completed"}}, &_counters.executed);
    ctx.add_counter("starling_adhoc_commands_total", "XEP-0133 administration commands, by outcome",
                    {{"outcome", "refused"}}, &_counters.refused);
    ctx.add_counter("starling_adhoc_commands_total", "XEP-0133 administration commands, by outcome",
                    {{"outcome", "failed"}}, &_counters.failed);
}

bool AdhocModule::is_admin(const IqEvent& ev) const {
    const std::string_view bare = ev.from().bare_view();
    return std::find(_options.admins.begin(), _options.admins.end(), bare) != _options.admins.end();
}

// XEP-0050 §2.2: the command list is the commands node of the server's disco#items; only
// administrators see the administration commands (§2.2 lets a responder tailor the list).
Handled AdhocModule::on_disco_items(IqEvent& ev) {
    if (ev.to_account || std::string_view(ev.payload.attribute("node").value()) != k_ns_commands) return Handled::no;
    std::string inner;
    xmpp::xml::Writer w(inner);
    w.open("query").attr("xmlns", k_ns_disco_items).attr("node", k_ns_commands);
    if (is_admin(ev)) {
        for (const auto& c : k_commands) w.open("item").attr("jid", ev.to).attr("node", c.node).attr("name", c.name).close();
    }
    w.close();
    ev.reply_result(inner);
    return Handled::yes;
}

// XEP-0050 §2.3: a command node's identity and features.
Handled AdhocModule::on_disco_info(IqEvent& ev) {
    if (ev.to_account) return Handled::no;
    const std::string_view node = ev.payload.attribute("node").value();
    const CommandDef* c = find_command(node);
    if (c == nullptr && node != k_ns_commands) return Handled::no;
    std::string inner;
    xmpp::xml::Writer w(inner);
    w.open("query").attr("xmlns", k_ns_disco_info).attr("node", node);
    if (c != nullptr) {
        w.open("identity").attr("category", "automation").attr("type", "command-node").attr("name", c->name).close();
        w.open("feature").attr("var", k_ns_commands).close();
        w.open("feature").attr("var", util::k_ns_data).close();
    } else {
        w.open("identity").attr("category", "automation").attr("type", "command-list").close();
    }
    w.close();
    ev.reply_result(inner);
    return Handled::yes;
}

void AdhocModule::expire_sessions() {
    const auto now = std::chrono::steady_clock::now();
    std::erase_if(_sessions, [now](const auto& kv) { return kv.second.expires <= now; });
}

Handled AdhocModule::on_command(IqEvent& ev) {
    if (ev.to_account) return Handled::no;  // a command for an account is its clients' to answer
    const std::string_view node = ev.payload.attribute("node").value();
    const CommandDef* cmd = find_command(node);
    if (cmd == nullptr) {
        ev.reply_error(StanzaError::item_not_found, "no such command");  // XEP-0050 §4.6
        return Handled::yes;
    }
    if (!is_admin(ev)) {
        ++_counters.refused;
        STARLING_LOG(info, "adhoc: {} refused to {} (not in [adhoc] admins)", cmd->node, ev.from().full());
        ev.reply_error(StanzaError::forbidden, "administrators only");  // XEP-0050 §4.6
        return Handled::yes;
    }
    std::string_view action = ev.payload.attribute("action").value();
    if (action.empty()) action = "execute";  // XEP-0050 §3.3: the default action
    std::string sessionid = ev.payload.attribute("sessionid").value();
    expire_sessions();
    if (!sessionid.empty()) {
        auto it = _sessions.find(sessionid);
        if (it == _sessions.end() || it->second.owner != ev.from().full() || it->second.node != cmd->node) {
            ev.reply_error(StanzaError::bad_request, "unknown or expired session", commands_condition("bad-sessionid"));
            return Handled::yes;
        }
    }
    if (action == "cancel") {
        if (!sessionid.empty()) _sessions.erase(sessionid);
        ev.reply_result(command_xml(*cmd, sessionid, "canceled"));  // XEP-0050 §3.4.4
        return Handled::yes;
    }
    if (action == "prev") {
        ev.reply_error(StanzaError::bad_request, "single-stage command", commands_condition("bad-action"));
        return Handled::yes;
    }
    if (action != "execute" && action != "complete" && action != "next") {
        ev.reply_error(StanzaError::bad_request, {}, commands_condition("malformed-action"));
        return Handled::yes;
    }
    bool has_form = false;
    SubmittedForm form = util::read_form(ev.dom, ev.payload, has_form);
    const bool submitted = has_form && form.type == "submit";
    if (!submitted && (cmd->needs_input || !sessionid.empty())) {
        if (!sessionid.empty()) {
            // §3.4.3: completing needs the filled-in form.
            ev.reply_error(StanzaError::bad_request, "the submitted form is missing", commands_condition("bad-payload"));
            return Handled::yes;
        }
        if (_sessions.size() >= _options.max_sessions) {
            ev.reply_error(StanzaError::resource_constraint, "too many open command sessions; try again later");
            return Handled::yes;
        }
        sessionid = _shard->random.alnum(16);
        _sessions[sessionid] = {std::string(cmd->node), ev.from().full(),
                                std::chrono::steady_clock::now() + std::chrono::seconds(_options.session_timeout_s)};
        std::string inner;
        xmpp::xml::Writer w(inner);
        w.open("actions").attr("execute", "complete").open("complete").close().close();
        write_form(w, *cmd);
        ev.reply_result(command_xml(*cmd, sessionid, "executing", inner));  // §3.4.1
        return Handled::yes;
    }
    if (!sessionid.empty()) {
        _sessions.erase(sessionid);
    } else {
        sessionid = _shard->random.alnum(16);
    }
    if (submitted && !form.form_type().empty() && form.form_type() != k_ns_admin) {
        ev.reply_error(StanzaError::bad_request, "FORM_TYPE must be " + std::string(k_ns_admin),
                       commands_condition("bad-payload"));
        return Handled::yes;
    }
    run(ev, *cmd, form, sessionid);
    return Handled::yes;
}

// ---- The commands (XEP-0133 §4) ---------------------------------------------------------------

void AdhocModule::run(IqEvent& ev, const CommandDef& c, const SubmittedForm& form, const std::string& sessionid) {
    auto& shard = *_shard;
    // Done at once: a note (info or error) and an optional result form.
    auto finish = [&](bool ok, std::string_view text, std::string_view result_form = {}) {
        ++(ok ? _counters.executed : _counters.failed);
        std::string inner = note(ok ? "info" : "error", text);
        inner += result_form;
        ev.reply_result(command_xml(c, sessionid, "completed", inner));
    };
    switch (c.cmd) {
        case Cmd::add_user:
        case Cmd::change_password: {
            std::string bad;
            auto jids = jids_of(form, "accountjid", bad);
            if (!bad.empty() || jids.size() != 1) return finish(false, "accountjid: one JID user@domain is needed");
            const xmpp::Jid& jid = jids.front();
            if (!shard.server.serves(jid.domainpart())) return finish(false, "accountjid: not a domain this server serves");
            const std::string_view password = form.value("password");
            if (password.empty()) return finish(false, "password: must not be empty");
            const std::string bare(jid.bare_view());
            if (c.cmd == Cmd::add_user) {
                if (form.field("password-verify") != nullptr && form.value("password-verify") != password) {
                    return finish(false, "password-verify: the passwords differ");
                }
                // PBKDF2 on the shard thread (storage/account_ops.hpp): an administrator's
                // occasional command, as in-band registration does.
                auto record = storage::make_account_record(password, shard.server.scram_iterations, shard.random);
                if (!record) return finish(false, "password: " + record.error().message);
                auto created = storage::create_account(shard.accounts, bare, *record);
                if (!created) return finish(false, bare + ": " + created.error().message);
                STARLING_LOG(info, "adhoc: {} added account {}", ev.from().full(), bare);
                return finish(true, "Account " + bare + " created.");
            }
            auto changed =
                storage::change_password(shard.accounts, bare, password, shard.server.scram_iterations, shard.random);
            if (!changed) return finish(false, bare + ": " + changed.error().message);
            STARLING_LOG(info, "adhoc: {} changed the password of {}", ev.from().full(), bare);
            return finish(true, "Password of " + bare + " changed.");
        }
        case Cmd::delete_user:
        case Cmd::end_session: {
            std::string bad;
            auto jids = jids_of(form, "accountjids", bad);
            if (!bad.empty()) return finish(false, "accountjids: \"" + bad + "\" is not a JID user@domain");
            if (jids.empty()) return finish(false, "accountjids: at least one JID is needed");
            std::string summary;
            std::vector<std::string> targets;  // bare (every session) or full JIDs
            for (const auto& jid : jids) {
                if (!shard.server.serves(jid.domainpart())) {
                    return finish(false, "accountjids: " + jid.full() + " is not on a domain this server serves");
                }
                if (c.cmd == Cmd::delete_user) {
                    const std::string bare(jid.bare_view());
                    auto deleted = storage::delete_account(shard.accounts, bare);
                    if (!deleted) return finish(false, bare + ": " + deleted.error().message);
                    STARLING_LOG(info, "adhoc: {} deleted account {}", ev.from().full(), bare);
                    targets.push_back(bare);
                } else {
                    targets.push_back(jid.full());
                }
            }
            if (shard.peers == nullptr) return finish(false, "not available on this broker");
            const bool deleting = c.cmd == Cmd::delete_user;
            auto reply = ev.defer();
            session::gather<std::size_t>(
                *shard.peers, shard.shard,
                [targets, deleting](session::ShardServices& there) {
                    std::vector<router::Endpoint*> victims;
                    there.router.for_each_session([&](router::Endpoint& e) {
                        const auto* j = e.jid();
                        for (const auto& t : targets) {
                            if (j->full() == t || j->bare_view() == t) {
                                victims.push_back(&e);
                                break;
                            }
                        }
                    });
                    for (auto* v : victims) {
                        // RFC 6120 §4.9.3.11 for a deleted account; §4.9.3.15 (policy) for an
                        // administrator ending a session.
                        v->close(deleting ? xmpp::StreamError::not_authorized : xmpp::StreamError::policy_violation,
                                 deleting ? "the account was deleted" : "the session was ended by an administrator");
                    }
                    if (deleting && there.hooks != nullptr) {
                        for (const auto& t : targets) there.hooks->account_deleted(t);  // modules forget it
                    }
                    return victims.size();
                },
                [alive = std::weak_ptr<AdhocModule*>(_alive), reply = std::move(reply), &c, sessionid, deleting,
                 n = targets.size()](std::vector<std::size_t> counts) mutable {
                    std::size_t ended = 0;
                    for (auto k : counts) ended += k;
                    if (auto self = alive.lock()) ++(*self)->_counters.executed;
                    const std::string text = deleting ? std::to_string(n) + " account(s) deleted, " +
                                                            std::to_string(ended) + " session(s) ended."
                                                      : std::to_string(ended) + " session(s) ended.";
                    reply.result(command_xml(c, sessionid, "completed", note("info", text)));
                });
            return;
        }
        case Cmd::online_num:
        case Cmd::online_list: {
            std::size_t max = _options.max_online_list;
            if (c.cmd == Cmd::online_list) {
                const std::string_view m = form.value("max_items");
                if (!m.empty() && m != "none") {
                    std::size_t v = 0;
                    for (char ch : m) {
                        if (ch < '0' || ch > '9' || v > 100'000'000) return finish(false, "max_items: a number or none");
                        v = v * 10 + static_cast<std::size_t>(ch - '0');
                    }
                    max = std::min(max, v);
                }
            }
            if (shard.peers == nullptr) return finish(false, "not available on this broker");
            auto reply = ev.defer();
            session::gather<std::vector<std::string>>(
                *shard.peers, shard.shard,
                [](session::ShardServices& there) {
                    std::set<std::string> bare;
                    there.router.for_each_session([&](router::Endpoint& e) { bare.emplace(e.jid()->bare_view()); });
                    return std::vector<std::string>(bare.begin(), bare.end());
                },
                [alive = std::weak_ptr<AdhocModule*>(_alive), reply = std::move(reply), &c, sessionid,
                 max](std::vector<std::vector<std::string>> lists) mutable {
                    std::vector<std::string> all;
                    for (auto& l : lists) all.insert(all.end(), std::make_move_iterator(l.begin()), std::make_move_iterator(l.end()));
                    std::sort(all.begin(), all.end());
                    all.erase(std::unique(all.begin(), all.end()), all.end());
                    if (auto self = alive.lock()) ++(*self)->_counters.executed;
                    std::string inner;
                    xmpp::xml::Writer w(inner);
                    w.open("x").attr("xmlns", util::k_ns_data).attr("type", "result");
                    util::write_field(w, "FORM_TYPE", "hidden", {}, {k_ns_admin});
                    if (c.cmd == Cmd::online_num) {
                        util::write_field(w, "onlineusersnum", {}, "The number of online users",
                                          {std::to_string(all.size())});
                    } else {
                        std::vector<std::string_view> shown;
                        for (std::size_t i = 0; i < all.size() && i < max; ++i) shown.emplace_back(all[i]);
                        util::write_field(w, "onlineuserjids", "jid-multi", "The list of all online users", shown);
                    }
                    w.close();
                    reply.result(command_xml(c, sessionid, "completed", inner));
                });
            return;
        }
        case Cmd::announce: {
            const std::string_view body = form.value("announcement");
            if (body.empty()) return finish(false, "announcement: must not be empty");
            const auto* lines = form.field("announcement");
            std::string text;
            for (auto l : lines->values) {  // text-multi: one <value/> per line (XEP-0004 §3.3)
                if (!text.empty()) text += '\n';
                text += l;
            }
            const std::string subject(form.value("subject"));
            if (shard.peers == nullptr) return finish(false, "not available on this broker");
            auto reply = ev.defer();
            const std::string from(ev.to);
            session::gather<std::size_t>(
                *shard.peers, shard.shard,
                [from, subject, text](session::ShardServices& there) {
                    std::size_t sent = 0;
                    there.router.for_each_session([&](router::Endpoint& e) {
                        if (!e.is_available()) return;
                        // A headline: shown, not stored offline nor archived (RFC 6121 §5.2.2).
                        std::string m;
                        xmpp::xml::Writer w(m);
                        w.open("message").attr("from", from).attr("to", e.jid()->full()).attr("type", "headline");
                        if (!subject.empty()) w.leaf("subject", subject);
                        w.leaf("body", text).close();
                        w.finish();
                        e.deliver(m);
                        ++sent;
                    });
                    return sent;
                },
                [alive = std::weak_ptr<AdhocModule*>(_alive), reply = std::move(reply), &c,
                 sessionid](std::vector<std::size_t> counts) mutable {
                    std::size_t sent = 0;
                    for (auto k : counts) sent += k;
                    if (auto self = alive.lock()) ++(*self)->_counters.executed;
                    reply.result(command_xml(c, sessionid, "completed",
                                             note("info", "Announcement sent to " + std::to_string(sent) + " session(s).")));
                });
            return;
        }
    }
}

ModuleSpec AdhocModule::spec() {
    return {
        .name = "adhoc",
        .summary = "XEP-0050 ad-hoc commands: XEP-0133 administration on the server's JID",
        .optional = true,
        .options = {
            OptionSpec::jids("admins", "accounts allowed to run the administration commands; empty: nobody"),
            OptionSpec::integer("max_sessions", 64, 1, 100'000, "multi-step command sessions open at once, per shard"),
            OptionSpec::integer("session_timeout_s", 600, 10, 86'400, "seconds a started command waits for its form"),
            OptionSpec::integer("max_online_list", 10'000, 1, 10'000'000,
                                "JIDs one get-online-users-list result may hold"),
        },
        .make = [](const OptionValues& v) -> std::unique_ptr<Module> {
            adhoc::AdhocOptions o;
            o.admins = v.jids("adhoc.admins");
            o.max_sessions = static_cast<std::uint32_t>(v.integer("adhoc.max_sessions"));
            o.session_timeout_s = static_cast<std::uint32_t>(v.integer("adhoc.session_timeout_s"));
            o.max_online_list = static_cast<std::uint32_t>(v.integer("adhoc.max_online_list"));
            return std::make_unique<AdhocModule>(std::move(o));
        },
    };
}

}  // namespace starling::modules
