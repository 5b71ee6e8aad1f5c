// RFC 6121 §2 (roster management), §3 (presence subscriptions, with §3.4 pre-approval) and
// XEP-0237 (roster versioning).
//
// - jabber:iq:roster get/set/remove on the user's own account; pushes to every resource that
//   asked for the roster in this session ("interested resources", §2.1.6).
// - Subscription stanzas (subscribe, subscribed, unsubscribe, unsubscribed): outbound on the
//   sender's home shard (update the sender's item, stamp from = bare JID per §3.1.2, route) and
//   inbound on the contact's home shard (update the contact's item, push, deliver or store).
// - Inbound subscription requests are stored with the item and delivered again each time the
//   user becomes available until answered (§3.1.3).
// - Stream features <ver xmlns='urn:xmpp:features:rosterver'/> and
//   <sub xmlns='urn:xmpp:features:pre-approval'/>.
//
// Lives on: every shard; handlers run on the home shard of the roster's owner. State: the
// RosterStore (RocksDB, written through the shard's write path) and a per-session
// "interested" flag. IQ results, pushes and subscription stanzas leave once the roster write
// they follow is durable, in the order the writes were staged.
#pragma once

#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "broker/src/modules/api.hpp"
#include "broker/src/modules/roster/roster_item.hpp"
#include "broker/src/modules/roster/roster_store.hpp"
#include "broker/src/storage/move_function.hpp"

namespace starling::session {
class InputHold;
}

namespace starling::modules {

struct RosterOptions {
    // Roster changes staged on one shard and not yet durable. Past it (a stalled disk, a client
    // flooding sets) a set is answered resource-constraint and a subscription change is not
    // made (logged, counted), instead of queueing without bound. Changes waiting for a cold
    // read (issue 14) are bounded by it too, counted apart. Configured as
    // roster.max_pending_changes.
    std::uint32_t max_pending_changes = 10'000;
};

// Plain per-shard integers (CONVENTIONS §4), exported with ModuleContext::add_counter.
struct RosterCounters {
    std::uint64_t storage_errors = 0;  // changes whose commit failed (nothing was acknowledged)
    std::uint64_t refused_pending = 0; // changes refused: max_pending_changes waiting already
};

class RosterModule final : public Module {
public:
    explicit RosterModule(RosterOptions options = {}) : _options(options) {}
    // Its name, options and factory, for the module list and the configuration.
    static ModuleSpec spec();
    std::string_view name() const noexcept override { return "roster"; }
    ~RosterModule() override;
    void install(ModuleContext& ctx) override;
    const RosterCounters& counters() const noexcept { return _counters; }

private:
    void on_get(IqEvent& ev);
    void on_set(IqEvent& ev);
    Handled on_outbound_subscription(OutboundEvent& ev);
    Handled on_inbound_subscription(InboundEvent& ev);
    void on_available(Session& session);

    using Then = storage::MoveFunction<void()>;
    // Saves `item` for `owner`. Once the write is durable: when its visible form changed
    // (`before`), pushes it with the bumped version; then runs `then` (the stanzas that follow
    // from the change: DESIGN §6, nothing leaves before the state it reports is stored). False
    // when the write could not be staged; a commit that fails later pushes nothing and skips
    // `then`.
    bool commit(std::string_view owner, const std::string& before, const roster::RosterItem& item, Then then = {});
    // Runs `fn(ok)` once every roster write staged so far on this shard is durable (`ok`), or
    // failed; inline when the shard writes synchronously. Never after the module is gone.
    // `staged`: a change was just staged (counted in _pending until it completes).
    void after_durable(storage::MoveFunction<void(bool)> fn, bool staged = false);
    void push(std::string_view owner, std::string_view item_xml, std::uint64_t ver);
    // Delivers a subscription stanza to every available resource of a local user (§3.1.3:
    // whatever their priority). Returns how many got it.
    int deliver_to_available(std::string_view owner, std::string_view bytes);

    ShardServices* _shard = nullptr;
    std::unique_ptr<roster::RosterStore> _store;
    std::uint64_t _push_seq = 0;
    // Whether one more change may be staged (max_pending_changes); counts a refusal.
    bool may_stage();

    RosterOptions _options;
    RosterCounters _counters;
    std::uint32_t _pending = 0;  // changes staged and not yet durable

    // Roster changes (set, remove, subscription stanzas in and out) read the item, the version
    // and sometimes the roster's size or the account first (issue 14). From memory (overlay,
    // memtable, block cache) they run inline. When the disk is needed, the change waits in its
    // owner's queue while the whole roster is read off the reactor (RosterStore::load_async:
    // current when it completes, this shard's staged writes included; the account with
    // AccountStore::get_async), and runs from that. Later changes of the same owner queue behind
    // it, so an owner's changes keep their order and each reads what the ones before it wrote.
    enum class Attempt : std::uint8_t { done, cold };  // cold: nothing was read or done
    struct ChangeStep {
        // Null: read from memory. Else what the cold read found (or its error).
        const xmpp::Result<roster::RosterSnapshot, storage::Errc>* roster = nullptr;
        std::optional<bool> account;  // with `roster`, for a change that checks the account
        bool refused = false;  // too many changes wait already: answer or drop, read nothing
    };
    using ChangeFn = storage::MoveFunction<Attempt(const ChangeStep&)>;
    struct Waiting {
        bool account = false;  // it checks the owner's account
        ChangeFn fn;
        std::shared_ptr<session::InputHold> hold;  // the sender's input, for a change it sent
    };
    // A change's reads, from `step` (the cold read) or from memory.
    xmpp::Result<roster::ItemRead, storage::Errc> item_for(std::string_view owner, std::string_view contact,
                                                           const ChangeStep& step) const;
    xmpp::Result<std::size_t, storage::Errc> visible_for(std::string_view owner, const ChangeStep& step) const;
    xmpp::Result<bool, storage::Errc> account_for(std::string_view owner, const ChangeStep& step) const;
    // A subscription change's item: the stored one, or a new one for `contact`. not_in_memory: the
    // change must wait for the disk; another error is logged and counted (the change is dropped).
    xmpp::Result<roster::RosterItem, storage::Errc> subscription_item(std::string_view owner, std::string_view contact,
                                                                      const ChangeStep& step);
    // Runs `change` now when it can; otherwise queues it (holding `sender`'s input, if given).
    void run_change(const std::string& owner, Waiting change, Session* sender);
    // Reads off the reactor what the change at the head of `owner`'s queue needs, then drains.
    void read_cold(const std::string& owner);
    void drain(const std::string& owner, const ChangeStep& first);
    // Counts and logs a refusal (max_pending_changes).
    void note_refused();
    std::unordered_map<std::string, std::deque<Waiting>> _waiting;  // by owner, in arrival order
    std::uint32_t _waiting_count = 0;
    std::shared_ptr<int> _alive = std::make_shared<int>(0);  // completions check it
};

}  // namespace starling::modules
