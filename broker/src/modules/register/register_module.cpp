#include "broker/src/modules/register/register_module.hpp"

#include <memory>
#include <mutex>
#include <vector>

#include "broker/src/session/hooks.hpp"
#include "broker/src/session/input_hold.hpp"
#include "broker/src/session/shard_services.hpp"
#include "broker/src/modules/register/register_limiter.hpp"
#include "broker/src/storage/account_ops.hpp"
#include "broker/src/storage/accounts.hpp"
#include "broker/src/storage/write_path.hpp"
#include "broker/src/util/dom.hpp"
#include "broker/src/util/log.hpp"
#include "xmpp/xml/writer.hpp"

namespace starling::modules {

namespace {

using xmpp::StanzaError;

constexpr std::string_view k_ns_register = "jabber:iq:register";
constexpr std::string_view k_ns_feature = "http://jabber.org/features/iq-register";
constexpr std::string_view k_ns_data = "jabber:x:data";

// Per stream: XEP-0077 §3.1.1 lets a server refuse a second registration on one stream.
struct RegisterState {
    bool registered = false;
};


// Replies on a stream that has not authenticated: no 'to' and no 'from' (RFC 6120 §8.1.1.1).
void preauth_result(Session& session, std::string_view id, std::string_view inner = {}) {
    std::string out;
    xmpp::xml::Writer w(out);
    w.open("iq").attr("type", "result").attr("id", id);
    if (!inner.empty()) w.raw(inner);
    w.close();
    session.deliver(out);
}

void preauth_error(Session& session, std::string_view id, StanzaError condition, std::string_view text = {}) {
    std::string out;
    xmpp::xml::Writer w(out);
    w.open("iq").attr("type", "error").attr("id", id).raw("");
    xmpp::xml::write_stanza_error(out, condition, text);
    w.close();
    session.deliver(out);
}

void preauth_result(PreauthIqEvent& ev, std::string_view inner = {}) { preauth_result(ev.session, ev.id, inner); }
void preauth_error(PreauthIqEvent& ev, StanzaError condition, std::string_view text = {}) {
    preauth_error(ev.session, ev.id, condition, text);
}

// §3.1, once the name is known to be free (`exists`: what the store said of it): the keys are
// derived and the account created.
void create(ShardServices& shard, Session& session, std::string_view id, const std::string& bare,
            const std::string& password, const xmpp::Result<bool, storage::Errc>& exists) {
    if (!exists) {
        preauth_error(session, id, StanzaError::internal_server_error);
        return;
    }
    if (*exists) {
        preauth_error(session, id, StanzaError::conflict, "username taken");  // §3.1
        return;
    }
    auto record = storage::make_account_record(password, shard.server.scram_iterations, shard.random);
    if (!record) {
        preauth_error(session, id, StanzaError::not_acceptable, record.error().message);
        return;
    }
    // Atomic against another shard (or starlingctl) creating the same name meanwhile.
    if (auto created = storage::create_account(shard.accounts, bare, *record); !created) {
        if (created.error().code == storage::AccountErrc::already_exists) {
            preauth_error(session, id, StanzaError::conflict, "username taken");
        } else {
            STARLING_LOG(warn, "register: storing {} failed: {}", bare, created.error().message);
            preauth_error(session, id, StanzaError::internal_server_error);
        }
        return;
    }
    session.slot<RegisterState>().registered = true;
    STARLING_LOG(info, "register: {} registered from {}", bare, session.peer_address());
    preauth_result(session, id);
}

std::string registration_form() {
    std::string inner;
    xmpp::xml::Writer w(inner);
    w.open("query").attr("xmlns", k_ns_register)
        .leaf("instructions", "Choose a username and password for this server.")
        .open("username").close()
        .open("password").close()
        .close();
    return inner;
}

bool secure_enough(Session& s) { return s.is_secure() || s.shard().server.allow_plaintext; }

std::string text_of(pugi::xml_node n) { return n.text().get(); }

}  // namespace

RegisterFields parse_register_fields(const util::StanzaDom& dom, pugi::xml_node query) {
    RegisterFields f;
    for (pugi::xml_node c = query.first_child(); c; c = c.next_sibling()) {
        if (c.type() != pugi::node_element) continue;
        const auto name = util::StanzaDom::local_name(c);
        const auto ns = dom.ns_of(c);
        if (ns == k_ns_register && name == "remove") {
            f.remove = true;
            continue;
        }
        f.has_other_children = true;
        if (ns == k_ns_register && name == "username") {
            f.username = text_of(c);
        } else if (ns == k_ns_register && name == "password") {
            f.password = text_of(c);
        } else if (ns == k_ns_data && name == "x") {
            // XEP-0077 §4 and §6: a submitted form takes precedence over the plain fields.
            for (pugi::xml_node field = c.first_child(); field; field = field.next_sibling()) {
                if (field.type() != pugi::node_element || util::StanzaDom::local_name(field) != "field") continue;
                const std::string_view var = field.attribute("var").value();
                const auto value = dom.child(field, "value", k_ns_data);
                if (var == "username") f.username = value ? text_of(value) : std::string();
                if (var == "password") f.password = value ? text_of(value) : std::string();
            }
        }
    }
    return f;
}

RegisterModule::RegisterModule() = default;
RegisterModule::RegisterModule(RegisterOptions options) : _options(options) {}
RegisterModule::~RegisterModule() = default;

void RegisterModule::install(ModuleContext& ctx) {
    const RegisterOptions opts = _options ? *_options : RegisterOptions{};
    _limiter = std::make_unique<RegistrationLimiter>(opts.per_ip_per_window, opts.window);
    RegistrationLimiter* limiter = _limiter.get();
    ShardServices* shard = &ctx.shard();

    if (opts.open || opts.allow_password_change || opts.allow_cancel) ctx.add_disco_feature(k_ns_register);

    // XEP-0077 §8: the stream feature, before authentication, once the stream is safe for a
    // password in the clear.
    ctx.on_stream_features([opts](Session& s, bool authenticated, std::string& out) {
        if (authenticated || !opts.open || !secure_enough(s)) return;
        out += "<register xmlns='";
        out += k_ns_feature;
        out += "'/>";
    });

    // §3.1: registration before authentication.
    ctx.on_preauth_iq(k_ns_register, "query", [opts, limiter, shard](PreauthIqEvent& ev) {
        if (!opts.open) {
            preauth_error(ev, StanzaError::service_unavailable);  // §3.1: registration not supported
            return Handled::yes;
        }
        if (ev.type == IqType::get) {
            preauth_result(ev, registration_form());
            return Handled::yes;
        }
        if (!secure_enough(ev.session)) {
            // §3.3's answer for a channel not safe for a password (the session normally never
            // lets a pre-TLS IQ through when TLS is required).
            preauth_error(ev, StanzaError::not_authorized, "use TLS to register");
            return Handled::yes;
        }
        auto& state = ev.session.slot<RegisterState>();
        if (state.registered) {
            preauth_error(ev, StanzaError::not_acceptable, "one registration per stream; authenticate now");  // §3.1.1
            return Handled::yes;
        }
        const RegisterFields f = parse_register_fields(ev.dom, ev.payload);
        if (f.remove) {
            preauth_error(ev, StanzaError::unexpected_request, "not registered");  // §3.2: no 'from'
            return Handled::yes;
        }
        if (!f.username || f.username->empty() || !f.password || f.password->empty()) {
            // §3.1: a missing or empty field, including an empty password.
            preauth_error(ev, StanzaError::not_acceptable, "username and password are required");
            return Handled::yes;
        }
        if (!limiter->try_acquire(ev.session.peer_address(), std::chrono::steady_clock::now())) {
            // §3.1.1: not-acceptable for too many registrations.
            preauth_error(ev, StanzaError::not_acceptable, "too many registrations from your address; try again later");
            return Handled::yes;
        }
        const auto& o = shard->server;
        if (f.username->find_first_of("@/") != std::string::npos || !o.serves(ev.domain)) {
            preauth_error(ev, StanzaError::jid_malformed, "not a valid username");
            return Handled::yes;
        }
        auto jid = xmpp::Jid::from_parts(*f.username, ev.domain, {});
        if (!jid || !jid->has_localpart()) {
            preauth_error(ev, StanzaError::jid_malformed, "not a valid username");
            return Handled::yes;
        }
        const std::string bare(jid->bare_view());
        auto* writer = shard->writer;
        if (writer == nullptr) {
            create(*shard, ev.session, ev.id, bare, *f.password, shard->accounts.exists(bare));
            return Handled::yes;
        }
        // Whether the name is taken, without reading the disk on this thread (issue 14): inline
        // from memory, else on the store's reader thread with the stream's input held, so that
        // nothing it sends next (a second registration, its authentication) overtakes the answer.
        auto hold = std::make_shared<session::InputHold>(ev.session);
        storage::AccountStore::get_async(
            *writer, bare,
            [shard, hold, who = std::weak_ptr<Session>(ev.session.shared()), id = ev.id, bare,
             password = *f.password](xmpp::Result<storage::AccountRecord, storage::Errc> r) {
                auto s = who.lock();
                // Gone, or the shard is stopping (the writer completes its reads from its destructor).
                if (s != nullptr && !(!r && r.error() == storage::Errc::stopped)) {
                    const auto exists = r ? xmpp::Result<bool, storage::Errc>(true)
                                          : r.error() == storage::Errc::not_found
                                                ? xmpp::Result<bool, storage::Errc>(false)
                                                : xmpp::Result<bool, storage::Errc>(xmpp::Unexpected(r.error()));
                    create(*shard, *s, id, bare, password, exists);
                }
                hold->done();
            });
        hold->arm();
        return Handled::yes;
    });

    // §3.1: an authenticated user asks what is on file.
    ctx.on_iq(IqType::get, k_ns_register, "query", [](IqEvent& ev) {
        if (!ev.is_to_self_or_server()) return Handled::no;
        std::string inner;
        xmpp::xml::Writer w(inner);
        w.open("query").attr("xmlns", k_ns_register)
            .open("registered").close()
            .leaf("username", ev.from().localpart())
            .close();
        ev.reply_result(inner);
        return Handled::yes;
    });

    // §3.2 cancellation and §3.3 password change.
    ctx.on_iq(IqType::set, k_ns_register, "query", [opts, shard](IqEvent& ev) {
        if (!ev.is_to_self_or_server()) return Handled::no;
        const RegisterFields f = parse_register_fields(ev.dom, ev.payload);
        const std::string bare(ev.from().bare_view());
        if (f.remove) {
            if (f.has_other_children) {
                ev.reply_error(StanzaError::bad_request, "<remove/> must be alone");
                return Handled::yes;
            }
            if (!opts.allow_cancel) {
                ev.reply_error(StanzaError::not_allowed);
                return Handled::yes;
            }
            // The account and its data (storage::delete_account), then the modules' caches: the
            // account's state lives on its home shard, this one (DESIGN §2).
            auto removed = storage::delete_account(shard->accounts, bare);
            if (!removed) {
                if (removed.error().code == storage::AccountErrc::not_found) {
                    ev.reply_error(StanzaError::registration_required);  // already gone (starlingctl)
                    return Handled::yes;
                }
                STARLING_LOG(warn, "register: cancelling {} failed: {}", bare, removed.error().message);
                ev.reply_error(StanzaError::internal_server_error);
                return Handled::yes;
            }
            if (shard->hooks != nullptr) shard->hooks->account_deleted(bare);
            STARLING_LOG(info, "register: {} cancelled its account", bare);
            ev.reply_result();
            // §3.2: then a <not-authorized/> stream error on every stream of the account. They
            // all live on this shard, its home (DESIGN §2). Copied: close() edits the directory.
            std::vector<std::shared_ptr<Session>> streams;
            for (auto* e : shard->router.sessions_of(bare)) {
                if (auto* s = session::as_session(*e)) streams.push_back(s->shared());
            }
            for (auto& s : streams) s->close(xmpp::StreamError::not_authorized, "account removed");
            return Handled::yes;
        }
        if (!opts.allow_password_change) {
            ev.reply_error(StanzaError::not_allowed);  // §3.3
            return Handled::yes;
        }
        if (!secure_enough(ev.session)) {
            ev.reply_error(StanzaError::not_authorized, "use TLS to change the password");  // §3.3
            return Handled::yes;
        }
        if (!f.password || f.password->empty()) {
            // §3.3: never an empty password; the old one stays.
            ev.reply_error(StanzaError::bad_request, "a new password is required");
            return Handled::yes;
        }
        if (f.username) {
            auto named = xmpp::Jid::from_parts(*f.username, ev.from().domainpart(), {});
            if (!named || named->bare_view() != ev.from().bare_view()) {
                ev.reply_error(StanzaError::forbidden, "you may change only your own password");
                return Handled::yes;
            }
        }
        auto changed = storage::change_password(shard->accounts, bare, *f.password, shard->server.scram_iterations,
                                                shard->random);
        if (!changed) {
            switch (changed.error().code) {
            case storage::AccountErrc::bad_password: ev.reply_error(StanzaError::not_acceptable, changed.error().message); break;
            case storage::AccountErrc::not_found: ev.reply_error(StanzaError::registration_required); break;
            default: ev.reply_error(StanzaError::internal_server_error); break;
            }
            return Handled::yes;
        }
        STARLING_LOG(info, "register: {} changed its password", bare);
        ev.reply_result();
        return Handled::yes;
    });
}

ModuleSpec RegisterModule::spec() {
    return {
        .name = "register",
        .summary = "XEP-0077 in-band registration",
        .optional = false,
        .options = {
            OptionSpec::boolean("open", false, "let anyone create an account over XMPP before logging in; false: only starlingctl creates accounts"),
            OptionSpec::integer("per_ip_per_minute", 5, 0, 1'000'000, "registration attempts per address per minute, per shard, when open; 0: no limit"),
            OptionSpec::boolean("password_change", true, "let logged-in users change their password (XEP-0077 §3.3)"),
            OptionSpec::boolean("cancel", true, "let logged-in users delete their account (XEP-0077 §3.2)"),
        },
        .make = [](const OptionValues& v) -> std::unique_ptr<Module> {
        RegisterOptions o;
        o.open = v.boolean("register.open");
        o.per_ip_per_window = static_cast<std::uint32_t>(v.integer("register.per_ip_per_minute"));
        o.allow_password_change = v.boolean("register.password_change");
        o.allow_cancel = v.boolean("register.cancel");
        return std::make_unique<RegisterModule>(o);
    },
    };
}

}  // namespace starling::modules
