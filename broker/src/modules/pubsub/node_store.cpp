#include "broker/src/modules/pubsub/node_store.hpp"

#include <flatbuffers/flatbuffers.h>
#include <algorithm>
#include <memory>
#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>

#include "broker/src/storage/rocks.hpp"
#include "broker/src/storage/store.hpp"
#include "broker/src/storage/write_path.hpp"
#include "pubsub_generated.h"
#include "xmpp/jid.hpp"

namespace starling::modules::pubsub {

using storage::Column;
using storage::Errc;
using storage::errc_of;
using storage::slice;
using storage::write_options;

namespace fb = storage::fb;

namespace {

constexpr std::size_t k_seq_bytes = 8;
constexpr char k_node_tag = 'n';
constexpr char k_sub_tag = 's';
constexpr char k_owner_index = '\x01';  // no service JID starts with U+0001

std::string seq_key(std::string_view prefix, std::uint64_t seq) {
    std::string k(prefix);
    for (int shift = 56; shift >= 0; shift -= 8) k += static_cast<char>((seq >> shift) & 0xff);
    return k;
}

std::uint64_t seq_of(std::string_view key) noexcept {
    std::uint64_t v = 0;
    for (std::size_t i = key.size() - k_seq_bytes; i < key.size(); ++i) {
        v = (v << 8) | static_cast<unsigned char>(key[i]);
    }
    return v;
}

// Just past every key that starts with `prefix` (which ends in 0x00).
std::string upper_of(std::string_view prefix) {
    std::string u(prefix);
    u.back() = '\x01';
    return u;
}

std::string owner_key(std::string_view owner, std::string_view service, std::string_view node) {
    std::string k(1, k_owner_index);
    k += owner;
    k += '\0';
    k += service;
    k += '\0';
    k += node;
    return k;
}

std::string owner_prefix(std::string_view owner) {
    std::string k(1, k_owner_index);
    k += owner;
    k += '\0';
    return k;
}

// Calls f(key, value) for each key in [prefix, upper(prefix)); returns the iterator's status.
// `memory_only`: the memtable and block cache only (Incomplete when the disk is needed).
template <class F>
rocksdb::Status scan(storage::Store& store, Column column, std::string_view prefix, F&& f, bool memory_only = false) {
    const std::string upper_storage = upper_of(prefix);
    const rocksdb::Slice upper = slice(upper_storage);
    rocksdb::ReadOptions ro;
    ro.iterate_upper_bound = &upper;
    if (memory_only) ro.read_tier = rocksdb::kBlockCacheTier;
    std::unique_ptr<rocksdb::Iterator> it(store.db().NewIterator(ro, store.column(column)));
    for (it->Seek(slice(prefix)); it->Valid(); it->Next()) {
        if (!f(it->key().ToStringView(), it->value().ToStringView())) break;
    }
    return it->status();
}

xmpp::Result<void, Errc> commit(storage::Store& store, rocksdb::WriteBatch& batch) noexcept {
    const auto st = store.db().Write(write_options(store), &batch);
    if (!st.ok()) return xmpp::Unexpected(errc_of(st));
    return {};
}

template <class T>
const T* verified(std::string_view bytes, std::string& scratch) {
    bytes = storage::aligned(bytes, scratch);
    flatbuffers::Verifier v(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
    if (!v.VerifyBuffer<T>(nullptr)) return nullptr;
    return flatbuffers::GetRoot<T>(bytes.data());
}

std::string str(const flatbuffers::String* s) { return s ? s->str() : std::string(); }

std::string_view finished(flatbuffers::FlatBufferBuilder& b) {
    return {reinterpret_cast<const char*>(b.GetBufferPointer()), b.GetSize()};
}

}  // namespace

// One mutating call: staged into the shard's writer (all in this reactor turn, so in one
// RocksDB batch) or, without a writer, collected and written synchronously by commit().
class NodeStore::Change {
public:
    explicit Change(NodeStore& s) : _s(s) {}
    void put(Column c, std::string_view k, std::string_view v) {
        if (!_ok) return;
        if (_s._writer != nullptr) {
            _ok = _s._writer->put(c, k, v, storage::Durability::synced).has_value();
        } else {
            _batch.Put(_s._store.column(c), slice(k), slice(v));
        }
    }
    void erase(Column c, std::string_view k) {
        if (!_ok) return;
        if (_s._writer != nullptr) {
            _ok = _s._writer->erase(c, k, storage::Durability::synced).has_value();
        } else {
            _batch.Delete(_s._store.column(c), slice(k));
        }
    }
    void erase_range(Column c, std::string_view begin, std::string_view end) {
        if (!_ok) return;
        if (_s._writer != nullptr) {
            _ok = _s._writer->erase_range(c, begin, end, storage::Durability::synced).has_value();
        } else {
            _batch.DeleteRange(_s._store.column(c), slice(begin), slice(end));
        }
    }
    // A staging failure (allocation, batch size limits) may leave part of the change staged:
    // the caller treats the node as unknown and reloads it from the store.
    xmpp::Result<void, Errc> commit() noexcept {
        if (!_ok) return xmpp::Unexpected(Errc::io_error);
        if (_s._writer != nullptr) return {};
        return pubsub::commit(_s._store, _batch);
    }

private:
    NodeStore& _s;
    rocksdb::WriteBatch _batch;
    bool _ok = true;
};

std::string_view to_string(Affiliation a) noexcept {
    switch (a) {
        case Affiliation::none: return "none";
        case Affiliation::owner: return "owner";
        case Affiliation::publisher: return "publisher";
        case Affiliation::member: return "member";
        case Affiliation::outcast: return "outcast";
    }
    return "none";
}

std::string_view to_string(SubState s) noexcept {
    switch (s) {
        case SubState::none: return "none";
        case SubState::subscribed: return "subscribed";
        case SubState::pending: return "pending";
    }
    return "none";
}

std::string NodeStore::node_prefix(std::string_view service, std::string_view node) {
    std::string k(service);
    k += '\0';  // neither a JID nor a node name (XML text) holds U+0000
    k += node;
    k += '\0';
    return k;
}

std::string NodeStore::encode(const NodeRecord& r) {
    flatbuffers::FlatBufferBuilder b(256);
    std::vector<flatbuffers::Offset<fb::PubsubAffiliation>> affs;
    affs.reserve(r.affiliations.size());
    for (const auto& [jid, a] : r.affiliations) {
        affs.push_back(fb::CreatePubsubAffiliation(b, b.CreateString(jid), static_cast<fb::PubsubAffiliationKind>(a)));
    }
    const auto affs_off = b.CreateVector(affs);
    const auto title = b.CreateString(r.config.title);
    flatbuffers::Offset<flatbuffers::Vector<flatbuffers::Offset<flatbuffers::String>>> groups;
    if (!r.config.roster_groups_allowed.empty()) groups = b.CreateVectorOfStrings(r.config.roster_groups_allowed);
    fb::PubsubNodeBuilder nb(b);
    nb.add_access_model(static_cast<fb::PubsubAccessModel>(r.config.access_model));
    nb.add_publish_model(static_cast<fb::PubsubPublishModel>(r.config.publish_model));
    nb.add_max_items(r.config.max_items);
    nb.add_persist_items(r.config.persist_items);
    nb.add_deliver_payloads(r.config.deliver_payloads);
    nb.add_notify_retract(r.config.notify_retract);
    nb.add_notify_delete(r.config.notify_delete);
    nb.add_title(title);
    nb.add_affiliations(affs_off);
    nb.add_created_unix_ms(r.created_unix_ms);
    nb.add_notify_config(r.config.notify_config);
    nb.add_item_expire_s(r.config.item_expire_s);
    if (!groups.IsNull()) nb.add_roster_groups_allowed(groups);
    b.Finish(nb.Finish());
    return std::string(finished(b));
}

xmpp::Result<NodeRecord, Errc> NodeStore::decode_node(std::string_view bytes) noexcept {
    try {
        std::string scratch;
        const auto* n = verified<fb::PubsubNode>(bytes, scratch);
        if (n == nullptr) return xmpp::Unexpected(Errc::corrupt);
        NodeRecord r;
        r.config.access_model = static_cast<AccessModel>(n->access_model());
        r.config.publish_model = static_cast<PublishModel>(n->publish_model());
        if (static_cast<int>(r.config.access_model) > static_cast<int>(AccessModel::roster) ||
            static_cast<int>(r.config.publish_model) > static_cast<int>(PublishModel::open)) {
            return xmpp::Unexpected(Errc::corrupt);
        }
        r.config.max_items = std::max<std::uint32_t>(1, n->max_items());
        r.config.persist_items = n->persist_items();
        r.config.deliver_payloads = n->deliver_payloads();
        r.config.notify_retract = n->notify_retract();
        r.config.notify_delete = n->notify_delete();
        r.config.notify_config = n->notify_config();
        r.config.title = str(n->title());
        r.config.item_expire_s = n->item_expire_s();
        if (const auto* groups = n->roster_groups_allowed()) {
            for (const auto* g : *groups) {
                if (g != nullptr) r.config.roster_groups_allowed.push_back(g->str());
            }
        }
        if (const auto* affs = n->affiliations()) {
            for (const auto* a : *affs) {
                if (a == nullptr || a->jid() == nullptr) continue;
                const auto kind = static_cast<Affiliation>(a->affiliation());
                if (static_cast<int>(kind) > static_cast<int>(Affiliation::outcast)) continue;
                r.affiliations.emplace_back(a->jid()->str(), kind);
            }
        }
        r.created_unix_ms = n->created_unix_ms();
        return r;
    } catch (...) {
        return xmpp::Unexpected(Errc::io_error);
    }
}

std::string NodeStore::encode(const Item& item) {
    flatbuffers::FlatBufferBuilder b(item.payload.size() + 128);
    const auto id = b.CreateString(item.id);
    const auto payload =
        b.CreateVector(reinterpret_cast<const std::uint8_t*>(item.payload.data()), item.payload.size());
    const auto publisher = b.CreateString(item.publisher);
    b.Finish(fb::CreatePubsubItem(b, id, payload, publisher, item.published_unix_ms));
    return std::string(finished(b));
}

xmpp::Result<Item, Errc> NodeStore::decode_item(std::string_view bytes) noexcept {
    try {
        std::string scratch;
        const auto* m = verified<fb::PubsubItem>(bytes, scratch);
        if (m == nullptr || m->id() == nullptr) return xmpp::Unexpected(Errc::corrupt);
        Item it;
        it.id = m->id()->str();
        if (const auto* p = m->payload()) it.payload.assign(reinterpret_cast<const char*>(p->data()), p->size());
        it.publisher = str(m->publisher());
        it.published_unix_ms = m->published_unix_ms();
        return it;
    } catch (...) {
        return xmpp::Unexpected(Errc::io_error);
    }
}

std::string NodeStore::encode(const Subscription& s) {
    flatbuffers::FlatBufferBuilder b(128);
    const auto jid = b.CreateString(s.jid);
    const auto subid = b.CreateString(s.subid);
    b.Finish(fb::CreatePubsubSubscription(b, jid, static_cast<fb::PubsubSubscriptionState>(s.state), subid, s.deliver));
    return std::string(finished(b));
}

xmpp::Result<Subscription, Errc> NodeStore::decode_subscription(std::string_view bytes) noexcept {
    try {
        std::string scratch;
        const auto* m = verified<fb::PubsubSubscription>(bytes, scratch);
        if (m == nullptr || m->jid() == nullptr) return xmpp::Unexpected(Errc::corrupt);
        Subscription s;
        s.jid = m->jid()->str();
        s.state = static_cast<SubState>(m->state());
        if (s.state != SubState::subscribed && s.state != SubState::pending) return xmpp::Unexpected(Errc::corrupt);
        s.subid = str(m->subid());
        s.deliver = m->deliver();
        return s;
    } catch (...) {
        return xmpp::Unexpected(Errc::io_error);
    }
}

xmpp::Result<NodeRecord, Errc> NodeStore::load_node(std::string_view service, std::string_view node,
                                                   bool memory_only) const noexcept {
    try {
        const std::string k = node_prefix(service, node) + k_node_tag;
        std::string v;
        rocksdb::ReadOptions ro;
        if (memory_only) ro.read_tier = rocksdb::kBlockCacheTier;
        const auto st = _store.db().Get(ro, _store.column(Column::pubsub_nodes), slice(k), &v);
        if (!st.ok()) return xmpp::Unexpected(errc_of(st));
        return decode_node(v);
    } catch (...) {
        return xmpp::Unexpected(Errc::io_error);
    }
}

xmpp::Result<std::vector<Item>, Errc> NodeStore::load_items(std::string_view service, std::string_view node,
                                                           bool memory_only) const noexcept {
    try {
        const std::string p = node_prefix(service, node);
        std::vector<Item> out;
        const auto st = scan(_store, Column::pubsub_items, p, [&](std::string_view k, std::string_view v) {
            if (k.size() != p.size() + k_seq_bytes) return true;
            auto item = decode_item(v);
            if (!item) return true;  // a corrupt record is skipped, not fatal to the node
            item.value().seq = seq_of(k);
            out.push_back(std::move(item).value());
            return true;
        }, memory_only);
        if (!st.ok()) return xmpp::Unexpected(errc_of(st));
        return out;
    } catch (...) {
        return xmpp::Unexpected(Errc::io_error);
    }
}

xmpp::Result<std::vector<Subscription>, Errc> NodeStore::load_subscriptions(std::string_view service,
                                                                           std::string_view node,
                                                                           bool memory_only) const noexcept {
    try {
        const std::string p = node_prefix(service, node) + k_sub_tag;
        std::vector<Subscription> out;
        // [prefix 's', prefix 't'): every subscription record of the node.
        const std::string upper_storage = node_prefix(service, node) + static_cast<char>(k_sub_tag + 1);
        const rocksdb::Slice upper = slice(upper_storage);
        rocksdb::ReadOptions ro;
        ro.iterate_upper_bound = &upper;
        if (memory_only) ro.read_tier = rocksdb::kBlockCacheTier;
        std::unique_ptr<rocksdb::Iterator> it(_store.db().NewIterator(ro, _store.column(Column::pubsub_nodes)));
        for (it->Seek(slice(p)); it->Valid(); it->Next()) {
            auto s = decode_subscription(it->value().ToStringView());
            if (s) out.push_back(std::move(s).value());
        }
        if (!it->status().ok()) return xmpp::Unexpected(errc_of(it->status()));
        return out;
    } catch (...) {
        return xmpp::Unexpected(Errc::io_error);
    }
}

xmpp::Result<void, Errc> NodeStore::create_node(std::string_view service, std::string_view node,
                                               std::string_view owner, const NodeRecord& record) noexcept {
    try {
        Change batch(*this);
        const std::string k = node_prefix(service, node) + k_node_tag;
        const std::string v = encode(record);
        batch.put(Column::pubsub_nodes, k, v);
        const std::string ok = owner_key(owner, service, node);
        batch.put(Column::pubsub_nodes, ok, {});
        return batch.commit();
    } catch (...) {
        return xmpp::Unexpected(Errc::io_error);
    }
}

xmpp::Result<void, Errc> NodeStore::put_node(std::string_view service, std::string_view node,
                                            const NodeRecord& record) noexcept {
    try {
        Change batch(*this);
        const std::string k = node_prefix(service, node) + k_node_tag;
        const std::string v = encode(record);
        batch.put(Column::pubsub_nodes, k, v);
        return batch.commit();
    } catch (...) {
        return xmpp::Unexpected(Errc::io_error);
    }
}

xmpp::Result<void, Errc> NodeStore::erase_node(std::string_view service, std::string_view node,
                                              const std::vector<std::string>& owners) noexcept {
    try {
        Change batch(*this);
        const std::string p = node_prefix(service, node);
        const std::string u = upper_of(p);
        batch.erase_range(Column::pubsub_nodes, p, u);
        batch.erase_range(Column::pubsub_items, p, u);
        for (const auto& o : owners) {
            const std::string ok = owner_key(o, service, node);
            batch.erase(Column::pubsub_nodes, ok);
        }
        return batch.commit();
    } catch (...) {
        return xmpp::Unexpected(Errc::io_error);
    }
}

xmpp::Result<void, Errc> NodeStore::put_subscription(std::string_view service, std::string_view node,
                                                    const Subscription& sub) noexcept {
    try {
        Change batch(*this);
        const std::string k = node_prefix(service, node) + k_sub_tag + sub.jid;
        const std::string v = encode(sub);
        batch.put(Column::pubsub_nodes, k, v);
        return batch.commit();
    } catch (...) {
        return xmpp::Unexpected(Errc::io_error);
    }
}

xmpp::Result<void, Errc> NodeStore::erase_subscription(std::string_view service, std::string_view node,
                                                      std::string_view jid) noexcept {
    try {
        Change batch(*this);
        const std::string k = node_prefix(service, node) + k_sub_tag + std::string(jid);
        batch.erase(Column::pubsub_nodes, k);
        return batch.commit();
    } catch (...) {
        return xmpp::Unexpected(Errc::io_error);
    }
}

xmpp::Result<void, Errc> NodeStore::publish(std::string_view service, std::string_view node, const Item& item,
                                           const std::vector<std::uint64_t>& erase_seqs) noexcept {
    try {
        Change batch(*this);
        const std::string p = node_prefix(service, node);
        for (const auto s : erase_seqs) {
            const std::string k = seq_key(p, s);
            batch.erase(Column::pubsub_items, k);
        }
        const std::string k = seq_key(p, item.seq);
        const std::string v = encode(item);
        batch.put(Column::pubsub_items, k, v);
        return batch.commit();
    } catch (...) {
        return xmpp::Unexpected(Errc::io_error);
    }
}

xmpp::Result<void, Errc> NodeStore::erase_items(std::string_view service, std::string_view node,
                                               const std::vector<std::uint64_t>& seqs) noexcept {
    if (seqs.empty()) return {};
    try {
        Change batch(*this);
        const std::string p = node_prefix(service, node);
        for (const auto s : seqs) {
            const std::string k = seq_key(p, s);
            batch.erase(Column::pubsub_items, k);
        }
        return batch.commit();
    } catch (...) {
        return xmpp::Unexpected(Errc::io_error);
    }
}

xmpp::Result<void, Errc> NodeStore::purge(std::string_view service, std::string_view node) noexcept {
    try {
        Change batch(*this);
        const std::string p = node_prefix(service, node);
        const std::string u = upper_of(p);
        batch.erase_range(Column::pubsub_items, p, u);
        return batch.commit();
    } catch (...) {
        return xmpp::Unexpected(Errc::io_error);
    }
}

xmpp::Result<std::vector<std::string>, Errc> NodeStore::list_nodes(std::string_view service) const noexcept {
    try {
        std::string p(service);
        p += '\0';
        std::vector<std::string> out;
        const auto st = scan(_store, Column::pubsub_nodes, p, [&](std::string_view k, std::string_view) {
            // service 0x00 node 0x00 'n': the node records only (not subscriptions).
            const std::string_view rest = k.substr(p.size());
            if (rest.size() >= 2 && rest[rest.size() - 1] == k_node_tag && rest[rest.size() - 2] == '\0') {
                const std::string_view name = rest.substr(0, rest.size() - 2);
                if (name.find('\0') == std::string_view::npos) out.emplace_back(name);
            }
            return true;
        });
        if (!st.ok()) return xmpp::Unexpected(errc_of(st));
        return out;  // keys are sorted, so names are
    } catch (...) {
        return xmpp::Unexpected(Errc::io_error);
    }
}

xmpp::Result<std::size_t, Errc> NodeStore::count_owned(std::string_view owner) const noexcept {
    try {
        std::size_t n = 0;
        const auto st = scan(_store, Column::pubsub_nodes, owner_prefix(owner), [&](std::string_view, std::string_view) {
            ++n;
            return true;
        });
        if (!st.ok()) return xmpp::Unexpected(errc_of(st));
        return n;
    } catch (...) {
        return xmpp::Unexpected(Errc::io_error);
    }
}

xmpp::Result<std::vector<std::string>, Errc> NodeStore::owned_nodes(std::string_view owner,
                                                                   std::string_view service) const noexcept {
    try {
        std::string p = owner_prefix(owner);
        p += service;
        p += '\0';
        std::vector<std::string> out;
        const auto st = scan(_store, Column::pubsub_nodes, p, [&](std::string_view k, std::string_view) {
            out.emplace_back(k.substr(p.size()));
            return true;
        });
        if (!st.ok()) return xmpp::Unexpected(errc_of(st));
        return out;
    } catch (...) {
        return xmpp::Unexpected(Errc::io_error);
    }
}

xmpp::Result<std::vector<std::pair<std::string, Subscription>>, Errc> NodeStore::subscriptions_of(
    std::string_view service, std::string_view bare) const noexcept {
    try {
        std::string p(service);
        p += '\0';
        std::vector<std::pair<std::string, Subscription>> out;
        // TODO(#11): a per-subscriber index when services hold many nodes; this scans them all.
        const auto st = scan(_store, Column::pubsub_nodes, p, [&](std::string_view k, std::string_view v) {
            const std::string_view rest = k.substr(p.size());
            const auto sep = rest.find('\0');
            if (sep == std::string_view::npos || sep + 1 >= rest.size() || rest[sep + 1] != k_sub_tag) return true;
            const std::string_view jid = rest.substr(sep + 2);
            if (xmpp::bare_of(jid) != bare) return true;
            auto s = decode_subscription(v);
            if (s) out.emplace_back(std::string(rest.substr(0, sep)), std::move(s).value());
            return true;
        });
        if (!st.ok()) return xmpp::Unexpected(errc_of(st));
        return out;
    } catch (...) {
        return xmpp::Unexpected(Errc::io_error);
    }
}

}  // namespace starling::modules::pubsub
