// The modules every shard installs, in order. Adding a feature: one folder under modules/ and
// one line here (CONVENTIONS §5).
#include "broker/src/c2s/options.hpp"
#include "broker/src/modules/disco/disco_module.hpp"
#include "broker/src/modules/module.hpp"
#include "broker/src/modules/ping/ping_module.hpp"
#include "broker/src/modules/version/version_module.hpp"
// --- includes: roster/presence ---
#include "broker/src/modules/presence/presence_module.hpp"
#include "broker/src/modules/roster/roster_module.hpp"
// --- end includes: roster/presence ---
// --- includes: offline/blocking ---
#include "broker/src/modules/blocking/blocking_module.hpp"
#include "broker/src/modules/offline/offline_module.hpp"
// --- end includes: offline/blocking ---
// --- includes: carbons/mam ---
#include "broker/src/modules/carbons/carbons_module.hpp"
#include "broker/src/modules/mam/mam_module.hpp"
// --- end includes: carbons/mam ---
// --- includes: register/vcard/ping ---
#include "broker/src/modules/register/register_module.hpp"
#include "broker/src/modules/vcard/vcard_module.hpp"
// --- end includes: register/vcard/ping ---

namespace starling::modules {

std::vector<std::unique_ptr<Module>> make_modules(const c2s::C2sOptions& options) {
    std::vector<std::unique_ptr<Module>> m;
    m.push_back(std::make_unique<DiscoModule>());
    m.push_back(std::make_unique<PingModule>());
    if (options.enabled.version) m.push_back(std::make_unique<VersionModule>());
    // --- roster/presence ---
    m.push_back(std::make_unique<RosterModule>());
    m.push_back(std::make_unique<PresenceModule>());
    // --- end roster/presence ---
    // --- offline/blocking ---
    BlockingOptions blocking;
    blocking.max_items = options.blocklist_max_items;
    if (options.enabled.blocking) m.push_back(std::make_unique<BlockingModule>(blocking));
    OfflineOptions offline;
    offline.max_messages = options.offline_max_messages;
    if (options.enabled.offline) m.push_back(std::make_unique<OfflineModule>(offline));
    // --- end offline/blocking ---
    // --- carbons/mam ---
    MamOptions mam;
    mam.retention_days = options.mam_retention_days;
    mam.max_messages_per_user = options.mam_max_messages_per_user;
    if (options.enabled.mam) m.push_back(std::make_unique<MamModule>(mam));
    if (options.enabled.carbons) m.push_back(std::make_unique<CarbonsModule>());
    // --- end carbons/mam ---
    // --- register/vcard/ping ---
    m.push_back(std::make_unique<RegisterModule>());
    if (options.enabled.vcard) m.push_back(std::make_unique<VcardModule>());
    // --- end register/vcard/ping ---
    return m;
}

}  // namespace starling::modules
