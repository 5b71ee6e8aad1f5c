// One shard wired as the broker wires it (store, router, modules), without sockets or threads,
// shared by the module tests that drive the router directly (roster, offline, blocking):
// the tests route envelopes straight into the router and read the modules' counters.
#pragma once

#include <asio/io_context.hpp>

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "broker/src/session/hooks.hpp"
#include "broker/src/session/shard_services.hpp"
#include "broker/src/router/mailboxes.hpp"
#include "broker/src/router/router.hpp"
#include "broker/src/storage/accounts.hpp"
#include "broker/src/storage/store.hpp"
#include "broker/src/storage/write_path.hpp"
#include "broker/src/util/random.hpp"

namespace starling::test_support {

class OneShard {
public:
    // `write_path`: writes go through a Committer and a ShardWriter, as in the broker; settle()
    // runs their completions. Otherwise modules write synchronously.
    // `seed`: writes into the store before the modules are installed (what a broker finds at
    // start).
    explicit OneShard(std::vector<std::unique_ptr<session::Module>> mods, bool write_path = false,
                      const std::function<void(storage::Store&)>& seed = {}) {
        std::random_device rd;
        _dir = std::filesystem::temp_directory_path() / ("starling-module-test-" + std::to_string(rd()));
        std::filesystem::create_directories(_dir);
        store = storage::Store::open(_dir.string());
        accounts = std::make_unique<storage::AccountStore>(*store);
        if (write_path) {
            committer = std::make_unique<storage::Committer>(*store);
            committer->start();
            writer = std::make_unique<storage::ShardWriter>(io, 0, *committer);
        }
        mailboxes = std::make_unique<router::Mailboxes<router::Envelope>>(1, 16, [](router::ShardId) {});
        router = std::make_unique<router::ShardRouter>(0, *mailboxes, [](router::Envelope&&) {});
        ctx = std::make_unique<session::ShardServices>(session::ShardServices{
            .shard = 0, .io = io, .server = options, .accounts = *accounts, .router = *router, .random = random,
            .hooks = &host, .store = store.get(), .writer = writer.get()});
        if (seed) seed(*store);
        host.install(*ctx, std::move(mods));
        router->set_hooks(&host);
    }
    ~OneShard() {
        ctx.reset();
        router.reset();
        writer.reset();
        if (committer) committer->stop();
        committer.reset();
        accounts.reset();
        store.reset();
        std::filesystem::remove_all(_dir);
    }

    // Runs the io_context until every staged write is committed and its completions ran.
    void settle() {
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        while (std::chrono::steady_clock::now() < deadline) {
            io.restart();
            const auto ran = io.poll();
            if (!writer || (writer->in_flight() + writer->overlay_size() == 0 && ran == 0)) return;
            if (ran == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
    }

    void add_account(const std::string& bare) {
        storage::AccountRecord r;
        r.created_unix_ms = 1;
        (void)accounts->put(bare, r);
    }

    // A stanza from `from` (full JID) to `to`, as a session would route it.
    void route(router::StanzaKind kind, std::string from, std::string to, std::string type, std::string bytes,
               std::string id = "id1") {
        router::Envelope env;
        env.stanza = kind;
        env.from = std::move(from);
        env.to = std::move(to);
        env.type = std::move(type);
        env.id = std::move(id);
        env.bytes = std::move(bytes);
        router->route(std::move(env));
    }

    std::filesystem::path _dir;
    asio::io_context io;
    session::ServerOptions options;
    util::Random random;
    std::unique_ptr<storage::Store> store;
    std::unique_ptr<storage::Committer> committer;
    std::unique_ptr<storage::ShardWriter> writer;
    std::unique_ptr<storage::AccountStore> accounts;
    std::unique_ptr<router::Mailboxes<router::Envelope>> mailboxes;
    std::unique_ptr<router::ShardRouter> router;
    session::HookTable host;
    std::unique_ptr<session::ShardServices> ctx;
};

}  // namespace starling::test_support
