// ShardPeers: control work on every shard, for the rare operations that need all of them (an
// administrator lists online users, ends a session on another shard, sends an announcement).
// Stanzas never travel this way: they go through the router's mailboxes (DESIGN §2), which
// batch, bound and count them. Work posted here runs on the target shard's thread, in its own
// turn, with that shard's services, so nothing is shared: a request is a closure, an answer is
// another closure posted back.
//
// Lives on: broker-wide, owned by the broker; post() is thread-safe. Work still queued when
// the broker stops is dropped with its io_context (its answer never comes: callers must not
// wait for it beyond their own lifetime, which weak references give).
#pragma once

#include <cstddef>
#include <memory>
#include <utility>
#include <vector>

#include "broker/src/router/router.hpp"
#include "broker/src/storage/move_function.hpp"

namespace starling::session {

struct ShardServices;

class ShardPeers {
public:
    using Work = storage::MoveFunction<void(ShardServices&)>;

    virtual ~ShardPeers() = default;
    virtual std::size_t count() const noexcept = 0;
    // Runs `work` on shard `to`'s thread, never inline.
    virtual void post(router::ShardId to, Work work) = 0;
};

// Runs `ask` on every shard and then `done` with the answers (indexed by shard) on `from`'s
// shard. `ask` is copied to every shard: it must not hold references to `from`'s state.
template <class R, class Ask, class Done>
void gather(ShardPeers& peers, router::ShardId from, Ask ask, Done done) {
    struct State {
        std::vector<R> answers;
        std::size_t missing = 0;
        Done done;
    };
    auto state = std::make_shared<State>(State{std::vector<R>(peers.count()), peers.count(), std::move(done)});
    for (router::ShardId s = 0; s < peers.count(); ++s) {
        peers.post(s, [&peers, from, s, ask, state](ShardServices& there) mutable {
            R answer = ask(there);
            peers.post(from, [s, state, answer = std::move(answer)](ShardServices&) mutable {
                // Only `from`'s thread touches `state` from here on.
                state->answers[s] = std::move(answer);
                if (--state->missing == 0) state->done(std::move(state->answers));
            });
        });
    }
}

}  // namespace starling::session
