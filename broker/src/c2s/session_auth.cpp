// C2sSession, part 2: SASL (RFC 6120 §6) and resource binding with home-shard migration (§7).
#include "broker/src/c2s/session.hpp"

#include <algorithm>
#include <charconv>
#include <cstdio>

#include <asio/post.hpp>
#include <asio/write.hpp>
#include <mbedtls/md.h>
#include <unistd.h>

#include "broker/src/c2s/options.hpp"
#include "broker/src/c2s/shard_context.hpp"
#include "broker/src/c2s/session_detail.hpp"
#include "broker/src/c2s/session_sasl2.hpp"
#include "broker/src/c2s/session_sm.hpp"
#include "broker/src/session/stamp.hpp"
#include "broker/src/session/hooks.hpp"
#include "broker/src/router/router.hpp"
#include "broker/src/storage/accounts.hpp"
#include "broker/src/util/dom.hpp"
#include "broker/src/util/log.hpp"
#include "broker/src/util/random.hpp"
#include "xmpp/secret.hpp"
#include "xmpp/base64.hpp"
#include "xmpp/ns.hpp"
#include "xmpp/sasl/plain.hpp"
#include "xmpp/xml/raw_text.hpp"
#include "xmpp/xml/writer.hpp"

namespace starling::c2s {

using namespace detail;

namespace {

// HMAC-SHA-256(secret, label || name), for decoy SCRAM credentials.
std::string keyed_digest(std::string_view secret, std::string_view label, std::string_view name) {
    std::string msg;
    msg.reserve(label.size() + name.size());
    msg += label;
    msg += name;
    unsigned char out[32];
    mbedtls_md_hmac(mbedtls_md_info_from_type(MBEDTLS_MD_SHA256),
                    reinterpret_cast<const unsigned char*>(secret.data()), secret.size(),
                    reinterpret_cast<const unsigned char*>(msg.data()), msg.size(), out);
    return std::string(reinterpret_cast<const char*>(out), sizeof out);
}

}  // namespace

// ---- SASL (RFC 6120 §6.4) -------------------------------------------------------------------

void C2sSession::on_auth(const ElementView& el) {
    _scram.reset();
    _sasl = Sasl::none;
    _sasl2.reset();  // a legacy exchange replaces a SASL2 one
    // Only what this session was offered (session_mechanisms.cpp): no PLAIN in the clear, no
    // -PLUS without TLS, no EXTERNAL without a verified certificate.
    const auto mech = xmpp::sasl::parse_mechanism(unescaped(el.attribute("mechanism")));
    const auto offered = offered_mechanisms();
    if (!mech || std::find(offered.begin(), offered.end(), *mech) == offered.end()) {
        sasl_failure("invalid-mechanism", false);
        return;
    }
    begin_mechanism(*mech);
    const std::string_view payload = inner_text(el);
    if (payload.empty()) {
        // §6.4.2: no initial response; an empty challenge asks for it.
        _out += "<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>";
        schedule_flush();
        return;
    }
    sasl_step(payload);
}

// The first step of mechanism `m`, which this session was offered; shared by RFC 6120 SASL and
// SASL2 (XEP-0388), which run the same mechanisms.
void C2sSession::begin_mechanism(xmpp::sasl::Mechanism m) {
    _sasl_mech = m;
    switch (m) {
        case xmpp::sasl::Mechanism::external:
            _sasl = Sasl::external_initial;
            break;
        case xmpp::sasl::Mechanism::plain:
            _sasl = Sasl::plain_initial;
            break;
        case xmpp::sasl::Mechanism::scram_sha_256:
        case xmpp::sasl::Mechanism::scram_sha_256_plus:
            _scram_alg = xmpp::sasl::ScramAlgorithm::sha_256;
            _sasl = Sasl::scram_initial;
            break;
        case xmpp::sasl::Mechanism::scram_sha_1:
        case xmpp::sasl::Mechanism::scram_sha_1_plus:
            _scram_alg = xmpp::sasl::ScramAlgorithm::sha_1;
            _sasl = Sasl::scram_initial;
            break;
    }
}

void C2sSession::on_sasl_response(const ElementView& el) {
    if (_sasl == Sasl::none || _sasl2) {  // none in progress, or a SASL2 one (XEP-0388)
        _sasl2.reset();  // a legacy <response/> ends a SASL2 exchange and is answered in its own form
        sasl_failure("malformed-request", true);
        return;
    }
    sasl_step(inner_text(el));
}

void C2sSession::sasl_step(std::string_view payload_b64) {
    // PLAIN's password, SCRAM's proof: wiped when this step is over.
    xmpp::SecretString secret;
    if (!payload_b64.empty() && payload_b64 != "=") {  // "=" is the empty response (§6.4.2)
        auto d = xmpp::base64_decode(payload_b64, k_max_sasl_payload);
        if (!d) {
            sasl_failure("incorrect-encoding", true);
            return;
        }
        secret = xmpp::SecretString(std::move(*d));
    }
    const std::string_view decoded = secret.view();
    switch (_sasl) {
        case Sasl::plain_initial:
            sasl_plain(decoded);
            return;
        case Sasl::scram_initial:
            sasl_scram_first(decoded);
            return;
        case Sasl::external_initial:
            sasl_external(decoded);
            return;
        case Sasl::scram_final: {
            auto final_msg = _scram->receive_client_final(decoded);
            if (!final_msg || !_scram_user_known) {
                sasl_failure("not-authorized", true);
                return;
            }
            sasl_success(*_scram_user, *final_msg);
            return;
        }
        case Sasl::none:
            break;
    }
    sasl_failure("malformed-request", true);
}

void C2sSession::sasl_plain(std::string_view decoded) {
    auto msg = xmpp::sasl::parse_plain(decoded);
    if (!msg) {
        sasl_failure("malformed-request", true);
        return;
    }
    auto who = xmpp::BareJid::parse(std::string(msg->authcid) + "@" + _domain);
    if (!who || who->localpart().empty()) {
        sasl_failure("not-authorized", true);
        return;
    }
    if (!msg->authzid.empty()) {
        auto authz = xmpp::BareJid::parse(msg->authzid);
        if (!authz || *authz != *who) {
            sasl_failure("invalid-authzid", true);
            return;
        }
    }
    // The account may have to come from disk: off the reactor (session_reads.cpp).
    const std::string bare = who->str();
    // The password waits for the account read in a copy that wipes itself.
    load_account(bare, [who = std::move(*who), password = xmpp::SecretString(msg->password)](
                           C2sSession& self, xmpp::Result<storage::AccountRecord, storage::Errc> rec) {
        bool known = false;
        const auto creds = self.credentials_from(who, xmpp::sasl::ScramAlgorithm::sha_256, rec, known);
        // The decoy costs the same PBKDF2 as a real account: timing does not tell who exists.
        const bool ok = static_cast<bool>(xmpp::sasl::verify_password(creds, password.view()));
        if (!ok || !known) {
            self.sasl_failure("not-authorized", true);
            return;
        }
        self.sasl_success(who, {});
    });
}

void C2sSession::sasl_scram_first(std::string_view decoded) {
    xmpp::sasl::ScramServer::Options so;
    const auto offered = offered_mechanisms();
    // RFC 5802 §6: a client that says "y" after we offered -PLUS had the offer stripped.
    // COMPAT(slixmpp 1.8): it knows only tls-unique (which we do not offer: undefined on TLS
    // 1.3, RFC 9266), asks for it with -PLUS, then falls back to plain SCRAM with "y" where
    // XEP-0440 wants "n". A client that tried tls-unique on this connection saw our -PLUS offer,
    // so its "y" is not a stripped offer from its side; c2s/README.md says what this gives up.
    so.channel_binding_offered = _ctx->options.channel_binding_downgrade_check &&
                                 std::any_of(offered.begin(), offered.end(), xmpp::sasl::is_plus) &&
                                 !_tried_tls_unique;
    so.plus = xmpp::sasl::is_plus(_sasl_mech);
    if (so.plus) so.bindings = channel_bindings();
    _scram = std::make_unique<xmpp::sasl::ScramServer>(_scram_alg, std::move(so));
    if (auto first = _scram->receive_client_first(decoded); !first) {
        if (first.error() == xmpp::sasl::ScramError::unsupported_channel_binding_type) {
            // Refused before any password is looked at: nothing to guess, so no delay and no
            // strike (a client then tries its next mechanism at once).
            _tried_tls_unique = _tried_tls_unique || decoded.starts_with("p=tls-unique,");
            sasl_failure("malformed-request", false);
            return;
        }
        sasl_failure("malformed-request", true);
        return;
    }
    auto who = xmpp::BareJid::parse(std::string(_scram->username()) + "@" + _domain);
    if (!who || _scram->username().empty()) {
        sasl_failure("not-authorized", true);
        return;
    }
    if (!_scram->authzid().empty()) {
        auto authz = xmpp::BareJid::parse(_scram->authzid());
        if (!authz || *authz != *who) {
            sasl_failure("invalid-authzid", true);
            return;
        }
    }
    // The account may have to come from disk: off the reactor (session_reads.cpp).
    const std::string bare = who->str();
    load_account(bare, [who = std::move(*who)](C2sSession& self,
                                               xmpp::Result<storage::AccountRecord, storage::Errc> rec) {
        self.sasl_scram_server_first(who, rec);
    });
}

// SCRAM's server-first message (RFC 5802 §5.1), once the account's keys are read.
void C2sSession::sasl_scram_server_first(const xmpp::BareJid& who,
                                         const xmpp::Result<storage::AccountRecord, storage::Errc>& rec) {
    const auto creds = credentials_from(who, _scram_alg, rec, _scram_user_known);
    auto first = _scram->server_first(creds, _ctx->random.alnum(24));
    if (!first) {
        sasl_failure("temporary-auth-failure", false);
        return;
    }
    _scram_user = who;
    _sasl = Sasl::scram_final;
    _out += _sasl2 ? "<challenge xmlns='urn:xmpp:sasl:2'>" : "<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>";
    xmpp::base64_encode_append(*first, _out);
    _out += "</challenge>";
    schedule_flush();
}

// The stored keys of an account, or decoys derived from the server secret (RFC 5802 §9) so
// that an unknown user and a wrong password look the same from outside.
xmpp::sasl::ScramCredentials C2sSession::credentials_from(const xmpp::BareJid& who, xmpp::sasl::ScramAlgorithm alg,
                                                          const xmpp::Result<storage::AccountRecord, storage::Errc>& rec,
                                                          bool& known) {
    known = false;
    xmpp::sasl::ScramCredentials c;
    c.algorithm = alg;
    if (rec && !rec->disabled) {
        const auto& keys = alg == xmpp::sasl::ScramAlgorithm::sha_256 ? rec->sha256 : rec->sha1;
        if (!keys.empty()) {
            c.salt = keys.salt;
            c.iterations = keys.iterations;
            c.stored_key = keys.stored_key;
            c.server_key = keys.server_key;
            known = true;
            return c;
        }
    } else if (!rec && rec.error() != storage::Errc::not_found) {
        STARLING_LOG(warn, "c2s: account lookup for {} failed: {}", who.str(), storage::to_string(rec.error()));
    }
    const std::size_t n = xmpp::sasl::digest_size(alg);
    const std::string& secret = _ctx->options.server_secret;
    c.salt = keyed_digest(secret, "salt:", who.str()).substr(0, 16);
    c.iterations = _ctx->options.scram_iterations;
    c.stored_key = keyed_digest(secret, "stored:", who.str()).substr(0, n);
    c.server_key = keyed_digest(secret, "server:", who.str()).substr(0, n);
    return c;
}

// The mechanism succeeded. In a SASL2 exchange (`_sasl2` set by <authenticate/>, cleared by
// <auth/>) the outcome is XEP-0388's <success/> with its inline bind; otherwise RFC 6120's.
void C2sSession::sasl_success(const xmpp::BareJid& who, std::string_view additional) {
    ++_ctx->counters.auth_by_mechanism[static_cast<std::size_t>(_sasl_mech)];
    if (_tls) _tls->release_peer_certificate();  // EXTERNAL is over: keep no X509 per idle device
    if (_sasl2) {
        sasl2_succeed(who, additional, nullptr);  // §2.6: the server-final data in <additional-data/>
        return;
    }
    _scram.reset();
    _sasl = Sasl::none;
    _authed = who;
    ++_ctx->counters.auth_success;
    _out += "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>";
    if (!additional.empty()) xmpp::base64_encode_append(additional, _out);
    _out += "</success>";
    // §6.4.6: the client opens a new stream over the same connection.
    _tok->restart();
    _header_sent = false;
    _phase = Phase::header;
    const auto idle = _ctx->options.idle_timeout;
    arm_deadline(idle.count() > 0 ? idle : std::chrono::milliseconds(0));
    schedule_flush();
}

void C2sSession::sasl_failure(std::string_view condition, bool counts) {
    if (_sasl2) {
        sasl2_failure(condition, counts);
        return;
    }
    _scram.reset();
    _sasl = Sasl::none;
    _pending_failure = std::string(condition);
    if (!counts) {
        send_sasl_failure();
        return;
    }
    ++_auth_failures;
    ++_ctx->counters.auth_failure;
    // §6.4.5 and §13.4: slow down guessing; nothing else is read meanwhile.
    pause_for(_ctx->options.auth_failure_delay);
}

void C2sSession::send_sasl_failure() {
    if (_sasl2 && _sasl2->failure_pending) {
        send_sasl2_failure();  // XEP-0388 form (session_sasl2.cpp)
        return;
    }
    _out += "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><";
    _out += _pending_failure;
    _out += "/></failure>";
    _pending_failure.clear();
    if (_auth_failures >= _ctx->options.max_auth_failures) {
        close(StreamError::policy_violation, "too many authentication failures");
        return;
    }
    schedule_flush();
}

// ---- Binding (RFC 6120 §7) ------------------------------------------------------------------

void C2sSession::on_bind(const ElementView& el) {
    util::StanzaDom dom(el.bytes(), xmpp::ns::client);
    const auto root = dom.root();
    const std::string_view type = root.attribute("type").value();
    _bind_id = root.attribute("id").value();
    if (dom.ok()) {
        if (auto sess = dom.child(root, "session", k_ns_session); sess && type == "set") {
            // Legacy session establishment before binding: nothing to do.
            std::string reply;
            xmpp::xml::Writer w(reply);
            w.open("iq").attr("type", "result").attr("id", _bind_id).close();
            deliver(reply);
            return;
        }
    }
    const auto bind = dom.ok() ? dom.child(root, "bind", xmpp::ns::bind) : pugi::xml_node();
    if (!bind || type != "set") {
        close(StreamError::not_authorized, "bind a resource first");
        return;
    }
    std::string resource = dom.child(bind, "resource", xmpp::ns::bind).text().get();
    _bind_generated = resource.empty();
    if (_bind_generated) resource = _ctx->random.alnum(12);  // §7.6.2.1
    auto jid = xmpp::Jid::with_resource(*_authed, resource);
    if (!jid) {
        std::string reply;
        xmpp::xml::Writer w(reply);
        w.open("iq").attr("type", "error").attr("id", _bind_id);
        w.finish();
        reply.resize(reply.size() - 5);  // reopen to append the error before </iq>
        xmpp::xml::write_stanza_error(reply, StanzaError::bad_request, "invalid resourcepart");
        reply += "</iq>";
        deliver(reply);
        return;
    }
    _binding = std::move(*jid);
    _phase = Phase::migrating;
    try_migrate();
}

void C2sSession::try_migrate() {
    if (_phase != Phase::migrating || _writing || _flush_scheduled || _handoff_pending || _read_queued) return;
    const auto home = _ctx->router.home_of(_binding->bare_view());
    if (home == _ctx->shard) {
        finish_bind();
        return;
    }
    // The hand-off runs as a handler of its own, so that no frame of the current handler
    // (on_read, on_written...) is left to touch the session once the home shard owns it.
    _handoff_pending = true;
    asio::post(_ctx->io, [self = shared_from_this()] { self->hand_off(); });
}

void C2sSession::hand_off() {
    _handoff_pending = false;
    if (_phase != Phase::migrating) return;
    // on_written, flush and a queued read come back to try_migrate(). No read waits on the
    // socket: input is processed only by read handlers, which do not park while migrating.
    if (_writing || _flush_scheduled || _read_queued) return;
    const auto home = _ctx->router.home_of(_binding->bare_view());
    // Nothing may be pending on this shard's io_context once we leave it: no read (read()
    // refuses while migrating), no write or flush (checked above), no timer (destroyed here;
    // their handlers hold weak pointers and see operation_aborted).
    _deadline.reset();
    _pause.reset();
    asio::error_code ec;
    const int fd = _socket->release(ec);
    _socket.reset();
    if (ec) {
        teardown();
        return;
    }
    auto& old = *_ctx;
    auto ip = old.per_ip.find(_peer);
    if (ip != old.per_ip.end() && --ip->second == 0) old.per_ip.erase(ip);
    router::Envelope env;
    env.kind = router::Envelope::Kind::adopt;
    env.session = shared_from_this();
    env.fd = fd;
    old.sessions.erase(this);
    // From here on the session belongs to the home shard: only `old` may be touched.
    if (!old.router.send_session(home, std::move(env))) {
        ::close(fd);  // the home shard is flooded; the client will reconnect
        ++old.counters.connections_closed;
        return;
    }
    old.router.flush();
}

void C2sSession::adopt(ShardContext& ctx, int fd) {
    _ctx = &ctx;
    ctx.sessions.emplace(this, shared_from_this());
    ++ctx.per_ip[_peer];
    _socket.emplace(ctx.io);
    asio::error_code ec;
    _socket->assign(_v6 ? asio::ip::tcp::v6() : asio::ip::tcp::v4(), fd, ec);
    if (!ec) _socket->non_blocking(true, ec);
    if (ec) {
        ::close(fd);
        teardown();
        return;
    }
    const auto idle = ctx.options.idle_timeout;
    arm_deadline(idle.count() > 0 ? idle : std::chrono::milliseconds(0));
    finish_bind();
    read();
}

void C2sSession::finish_bind() {
    if (_resuming) {
        finish_resume();  // XEP-0198 §5: a <resume/> travelled here instead of a bind
        return;
    }
    if (_sasl2 && _sasl2->bind) {
        finish_bind2();  // XEP-0386: answered inside the SASL2 success (session_sasl2.cpp)
        return;
    }
    auto& router = _ctx->router;
    std::string reply;
    xmpp::xml::Writer w(reply);
    if (router.resource_count(_binding->bare_view()) >= _ctx->options.max_resources_per_user) {
        // §7.6.2.1 resource-constraint: the account has too many connected resources.
        _binding.reset();
        _phase = Phase::negotiating;
        reply += "<iq type='error' id='";
        xmpp::xml::escape_attribute_into(reply, _bind_id);
        reply += "'>";
        xmpp::xml::write_stanza_error(reply, StanzaError::resource_constraint);
        reply += "</iq>";
        deliver(reply);
        process_input();
        read();
        return;
    }
    while (auto* old = router.find(_binding->full())) {
        if (_bind_generated) {  // our own random resource collided: draw again
            _binding = xmpp::Jid::with_resource(*_authed, _ctx->random.alnum(12)).value();
            continue;
        }
        // §7.7.2.2: the newer session wins; the older one gets <conflict/>.
        router.remove(old);
        old->close(StreamError::conflict, "replaced by a new connection");
    }
    _jid = std::move(_binding);
    _binding.reset();
    router.add(this);
    ++_ctx->counters.sessions_bound;
    _phase = Phase::bound;
    if (_ctx->hooks != nullptr) _ctx->hooks->session_event(*this, session::SessionEvent::bound);
    w.open("iq").attr("type", "result").attr("id", _bind_id);
    w.open("bind").attr("xmlns", xmpp::ns::bind).leaf("jid", _jid->full()).close();
    w.close();
    deliver(reply);
    process_input();
    after_turn();
    // Reading stopped for the migration; this may run from a write completion, not a read.
    read();
}

}  // namespace starling::c2s
