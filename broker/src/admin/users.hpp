// Account administration over an AccountStore: what `starlingctl user ...` does, either in the
// running broker (AdminServer, on its admin thread) or in starlingctl itself on a stopped
// broker's store.
//
// Errors are values (Result<T, AdminError>): the caller is a command line or a socket reply that
// prints the message; nothing here throws except std::bad_alloc.
//
// Lives on: the admin thread of starlingd, or starlingctl's main thread. import_users() starts
// worker threads of its own for the key derivation and joins them before returning.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "broker/src/storage/accounts.hpp"
#include "xmpp/jid.hpp"
#include "xmpp/result.hpp"

namespace starling::util {
class Random;
}

namespace starling::admin {

enum class AdminErrc : std::uint8_t {
    bad_request,      // malformed request (socket protocol) or bad arguments
    invalid_jid,      // not a bare JID with a localpart on a served domain
    bad_password,     // empty, or refused by SASLprep (RFC 4013)
    already_exists,
    not_found,
    bad_line,         // an import line that does not parse; the message carries the line number
    too_large,        // a request line over k_max_line, or an import over k_max_import_entries
    storage,          // the store failed
    not_available,    // a hook the broker did not supply
    permission_denied,
    cancelled,        // the broker is stopping
};

std::string_view to_string(AdminErrc e) noexcept;
// The inverse, for the client side of the socket; bad_request for an unknown spelling.
AdminErrc admin_errc_from_string(std::string_view s) noexcept;

struct AdminError {
    AdminErrc code = AdminErrc::bad_request;
    std::string message;  // one line, for a human: what failed and where
};

template <class T>
using AdminResult = xmpp::Result<T, AdminError>;

// Limits of the admin protocol and of one import.
constexpr std::size_t k_max_line = 64 * 1024;
constexpr std::size_t k_max_import_entries = 2'000'000;

// Salted keys for SCRAM-SHA-256 and SCRAM-SHA-1 (a fresh random 16-byte salt each), so that a
// client may use either mechanism. The password itself is not kept.
AdminResult<storage::AccountRecord> make_account_record(std::string_view password, std::uint32_t iterations,
                                                        util::Random& random);

// `text` must be a bare JID (no resource) with a localpart, on one of `domains` (compared after
// normalisation). An empty `domains` accepts any domain: starlingctl on a stopped broker without
// --domain (it cannot know the broker's configuration).
AdminResult<xmpp::BareJid> parse_user_jid(std::string_view text, const std::vector<std::string>& domains);

// Each of these refuses what the command line promises to refuse: add an existing account,
// passwd or del a missing one. The JID is parsed with parse_user_jid().
struct UserContext {
    storage::AccountStore& accounts;
    std::vector<std::string> domains;
    std::uint32_t iterations = 4096;
    util::Random& random;
};

AdminResult<void> add_user(UserContext& ctx, std::string_view jid, std::string_view password);
AdminResult<void> change_password(UserContext& ctx, std::string_view jid, std::string_view password);
AdminResult<void> delete_user(UserContext& ctx, std::string_view jid);
// Every account, in key order.
AdminResult<std::vector<std::string>> list_users(storage::AccountStore& accounts);

// ---- bulk import ----

struct ImportEntry {
    std::size_t line = 0;  // 1-based line number in the file
    std::string jid;       // normalised bare JID
    std::string password;
};

// Parses an import file line by line ("jid,password"; the password is everything after the
// first ',' and may itself hold commas; blank lines and lines starting with '#' are skipped;
// a trailing '\r' is dropped). The first bad line is kept as the error: later lines are still
// counted but not stored.
class ImportParser {
public:
    explicit ImportParser(std::vector<std::string> domains) : _domains(std::move(domains)) {}
    // False once an error is recorded (the first error wins).
    bool feed_line(std::string_view line);
    bool ok() const noexcept { return _error.message.empty(); }
    const AdminError& error() const noexcept { return _error; }
    std::size_t lines() const noexcept { return _line; }
    // The parsed entries; checked for duplicates within the file by finish().
    AdminResult<std::vector<ImportEntry>> finish();

private:
    std::vector<std::string> _domains;
    std::vector<ImportEntry> _entries;
    std::size_t _line = 0;
    AdminError _error;
};

struct ImportProgress {
    std::size_t done = 0;
    std::size_t total = 0;
    double seconds = 0;  // since the derivation started
};

struct ImportOptions {
    std::uint32_t iterations = 4096;
    unsigned threads = 0;  // 0: one per core
    // Called on the calling thread about every `progress_interval_ms` while deriving, and once
    // at the end with done == total.
    std::function<void(const ImportProgress&)> progress;
    unsigned progress_interval_ms = 200;
    // Set from another thread to give up early (AdminServer::stop()); nothing is written then.
    const std::atomic<bool>* cancel = nullptr;
    // Held while checking existence and writing, so that concurrent adds and imports cannot
    // both create one account. May be null (starlingctl on a stopped broker: the store's lock
    // already excludes everybody else).
    std::mutex* write_mutex = nullptr;
};

struct ImportStats {
    std::size_t imported = 0;
    double derive_seconds = 0;
    double write_seconds = 0;
};

// All or nothing: derives the keys of every entry (in parallel: PBKDF2 is the whole cost), then
// checks that none of the accounts exists and writes them all in ONE RocksDB write batch, which
// RocksDB applies atomically. An existing account fails the import with its line number and
// nothing is written. Memory: about 250 bytes per account while it runs.
AdminResult<ImportStats> import_users(storage::AccountStore& accounts, std::vector<ImportEntry> entries,
                                      const ImportOptions& options);

}  // namespace starling::admin
