// C2sSession, part 5: XEP-0388 SASL2 (authenticate, challenge/response, success with
// additional data, no stream restart), XEP-0386 Bind2 (bind a resource, enable XEP-0198 and
// XEP-0352 inactive in the same round trip), XEP-0484 FAST (tokens issued on request, login
// with HT-SHA-256-NONE: one HMAC, no PBKDF2). Legacy SASL (RFC 6120 §6) is session_auth.cpp.
#include "broker/src/c2s/session_sasl2.hpp"

#include <algorithm>
#include <chrono>
#include <ctime>
#include <memory>

#include "broker/src/c2s/options.hpp"
#include "broker/src/c2s/session_detail.hpp"
#include "broker/src/c2s/session_sm.hpp"
#include "broker/src/c2s/shard_context.hpp"
#include "broker/src/router/router.hpp"
#include "broker/src/session/hooks.hpp"
#include "broker/src/storage/accounts.hpp"
#include "broker/src/storage/fast_tokens.hpp"
#include "broker/src/storage/write_path.hpp"
#include "broker/src/util/dom.hpp"
#include "broker/src/util/log.hpp"
#include "broker/src/util/random.hpp"
#include "xmpp/secret.hpp"
#include "xmpp/base64.hpp"
#include "xmpp/ns.hpp"
#include "xmpp/sasl/ht.hpp"
#include "xmpp/xml/raw_text.hpp"
#include "xmpp/xml/writer.hpp"

