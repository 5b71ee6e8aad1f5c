#include "broker/src/modules/vcard/vcard_store.hpp"

#include <rocksdb/db.h>

#include "broker/src/storage/rocks.hpp"
#include "broker/src/storage/store.hpp"

namespace starling::modules {

using storage::errc_of;
using storage::slice;
using storage::write_options;


xmpp::Result<std::string, storage::Errc> VcardStore::get(std::string_view bare_jid) const noexcept {
    try {
        std::string value;
        const auto st = _store.db().Get(rocksdb::ReadOptions(), _store.column(storage::Column::vcards),
                                        slice(bare_jid), &value);
        if (!st.ok()) return xmpp::Unexpected(errc_of(st));
        return value;
    } catch (...) {  // std::bad_alloc: the hot path does not throw (CONVENTIONS §3)
        return xmpp::Unexpected(storage::Errc::io_error);
    }
}

xmpp::Result<void, storage::Errc> VcardStore::put(std::string_view bare_jid, std::string_view vcard_xml) noexcept {
    try {
        const auto st = _store.db().Put(write_options(_store), _store.column(storage::Column::vcards),
                                        slice(bare_jid), slice(vcard_xml));
        if (!st.ok()) return xmpp::Unexpected(errc_of(st));
        return {};
    } catch (...) {
        return xmpp::Unexpected(storage::Errc::io_error);
    }
}

xmpp::Result<void, storage::Errc> VcardStore::remove(std::string_view bare_jid) noexcept {
    try {
        const auto st =
            _store.db().Delete(write_options(_store), _store.column(storage::Column::vcards), slice(bare_jid));
        if (!st.ok()) return xmpp::Unexpected(errc_of(st));
        return {};
    } catch (...) {
        return xmpp::Unexpected(storage::Errc::io_error);
    }
}

}  // namespace starling::modules
