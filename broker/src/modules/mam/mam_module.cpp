#include "broker/src/modules/mam/mam_module.hpp"

#include <algorithm>
#include <chrono>
#include <vector>

#include <asio/post.hpp>

#include "broker/src/session/shard_services.hpp"
#include "broker/src/modules/carbons/forward.hpp"
#include "broker/src/router/router.hpp"
#include "broker/src/storage/accounts.hpp"
#include "broker/src/storage/segment_log.hpp"
#include "broker/src/storage/store.hpp"
#include "broker/src/storage/write_path.hpp"
#include "broker/src/util/dom.hpp"
#include "broker/src/util/log.hpp"
#include "xmpp/ns.hpp"
#include "xmpp/xml/raw_text.hpp"
#include "xmpp/xml/writer.hpp"
#include "xmpp/jid.hpp"

namespace starling::modules {

namespace {

using mam::MessageArchive;

using xmpp::bare_of;

std::int64_t now_us() noexcept {
    return std::chrono::duration_cast<std::chrono::microseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

// Ids (archive times) below this have expired; 0: nothing expires.
std::uint64_t retention_floor(const MamOptions& options, std::int64_t now) noexcept {
    if (options.retention_days == 0) return 0;
    const std::int64_t floor = now - static_cast<std::int64_t>(options.retention_days) * 86'400'000'000LL;
    return floor > 0 ? static_cast<std::uint64_t>(floor) : 0;
}

constexpr std::string_view k_ns_mam_extended = "urn:xmpp:mam:2#extended";

bool type_may_be_archived(std::string_view type) noexcept {
    return type.empty() || type == "chat" || type == "normal";
}

// An id for a message archived now, above every id the user already has (see
// MessageArchive::fresh_id: never overwrite a record if the clock went back across a restart).
std::uint64_t fresh_id(MessageArchive& archive, std::string_view bare) { return archive.fresh_id(bare, now_us()); }

std::int64_t steady_now_us() noexcept {
    return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

// The archive time of a routed message: when its bytes were read (the steady clock the router
// stamps on every envelope, env.routed_ns) on the system clock, through an offset the sweep
// measures every second. No clock read per message; a message is not archived before it was
// received. An envelope without that time reads the clock.
std::uint64_t fresh_id(MessageArchive& archive, std::string_view bare, const router::Envelope& env,
                       std::int64_t clock_offset_us) {
    if (env.routed_ns <= 0) return fresh_id(archive, bare);
    return archive.fresh_id(bare, env.routed_ns / 1000 + clock_offset_us);
}

// A MAM query's reads and their outcome (XEP-0313 §4). `gather` fills the outcome from the
// archive; it may run on the store's reader thread (it reads RocksDB only, and touches nothing
// of the shard); the rest runs on the shard.
struct QueryRun {
    std::string bare;  // whose archive
    mam::Query q;
    std::optional<std::uint64_t> after, before, after_id, before_id;  // ids the query names
    std::vector<std::uint64_t> wanted;                                // the 'ids' field
    std::uint64_t floor = 0;                                          // retention: older expired
    std::optional<xmpp::StanzaError> error;
    std::vector<std::uint64_t> ids;  // every match, oldest first
    mam::Page page;
    std::vector<mam::ArchivedMessage> messages;  // the page, in the order to send
    bool corrupt = false;
};

void gather(const MessageArchive& archive, QueryRun& r) {
    // Every id the query names must be in the archive (XEP-0313 §4.1.1.3, §4.3.2):
    // item-not-found otherwise.
    for (const auto* id : {&r.after, &r.before, &r.after_id, &r.before_id}) {
        if (*id && !archive.get(r.bare, **id)) {
            r.error = xmpp::StanzaError::item_not_found;
            return;
        }
    }
    for (const auto id : r.wanted) {
        if (!archive.get(r.bare, id)) {
            r.error = xmpp::StanzaError::item_not_found;
            return;
        }
    }
    std::sort(r.wanted.begin(), r.wanted.end());
    const auto& q = r.q;
    // The matching ids, oldest first. O(archive in [start, end]) per query: bounded by the
    // retention limits (TODO(#4): an index by 'with' when archives grow large).
    std::uint64_t lo = r.floor;
    std::uint64_t hi = UINT64_MAX;
    if (q.start_us) lo = std::max<std::uint64_t>(lo, *q.start_us > 0 ? static_cast<std::uint64_t>(*q.start_us) : 0);
    if (q.end_us) {
        if (*q.end_us < 0) hi = 0;
        else hi = static_cast<std::uint64_t>(*q.end_us);
    }
    if (r.after_id) lo = std::max(lo, *r.after_id + 1);
    if (r.before_id) hi = *r.before_id == 0 ? 0 : std::min(hi, *r.before_id - 1);
    // Index entries may keep only a hash of 'with' (mam::with_hash): the query's, once.
    const std::uint32_t with_hash = q.with.empty() ? 0 : mam::with_hash(q.with);
    auto scanned = archive.scan(r.bare, lo, hi, [&](std::uint64_t id, std::string_view value) {
        if (!q.ids.empty() && !std::binary_search(r.wanted.begin(), r.wanted.end(), id)) return true;
        if (r.before_id && *r.before_id == 0) return false;
        if (q.with.empty()) {
            r.ids.push_back(id);
            return true;
        }
        auto m = MessageArchive::decode(value, id);
        if (!m) {
            r.corrupt = true;
            return true;
        }
        if (m->with_hash) {
            // Only the hash is in the index: a match of the hash is checked against the log
            // record's JID (bodies of other parties with the same hash are rare).
            if (*m->with_hash != with_hash) return true;
            if (auto read = archive.read_log_record(*m, false); !read) {
                if (read.error() == storage::Errc::corrupt) r.corrupt = true;
                return true;
            }
            if (mam::with_matches(q, m->with)) r.ids.push_back(id);
            return true;
        }
        if (mam::with_matches(q, m->with)) r.ids.push_back(id);
        return true;
    });
    if (!scanned) {
        r.error = xmpp::StanzaError::internal_server_error;
        return;
    }
    const bool last_page = q.before && q.before->empty();
    r.page = mam::select_page(r.ids, r.after, r.before, last_page, q.max);
    for (std::size_t k = r.page.begin; k < r.page.end; ++k) {
        // <flip-page/>: the same page, newest first (XEP-0313 §4.3.5).
        const std::size_t i = q.flip_page ? r.page.end - 1 - (k - r.page.begin) : k;
        if (auto m = archive.get(r.bare, r.ids[i])) r.messages.push_back(std::move(*m));
    }
}

// XEP-0359 §3: <stanza-id xmlns='urn:xmpp:sid:0' by='BARE' id='ID'/>, byte for byte what
// xml::Writer wrote (fixed text around the escaped JID; `id` is hex digits, nothing to escape).
void stanza_id_element_into(std::string& out, std::string_view by, std::string_view id) {
    out.assign("<stanza-id xmlns='urn:xmpp:sid:0' by='");
    xmpp::xml::escape_attribute_into(out, by);
    out.append("' id='");
    out.append(id);
    out.append("'/>");
}

// The page's messages to `session` (gone: nobody to send them to).
void answer_query(const QueryRun& r, const mam::IdCodec& ids_codec, const std::string& to, Session* session) {
    for (const auto& m : r.messages) {
        const std::string id = ids_codec.format(m.id);
        std::string out;
        out.reserve(m.stanza.size() + 300);
        out += "<message from='";
        xmpp::xml::escape_attribute_into(out, r.bare);
        out += "' to='";
        xmpp::xml::escape_attribute_into(out, to);
        out += "' id='";
        out += id;  // hex digits
        out += "'><result xmlns='urn:xmpp:mam:2'";
        if (!r.q.queryid.empty()) {
            out += " queryid='";
            xmpp::xml::escape_attribute_into(out, r.q.queryid);
            out += '\'';
        }
        out += " id='";
        out += id;
        out += "'><forwarded xmlns='urn:xmpp:forward:0'><delay xmlns='urn:xmpp:delay' stamp='";
        out += mam::format_datetime(m.stamp_us);
        out += "'/>";
        if (m.needs_stanza_id) {
            // The sender's copy, shared: the owner's <stanza-id/> as it was delivered (XEP-0359).
            std::string stanza = m.stanza;
            std::string sid;
            stanza_id_element_into(sid, r.bare, id);
            (void)fwd::insert_child(stanza, sid);
            fwd::append_as_client_ns(out, stanza);
        } else {
            fwd::append_as_client_ns(out, m.stanza);
        }
        out += "</forwarded></result></message>";
        if (session != nullptr) session->deliver(out);
    }
}

// XEP-0313 §4.3: <fin/> with the RSM summary (XEP-0059 §2.6 for an empty page).
std::string fin_of(const QueryRun& r, const mam::IdCodec& ids_codec) {
    std::string fin;
    xmpp::xml::Writer w(fin);
    w.open("fin").attr("xmlns", mam::k_ns_mam);
    if (r.page.complete) w.attr("complete", "true");
    w.open("set").attr("xmlns", mam::k_ns_rsm);
    if (r.page.end > r.page.begin) {
        w.open("first").attr("index", std::to_string(r.page.begin)).text(ids_codec.format(r.ids[r.page.begin])).close();
        w.leaf("last", ids_codec.format(r.ids[r.page.end - 1]));
    }
    w.leaf("count", std::to_string(r.ids.size()));
    w.finish();
    return fin;
}

std::string form_fields() {
    std::string out;
    xmpp::xml::Writer w(out);
    w.open("query").attr("xmlns", mam::k_ns_mam);
    w.open("x").attr("xmlns", mam::k_ns_data).attr("type", "form");
    w.open("field").attr("type", "hidden").attr("var", "FORM_TYPE").leaf("value", mam::k_ns_mam).close();
    w.open("field").attr("type", "jid-single").attr("var", "with").close();
    w.open("field").attr("type", "text-single").attr("var", "start").close();
    w.open("field").attr("type", "text-single").attr("var", "end").close();
    // urn:xmpp:mam:2#extended (XEP-0313 §4.1.1.3)
    w.open("field").attr("type", "text-single").attr("var", "before-id").close();
    w.open("field").attr("type", "text-single").attr("var", "after-id").close();
    w.open("field").attr("type", "list-multi").attr("var", "ids");
    w.open("validate").attr("xmlns", "http://jabber.org/protocol/xdata-validate").attr("datatype", "xs:string");
    w.open("open").close().close().close();
    w.finish();
    return out;
}

}  // namespace

void MamModule::install(ModuleContext& ctx) {
    storage::Store* store = _store != nullptr ? _store : ctx.shard().store;
    // The shard's write path when the archive is in the shard's store: appends are committed by
    // the committer thread, off the reactor (storage/README.md).
    storage::ShardWriter* writer = store == ctx.shard().store ? ctx.shard().writer : nullptr;
    _archive = std::make_unique<MessageArchive>(store, writer);
    _archive->defer_writes_to(ctx.shard().io);
    _archive->set_max_count(_options.max_messages_per_user);
    _log_store = _archive->log() != nullptr ? store : nullptr;
    if (_log_store != nullptr) {
        // Index entries of the last run that never reached RocksDB (they wait in memory for a
        // tick): rebuilt from this shard's log, and from logs of shards that no longer exist.
        const std::size_t shards = std::max<std::size_t>(1, ctx.shard().router.shard_count());
        for (auto* log : _log_store->segment_logs()) {
            if (log->id() % shards != ctx.shard().shard) continue;
            try {
                _archive->replay(*log);
            } catch (const std::exception& e) {
                STARLING_LOG(error, "mam: replaying log {} failed: {}", log->id(), e.what());
            }
        }
        // Written with the shard's first turn, not its first tick: entries replayed from a
        // former shard's log may belong to users homed on another shard now, whose queries
        // cannot flush this shard's memory.
        _archive->flush_index();
    }
    if (!_archive->is_durable() && ctx.shard().shard == 0) {
        STARLING_LOG(warn, "mam: no store in the shard context; archives are kept in memory only");
    }
    MessageArchive* archive = _archive.get();
    ctx.on_account_deleted([archive](std::string_view bare) { archive->forget(bare); });
    Scratch* scratch = _scratch.get();
    scratch->clock_offset_us = now_us() - steady_now_us();
    _ids = std::make_unique<mam::IdCodec>(ctx.shard().server.server_secret);
    const mam::IdCodec* ids_codec = _ids.get();
    const MamOptions options = _options;

    // XEP-0313 §8: an account's archive is advertised on the account's disco#info; XEP-0359 §5
    // likewise for the stanza-ids it adds.
    ctx.add_account_disco_feature(mam::k_ns_mam);
    ctx.add_account_disco_feature(k_ns_mam_extended);
    ctx.add_account_disco_feature(fwd::k_ns_sid);

    auto retention_floor = [options](std::int64_t now) -> std::uint64_t { return modules::retention_floor(options, now); };

    // Sent messages: whether to archive is decided before routing (a hint may say no); what is
    // archived is the stanza as routed, stamped by the session (on_routed): no stamp of our own.
    ctx.on_outbound(
        router::StanzaKind::message,
        [archive, scratch](OutboundEvent& ev) {
            scratch->sent_valid = false;
            scratch->pending = false;
            if (!type_may_be_archived(ev.type) || ev.to == nullptr || !ev.to->has_localpart()) return Handled::no;
            // To the user's own account: archived once, as received, by the inbound hook.
            if (ev.to->bare_view() == ev.session.jid()->bare_view()) return Handled::no;
            if (ev.element.depends_on_outer_prefixes()) {
                // A prefix declared on the stream header: its children are read from the stanza
                // as routed, which carries the declaration.
                scratch->pending = true;
                scratch->pending_needs_facts = true;
                return Handled::no;
            }
            const auto facts = fwd::read_facts(ev.element);
            if (!fwd::archive_eligible(ev.type, facts)) return Handled::no;
            // Both parties' entries are needed after routing (the sender's on_routed, the
            // recipient's inbound hook when homed here): their cache misses start now.
            archive->prefetch_user(ev.session.jid()->bare_view());
            archive->prefetch_user(ev.to->bare_view());
            scratch->pending = true;
            scratch->pending_needs_facts = false;
            scratch->sent_facts = facts;
            return Handled::no;
        },
        k_priority);

    // Archived in the sender's archive, on the sender's home shard, as the recipients get it.
    ctx.on_routed(router::StanzaKind::message, [archive, scratch](RoutedEvent& ev) {
        if (!scratch->pending) return;
        scratch->pending = false;
        const auto& env = ev.env;
        const xmpp::Jid& me = *ev.session.jid();
        if (env.from != me.full()) return;  // not the stanza the outbound hook saw
        if (scratch->pending_needs_facts) {
            scratch->sent_facts = fwd::read_facts(env.bytes);
            if (!fwd::archive_eligible(env.type, scratch->sent_facts)) return;
        }
        const std::uint64_t id = fresh_id(*archive, me.bare_view(), env, scratch->clock_offset_us);
        // The archive time is the id, unique: start/end compare it.
        if (auto r = archive->append(me.bare_view(), id, static_cast<std::int64_t>(id), env.to, true, env.bytes, env.from);
            !r) {
            STARLING_LOG(warn, "mam: archiving a sent message of {} failed: {}", me.bare_view(),
                         storage::to_string(r.error()));
            return;
        }
        // For the recipient's hook, next in this same call when the recipient is homed here.
        // One buffer for every message of the shard (no allocation once it has grown).
        scratch->stanza.assign(env.bytes);
        scratch->sent_valid = true;
        scratch->sent_id = id;
        scratch->sent_from.assign(env.from);
        scratch->sent_to.assign(bare_of(env.to));
    });

    // Received messages: archived in the recipient's archive, and stamped with the archive id.
    ctx.on_inbound(
        router::StanzaKind::message,
        [archive, ids_codec, scratch](InboundEvent& ev) {
            auto& env = ev.env;
            if (!type_may_be_archived(env.type)) return Handled::no;
            const std::string_view bare = bare_of(env.to);
            if (bare.find('@') == std::string_view::npos) return Handled::no;
            // The message its sender archived just before, on this shard, byte for byte: the
            // recipient's record names that body (stored once) and takes its id.
            bool same = scratch->sent_valid && scratch->sent_to == bare && env.from == scratch->sent_from &&
                        env.bytes == scratch->stanza;
            scratch->sent_valid = false;
            fwd::MessageFacts facts;
            if (same && !scratch->sent_facts.has_stanza_id) {
                // The sender's hook walked these very bytes (its copy differs only by the 'from'
                // it stamped, which no fact depends on): no second walk.
                facts = scratch->sent_facts;
            } else {
                // XEP-0359 §4: remove <stanza-id/> claiming to be by this archive, or a sender
                // could forge archive ids; the same walk over the children reads the facts.
                bool forged = false;
                facts = fwd::read_facts_removing(env.bytes, "stanza-id", fwd::k_ns_sid, bare, forged);
                if (forged) same = false;  // not the bytes the sender's archive holds
            }
            if (!fwd::archive_eligible(env.type, facts)) return Handled::no;
            // No archive for an account that does not exist (the router bounces the message).
            // Known to the archive (it archived or was swept since start, and forget() drops it
            // with its account) or bound here: it exists, no read.
            if (!archive->touch(bare) && ev.shard.router.sessions_of(bare).empty()) {
                auto exists = ev.shard.accounts.exists(bare);
                if (!exists || !*exists) return Handled::no;
            }
            if (same) {
                char digits[16];
                ids_codec->format_into(scratch->sent_id, digits);
                stanza_id_element_into(scratch->sid, bare, std::string_view(digits, sizeof digits));
                if (!fwd::insert_child(env.bytes, scratch->sid)) return Handled::no;
                auto shared = archive->append_shared(bare, scratch->sent_id, env.from, bare_of(env.from));
                if (!shared) {
                    STARLING_LOG(warn, "mam: archiving a message for {} failed: {}", bare,
                                 storage::to_string(shared.error()));
                    return Handled::no;
                }
                if (*shared) return Handled::no;
                // The recipient already has an id at or above the body's (a clock that went
                // back across a restart): a copy of its own, under a fresh id.
                fwd::remove_children(env.bytes, "stanza-id", fwd::k_ns_sid, bare);
            }
            const std::uint64_t id = fresh_id(*archive, bare, env, scratch->clock_offset_us);
            char digits[16];
            ids_codec->format_into(id, digits);
            stanza_id_element_into(scratch->sid, bare, std::string_view(digits, sizeof digits));
            if (!fwd::insert_child(env.bytes, scratch->sid)) return Handled::no;
            // The archive time is the id, unique: start/end compare it.
            if (auto r = archive->append(bare, id, static_cast<std::int64_t>(id), env.from, false, env.bytes); !r) {
                STARLING_LOG(warn, "mam: archiving a message for {} failed: {}", bare, storage::to_string(r.error()));
            }
            return Handled::no;
        },
        k_priority);

    // Retention: a user who logs in is due for a check (age and count), done by the sweep off
    // the message path; no scan here.
    // Queuing needs the user's newest id (one reverse seek, maybe from disk): when it is not
    // cached, the seek runs on the store's reader thread, not on this shard at login (issue 14).
    ctx.on_session([archive](Session& s, SessionEvent e) {
        if (e != SessionEvent::bound || s.jid() == nullptr) return;
        auto* reader = archive->off_reactor_writer();
        if (reader == nullptr || archive->knows(s.jid()->bare_view())) {
            archive->queue_for_retention(s.jid()->bare_view());
            return;
        }
        if (const auto newest = archive->newest_in_memory(s.jid()->bare_view())) {
            archive->seed_newest(s.jid()->bare_view(), *newest);  // in memory: no thread hop
            archive->queue_for_retention(s.jid()->bare_view());
            return;
        }
        struct Seek {
            std::string bare;
            xmpp::Result<std::uint64_t, storage::Errc> newest{0};
        };
        auto seek = std::make_shared<Seek>();
        seek->bare = std::string(s.jid()->bare_view());
        reader->run_off_reactor([archive, seek] { seek->newest = archive->newest_stored(seek->bare); },
                                [archive, seek] {
                                    // On a read error nothing is cached: the next message seeks
                                    // again, and the sweep's pass over idle users covers retention.
                                    if (!seek->newest) return;
                                    archive->seed_newest(seek->bare, *seek->newest);
                                    archive->queue_for_retention(seek->bare);
                                });
    });
    _shard = &ctx.shard();
    _timer = std::make_unique<asio::steady_timer>(_shard->io);
    // The timer is first touched on the shard's own thread (install runs before it starts).
    asio::post(_shard->io, [this] { arm_sweep(); });

    ctx.on_iq(IqType::get, mam::k_ns_mam, "query", [](IqEvent& ev) {
        if (!ev.to_account) return Handled::no;  // no archive on the server JID
        if (!ev.is_to_self_or_server()) {
            ev.reply_error(xmpp::StanzaError::forbidden);
            return Handled::yes;
        }
        ev.reply_result(form_fields());  // XEP-0313 §5.1.1
        return Handled::yes;
    });

    // XEP-0313 §5 (archive metadata, #extended): the first and last message of the archive.
    ctx.on_iq(IqType::get, mam::k_ns_mam, "metadata", [archive, ids_codec, retention_floor](IqEvent& ev) {
        if (!ev.to_account) return Handled::no;
        if (!ev.is_to_self_or_server()) {
            ev.reply_error(xmpp::StanzaError::forbidden);
            return Handled::yes;
        }
        // Read once the messages archived so far are readable (committed), maybe later; then
        // two seeks (the oldest record at or above the retention floor, the newest), on the
        // store's reader thread when the archive is only in RocksDB (issue 14).
        archive->when_readable([archive, ids_codec, retention_floor, bare = std::string(ev.to),
                                d = ev.defer()](bool readable) mutable {
            if (!readable) {
                d.error(xmpp::StanzaError::internal_server_error);
                return;
            }
            struct Bounds {
                std::string bare;
                std::uint64_t floor = 0;
                std::optional<std::uint64_t> first, last;
                bool failed = false;
            };
            auto b = std::make_shared<Bounds>();
            b->bare = std::move(bare);
            b->floor = retention_floor(now_us());
            auto work = [archive, b] {
                auto r = archive->scan(b->bare, b->floor, UINT64_MAX, [&](std::uint64_t id, std::string_view) {
                    b->first = id;
                    return false;
                });
                auto newest = archive->newest_stored(b->bare);
                b->failed = !r || !newest;
                if (b->first && newest && *newest >= *b->first) b->last = *newest;
                else b->first.reset();
            };
            auto answer = [ids_codec, b, d = std::move(d)]() mutable {
                if (b->failed) {
                    d.error(xmpp::StanzaError::internal_server_error);
                    return;
                }
                std::string out;
                xmpp::xml::Writer w(out);
                w.open("metadata").attr("xmlns", mam::k_ns_mam);
                if (b->first) {
                    for (auto [name, id] : {std::pair{"start", *b->first}, std::pair{"end", *b->last}}) {
                        w.open(name).attr("id", ids_codec->format(id));
                        w.attr("timestamp", mam::format_datetime(static_cast<std::int64_t>(id))).close();
                    }
                }
                w.finish();
                d.result(out);
            };
            if (auto* reader = archive->off_reactor_writer()) {
                reader->run_off_reactor(std::move(work), std::move(answer));
            } else {
                work();
                answer();
            }
        });
        return Handled::yes;
    });

    // XEP-0313 §6.1: preferences. Everything is archived; the preferences say so.
    ctx.on_iq(IqType::get, mam::k_ns_mam, "prefs", [](IqEvent& ev) {
        if (!ev.to_account) return Handled::no;
        ev.reply_result("<prefs xmlns='urn:xmpp:mam:2' default='always'><always/><never/></prefs>");
        return Handled::yes;
    });
    ctx.on_iq(IqType::set, mam::k_ns_mam, "prefs", [](IqEvent& ev) {
        if (!ev.to_account) return Handled::no;
        ev.reply_error(xmpp::StanzaError::feature_not_implemented);
        return Handled::yes;
    });

    ctx.on_iq(IqType::set, mam::k_ns_mam, "query", [archive, ids_codec, options, retention_floor](IqEvent& ev) {
        if (!ev.to_account) return Handled::no;  // no archive on the server JID
        if (!ev.is_to_self_or_server()) {
            ev.reply_error(xmpp::StanzaError::forbidden);  // another user's archive
            return Handled::yes;
        }
        auto parsed = mam::parse_query(ev.dom, ev.payload, options.limits);
        if (!parsed) {
            ev.reply_error(parsed.error());
            return Handled::yes;
        }
        // The ids the query names, parsed here (the codec is the shard's); whether they exist is
        // for the reads.
        auto run = std::make_shared<QueryRun>();
        run->bare = std::string(ev.to);
        const std::pair<const std::optional<std::string>*, std::optional<std::uint64_t>*> named[] = {
            {&parsed->after, &run->after}, {&parsed->before, &run->before},
            {&parsed->after_id, &run->after_id}, {&parsed->before_id, &run->before_id}};
        for (auto [text, out] : named) {
            if (!*text || (*text)->empty()) continue;
            *out = ids_codec->parse(**text);
            if (!*out) {
                ev.reply_error(xmpp::StanzaError::item_not_found);  // XEP-0313 §4.1.1.3
                return Handled::yes;
            }
        }
        for (const auto& text : parsed->ids) {
            auto id = ids_codec->parse(text);
            if (!id) {
                ev.reply_error(xmpp::StanzaError::item_not_found);
                return Handled::yes;
            }
            run->wanted.push_back(*id);
        }
        run->q = std::move(*parsed);
        run->floor = retention_floor(now_us());
        // Answered once the messages archived so far are readable (committed): maybe later,
        // from the write path's completion, never blocking the reactor on the commit. The reads
        // (the query's scan) then run on the store's reader thread when the archive is only in
        // RocksDB, so that a slow disk stalls that thread and not this shard's sessions.
        archive->when_readable([archive, ids_codec, run, to = ev.from().full(),
                                session = std::weak_ptr<Session>(ev.session.shared()),
                                d = ev.defer()](bool readable) mutable {
            if (!readable) {
                d.error(xmpp::StanzaError::internal_server_error);
                return;
            }
            auto answer = [archive, ids_codec, run, to = std::move(to), session = std::move(session),
                           d = std::move(d)]() mutable {
                if (run->error) {
                    d.error(*run->error);
                    return;
                }
                if (run->corrupt) STARLING_LOG(warn, "mam: corrupt records in the archive of {}", run->bare);
                answer_query(*run, *ids_codec, to, session.lock().get());
                d.result(fin_of(*run, *ids_codec));
            };
            if (auto* reader = archive->off_reactor_writer()) {
                reader->run_off_reactor([archive, run] { gather(*archive, *run); }, std::move(answer));
            } else {
                gather(*archive, *run);
                answer();
            }
        });
        return Handled::yes;
    });
}

void MamModule::arm_sweep() {
    _timer->expires_after(k_sweep_interval);
    // `this` outlives the wait: the module is destroyed with its ModuleHost after the shard's
    // io_context has stopped, and a stopped context never runs the handler.
    _timer->async_wait([this](const asio::error_code& ec) {
        if (ec) return;
        sweep();
        arm_sweep();
    });
}

// Retention off the message path: a few queued users per tick, each once what was archived
// before is readable (the retention reads see it). Deletes go through the shard's write path.
// Users nobody queued (idle since the start: no login, no message) are visited by a pass over
// the archive's keys, a few per tick when the queue is empty, once an hour: their expired
// records are deleted, not only hidden from queries. Each shard takes the users it is home to.
void MamModule::sweep() {
    _scratch->clock_offset_us = now_us() - steady_now_us();
    _archive->flush_index();  // the index entries of the last tick, one chunk per user
    _archive->persist_counts();
    if (_options.retention_days > 0) {
        _archive->expire_bodies(retention_floor(_options, now_us()));
        drop_log_segments(retention_floor(_options, now_us()));
    }
    collect_bodies();
    collect_log();
    const bool retention = _options.retention_days > 0 || _options.max_messages_per_user > 0;
    const bool idle_pass = retention && _archive->queued() == 0 && std::chrono::steady_clock::now() >= _next_idle_pass;
    if (_sweeping || (_archive->queued() == 0 && !idle_pass)) return;
    _sweeping = true;
    _archive->when_readable([this, idle_pass](bool readable) {
        _sweeping = false;
        if (!readable) return;  // the store is failing: try again next tick
        const std::uint64_t floor = retention_floor(_options, now_us());
        std::vector<std::string> visited;
        if (idle_pass) {
            for (auto& bare : _archive->users_from(_idle_cursor, k_sweep_users)) {
                if (_shard->router.home_of(bare) != _shard->shard) continue;
                _archive->queue_for_retention(bare);
                visited.push_back(std::move(bare));
            }
            if (_idle_cursor.empty()) _next_idle_pass = std::chrono::steady_clock::now() + k_idle_pass_interval;
        }
        for (const auto& bare : _archive->take_queued(k_sweep_users)) {
            if (auto r = _archive->enforce(bare, floor, _options.max_messages_per_user); !r) {
                STARLING_LOG(warn, "mam: retention for {} failed: {}", bare, storage::to_string(r.error()));
                _archive->queue_for_retention(bare);
                break;
            }
        }
        // Only what a user's count needs was written; the pass keeps no memory per user.
        _archive->persist_counts();
        for (const auto& bare : visited) _archive->release(bare);
    });
}

// The pass over the body space (MessageArchive::find_orphans): a step per tick, its reads on the
// store's reader thread, the deletions staged back on the shard. Bodies above the watermark
// (appended after this step started) are left to the next pass: their index records may not be
// readable yet. Each shard takes the bodies whose owners it is home to.
void MamModule::collect_bodies() {
    if (_collecting || (_body_cursor.empty() && std::chrono::steady_clock::now() < _next_body_pass)) return;
    _collecting = true;
    const std::uint64_t watermark = _archive->last_id();
    _archive->when_readable([this, watermark](bool readable) {
        if (!readable) {
            _collecting = false;
            return;
        }
        struct Step {
            std::string cursor;
            std::vector<std::string> orphans;
        };
        auto step = std::make_shared<Step>();
        step->cursor = _body_cursor;
        auto* router = &_shard->router;
        const auto self = _shard->shard;
        auto work = [archive = _archive.get(), step, watermark, router, self] {
            step->orphans = archive->find_orphans(step->cursor, k_sweep_bodies, watermark,
                                                  [&](std::string_view owner) { return router->home_of(owner) == self; });
        };
        auto done = [this, step] {
            _collecting = false;
            _archive->erase_bodies(step->orphans);
            _body_cursor = std::move(step->cursor);
            if (_body_cursor.empty()) _next_body_pass = std::chrono::steady_clock::now() + k_idle_pass_interval;
        };
        if (auto* reader = _archive->off_reactor_writer()) {
            reader->run_off_reactor(std::move(work), std::move(done));
        } else {
            work();
            done();
        }
    });
}

std::vector<std::uint16_t> MamModule::swept_logs() const {
    std::vector<std::uint16_t> out;
    if (_log_store == nullptr) return out;
    const std::size_t shards = std::max<std::size_t>(1, _shard->router.shard_count());
    for (auto* log : _log_store->segment_logs()) {
        if (log->id() % shards == _shard->shard) out.push_back(log->id());
    }
    return out;
}

// Whole segments of the body logs whose every record is older than the retention floor: at
// most once a minute of floor, the files deleted on the store's reader thread.
void MamModule::drop_log_segments(std::uint64_t floor) {
    constexpr std::uint64_t k_step_us = 60'000'000;
    auto* reader = _archive->off_reactor_writer();
    if (reader == nullptr || _log_store == nullptr || floor == 0 || floor < _log_floor + k_step_us) return;
    _log_floor = floor;
    reader->run_off_reactor(
        [store = _log_store, logs = swept_logs(), floor] {
            for (const auto id : logs) {
                if (auto* log = store->find_segment_log(id)) {
                    if (const auto n = log->drop_below(floor)) STARLING_LOG(info, "mam: log {}: {} expired segments deleted", id, n);
                }
            }
        },
        [] {});
}

// The pass over the body logs (MessageArchive::sweep_log), like collect_bodies: a step per
// tick on the store's reader thread, which erases in place the records no index record names
// (count trimming, retention of one party, deleted accounts) and gives their blocks back.
void MamModule::collect_log() {
    auto* reader = _archive->off_reactor_writer();
    if (reader == nullptr || _log_store == nullptr || _log_collecting) return;
    if (_log_pass.empty()) {
        if (std::chrono::steady_clock::now() < _next_log_pass) return;
        _log_pass = swept_logs();
        _log_offset = 0;
        if (_log_pass.empty()) {
            _next_log_pass = std::chrono::steady_clock::now() + k_idle_pass_interval;
            return;
        }
    }
    _log_collecting = true;
    // This shard's own log: only what it had appended when the step began (its index records
    // are readable once when_readable says so). Another shard's old log takes no appends.
    const std::uint16_t id = _log_pass.front();
    const std::uint64_t watermark = id == _shard->shard ? _archive->last_id() : UINT64_MAX;
    _archive->when_readable([this, reader, id, watermark](bool readable) {
        if (!readable) {
            _log_collecting = false;
            return;
        }
        struct Step {
            std::uint64_t offset = 0;
            std::optional<std::uint64_t> next;
        };
        auto step = std::make_shared<Step>();
        step->offset = _log_offset;
        auto work = [archive = _archive.get(), store = _log_store, step, id, watermark] {
            auto* log = store->find_segment_log(id);
            if (log != nullptr) step->next = archive->sweep_log(*log, step->offset, k_sweep_log_records, watermark);
        };
        auto done = [this, step] {
            _log_collecting = false;
            if (step->next) {
                _log_offset = *step->next;
                return;
            }
            if (!_log_pass.empty()) _log_pass.erase(_log_pass.begin());
            _log_offset = 0;
            if (_log_pass.empty()) _next_log_pass = std::chrono::steady_clock::now() + k_idle_pass_interval;
        };
        reader->run_off_reactor(std::move(work), std::move(done));
    });
}

ModuleSpec MamModule::spec() {
    return {
        .name = "mam",
        .summary = "XEP-0313 message archive",
        .optional = true,
        .options = {
            OptionSpec::integer("retention_days", 365, 0, 36'500, "archived messages older than this expire; 0: kept forever"),
            OptionSpec::integer("max_messages_per_user", 10'000, 0, 100'000'000, "the oldest messages beyond this count per user expire; 0: no limit"),
        },
        .make = [](const OptionValues& v) -> std::unique_ptr<Module> {
        MamOptions o;
        o.retention_days = static_cast<std::uint32_t>(v.integer("mam.retention_days"));
        o.max_messages_per_user = static_cast<std::uint32_t>(v.integer("mam.max_messages_per_user"));
        return std::make_unique<MamModule>(o);
    },
    };
}

}  // namespace starling::modules
