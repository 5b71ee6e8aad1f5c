#include "broker/src/admin/rosters.hpp"

#include <map>

#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>

#include "broker/src/modules/roster/roster_item.hpp"
#include "broker/src/modules/roster/roster_store.hpp"
#include "broker/src/storage/rocks.hpp"
#include "broker/src/storage/store.hpp"

namespace starling::admin {

namespace {

AdminError bad(std::size_t line_no, const std::string& what) {
    return {AdminErrc::bad_line, "line " + std::to_string(line_no) + ": " + what};
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
    return s;
}

constexpr std::size_t k_batch = 10'000;

}  // namespace

AdminResult<RosterEntry> parse_roster_line(std::string_view line, std::size_t line_no, bool& skip) {
    skip = false;
    line = trim(line);
    if (line.empty() || line.front() == '#') {
        skip = true;
        return RosterEntry{};
    }
    std::vector<std::string_view> f;
    for (std::size_t start = 0;;) {
        const auto comma = line.find(',', start);
        f.push_back(trim(line.substr(start, comma - start)));
        if (comma == std::string_view::npos) break;
        start = comma + 1;
    }
    if (f.size() < 3 || f.size() > 4) return xmpp::Unexpected(bad(line_no, "expected 'owner,contact,subscription[,name]'"));
    auto owner = xmpp::BareJid::parse(f[0]);
    if (!owner || !owner->has_localpart()) return xmpp::Unexpected(bad(line_no, "owner is not a bare JID with a localpart"));
    auto contact = xmpp::BareJid::parse(f[1]);
    if (!contact) return xmpp::Unexpected(bad(line_no, "contact is not a bare JID"));
    if (*owner == *contact) return xmpp::Unexpected(bad(line_no, "an account is not its own contact"));
    if (f[2] != "none" && f[2] != "to" && f[2] != "from" && f[2] != "both") {
        return xmpp::Unexpected(bad(line_no, "subscription must be none, to, from or both"));
    }
    return RosterEntry{owner->str(), contact->str(), std::string(f[2]), f.size() == 4 ? std::string(f[3]) : ""};
}

AdminResult<std::size_t> import_rosters(storage::Store& store, const std::vector<RosterEntry>& entries) {
    using modules::roster::RosterItem;
    using modules::roster::RosterStore;
    using modules::roster::Sub;
    std::map<std::string, std::uint64_t> owners;  // owner -> new version
    RosterStore reader(store);
    for (const auto& e : entries) owners.emplace(e.owner, 0);
    for (auto& [owner, ver] : owners) ver = reader.version(owner) + 1;

    rocksdb::WriteBatch batch;
    auto flush = [&](bool last) -> AdminResult<void> {
        auto w = storage::write_options(store);
        if (!last) w.sync = false;  // one fsync for the whole import, at the end
        const auto st = store.db().Write(w, &batch);
        batch.Clear();
        if (!st.ok()) return xmpp::Unexpected(AdminError{AdminErrc::storage, "roster write failed: " + st.ToString()});
        return {};
    };
    auto* rosters = store.column(storage::Column::rosters);
    for (const auto& e : entries) {
        RosterItem item;
        item.jid = e.contact;
        item.name = e.name;
        item.sub = e.sub == "both" ? Sub::both : e.sub == "to" ? Sub::to : e.sub == "from" ? Sub::from : Sub::none;
        item.in_roster = true;
        batch.Put(rosters, storage::slice(RosterStore::item_key(e.owner, e.contact)),
                  storage::slice(modules::roster::encode(item)));
        if (batch.Count() >= k_batch) {
            if (auto r = flush(false); !r) return xmpp::Unexpected(r.error());
        }
    }
    auto* meta = store.column(storage::Column::meta);
    for (const auto& [owner, ver] : owners) {
        batch.Put(meta, storage::slice(RosterStore::version_key(owner)), storage::slice(std::to_string(ver)));
    }
    if (auto r = flush(true); !r) return xmpp::Unexpected(r.error());
    return owners.size();
}

}  // namespace starling::admin
