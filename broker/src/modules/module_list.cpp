// The modules every shard installs, in order. Adding a feature: one folder under modules/ and
// one line here (CONVENTIONS §5).
#include "broker/src/modules/module_list.hpp"

#include "broker/src/modules/adhoc/adhoc_module.hpp"
#include "broker/src/modules/blocking/blocking_module.hpp"
#include "broker/src/modules/caps/caps_module.hpp"
#include "broker/src/modules/carbons/carbons_module.hpp"
#include "broker/src/modules/csi/csi_module.hpp"
#include "broker/src/modules/disco/disco_module.hpp"
#include "broker/src/modules/mam/mam_module.hpp"
#include "broker/src/modules/offline/offline_module.hpp"
#include "broker/src/modules/ping/ping_module.hpp"
#include "broker/src/modules/presence/presence_module.hpp"
#include "broker/src/modules/pubsub/pubsub_module.hpp"
#include "broker/src/modules/register/register_module.hpp"
#include "broker/src/modules/roster/roster_module.hpp"
#include "broker/src/modules/vcard/vcard_module.hpp"
#include "broker/src/modules/version/version_module.hpp"

namespace starling::modules {

const std::vector<session::ModuleSpec>& module_catalog() {
    static const std::vector<session::ModuleSpec> catalog{
        AdhocModule::spec(),  // before disco: it answers disco queries about its command nodes
        DiscoModule::spec(),
        PingModule::spec(),
        VersionModule::spec(),
        RosterModule::spec(),
        PresenceModule::spec(),
        BlockingModule::spec(),
        OfflineModule::spec(),
        MamModule::spec(),
        CarbonsModule::spec(),
        RegisterModule::spec(),
        VcardModule::spec(),
        CsiModule::spec(),
        CapsModule::spec(),
        PubsubModule::spec(),
    };
    return catalog;
}

session::ModuleSettings default_module_settings() {
    session::ModuleSettings s;
    for (const auto& m : module_catalog()) {
        if (m.optional) s.enabled[std::string(m.name)] = true;
        for (const auto& o : m.options) {
            std::string key(m.name);
            key += '.';
            key += o.name;
            s.values.set(std::move(key), session::default_value(o));
        }
    }
    return s;
}

std::vector<std::unique_ptr<session::Module>> make_modules(const session::ModuleSettings& settings) {
    std::vector<std::unique_ptr<session::Module>> out;
    for (const auto& m : module_catalog()) {
        if (m.optional && !settings.is_enabled(m.name)) continue;
        out.push_back(m.make(settings.values));
    }
    return out;
}

}  // namespace starling::modules