namespace starling::c2s {

using namespace detail;

namespace {

std::int64_t unix_now() {
    return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// XEP-0082 DateTime, UTC.
std::string xep82(std::int64_t unix_s) {
    const std::time_t t = static_cast<std::time_t>(unix_s);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

// The xmpp/sasl/ht.hpp constant of a token mechanism fast_binding() accepted.
std::string_view ht_constant(std::string_view m) noexcept {
    if (m == xmpp::sasl::k_ht_sha_256_expr) return xmpp::sasl::k_ht_sha_256_expr;
    if (m == xmpp::sasl::k_ht_sha_256_endp) return xmpp::sasl::k_ht_sha_256_endp;
    return xmpp::sasl::k_ht_sha_256_none;
}

bool truthy(std::string_view s) noexcept { return s == "true" || s == "1"; }

std::optional<std::uint32_t> parse_u32(std::string_view s) noexcept {
    const auto v = to_int(s, -1);
    if (v < 0 || v > 0xffff'ffffLL) return std::nullopt;
    return static_cast<std::uint32_t>(v);
}

}  // namespace

// ---- Features (XEP-0388 §2.1, XEP-0386 §3, XEP-0484 §3) -------------------------------------

void C2sSession::append_sasl2_features() {
    const auto& o = _ctx->options;
    if (!o.sasl2) return;
    // §2.1: the same mechanisms as RFC 6120 SASL on this connection (-PLUS and EXTERNAL under
    // TLS; the channel-binding types are the stream feature of XEP-0440, shared by both).
    _out += "<authentication xmlns='urn:xmpp:sasl:2'>";
    for (const auto m : offered_mechanisms()) {
        _out += "<mechanism>";
        _out += xmpp::sasl::to_string(m);
        _out += "</mechanism>";
    }
    _out += "<inline><bind xmlns='urn:xmpp:bind:0'><inline>";
    if (o.stream_management) _out += "<feature var='urn:xmpp:sm:3'/>";
    if (_ctx->hooks != nullptr && _ctx->hooks->find_module("csi") != nullptr) _out += "<feature var='urn:xmpp:csi:0'/>";
    _out += "</inline></bind>";
    if (o.stream_management) _out += "<sm xmlns='urn:xmpp:sm:3'/>";  // XEP-0198 §5 inline resumption
    // XEP-0484 §3: the token mechanisms are offered here, not among the SASL2 mechanisms.
    if (o.fast && _ctx->store != nullptr) {
        _out += "<fast xmlns='urn:xmpp:fast:0'>";
        for (const auto m : fast_mechanisms()) {
            _out += "<mechanism>";
            _out += m;
            _out += "</mechanism>";
        }
        _out += "</fast>";
    }
    _out += "</inline></authentication>";
}

// ---- Exchange (XEP-0388 §2.3-2.6) --------------------------------------------------------------

void C2sSession::on_sasl2_element(const ElementView& el) {
    if (!_ctx->options.sasl2) {
        close(StreamError::unsupported_stanza_type, el.local_name());
        return;
    }
    if (tls_required() && !is_secure()) {
        _out += "<failure xmlns='urn:xmpp:sasl:2'><encryption-required xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/></failure>";
        schedule_flush();
        return;
    }
    const auto name = el.local_name();
    if (name == "authenticate") {
        sasl2_authenticate(el);
    } else if (name == "response") {
        if (!_sasl2 || !_sasl2->active || _sasl == Sasl::none) {
            sasl2_failure("malformed-request", true);
            return;
        }
        sasl_step(inner_text(el));
    } else if (name == "abort") {
        sasl2_failure("aborted", false);
    } else {
        close(StreamError::unsupported_stanza_type, name);
    }
}

void C2sSession::sasl2_authenticate(const ElementView& el) {
    _scram.reset();
    _sasl = Sasl::none;
    util::StanzaDom dom(el.bytes(), k_ns_sasl2);
    if (!dom.ok()) {
        close(StreamError::bad_format, "unparsable <authenticate/>");
        return;
    }
    const auto root = dom.root();
    auto st = std::make_unique<Sasl2>();
    // The token mechanisms of this connection (their channel bindings computed once per login).
    const auto fast = fast_mechanisms();
    st->active = true;
    if (auto ua = dom.child(root, "user-agent", k_ns_sasl2)) {
        st->user_agent = ua.attribute("id").value();
        if (st->user_agent.size() > k_max_user_agent_id) {
            _sasl2 = std::move(st);
            sasl2_failure("malformed-request", true);
            return;
        }
    }
    if (auto bind = dom.child(root, "bind", k_ns_bind2)) {
        st->bind = true;
        st->tag = dom.child(bind, "tag", k_ns_bind2).text().get();
        if (auto en = dom.child(bind, "enable", k_ns_sm)) {
            st->sm_enable = true;
            st->sm_resume = truthy(en.attribute("resume").value());
        }
        st->csi_inactive = static_cast<bool>(dom.child(bind, "inactive", k_ns_csi));
    }
    if (auto r = dom.child(root, "resume", k_ns_sm)) {
        const auto h = to_int(r.attribute("h").value(), -1);
        st->resume_previd = r.attribute("previd").value();
        if (h < 0 || h > 0xffff'ffffLL || st->resume_previd.empty() || st->resume_previd.size() > 64) {
            _sasl2 = std::move(st);
            sasl2_failure("malformed-request", true);
            return;
        }
        st->resume = true;
        st->resume_h = static_cast<std::uint32_t>(h);
    }
    if (auto rt = dom.child(root, "request-token", k_ns_fast)) {
        // A token is for the mechanism it was requested for (one this connection offers).
        const std::string_view want = rt.attribute("mechanism").value();
        for (const auto m : fast) {
            if (m == want) {
                st->request_token = true;
                st->token_mechanism = m;
            }
        }
    }
    if (auto f = dom.child(root, "fast", k_ns_fast)) {
        if (auto c = f.attribute("count")) st->fast_count = parse_u32(c.value());
        st->fast_invalidate = truthy(f.attribute("invalidate").value());
    }
    const auto initial = dom.child(root, "initial-response", k_ns_sasl2);
    const std::string payload = initial ? initial.text().get() : "";
    const std::string_view mech = root.attribute("mechanism").value();
    _sasl2 = std::move(st);
    const auto& o = _ctx->options;
    if (o.fast && _ctx->store != nullptr && std::find(fast.begin(), fast.end(), mech) != fast.end()) {
        // XEP-0484 §4: a token login always carries its initial response.
        if (!initial) {
            sasl2_failure("malformed-request", true);
            return;
        }
        auto decoded = xmpp::base64_decode(payload, k_max_sasl_payload);
        if (!decoded) {
            sasl2_failure("incorrect-encoding", true);
            return;
        }
        const xmpp::SecretString proof(std::move(*decoded));  // wiped when this step is over
        sasl2_fast(mech, proof.view());
        return;
    }
    // Only what this connection was offered, as with <auth/> (session_mechanisms.cpp).
    const auto m = xmpp::sasl::parse_mechanism(mech);
    const auto offered = offered_mechanisms();
    if (!m || std::find(offered.begin(), offered.end(), *m) == offered.end()) {
        sasl2_failure("invalid-mechanism", false);
        return;
    }
    begin_mechanism(*m);
    if (!initial) {
        _out += "<challenge xmlns='urn:xmpp:sasl:2'/>";  // §2.4: asks for the client's first message
        schedule_flush();
        return;
    }
    // The exchange is RFC 6120's (session_auth.cpp); sasl_success and sasl_failure answer in
    // SASL2's form while _sasl2 is set.
    sasl_step(payload);
}

// The token mechanisms this connection offers, best first: bound to the TLS connection where
// it has the binding (tls-exporter on TLS 1.3, RFC 9266 §3; tls-server-end-point), then NONE.
std::vector<std::string_view> C2sSession::fast_mechanisms() const {
    std::vector<std::string_view> out;
    if (_ctx->options.channel_binding && is_secure()) {
        const auto cb = channel_bindings();
        if (!cb.tls_exporter.empty()) out.push_back(xmpp::sasl::k_ht_sha_256_expr);
        if (!cb.tls_server_end_point.empty()) out.push_back(xmpp::sasl::k_ht_sha_256_endp);
    }
    out.push_back(xmpp::sasl::k_ht_sha_256_none);
    return out;
}

// The cb-data of a token mechanism on this connection; nullopt when it has none to give.
std::optional<std::string> C2sSession::fast_binding(std::string_view mechanism) const {
    if (mechanism == xmpp::sasl::k_ht_sha_256_none) return std::string();
    const auto cb = channel_bindings();
    const std::string& data = mechanism == xmpp::sasl::k_ht_sha_256_expr   ? cb.tls_exporter
                              : mechanism == xmpp::sasl::k_ht_sha_256_endp ? cb.tls_server_end_point
                                                                           : std::string();
    if (data.empty()) return std::nullopt;
    return data;
}

// What a token login said, kept while the account and its tokens are read.
struct C2sSession::FastAttempt {
    xmpp::BareJid who;
    std::string_view mechanism;  // an xmpp/sasl/ht.hpp constant
    std::string cb;              // its cb-data on this connection
    std::string initiator_hash;
    std::uint64_t revocations = 0;  // the account's revocation generation before the read
};

// XEP-0484 §4 with HT-SHA-256-*: one HMAC per stored token of the account (at most
// fast.max_tokens_per_account), no PBKDF2. A token logs in only with the mechanism it was issued
// for. Unknown users, wrong, expired, revoked and replayed tokens and a wrong channel binding all
// get the same not-authorized after the same failure delay.
void C2sSession::sasl2_fast(std::string_view mechanism, std::string_view decoded) {
    const auto cb = fast_binding(mechanism);
    if (!cb) {
        sasl2_failure("invalid-mechanism", false);
        return;
    }
    auto msg = xmpp::sasl::parse_ht_initial(decoded);
    if (!msg) {
        sasl2_failure("malformed-request", true);
        return;
    }
    auto who = xmpp::BareJid::parse(std::string(msg->authcid) + "@" + _domain);
    if (!who || !who->has_localpart()) {
        sasl2_failure("not-authorized", true);
        return;
    }
    // The account, then its tokens: either may have to come from disk, so both are read off the
    // reactor (session_reads.cpp).
    auto attempt = std::make_unique<FastAttempt>(FastAttempt{
        .who = std::move(*who),
        .mechanism = ht_constant(mechanism),
        .cb = *cb,
        .initiator_hash = std::string(msg->initiator_hash),
    });
    const std::string bare = attempt->who.str();
    load_account(bare, [attempt = std::move(attempt)](C2sSession& self,
                                                      xmpp::Result<storage::AccountRecord, storage::Errc> account) mutable {
        if (!account || account->disabled) {
            self.sasl2_failure("not-authorized", true);
            return;
        }
        attempt->revocations = self.fast_revocation_generation(attempt->who.str());
        const std::string account_jid = attempt->who.str();
        self.load_fast_tokens(account_jid, [attempt = std::move(attempt)](
                                               C2sSession& again,
                                               xmpp::Result<std::vector<storage::FastToken>, storage::Errc> tokens) {
            again.sasl2_fast_verify(*attempt, std::move(tokens));
        });
    });
}

// The account exists and is enabled; `tokens` are its FAST tokens as read.
void C2sSession::sasl2_fast_verify(const FastAttempt& attempt,
                                   xmpp::Result<std::vector<storage::FastToken>, storage::Errc> tokens) {
    const auto& who = attempt.who;
    if (!tokens) {
        STARLING_LOG(warn, "c2s {}: FAST tokens of {} unreadable: {}", _peer, who.str(), storage::to_string(tokens.error()));
        sasl2_failure("temporary-auth-failure", false);
        return;
    }
    if (fast_revocation_generation(who.str()) != attempt.revocations) {
        // Revoked while they were read: writing them back (the counter) would undo it
        // (storage::FastRevocations). The client may try again; it will find none.
        STARLING_LOG(info, "c2s {}: FAST login of {} refused: its tokens were revoked while it read them", _peer,
                     who.str());
        sasl2_failure("temporary-auth-failure", false);
        return;
    }
    const std::string_view mechanism = attempt.mechanism;
    const bool expired = storage::drop_expired(*tokens, unix_now());
    storage::FastToken* used = nullptr;
    for (auto& t : *tokens) {
        // Tokens stored before the mechanism was recorded are HT-SHA-256-NONE ones.
        const std::string_view for_mech = t.mechanism.empty() ? xmpp::sasl::k_ht_sha_256_none : t.mechanism;
        if (for_mech == mechanism && xmpp::sasl::ht_verify(t.key, attempt.cb, attempt.initiator_hash)) used = &t;
    }
    auto& st = *_sasl2;
    // XEP-0484 §4.1: the counter must grow with each use of a token (with NONE it is what stops
    // a replay; bound mechanisms need it too); the token is the user agent's own.
    const bool ok = used != nullptr && st.fast_count && *st.fast_count > used->count &&
                    (used->user_agent.empty() || used->user_agent == st.user_agent);
    if (!ok) {
        // The expired ones go; nobody waits for that write (a failed one is logged by the
        // committer, and they are dropped again at the next login).
        if (expired) stage_fast_tokens(who.str(), *tokens);
        sasl2_failure("not-authorized", true);
        return;
    }
    used->count = *st.fast_count;
    const storage::FastToken used_copy = *used;
    storage::forget_superseded(*tokens, used_copy);
    if (st.fast_invalidate) std::erase(*tokens, used_copy);
    ++_ctx->counters.auth_fast;
    sasl2_succeed(who, xmpp::sasl::ht_responder(used_copy.key, attempt.cb), &*tokens);
}

// Authenticated. `fast_tokens`: the account's tokens already loaded (and changed) by a FAST
// login, to be written back with any new token in one write.
void C2sSession::sasl2_succeed(const xmpp::BareJid& who, std::string_view additional,
                               std::vector<storage::FastToken>* fast_tokens) {
    if (fast_tokens == nullptr && _ctx->store != nullptr && _ctx->options.fast && _sasl2->request_token) {
        // A new token joins the account's others: read them first, off the reactor
        // (session_reads.cpp). Unreadable, or revoked while read (storage::FastRevocations):
        // the login succeeds without a token, as when it cannot be stored.
        const auto revocations = fast_revocation_generation(who.str());
        load_fast_tokens(who.str(), [who, additional = std::string(additional), revocations](
                                        C2sSession& self,
                                        xmpp::Result<std::vector<storage::FastToken>, storage::Errc> tokens) mutable {
            if (!tokens) {
                STARLING_LOG(warn, "c2s {}: FAST tokens of {} unreadable: {}", self._peer, who.str(),
                             storage::to_string(tokens.error()));
            }
            const bool usable = tokens && self.fast_revocation_generation(who.str()) == revocations;
            self.sasl2_succeed_with(who, additional, usable ? &*tokens : nullptr, false);
        });
        return;
    }
    sasl2_succeed_with(who, additional, fast_tokens, fast_tokens != nullptr);
}

// `tokens`: the account's tokens, read (and changed by a FAST login); null when they could not
// be read. When they change, they are written back through the shard's write path
// (session_reads.cpp) and the <success> waits until the write is durable: a token is handed out
// only once it would survive a power cut, a counter is accepted only once it is in the WAL.
void C2sSession::sasl2_succeed_with(const xmpp::BareJid& who, std::string_view additional,
                                    std::vector<storage::FastToken>* tokens, bool fast_login) {
    _scram.reset();
    _sasl = Sasl::none;
    auto& st = *_sasl2;
    st.active = false;
    st.additional = std::string(additional);
    const auto& o = _ctx->options;
    if (_ctx->store == nullptr || !o.fast || !(st.request_token || fast_login)) {
        sasl2_authenticated(who);
        return;
    }
    if (tokens == nullptr) {
        // Unreadable (a FAST login always has them: it verified against them).
        sasl2_fast_stored(who, fast_login, xmpp::Unexpected(storage::Errc::io_error));
        return;
    }
    bool issued = false;
    if (st.request_token) {
        const auto now = unix_now();
        const std::string token = _ctx->random.alnum(k_fast_token_chars);
        storage::drop_expired(*tokens, now);
        storage::FastToken t;
        t.key = xmpp::sasl::ht_key(token);
        t.user_agent = st.user_agent;
        t.mechanism = std::string(st.token_mechanism);
        t.issued_unix_s = now;
        t.expiry_unix_s = now + o.fast_token_lifetime.count();
        storage::add_token(*tokens, std::move(t), o.fast_max_tokens_per_account);
        // Sent in the <success> once stored (sasl2_fast_stored drops it otherwise).
        st.token_xml = "<token xmlns='urn:xmpp:fast:0' expiry='" + xep82(now + o.fast_token_lifetime.count()) +
                       "' token='" + token + "'/>";
        issued = true;
    }
    // A token handed out or invalidated must survive a power cut; a counter update needs the
    // WAL only. Either way the session reads no input until the write is done.
    const auto level = issued || st.fast_invalidate ? storage::Durability::synced : storage::Durability::logged;
    store_fast_tokens(who.str(), *tokens, level,
                      [who, fast_login](C2sSession& self, xmpp::Result<void, storage::Errc> stored) {
                          self.sasl2_fast_stored(who, fast_login, stored);
                      });
}

// The account's tokens are written (or could not be read or written: `stored` says).
void C2sSession::sasl2_fast_stored(const xmpp::BareJid& who, bool fast_login, xmpp::Result<void, storage::Errc> stored) {
    auto& st = *_sasl2;
    if (!stored) {
        st.token_xml.clear();  // a token that is not stored would not log in
        if (fast_login) {
            // The token's new count could not be stored: accepting would leave this login
            // replayable. The device still has its password.
            STARLING_LOG(warn, "c2s {}: FAST login of {} refused: its token's counter could not be stored: {}", _peer,
                         who.str(), storage::to_string(stored.error()));
            sasl2_failure("temporary-auth-failure", false);
            return;
        }
        STARLING_LOG(warn, "c2s {}: FAST tokens of {} not stored: {}", _peer, who.str(),
                     storage::to_string(stored.error()));
    }
    sasl2_authenticated(who);
}

// The login succeeded (and what it had to store is stored): resume, bind, or the features.
void C2sSession::sasl2_authenticated(const xmpp::BareJid& who) {
    _authed = who;
    ++_ctx->counters.auth_success;
    auto& st = *_sasl2;
    const auto& o = _ctx->options;
    const auto idle = o.idle_timeout;
    arm_deadline(idle.count() > 0 ? idle : std::chrono::milliseconds(0));
    if (st.resume && o.stream_management) {
        // XEP-0198 §5 inline: as a <resume/> after authentication would, on the home shard;
        // finish_resume() answers inside the success, or falls back to Bind2 (or features).
        _resuming = true;
        _resume_id = st.resume_previd;
        _resume_h = st.resume_h;
        _binding = xmpp::Jid(*_authed);
        _phase = Phase::migrating;
        try_migrate();
        return;
    }
    if (st.bind) {
        // XEP-0386 §4: the resource is the client's tag and a part of ours, so that one device's
        // connections are told apart and a tag cannot take over another session's resource.
        std::string tag = st.tag.size() > k_max_bind_tag ? std::string() : st.tag;
        auto jid = xmpp::Jid::with_resource(*_authed, tag.empty() ? _ctx->random.alnum(12) : tag + "~" + _ctx->random.alnum(8));
        if (!jid) jid = xmpp::Jid::with_resource(*_authed, _ctx->random.alnum(12));
        _binding = std::move(*jid);
        _bind_generated = true;
        _phase = Phase::migrating;
        try_migrate();  // finish_bind() -> finish_bind2() on the home shard
        return;
    }
    // §2.7: no stream restart; the stream goes on with the features of an authenticated one.
    sasl2_success_open(_authed->str());
    sasl2_success_close();
    send_features();
}

// <success> up to what the inline features add; sasl2_success_close() ends it.
void C2sSession::sasl2_success_open(std::string_view authorization_identifier) {
    const auto& st = *_sasl2;
    _out += "<success xmlns='urn:xmpp:sasl:2'>";
    if (!st.additional.empty()) {
        _out += "<additional-data>";
        xmpp::base64_encode_append(st.additional, _out);
        _out += "</additional-data>";
    }
    _out += "<authorization-identifier>";
    xmpp::xml::escape_text_into(_out, authorization_identifier);
    _out += "</authorization-identifier>";
    _out += st.sm_failed_xml;
}

void C2sSession::sasl2_success_close() {
    _out += _sasl2->token_xml;
    _out += "</success>";
    _sasl2.reset();
}

// On the home shard: the inline <resume/> found nothing to resume. The success says so
// (<failed/>), then Bind2 binds as asked, or the stream goes on with its features.
void C2sSession::sasl2_resume_failed(std::string failed_xml) {
    auto& st = *_sasl2;
    st.sm_failed_xml = std::move(failed_xml);
    st.resume = false;
    if (st.bind) {
        // Same bare JID, so this is already its home shard: bind here.
        std::string tag = st.tag.size() > k_max_bind_tag ? std::string() : st.tag;
        auto jid = xmpp::Jid::with_resource(*_authed, tag.empty() ? _ctx->random.alnum(12) : tag + "~" + _ctx->random.alnum(8));
        if (!jid) jid = xmpp::Jid::with_resource(*_authed, _ctx->random.alnum(12));
        _binding = std::move(*jid);
        _bind_generated = true;
        finish_bind2();
        return;
    }
    sasl2_success_open(_authed->str());
    sasl2_success_close();
    send_features();
    process_input();
    after_turn();
    read();
}

void C2sSession::sasl2_failure(std::string_view condition, bool counts) {
    _scram.reset();
    _sasl = Sasl::none;
    if (!_sasl2) _sasl2 = std::make_unique<Sasl2>();
    _sasl2->active = false;
    _sasl2->failure_pending = true;
    _pending_failure = std::string(condition);
    if (!counts) {
        send_sasl2_failure();
        return;
    }
    ++_auth_failures;
    ++_ctx->counters.auth_failure;
    pause_for(_ctx->options.auth_failure_delay);  // RFC 6120 §6.4.5, as legacy SASL
}

void C2sSession::send_sasl2_failure() {
    // XEP-0388 §2.6: the RFC 6120 conditions, in their own namespace.
    _out += "<failure xmlns='urn:xmpp:sasl:2'><";
    _out += _pending_failure;
    _out += " xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/></failure>";
    _pending_failure.clear();
    _sasl2.reset();
    if (_auth_failures >= _ctx->options.max_auth_failures) {
        close(StreamError::policy_violation, "too many authentication failures");
        return;
    }
    schedule_flush();
}

// ---- Bind2 (XEP-0386 §4), on the home shard ----------------------------------------------------

void C2sSession::finish_bind2() {
    auto& router = _ctx->router;
    // What the success needs after sasl2_success_close() has dropped the exchange's state.
    const bool sm_enable = _sasl2->sm_enable, sm_resume = _sasl2->sm_resume, csi_inactive = _sasl2->csi_inactive;
    if (router.resource_count(_binding->bare_view()) >= _ctx->options.max_resources_per_user) {
        _binding.reset();
        close(StreamError::resource_constraint, "too many resources bound for this account");
        after_turn();
        return;
    }
    while (router.find(_binding->full()) != nullptr) {  // our random part collided: draw again
        _binding = xmpp::Jid::with_resource(*_authed, _ctx->random.alnum(12)).value();
    }
    _jid = std::move(_binding);
    _binding.reset();
    router.add(this);
    ++_ctx->counters.sessions_bound;
    _phase = Phase::bound;
    // The success is not a stanza: written before anything is delivered, never counted by
    // XEP-0198 nor held by XEP-0352.
    sasl2_success_open(_jid->full());
    _out += "<bound xmlns='urn:xmpp:bind:0'>";
    if (sm_enable && _ctx->options.stream_management) {
        // XEP-0198 §3 inline (XEP-0386 §4.2): as sm_enable() would answer after a bind.
        _sm = std::make_unique<StreamMgmt>(_ctx->options.max_unacked_stanzas);
        ++_ctx->counters.sm_enabled;
        _out += "<enabled xmlns='urn:xmpp:sm:3'";
        if (sm_resume) {
            _sm->id = _ctx->random.alnum(24);
            _ctx->resumable[_sm->id] = shared_from_this();
            _out += " id='" + _sm->id + "' resume='true' max='" + std::to_string(_ctx->options.resume_timeout.count()) + "'";
        }
        _out += "/>";
    }
    _out += "</bound>";
    sasl2_success_close();
    if (csi_inactive && _ctx->hooks != nullptr) {
        // XEP-0352 inline: the CSI module takes <inactive/> as if it had come on the stream.
        xmpp::xml::Tokenizer tok(_ctx->options.xml_limits);
        tok.append("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
                   "<inactive xmlns='urn:xmpp:csi:0'/>");
        for (auto ev = tok.next(); ev.kind() != EventKind::need_more && ev.kind() != EventKind::error; ev = tok.next()) {
            if (ev.kind() == EventKind::stanza) (void)_ctx->hooks->stream_element(*this, ev.element());
        }
    }
    if (_ctx->hooks != nullptr) _ctx->hooks->session_event(*this, session::SessionEvent::bound);
    schedule_flush();
    process_input();
    after_turn();
    read();
}

}  // namespace starling::c2s
