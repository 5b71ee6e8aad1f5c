// C2sSession, part 2c: the store reads a login waits for (issue 14). A login reads the account's
// record (SCRAM keys, disabled flag) and, for XEP-0484 FAST, its tokens, which it may write
// back (a new token, a counter): that write goes through the shard's write path too and the
// login waits for its durability the same way (store_fast_tokens). A cold record would
// have to come from disk, and a read on the shard's thread would stall every session of the
// shard for as long as the disk takes; so these go through the shard's ShardWriter: answered
// inline from the overlay, the memtable or the block cache, else read on the store's reader
// thread and posted back (storage/README.md, "The read path").
//
// While a read is pending the session processes no input and reads none from its socket
// (_store_wait, as _paused does for the failure delay): the stanzas after the one that asked
// wait in the tokenizer and the kernel, in order. The completion holds a weak_ptr (the idiom of
// the session's timers) and an id: a session that is gone, closed or closing meanwhile, or
// waiting for another read, is not touched.
#include "broker/src/c2s/session.hpp"

#include <asio/post.hpp>

#include "broker/src/c2s/shard_context.hpp"
#include "broker/src/storage/accounts.hpp"
#include "broker/src/storage/fast_tokens.hpp"
#include "broker/src/storage/write_path.hpp"

namespace starling::c2s {

template <class T, class Read>
void C2sSession::await_store(Read read, storage::MoveFunction<void(C2sSession&, xmpp::Result<T, storage::Errc>)> then) {
    _store_wait = true;
    const std::uint32_t id = ++_store_wait_id;
    const bool outer = _in_store_call;
    _in_store_call = true;
    read([w = weak_from_this(), id, then = std::move(then)](xmpp::Result<T, storage::Errc> r) mutable {
        auto self = w.lock();
        if (!self) return;
        const bool stopped = !r && r.error() == storage::Errc::stopped;
        if (!self->end_store_wait(id, stopped)) return;
        // Inline: the caller's handler goes on processing input once this returns. Posted:
        // this is a handler of its own, which takes up where the input stopped.
        const bool posted = !self->_in_store_call;
        then(*self, std::move(r));
        if (!posted) return;
        self->process_input();
        self->after_turn();
        self->read();
    });
    _in_store_call = outer;
}

// True when the completion of read `id` may go on with the login.
bool C2sSession::end_store_wait(std::uint32_t id, bool stopped) noexcept {
    if (!_store_wait || id != _store_wait_id) return false;
    _store_wait = false;
    // Closed, closing or lingering: nothing more is said. Stopped: the shard is shutting down
    // (the writer completes what it still holds from its destructor; nothing may use it then).
    return _phase == Phase::negotiating && !stopped;
}

void C2sSession::load_account(const std::string& bare, AccountThen then) {
    if (_ctx->writer == nullptr) {
        then(*this, _ctx->accounts.get(bare));
        return;
    }
    auto* writer = _ctx->writer;
    await_store<storage::AccountRecord>(
        [writer, &bare](storage::AccountLoaded done) {
            storage::AccountStore::get_async(*writer, bare, std::move(done));
        },
        std::move(then));
}

void C2sSession::load_fast_tokens(const std::string& bare, TokensThen then) {
    if (_ctx->writer == nullptr) {
        if (_ctx->store == nullptr) {
            then(*this, std::vector<storage::FastToken>{});
            return;
        }
        then(*this, storage::FastTokenStore(*_ctx->store).get(bare));
        return;
    }
    auto* writer = _ctx->writer;
    await_store<std::vector<storage::FastToken>>(
        [writer, &bare](storage::FastTokensLoaded done) {
            storage::FastTokenStore::get_async(*writer, bare, std::move(done));
        },
        std::move(then));
}

void C2sSession::store_fast_tokens(const std::string& bare, const std::vector<storage::FastToken>& tokens,
                                   storage::Durability level, StoredThen then) {
    if (_ctx->writer == nullptr) {
        then(*this, storage::FastTokenStore(*_ctx->store).put(bare, tokens, level == storage::Durability::synced));
        return;
    }
    auto* writer = _ctx->writer;
    await_store<void>(
        [writer, &bare, &tokens, level](storage::FastTokensStored done) {
            storage::FastTokenStore::put_async(*writer, bare, tokens, level, std::move(done));
        },
        std::move(then));
}

void C2sSession::stage_fast_tokens(const std::string& bare, const std::vector<storage::FastToken>& tokens) {
    if (_ctx->writer == nullptr) {
        (void)storage::FastTokenStore(*_ctx->store).put(bare, tokens, false);
        return;
    }
    (void)storage::FastTokenStore::stage(*_ctx->writer, bare, tokens, storage::Durability::logged);
}

std::uint64_t C2sSession::fast_revocation_generation(std::string_view bare) const noexcept {
    return _ctx->fast_revocations == nullptr ? 0 : _ctx->fast_revocations->generation(bare);
}

// A module's hold (session::Session::hold_input): the same stop as _store_wait, for a bound
// session or one still negotiating (XEP-0077 registration reads whether the name is taken),
// counted because two modules may wait for reads on one stanza (initial presence).
std::uint32_t C2sSession::hold_input() noexcept {
    ++_module_holds;
    return _hold_epoch;
}

void C2sSession::release_input(std::uint32_t ticket) noexcept {
    if (ticket != _hold_epoch || _module_holds == 0) return;  // the stream ended meanwhile
    if (--_module_holds != 0) return;
    // Never inside the caller: it may be a handler of this session's input (process_input is
    // not re-entrant), or a completion in the middle of a module's work.
    asio::post(_ctx->io, [self = shared_from_this()] {
        if ((self->_phase != Phase::bound && self->_phase != Phase::negotiating) || self->_module_holds != 0 ||
            self->_store_wait) {
            return;
        }
        self->process_input();
        self->after_turn();
        self->read();
    });
}

}  // namespace starling::c2s
