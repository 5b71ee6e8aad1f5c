#include "xmpp/stream_error.hpp"

namespace xmpp {

std::string_view to_string(StreamError e) noexcept {
    switch (e) {
    case StreamError::bad_format: return "bad-format";
    case StreamError::bad_namespace_prefix: return "bad-namespace-prefix";
    case StreamError::conflict: return "conflict";
    case StreamError::connection_timeout: return "connection-timeout";
    case StreamError::host_gone: return "host-gone";
    case StreamError::host_unknown: return "host-unknown";
    case StreamError::improper_addressing: return "improper-addressing";
    case StreamError::internal_server_error: return "internal-server-error";
    case StreamError::invalid_from: return "invalid-from";
    case StreamError::invalid_namespace: return "invalid-namespace";
    case StreamError::invalid_xml: return "invalid-xml";
    case StreamError::not_authorized: return "not-authorized";
    case StreamError::not_well_formed: return "not-well-formed";
    case StreamError::policy_violation: return "policy-violation";
    case StreamError::remote_connection_failed: return "remote-connection-failed";
    case StreamError::reset: return "reset";
    case StreamError::resource_constraint: return "resource-constraint";
    case StreamError::restricted_xml: return "restricted-xml";
    case StreamError::see_other_host: return "see-other-host";
    case StreamError::system_shutdown: return "system-shutdown";
    case StreamError::undefined_condition: return "undefined-condition";
    case StreamError::unsupported_encoding: return "unsupported-encoding";
    case StreamError::unsupported_feature: return "unsupported-feature";
    case StreamError::unsupported_stanza_type: return "unsupported-stanza-type";
    case StreamError::unsupported_version: return "unsupported-version";
    }
    return "undefined-condition";
}

std::string_view to_string(StanzaError e) noexcept {
    switch (e) {
    case StanzaError::bad_request: return "bad-request";
    case StanzaError::conflict: return "conflict";
    case StanzaError::feature_not_implemented: return "feature-not-implemented";
    case StanzaError::forbidden: return "forbidden";
    case StanzaError::gone: return "gone";
    case StanzaError::internal_server_error: return "internal-server-error";
    case StanzaError::item_not_found: return "item-not-found";
    case StanzaError::jid_malformed: return "jid-malformed";
    case StanzaError::not_acceptable: return "not-acceptable";
    case StanzaError::not_allowed: return "not-allowed";
    case StanzaError::not_authorized: return "not-authorized";
    case StanzaError::policy_violation: return "policy-violation";
    case StanzaError::recipient_unavailable: return "recipient-unavailable";
    case StanzaError::redirect: return "redirect";
    case StanzaError::registration_required: return "registration-required";
    case StanzaError::remote_server_not_found: return "remote-server-not-found";
    case StanzaError::remote_server_timeout: return "remote-server-timeout";
    case StanzaError::resource_constraint: return "resource-constraint";
    case StanzaError::service_unavailable: return "service-unavailable";
    case StanzaError::subscription_required: return "subscription-required";
    case StanzaError::undefined_condition: return "undefined-condition";
    case StanzaError::unexpected_request: return "unexpected-request";
    }
    return "undefined-condition";
}

std::string_view to_string(StanzaErrorType t) noexcept {
    switch (t) {
    case StanzaErrorType::auth: return "auth";
    case StanzaErrorType::cancel: return "cancel";
    case StanzaErrorType::continue_: return "continue";
    case StanzaErrorType::modify: return "modify";
    case StanzaErrorType::wait: return "wait";
    }
    return "cancel";
}

// Types follow the examples of RFC 6120 §8.3.3.
StanzaErrorType default_type(StanzaError e) noexcept {
    switch (e) {
    case StanzaError::bad_request:
    case StanzaError::jid_malformed:
    case StanzaError::not_acceptable:
    case StanzaError::policy_violation:
    case StanzaError::redirect:
        return StanzaErrorType::modify;
    case StanzaError::forbidden:
    case StanzaError::not_authorized:
    case StanzaError::registration_required:
    case StanzaError::subscription_required:
        return StanzaErrorType::auth;
    case StanzaError::recipient_unavailable:
    case StanzaError::remote_server_timeout:
    case StanzaError::resource_constraint:
    case StanzaError::unexpected_request:
        return StanzaErrorType::wait;
    case StanzaError::conflict:
    case StanzaError::feature_not_implemented:
    case StanzaError::gone:
    case StanzaError::internal_server_error:
    case StanzaError::item_not_found:
    case StanzaError::not_allowed:
    case StanzaError::remote_server_not_found:
    case StanzaError::service_unavailable:
    case StanzaError::undefined_condition:
        return StanzaErrorType::cancel;
    }
    return StanzaErrorType::cancel;
}

}  // namespace xmpp
