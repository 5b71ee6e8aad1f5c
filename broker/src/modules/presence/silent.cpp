#include "broker/src/modules/presence/silent.hpp"

#include <rocksdb/db.h>

#include "broker/src/storage/rocks.hpp"
#include "broker/src/storage/store.hpp"

namespace starling::modules::presence {

std::string silent_key(std::string_view bare) {
    std::string k(bare);
    k += '\0';
    k += "presence.silent";
    return k;
}

bool stored_silent(storage::Store& store, std::string_view bare) {
    std::string value;
    const auto st = store.db().Get(rocksdb::ReadOptions(), store.column(storage::Column::meta),
                                   storage::slice(silent_key(bare)), &value);
    return st.ok() && value == "1";
}

xmpp::Result<void, storage::Errc> set_silent(storage::Store& store, std::string_view bare, bool on) {
    try {
        const auto w = storage::write_options(store);
        const std::string key = silent_key(bare);
        const auto st = on ? store.db().Put(w, store.column(storage::Column::meta), storage::slice(key), "1")
                           : store.db().Delete(w, store.column(storage::Column::meta), storage::slice(key));
        if (!st.ok()) return xmpp::Unexpected(storage::errc_of(st));
        return {};
    } catch (...) {
        return xmpp::Unexpected(storage::Errc::io_error);
    }
}

bool has_silent_prefix(std::string_view bare, std::string_view prefix) noexcept {
    if (prefix.empty()) return false;
    const auto at = bare.find('@');
    if (at == std::string_view::npos) return false;  // a domain has no localpart
    return bare.substr(0, at).starts_with(prefix);
}

}  // namespace starling::modules::presence
