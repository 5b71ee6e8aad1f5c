// XEP-0313 queries: the data form (with/start/end, §4.1.1), XEP-0059 RSM (max/after/before),
// XEP-0082 date-times, and the choice of one page among the matching archive ids. Pure
// functions; the module does the storage and the stanzas.
//
// Lives on: anywhere (stateless).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <pugixml.hpp>

#include "xmpp/result.hpp"
#include "xmpp/stream_error.hpp"

namespace starling::util {
class StanzaDom;
}

namespace starling::modules::mam {

inline constexpr std::string_view k_ns_mam = "urn:xmpp:mam:2";
inline constexpr std::string_view k_ns_rsm = "http://jabber.org/protocol/rsm";
inline constexpr std::string_view k_ns_data = "jabber:x:data";

// XEP-0082 DateTime (CCYY-MM-DDThh:mm:ss[.sss]TZD) <-> microseconds since the Unix epoch.
std::optional<std::int64_t> parse_datetime(std::string_view s) noexcept;
std::string format_datetime(std::int64_t unix_us);

struct Query {
    std::string queryid;
    std::string with;  // empty: any; a bare JID matches every resource (XEP-0313 §4.1.1)
    bool with_is_bare = false;
    std::optional<std::int64_t> start_us;
    std::optional<std::int64_t> end_us;
    std::optional<std::string> after;   // RSM <after/>
    std::optional<std::string> before;  // RSM <before/>; empty: the last page
    std::size_t max = 0;
    // urn:xmpp:mam:2#extended (XEP-0313 §4.1.1.3, §4.3.4).
    std::optional<std::string> after_id;  // form field after-id
    std::optional<std::string> before_id; // form field before-id
    std::vector<std::string> ids;         // form field ids
    bool flip_page = false;               // <flip-page/>: the page is sent newest first
};

struct QueryLimits {
    std::size_t default_max = 50;  // no <max/> in the request
    std::size_t max_max = 250;     // a larger <max/> is lowered to this (XEP-0059 §2.1 allows it)
};

// Most 'ids' values one query may name (each is one storage read).
inline constexpr std::size_t k_max_query_ids = 250;

// Reads <query xmlns='urn:xmpp:mam:2'/>. Errors: bad_request (a malformed form field, date or
// <max/>), feature_not_implemented (a form field this archive does not know, XEP-0313 §4.1.1;
// RSM <index/>, XEP-0059 §2.4 lets a responder refuse it).
xmpp::Result<Query, xmpp::StanzaError> parse_query(const util::StanzaDom& dom, pugi::xml_node query,
                                                   const QueryLimits& limits);

// True when a record with this 'with' (full JID) matches the query's filter.
bool with_matches(const Query& q, std::string_view record_with) noexcept;

// One page of the matching ids (sorted ascending): [begin, end) and whether it reaches the end
// of the result set in the paging direction (XEP-0313 §4.3: complete='true').
struct Page {
    std::size_t begin = 0;
    std::size_t end = 0;
    bool complete = true;
};
// `after`/`before` ids were already checked to exist in the archive; they need not match the
// filter (ids are ordered, so the page starts after / ends before them).
Page select_page(const std::vector<std::uint64_t>& ids, std::optional<std::uint64_t> after,
                 std::optional<std::uint64_t> before, bool last_page, std::size_t max) noexcept;

}  // namespace starling::modules::mam
