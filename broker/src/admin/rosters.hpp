// Bulk roster provisioning for fleets: "owner,contact,subscription[,name]" lines written
// straight into the rosters column of a stopped broker's store (starlingctl roster import).
// Devices and their operators are usually known in advance; provisioning their rosters saves
// every device a round of subscription handshakes on first login.
//
// Runs in starlingctl's process only (the broker must be stopped: running sessions would miss
// the roster pushes). All or nothing: every line is checked before anything is written.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "broker/src/admin/users.hpp"

namespace starling::storage {
class Store;
}

namespace starling::admin {

struct RosterEntry {
    std::string owner;    // normalised bare JID
    std::string contact;  // normalised bare JID
    std::string sub;      // none | to | from | both
    std::string name;
};

// Parses one line; `line_no` goes into the error. Blank lines and '#' comments give nullopt
// through `skip`.
AdminResult<RosterEntry> parse_roster_line(std::string_view line, std::size_t line_no, bool& skip);

// Writes every entry (replacing an existing item for the same owner and contact) and bumps
// each owner's roster version once, in batches, the last one synced. Returns the owners
// touched.
AdminResult<std::size_t> import_rosters(storage::Store& store, const std::vector<RosterEntry>& entries);

}  // namespace starling::admin
