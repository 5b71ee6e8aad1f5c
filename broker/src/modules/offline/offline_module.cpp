#include "broker/src/modules/offline/offline_module.hpp"

#include <asio/steady_timer.hpp>
#include <chrono>
#include <vector>

#include "broker/src/session/shard_services.hpp"
#include "broker/src/modules/offline/delay.hpp"
#include "broker/src/storage/accounts.hpp"
#include "broker/src/storage/write_path.hpp"
#include "broker/src/util/dom.hpp"
#include "broker/src/util/log.hpp"
#include "xmpp/ns.hpp"
#include "xmpp/jid.hpp"

namespace starling::modules {

namespace {

constexpr std::string_view k_feature = "msgoffline";  // XEP-0160 §5
constexpr std::string_view k_ns_chatstates = "http://jabber.org/protocol/chatstates";
constexpr std::string_view k_ns_hints = "urn:xmpp:hints";
constexpr auto k_continue_after = std::chrono::milliseconds(10);

using xmpp::bare_of;

std::int64_t now_unix_ms() noexcept {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

enum class Keep : std::uint8_t { store, drop, refuse };

// What XEP-0160 §4 and XEP-0334 say about this message's payload.
Keep classify(std::string_view bytes) {
    util::StanzaDom dom(bytes, xmpp::ns::client);
    if (!dom.ok()) return Keep::store;  // the tokenizer accepted it: keep it as it is
    bool only_chat_state = true;
    bool any_child = false;
    for (auto c = dom.root().first_child(); c; c = c.next_sibling()) {
        if (c.type() != pugi::node_element) continue;
        const auto ns = dom.ns_of(c);
        const auto name = util::StanzaDom::local_name(c);
        // XEP-0334 §4.3: <no-store/> asks that nobody, offline storage included, keeps it.
        if (ns == k_ns_hints && name == "no-store") return Keep::refuse;
        if (ns == k_ns_hints) continue;
        if (ns == xmpp::ns::client && name == "thread") continue;
        any_child = true;
        if (ns != k_ns_chatstates) only_chat_state = false;
    }
    // XEP-0160 §4: a chat state notification alone (XEP-0085) is not worth storing.
    if (any_child && only_chat_state) return Keep::drop;
    return Keep::store;
}

}  // namespace

OfflineModule::~OfflineModule() { _alive.reset(); }

void OfflineModule::install(ModuleContext& ctx) {
    _shard = &ctx.shard();
    _db = std::make_unique<offline::OfflineStore>(*ctx.shard().store, ctx.shard().writer);
    ctx.add_disco_feature(k_feature);
    {
        const char* help = "XEP-0160 offline messages, by outcome";
        const std::pair<const char*, const std::uint64_t*> outcomes[] = {
            {"stored", &_counters.stored},
            {"delivered", &_counters.delivered},
            {"rejected_full", &_counters.rejected_full},
            {"rejected_no_store", &_counters.rejected_no_store},
            {"rejected_no_account", &_counters.rejected_no_account},
            {"dropped_chat_state", &_counters.dropped_chat_state},
            {"rejected_busy", &_counters.rejected_busy},
        };
        for (const auto& [outcome, value] : outcomes) {
            ctx.add_counter("starling_offline_messages_total", help, {{"outcome", outcome}}, value);
        }
        ctx.add_counter("starling_offline_storage_errors_total", "Offline store reads or writes that failed", {},
                        &_counters.storage_errors);
        ctx.add_counter("starling_offline_store_reads_offloaded_total",
                        "Messages to an offline user whose store waited for a read off the reactor", {},
                        &_counters.store_reads_offloaded);
    }
    ctx.on_undeliverable([this](router::Envelope& env, ShardServices&) { return store(env); });
    ctx.on_session([this](Session& s, SessionEvent e) {
        // XEP-0160 §2: delivered to the resource that sends non-negative available presence.
        if (e == SessionEvent::available && s.priority() >= 0) deliver_stored(s);
    });
    // A resource that was available with a negative priority and now says priority >= 0 gets
    // no `available` event: catch that presence on its way out. Never stops the chain.
    ctx.on_outbound(
        router::StanzaKind::presence,
        [this](OutboundEvent& ev) {
            if (ev.to == nullptr && ev.type.empty() && ev.session.is_available() && ev.session.priority() >= 0) {
                deliver_stored(ev.session);
            }
            return Handled::no;
        },
        100);
}

OfflineModule::CachedQueue* OfflineModule::queue(std::string_view bare_jid) {
    const std::string key(bare_jid);
    if (auto it = _queues.find(key); it != _queues.end()) return &it->second;
    auto st = _db->state(bare_jid);
    if (!st) {
        ++_counters.storage_errors;
        STARLING_LOG(error, "offline: reading the queue of {} failed: {}", key, storage::to_string(st.error()));
        return nullptr;
    }
    return &cache(key, st.value());
}

OfflineModule::CachedQueue& OfflineModule::cache(const std::string& bare_jid, offline::QueueState state) {
    // Bounded: drop the cache rather than track recency; it is rebuilt from the store. Entries
    // with writes in flight stay (RocksDB does not have them yet).
    if (_queues.size() >= _options.max_cached_queues) {
        std::erase_if(_queues, [](const auto& kv) { return kv.second.unsynced == 0; });
    }
    return _queues.emplace(bare_jid, CachedQueue{state, 0, false}).first->second;
}

void OfflineModule::track(const std::string& bare_jid, CachedQueue& q) {
    auto* writer = _db->writer();
    if (writer == nullptr) return;  // written synchronously
    ++q.unsynced;
    std::weak_ptr<int> alive = _alive;
    writer->when_durable(storage::Durability::synced,
                         [this, alive, bare_jid](xmpp::Result<void, storage::Errc> r) {
                             if (alive.expired()) return;
                             auto it = _queues.find(bare_jid);
                             if (it == _queues.end()) return;
                             auto& entry = it->second;
                             if (entry.unsynced > 0) --entry.unsynced;
                             if (!r) {
                                 ++_counters.storage_errors;
                                 STARLING_LOG(error, "offline: a write for {} failed: {}", bare_jid,
                                              storage::to_string(r.error()));
                                 entry.stale = true;  // the store is what a read says now
                             }
                             if (entry.stale && entry.unsynced == 0) _queues.erase(it);
                         });
}

Handled OfflineModule::store(router::Envelope& env) {
    if (env.stanza != router::StanzaKind::message) return Handled::no;
    // XEP-0160 §4: normal (or no type) and chat are stored; groupchat, headline and error are not
    // (the router handles those before asking us).
    if (!(env.type.empty() || env.type == "normal" || env.type == "chat")) return Handled::no;
    switch (classify(env.bytes)) {
        case Keep::drop: ++_counters.dropped_chat_state; return Handled::yes;
        case Keep::refuse: ++_counters.rejected_no_store; return Handled::no;  // service-unavailable
        case Keep::store: break;
    }
    const std::string bare(bare_of(env.to));
    // Behind the user's messages that wait for a read: stored after them, in order.
    if (_waiting.contains(bare)) {
        wait_for_read(bare, env);
        return Handled::yes;
    }
    switch (try_store(bare, env, nullptr)) {
        case Outcome::stored: return Handled::yes;
        // Not stored: RFC 6121 §8.5.2.2.1 service-unavailable (the router bounces it).
        case Outcome::refused: return Handled::no;
        case Outcome::cold: break;
    }
    // Issue 14: what the store needs is only on the disk. The store's reader thread reads it;
    // the shard goes on routing meanwhile.
    wait_for_read(bare, env);
    if (_waiting.contains(bare)) start_store_read(bare);
    return Handled::yes;
}

OfflineModule::Outcome OfflineModule::try_store(const std::string& bare, const router::Envelope& env,
                                                const xmpp::Result<bool, storage::Errc>* exists) {
    auto* writer = _db->writer();
    CachedQueue* cached = nullptr;
    if (auto it = _queues.find(bare); it != _queues.end()) {
        cached = &it->second;
    } else if (writer == nullptr) {
        cached = queue(bare);  // no write path (unit fixtures): read synchronously
        if (cached == nullptr) return Outcome::refused;
    } else {
        // Not cached: nothing of this queue is staged (an entry with writes in flight stays
        // cached), so RocksDB alone knows its state; from memory if it is there.
        auto st = _db->state(bare, true);
        if (!st) {
            if (st.error() == storage::Errc::not_in_memory) return Outcome::cold;
            ++_counters.storage_errors;
            STARLING_LOG(error, "offline: reading the queue of {} failed: {}", bare, storage::to_string(st.error()));
            return Outcome::refused;
        }
        cached = &cache(bare, st.value());
    }
    auto* q = &cached->state;
    if (q->count == 0) {
        // RFC 6121 §8.5.1: no such account gets service-unavailable, not a queue: anyone could
        // otherwise fill the disk with messages to made-up JIDs. Checked while the queue is
        // empty only (an account with messages exists, or had them stored while it did).
        xmpp::Result<bool, storage::Errc> found = false;
        if (exists != nullptr) {
            found = *exists;
        } else if (writer == nullptr) {
            found = _shard->accounts.exists(bare);
        } else {
            auto rec = writer->get_in_memory(storage::Column::accounts, bare);
            if (!rec && rec.error() == storage::Errc::not_in_memory) return Outcome::cold;
            if (!rec) {
                found = xmpp::Unexpected(rec.error());
            } else if (!rec->has_value()) {
                found = false;
            } else if (auto decoded = storage::AccountStore::decode(**rec); decoded) {
                found = true;
            } else {
                found = xmpp::Unexpected(decoded.error());  // as AccountStore::exists says
            }
        }
        if (!found || !found.value()) {
            ++_counters.rejected_no_account;
            return Outcome::refused;
        }
    }
    if (q->count >= _options.max_messages) {
        // XEP-0160 §2 (step 3): the queue is full, so the server cannot store it and returns
        // <service-unavailable/>; RFC 6121 §8.5.2.2.1 names the same condition for a message it
        // does not store. (resource-constraint would tell the sender the recipient's server is
        // overloaded and invite a retry; service-unavailable also hides the queue's state.)
        ++_counters.rejected_full;
        return Outcome::refused;  // bounced with service-unavailable
    }
    offline::OfflineRecord rec;
    rec.seq = q->next_seq;
    rec.stanza = env.bytes;
    rec.received_unix_ms = now_unix_ms();
    if (auto r = _db->append(bare, rec); !r) {
        ++_counters.storage_errors;
        STARLING_LOG(error, "offline: storing a message for {} failed: {}", bare, storage::to_string(r.error()));
        // Unknown state now: re-read next time (once what is staged for it settles).
        cached->stale = true;
        if (cached->unsynced == 0) _queues.erase(bare);
        return Outcome::refused;
    }
    ++q->count;
    ++q->next_seq;
    ++_counters.stored;
    // Staged into this turn's batch (synced with the group commit), or written synchronously
    // without a writer. Nobody is told it is stored: a bounce is the only answer a message gets
    // (and the XEP-0198 <a/> of a sender on this shard, which waits for this shard's writes).
    track(bare, *cached);
    return Outcome::stored;
}

void OfflineModule::wait_for_read(const std::string& bare, router::Envelope& env) {
    if (_waiting_count >= _options.max_waiting) {
        // Bounded: past it the sender is told to retry (type wait), as when a mailbox is full.
        ++_counters.rejected_busy;
        _shard->router.bounce_to_sender(env, xmpp::StanzaError::resource_constraint);
        return;
    }
    Waiting w{std::move(env), nullptr};
    // A sender on this shard handles none of its later stanzas (an XEP-0198 <r/> among them)
    // until this message is stored: its <a/> then waits for the write like any other.
    w.hold = session::hold_sender(_shard->router, w.env.from);
    _waiting[bare].push_back(std::move(w));
    ++_waiting_count;
}

void OfflineModule::start_store_read(const std::string& bare) {
    // What the reader thread reads: the queue's state unless it is cached, and the account
    // (needed while the queue is empty, which it may be again by the time the answer comes).
    struct Read {
        bool need_state = false;
        xmpp::Result<offline::QueueState, storage::Errc> state = offline::QueueState{};
        xmpp::Result<bool, storage::Errc> exists = false;
    };
    auto read = std::make_shared<Read>();
    read->need_state = !_queues.contains(bare);
    ++_counters.store_reads_offloaded;
    storage::Store* store = _shard->store;
    _db->writer()->run_off_reactor(
        [store, read, bare] {
            if (read->need_state) read->state = offline::OfflineStore(*store).state(bare);
            read->exists = storage::AccountStore(*store).exists(bare);
        },
        [this, alive = std::weak_ptr<int>(_alive), read, bare] {
            if (alive.expired()) return;
            if (read->need_state && !read->state) {
                ++_counters.storage_errors;
                STARLING_LOG(error, "offline: reading the queue of {} failed: {}", bare,
                             storage::to_string(read->state.error()));
                store_waiting(bare, nullptr, false);  // all bounced: not stored
            } else {
                // A delivery read may have cached a newer state meanwhile: it wins.
                if (read->need_state && !_queues.contains(bare)) cache(bare, read->state.value());
                store_waiting(bare, &read->exists, true);
            }
            _shard->router.flush();  // bounces to senders on other shards
        });
}

void OfflineModule::store_waiting(const std::string& bare, const xmpp::Result<bool, storage::Errc>* exists,
                                  bool read_ok) {
    auto it = _waiting.find(bare);
    if (it == _waiting.end()) return;
    bool stored = false;
    while (!it->second.empty()) {
        Waiting& w = it->second.front();
        const Outcome o = read_ok ? try_store(bare, w.env, exists) : Outcome::refused;
        if (o == Outcome::cold) {
            // The queue's state left the cache meanwhile (the cache was full and dropped):
            // read again, the rest still waiting in order.
            start_store_read(bare);
            return;
        }
        if (o == Outcome::stored) {
            stored = true;
        } else {
            _shard->router.bounce_to_sender(w.env, xmpp::StanzaError::service_unavailable);
        }
        it->second.pop_front();  // releases the sender's input
        --_waiting_count;
    }
    _waiting.erase(it);
    if (!stored) return;
    // The user became available while the messages waited: they are delivered as stored ones
    // (XEP-0160 §2), oldest first, once their writes are durable.
    for (auto* ep : _shard->router.sessions_of(bare)) {
        auto* s = session::as_session(*ep);
        if (s != nullptr && s->is_available() && s->priority() >= 0) {
            deliver_stored(*s);
            break;
        }
    }
}

void OfflineModule::BatchRead::run(const offline::OfflineStore& db, std::string_view bare, bool memory_only) {
    if (need_state) {
        state = db.state(bare, memory_only);
        if (!state) return;
        max_count = static_cast<std::size_t>(state->count);
    }
    if (max_count == 0) {
        records = std::vector<offline::OfflineRecord>{};
        return;
    }
    records = db.oldest(bare, max_count, max_bytes, memory_only);
}

bool OfflineModule::BatchRead::cold() const noexcept {
    return (!state && state.error() == storage::Errc::not_in_memory) ||
           (!records && records.error() == storage::Errc::not_in_memory);
}

void OfflineModule::deliver_stored(Session& session) {
    const xmpp::Jid* jid = session.jid();
    if (jid == nullptr) return;
    const std::string bare(jid->bare_view());
    // A read of this queue is off the reactor: its completion delivers (and goes on).
    if (_reading.contains(bare)) return;
    auto cached = _queues.find(bare);
    if (cached != _queues.end()) {
        if (cached->second.state.count == 0) return;
        if (cached->second.unsynced > 0) {
            // Messages staged for this user are not in RocksDB yet: read once they are (the
            // completion comes after every write staged before it, so this does not starve).
            std::weak_ptr<Session> weak = session.shared();
            std::weak_ptr<int> alive = _alive;
            _db->writer()->when_durable(storage::Durability::logged,
                                        [this, weak, alive](xmpp::Result<void, storage::Errc>) {
                                            if (alive.expired()) return;
                                            auto s = weak.lock();
                                            if (s && s->is_available() && s->priority() >= 0) deliver_stored(*s);
                                        });
            return;
        }
    }
    auto read = std::make_shared<BatchRead>();
    read->need_state = cached == _queues.end();
    read->max_count = read->need_state ? 0 : static_cast<std::size_t>(cached->second.state.count);
    read->max_bytes = _options.flush_bytes;
    auto* writer = _db->writer();
    // From memory when it is there (the usual case: a queue written a moment ago).
    read->run(*_db, bare, writer != nullptr);
    if (!read->cold()) {
        deliver_batch(session, bare, *read);
        return;
    }
    // Cold (issue 14): the store's reader thread reads it, so a slow disk delays this delivery
    // only, never the shard. Messages are deliveries: the session's input need not wait.
    _reading.insert(bare);
    storage::Store* store = _shard->store;
    writer->run_off_reactor(
        [store, read, bare] { read->run(offline::OfflineStore(*store), bare, false); },
        [this, alive = std::weak_ptr<int>(_alive), weak = std::weak_ptr<Session>(session.shared()), read, bare] {
            if (alive.expired()) return;
            _reading.erase(bare);
            auto s = weak.lock();
            if (s && s->is_available() && s->priority() >= 0) {
                deliver_batch(*s, bare, *read);
            } else if (read->need_state && read->state && !_queues.contains(bare)) {
                cache(bare, read->state.value());  // the count is right; delivered next time
            }
            _shard->router.flush();
        });
}

void OfflineModule::deliver_batch(Session& session, const std::string& bare, BatchRead& read) {
    if (read.need_state) {
        if (!read.state) {
            ++_counters.storage_errors;
            STARLING_LOG(error, "offline: reading the queue of {} failed: {}", bare, storage::to_string(read.state.error()));
            return;
        }
        // A message stored while the read was off the reactor cached a newer state: keep it.
        if (!_queues.contains(bare)) cache(bare, read.state.value());
    }
    auto it = _queues.find(bare);
    if (it == _queues.end()) return;
    auto* cached = &it->second;
    auto* q = &cached->state;
    if (q->count == 0) return;
    if (!read.records) {
        ++_counters.storage_errors;
        STARLING_LOG(error, "offline: loading the queue of {} failed: {}", bare, storage::to_string(read.records.error()));
        return;
    }
    const xmpp::Jid* jid = session.jid();
    std::vector<std::uint64_t> seqs;
    seqs.reserve(read.records.value().size());
    for (auto& rec : read.records.value()) {
        seqs.push_back(rec.seq);
        if (rec.stanza.empty()) continue;  // a corrupt record: deleted, not delivered
        // XEP-0160 §2 recommends a XEP-0203 <delay/>, from the server that stored it.
        offline::insert_delay(rec.stanza, jid->domainpart(), rec.received_unix_ms);
        session.deliver(rec.stanza);
        ++_counters.delivered;
    }
    // Handed to the session's output first, then deleted: a crash in between delivers twice
    // rather than never.
    if (auto r = _db->erase(bare, seqs); !r) {
        ++_counters.storage_errors;
        STARLING_LOG(error, "offline: deleting delivered messages of {} failed: {}", bare,
                     storage::to_string(r.error()));
        cached->stale = true;
        track(bare, *cached);  // dropped from the cache once what is staged settles
        return;
    }
    q->count = seqs.size() >= q->count ? 0 : q->count - seqs.size();
    track(bare, *cached);
    if (q->count > 0) continue_later(session);
}

void OfflineModule::continue_later(Session& session) {
    auto timer = std::make_shared<asio::steady_timer>(_shard->io, k_continue_after);
    std::weak_ptr<Session> weak = session.shared();
    std::weak_ptr<int> alive = _alive;
    timer->async_wait([this, timer, weak, alive](const asio::error_code& ec) {
        if (ec || alive.expired()) return;
        auto s = weak.lock();
        // Gone, or no longer taking offline messages: the rest stays stored for next time.
        if (!s || !s->is_available() || s->priority() < 0) return;
        deliver_stored(*s);
    });
}

ModuleSpec OfflineModule::spec() {
    return {
        .name = "offline",
        .summary = "XEP-0160 offline messages",
        .optional = true,
        .options = {
            OptionSpec::integer("max_messages", 1000, 1, 1'000'000, "messages kept per user while offline; one more gets <service-unavailable/>"),
            OptionSpec::integer("max_waiting", 4096, 1, 1'000'000, "messages per shard waiting for a read from disk before they are stored; one more gets <resource-constraint/>"),
        },
        .make = [](const OptionValues& v) -> std::unique_ptr<Module> {
        OfflineOptions o;
        o.max_messages = static_cast<std::uint32_t>(v.integer("offline.max_messages"));
        o.max_waiting = static_cast<std::size_t>(v.integer("offline.max_waiting"));
        return std::make_unique<OfflineModule>(o);
    },
    };
}

}  // namespace starling::modules
