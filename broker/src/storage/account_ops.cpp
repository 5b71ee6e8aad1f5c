#include "broker/src/storage/account_ops.hpp"

#include <chrono>
#include <mutex>

#include "broker/src/util/random.hpp"
#include "xmpp/sasl/scram.hpp"

namespace starling::storage {

namespace {

using xmpp::Unexpected;
using xmpp::sasl::ScramAlgorithm;

constexpr std::size_t k_salt_size = 16;

// Serialises exists()+put() of account creation across threads (admin thread, shards). Never
// held around key derivation, and never on the stanza path.
std::mutex g_create_mutex;

Unexpected<AccountError> fail(AccountErrc code, std::string message) {
    return Unexpected(AccountError{code, std::move(message)});
}

std::string storage_message(Errc e) { return "storage failed: " + std::string(to_string(e)); }

AccountResult<ScramKeys> derive(ScramAlgorithm a, std::string_view password, std::uint32_t iterations,
                                util::Random& random) {
    std::string salt(k_salt_size, '\0');
    random.fill(salt.data(), salt.size());
    auto c = xmpp::sasl::derive_credentials(a, password, salt, iterations);
    if (!c) {
        if (c.error() == xmpp::sasl::ScramError::bad_password) {
            return fail(AccountErrc::bad_password, "password is empty or not allowed by SASLprep (RFC 4013)");
        }
        return fail(AccountErrc::derivation, std::string(xmpp::sasl::to_string(a)) + " derivation failed: " +
                                                 std::string(xmpp::sasl::to_string(c.error())));
    }
    return ScramKeys{c->iterations, std::move(c->salt), std::move(c->stored_key), std::move(c->server_key)};
}

}  // namespace

AccountResult<AccountRecord> make_account_record(std::string_view password, std::uint32_t iterations,
                                                 util::Random& random) {
    auto k256 = derive(ScramAlgorithm::sha_256, password, iterations, random);
    if (!k256) return Unexpected(k256.error());
    auto k1 = derive(ScramAlgorithm::sha_1, password, iterations, random);
    if (!k1) return Unexpected(k1.error());
    AccountRecord r;
    r.sha256 = std::move(*k256);
    r.sha1 = std::move(*k1);
    r.created_unix_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
            .count();
    return r;
}

AccountResult<void> create_account(AccountStore& accounts, std::string_view bare_jid, const AccountRecord& record) {
    std::lock_guard lock(g_create_mutex);
    auto exists = accounts.exists(bare_jid);
    if (!exists) return fail(AccountErrc::storage, storage_message(exists.error()));
    if (*exists) return fail(AccountErrc::already_exists, "account " + std::string(bare_jid) + " already exists");
    auto put = accounts.put(bare_jid, record);
    if (!put) return fail(AccountErrc::storage, storage_message(put.error()));
    return {};
}

AccountResult<void> change_password(AccountStore& accounts, std::string_view bare_jid, std::string_view password,
                                    std::uint32_t iterations, util::Random& random) {
    auto old = accounts.get(bare_jid);
    if (!old) {
        if (old.error() == Errc::not_found) {
            return fail(AccountErrc::not_found, "account " + std::string(bare_jid) + " does not exist");
        }
        return fail(AccountErrc::storage, storage_message(old.error()));
    }
    auto record = make_account_record(password, iterations, random);
    if (!record) return Unexpected(record.error());
    record->created_unix_ms = old->created_unix_ms;
    record->disabled = old->disabled;
    auto put = accounts.put(bare_jid, *record);
    if (!put) return fail(AccountErrc::storage, storage_message(put.error()));
    return {};
}

AccountResult<void> delete_account(AccountStore& accounts, std::string_view bare_jid) {
    auto removed = accounts.remove(bare_jid);
    if (!removed) return fail(AccountErrc::storage, storage_message(removed.error()));
    // No login can start any more; what the account left behind goes too, so that an account
    // created later under the same name starts empty (its tokens, roster and archive included).
    // Also when the account was gone already: that retries a purge that failed.
    auto purged = accounts.purge_data(bare_jid);
    if (!*removed) return fail(AccountErrc::not_found, "account " + std::string(bare_jid) + " does not exist");
    if (!purged) {
        return fail(AccountErrc::storage, "account " + std::string(bare_jid) + " deleted, but its data was not: " +
                                              storage_message(purged.error()) + " (deleting it again retries)");
    }
    return {};
}

}  // namespace starling::storage
