// What every module file includes: the module API of session/ (DESIGN §4), with its names
// usable unqualified inside namespace starling::modules.
#pragma once

#include "broker/src/session/module.hpp"
#include "broker/src/session/session.hpp"
#include "broker/src/session/shard_services.hpp"

namespace starling::modules {

using session::FeaturesHandler;
using session::DeferredIq;
using session::Handled;
using session::InboundEvent;
using session::IqEvent;
using session::IqHandler;
using session::IqType;
using session::Module;
using session::ModuleContext;
using session::ModuleSpec;
using session::OptionSpec;
using session::OptionValues;
using session::OutboundEvent;
using session::PreauthIqEvent;
using session::RoutedEvent;
using session::Session;
using session::SessionEvent;
using session::ShardServices;

}  // namespace starling::modules
