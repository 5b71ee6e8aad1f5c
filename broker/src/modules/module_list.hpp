// The modules a broker can run, in installation order, and how a shard gets its instances. This
// is the one list a new module is added to (CONVENTIONS §5): one line in module_list.cpp.
//
// Lives on: start-up. module_catalog() is an immutable table; make_modules() runs once per shard
// before the shard takes traffic.
#pragma once

#include <memory>
#include <vector>

#include "broker/src/session/module.hpp"

namespace starling::modules {

const std::vector<session::ModuleSpec>& module_catalog();

// The defaults of every declared option and every optional module switched on: what a broker
// with no configuration file runs.
session::ModuleSettings default_module_settings();

// One instance of every module `settings` leaves on, for one shard.
std::vector<std::unique_ptr<session::Module>> make_modules(const session::ModuleSettings& settings);

}  // namespace starling::modules
