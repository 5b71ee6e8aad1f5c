// Error conditions of RFC 6120: stream errors (§4.9.3) and stanza errors (§8.3.3).
#pragma once

#include <cstdint>
#include <string_view>

namespace xmpp {

// RFC 6120 §4.9.3. Enumerators spell the condition's element name with '_' for '-'.
enum class StreamError : std::uint8_t {
    bad_format,
    bad_namespace_prefix,
    conflict,
    connection_timeout,
    host_gone,
    host_unknown,
    improper_addressing,
    internal_server_error,
    invalid_from,
    invalid_namespace,
    invalid_xml,
    not_authorized,
    not_well_formed,
    policy_violation,
    remote_connection_failed,
    reset,
    resource_constraint,
    restricted_xml,
    see_other_host,
    system_shutdown,
    undefined_condition,
    unsupported_encoding,
    unsupported_feature,
    unsupported_stanza_type,
    unsupported_version,
};

// RFC 6120 §8.3.3.
enum class StanzaError : std::uint8_t {
    bad_request,
    conflict,
    feature_not_implemented,
    forbidden,
    gone,
    internal_server_error,
    item_not_found,
    jid_malformed,
    not_acceptable,
    not_allowed,
    not_authorized,
    policy_violation,
    recipient_unavailable,
    redirect,
    registration_required,
    remote_server_not_found,
    remote_server_timeout,
    resource_constraint,
    service_unavailable,
    subscription_required,
    undefined_condition,
    unexpected_request,
};

// RFC 6120 §8.3.2: the error type that goes with a condition by default.
enum class StanzaErrorType : std::uint8_t { auth, cancel, continue_, modify, wait };

// The condition's element name, e.g. "not-well-formed"; also used as a metric label.
std::string_view to_string(StreamError e) noexcept;
std::string_view to_string(StanzaError e) noexcept;
std::string_view to_string(StanzaErrorType t) noexcept;
StanzaErrorType default_type(StanzaError e) noexcept;

}  // namespace xmpp
