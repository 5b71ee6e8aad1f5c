// AdminServer: the broker's end of starlingctl's local admin socket (README.md: the protocol).
//
// A UNIX stream socket, mode 0600, in the data folder: the file permission is the first access
// check, SO_PEERCRED the second (only root or the broker's own uid). One request per connection.
//
// Lives on: its own thread with its own asio::io_context, off the shards: account writes go
// straight to the (thread-safe) AccountStore, and the broker's hooks are called on this thread.
// An import derives its keys on a worker thread of its own (several, one per core, inside
// import_users()), so a 30-second import does not block `sessions` or `stats` meanwhile.
// Lifecycle: construct, start() (throws AdminStartError), stop() (idempotent; the destructor
// calls it): cancels imports in flight, joins every thread, unlinks the socket.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace starling::storage {
class AccountStore;
}

namespace starling::admin {

struct AdminConfig {
    std::vector<std::string> domains;  // served domains: accounts must be on one of them
    std::uint32_t scram_iterations = 4096;
    unsigned import_threads = 0;  // 0: one per core
};

// What only the running broker knows. Each may be empty: the command then answers
// "not available". Called on the admin thread; they must hop to the shards themselves and must
// not block for long.
struct AdminHooks {
    std::function<std::string()> sessions;                        // text, one session per line
    std::function<bool(std::string_view full_or_bare_jid)> kick;  // false: no such session
    std::function<std::string()> stats;                           // text, one "name value" per line
    // Sets or clears an account's silent-presence flag (modules/presence/silent.hpp); returns an
    // error text, empty on success. The JID is a normalised bare JID of an existing account.
    std::function<std::string(std::string_view bare_jid, bool on)> presence_silent;
    // PubSub administration (starlingctl pubsub list|show|delete). `service` empty: the
    // first served domain's service. found = false: `text` says what does not exist.
    struct Answer {
        bool found = true;
        std::string text;  // lines to print, or what is missing
    };
    std::function<Answer(std::string_view service)> pubsub_list;
    std::function<Answer(std::string_view service, std::string_view node)> pubsub_show;
    std::function<Answer(std::string_view service, std::string_view node)> pubsub_delete;
    // Writes an online backup of the store into `dir` (absolute, not existing yet:
    // storage/backup.hpp); returns an error text, empty on success.
    std::function<std::string(const std::filesystem::path& dir)> backup;
    // XEP-0484 FAST tokens of an existing account (normalised bare JID): starlingctl fast
    // list|revoke. `text`: lines to print (list) or what was done (revoke).
    std::function<Answer(std::string_view bare_jid)> fast_list;
    std::function<Answer(std::string_view bare_jid)> fast_revoke;
    // After `user del`: ends the account's sessions and has every shard's modules forget it
    // (session::HookTable::account_deleted). Returns the number of sessions ended.
    std::function<std::size_t(std::string_view bare_jid)> account_deleted;
};

class AdminStartError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

class AdminServer {
public:
    AdminServer(std::filesystem::path socket_path, storage::AccountStore& accounts, AdminConfig config,
                AdminHooks hooks);
    ~AdminServer();
    AdminServer(const AdminServer&) = delete;
    AdminServer& operator=(const AdminServer&) = delete;

    // Creates the socket and starts the thread. Throws AdminStartError when another process
    // answers on the socket, when the path exists and is not a socket, or when bind fails.
    // A stale socket file (nobody answers) is removed first.
    void start();
    // Idempotent. Cancels imports in flight (nothing of them is written), joins, unlinks.
    void stop();

    const std::filesystem::path& socket_path() const noexcept;

    struct Impl;  // admin_server.cpp only; public so that its connection class can name it

private:
    std::unique_ptr<Impl> _impl;
};

}  // namespace starling::admin
