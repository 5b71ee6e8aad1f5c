// C2sSession, part 2b: which SASL mechanisms a session is offered, the channel-binding data of
// its TLS connection (SCRAM-*-PLUS, RFC 5802 §6; XEP-0440), and SASL EXTERNAL with a device
// certificate (XEP-0178). Kept apart from session_auth.cpp so that SASL2 (XEP-0388) can list
// and run the same mechanisms.
#include "broker/src/c2s/session.hpp"

#include <algorithm>

#include "broker/src/c2s/options.hpp"
#include "broker/src/c2s/shard_context.hpp"
#include "broker/src/storage/accounts.hpp"
#include "broker/src/util/log.hpp"

namespace starling::c2s {

using xmpp::sasl::Mechanism;

std::vector<Mechanism> C2sSession::offered_mechanisms() const {
    const auto& o = _ctx->options;
    std::vector<Mechanism> out;
    if (is_secure()) {
        if (o.external_auth && !certificate_jids().empty()) out.push_back(Mechanism::external);
        if (o.channel_binding && channel_bindings().has_any()) {
            out.push_back(Mechanism::scram_sha_256_plus);
            if (o.offer_scram_sha1) out.push_back(Mechanism::scram_sha_1_plus);
        }
    }
    out.push_back(Mechanism::scram_sha_256);
    if (o.offer_scram_sha1) out.push_back(Mechanism::scram_sha_1);
    // RFC 6120 §13.8: PLAIN only under TLS, unless the operator said plaintext is fine.
    if (o.offer_plain && (is_secure() || o.allow_plaintext)) out.push_back(Mechanism::plain);
    return out;
}

xmpp::sasl::ChannelBindings C2sSession::channel_bindings() const {
    xmpp::sasl::ChannelBindings cb;
    if (!_tls || !_tls->is_handshake_done()) return cb;
    // RFC 9266 §3: tls-exporter is defined for TLS 1.2 only with the extended master secret
    // (RFC 7627), which the engine does not report once its SSL object is gone. We offer it on
    // TLS 1.3 only; a TLS 1.2 client binds with tls-server-end-point (c2s/README.md).
    if (_tls->protocol_version() == "TLSv1.3") {
        std::uint8_t ekm[32];
        if (_tls->export_keying_material(ekm, "EXPORTER-Channel-Binding")) {
            cb.tls_exporter.assign(reinterpret_cast<const char*>(ekm), sizeof ekm);
        }
    }
    const auto ep = _tls->server_end_point();
    cb.tls_server_end_point.assign(ep.begin(), ep.end());
    return cb;
}

std::vector<xmpp::BareJid> C2sSession::certificate_jids() const {
    std::vector<xmpp::BareJid> out;
    if (!_tls || !_tls->is_handshake_done()) return out;
    const auto cert = _tls->peer_certificate();
    // Chain, validity period and CRL were checked in the handshake (a failure ends it there).
    if (!cert || !cert->verified) return out;
    auto add = [&](std::string_view text) {
        auto jid = xmpp::BareJid::parse(text);
        // Only accounts of the domain this stream is for (XEP-0178 §3: the server checks the
        // certificate's JID against the stream's 'to').
        if (!jid || !jid->has_localpart() || jid->domainpart() != _domain) return;
        if (std::find(out.begin(), out.end(), *jid) == out.end()) out.push_back(std::move(*jid));
    };
    for (const auto& a : cert->xmpp_addrs) add(a);
    // Configured mapping, only for certificates that carry no xmppAddr at all: CN@domain.
    if (cert->xmpp_addrs.empty() && _ctx->options.external_jid_from_cn && !cert->subject_cn.empty() &&
        cert->subject_cn.find('@') == std::string::npos) {
        add(cert->subject_cn + "@" + _domain);
    }
    return out;
}

void C2sSession::write_sasl_features() {
    _out += "<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>";
    bool plus = false;
    for (const auto m : offered_mechanisms()) {
        plus = plus || xmpp::sasl::is_plus(m);
        _out += "<mechanism>";
        _out += xmpp::sasl::to_string(m);
        _out += "</mechanism>";
    }
    _out += "</mechanisms>";
    if (plus) {
        // XEP-0440 §2: the channel-binding types the -PLUS mechanisms accept here.
        const auto cb = channel_bindings();
        _out += "<sasl-channel-binding xmlns='urn:xmpp:sasl-cb:0'>";
        for (auto t : {xmpp::sasl::ChannelBindingType::tls_exporter,
                       xmpp::sasl::ChannelBindingType::tls_server_end_point}) {
            if (!cb.has(t)) continue;
            _out += "<channel-binding type='";
            _out += xmpp::sasl::to_string(t);
            _out += "'/>";
        }
        _out += "</sasl-channel-binding>";
    }
}

// XEP-0178 §3 / RFC 6120 §6.3.8: the authzid is empty (or "=") and the server takes the JID the
// certificate names, or it names one of the certificate's JIDs. A certificate naming several
// JIDs needs an authzid to pick one.
void C2sSession::sasl_external(std::string_view decoded) {
    const auto jids = certificate_jids();
    std::optional<xmpp::BareJid> who;
    if (decoded.empty()) {
        if (jids.size() != 1) {
            sasl_failure(jids.empty() ? "not-authorized" : "invalid-authzid", true);
            return;
        }
        who = jids.front();
    } else {
        auto authz = xmpp::BareJid::parse(decoded);
        if (!authz || std::find(jids.begin(), jids.end(), *authz) == jids.end()) {
            sasl_failure("invalid-authzid", true);
            return;
        }
        who = std::move(*authz);
    }
    // The certificate proves who the device is, not that the account exists: an operator
    // disables a device by disabling (or deleting) its account, as with passwords.
    // The account may have to come from disk: off the reactor (session_reads.cpp).
    const std::string bare = who->str();
    load_account(bare, [who = std::move(*who)](C2sSession& self,
                                               xmpp::Result<storage::AccountRecord, storage::Errc> rec) {
        if (!rec || rec->disabled) {
            if (!rec && rec.error() != storage::Errc::not_found) {
                STARLING_LOG(warn, "c2s: account lookup for {} failed: {}", who.str(), storage::to_string(rec.error()));
            }
            self.sasl_failure("not-authorized", true);
            return;
        }
        self.sasl_success(who, {});
    });
}

}  // namespace starling::c2s
