// Account operations shared by every way an account is made or changed: the admin socket and
// starlingctl (admin/users.hpp) and in-band registration (modules/register). They derive the
// SCRAM keys (the password itself is never stored, DESIGN §6) and write through AccountStore;
// create_account() is atomic against a concurrent creation of the same account on another
// thread (a shard registering while the admin socket adds the same name).
//
// Thread-safe. Key derivation is PBKDF2 (scram_iterations rounds, twice): call it off the stanza
// path or accept its cost where the caller already rate-limits (registration).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "broker/src/storage/accounts.hpp"
#include "xmpp/result.hpp"

namespace starling::util {
class Random;
}

namespace starling::storage {

enum class AccountErrc : std::uint8_t {
    bad_password,    // empty, or refused by SASLprep (RFC 4013)
    derivation,      // the key derivation failed for another reason
    already_exists,
    not_found,
    storage,         // the store failed
};

struct AccountError {
    AccountErrc code = AccountErrc::storage;
    std::string message;  // one line, for a human
};

template <class T>
using AccountResult = xmpp::Result<T, AccountError>;

// Salted keys for SCRAM-SHA-256 and SCRAM-SHA-1 (a fresh random 16-byte salt each), so that a
// client may use either mechanism. `created_unix_ms` is now.
AccountResult<AccountRecord> make_account_record(std::string_view password, std::uint32_t iterations,
                                                 util::Random& random);

// `bare_jid` normalised. already_exists when it exists (checked and written under one lock).
AccountResult<void> create_account(AccountStore& accounts, std::string_view bare_jid, const AccountRecord& record);
// New keys for an existing account; its creation time and disabled flag are kept.
AccountResult<void> change_password(AccountStore& accounts, std::string_view bare_jid, std::string_view password,
                                    std::uint32_t iterations, util::Random& random);
// Deletes the account, then its data (AccountStore::purge_data). A running broker also tells its
// shards (session::HookTable::account_deleted) so that modules drop what they cache.
AccountResult<void> delete_account(AccountStore& accounts, std::string_view bare_jid);

}  // namespace starling::storage
