#include "broker/src/modules/mam/query.hpp"

#include <algorithm>
#include <charconv>
#include <cstdio>

#include "broker/src/util/dom.hpp"
#include "xmpp/jid.hpp"

namespace starling::modules::mam {

namespace {

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) noexcept {
    y -= m <= 2;
    const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
    const auto yoe = static_cast<unsigned>(y - era * 400);
    const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

void civil_from_days(std::int64_t z, std::int64_t& y, unsigned& m, unsigned& d) noexcept {
    z += 719468;
    const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const auto doe = static_cast<unsigned>(z - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    y = static_cast<std::int64_t>(yoe) + era * 400;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    d = doy - (153 * mp + 2) / 5 + 1;
    m = mp < 10 ? mp + 3 : mp - 9;
    y += m <= 2;
}

bool digits(std::string_view s, std::size_t pos, std::size_t n, int& out) noexcept {
    if (pos + n > s.size()) return false;
    int v = 0;
    for (std::size_t i = pos; i < pos + n; ++i) {
        if (s[i] < '0' || s[i] > '9') return false;
        v = v * 10 + (s[i] - '0');
    }
    out = v;
    return true;
}

std::string_view text_of(pugi::xml_node n) { return n.text().get(); }

}  // namespace

std::optional<std::int64_t> parse_datetime(std::string_view s) noexcept {
    int y, mo, d, h, mi, se;
    if (!digits(s, 0, 4, y) || s.size() < 19 || s[4] != '-' || !digits(s, 5, 2, mo) || s[7] != '-' ||
        !digits(s, 8, 2, d) || s[10] != 'T' || !digits(s, 11, 2, h) || s[13] != ':' || !digits(s, 14, 2, mi) ||
        s[16] != ':' || !digits(s, 17, 2, se))
        return std::nullopt;
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60) return std::nullopt;
    std::size_t p = 19;
    std::int64_t frac_us = 0;
    if (p < s.size() && s[p] == '.') {
        ++p;
        std::int64_t scale = 100000;
        const std::size_t start = p;
        while (p < s.size() && s[p] >= '0' && s[p] <= '9') {
            frac_us += (s[p] - '0') * scale;
            scale /= 10;
            ++p;
        }
        if (p == start) return std::nullopt;
    }
    std::int64_t offset_s = 0;
    if (p < s.size() && s[p] == 'Z') {
        ++p;
    } else if (p < s.size() && (s[p] == '+' || s[p] == '-')) {
        int oh, om;
        if (!digits(s, p + 1, 2, oh) || p + 3 >= s.size() || s[p + 3] != ':' || !digits(s, p + 4, 2, om))
            return std::nullopt;
        offset_s = (oh * 3600 + om * 60) * (s[p] == '+' ? 1 : -1);
        p += 6;
    } else {
        return std::nullopt;  // XEP-0082 §3.3: the time zone is required
    }
    if (p != s.size()) return std::nullopt;
    const std::int64_t days = days_from_civil(y, static_cast<unsigned>(mo), static_cast<unsigned>(d));
    const std::int64_t secs = days * 86400 + h * 3600 + mi * 60 + std::min(se, 59) - offset_s;
    return secs * 1'000'000 + frac_us;
}

std::string format_datetime(std::int64_t unix_us) {
    std::int64_t secs = unix_us / 1'000'000;
    std::int64_t us = unix_us % 1'000'000;
    if (us < 0) {
        us += 1'000'000;
        --secs;
    }
    std::int64_t days = secs / 86400;
    std::int64_t rem = secs % 86400;
    if (rem < 0) {
        rem += 86400;
        --days;
    }
    std::int64_t y;
    unsigned m, d;
    civil_from_days(days, y, m, d);
    char buf[40];
    std::snprintf(buf, sizeof buf, "%04lld-%02u-%02uT%02lld:%02lld:%02lld.%06lldZ", static_cast<long long>(y), m, d,
                  static_cast<long long>(rem / 3600), static_cast<long long>(rem / 60 % 60),
                  static_cast<long long>(rem % 60), static_cast<long long>(us));
    return buf;
}

xmpp::Result<Query, xmpp::StanzaError> parse_query(const util::StanzaDom& dom, pugi::xml_node query,
                                                   const QueryLimits& limits) {
    using xmpp::StanzaError;
    Query q;
    q.max = limits.default_max;
    if (auto a = query.attribute("queryid")) q.queryid = a.value();
    if (auto x = dom.child(query, "x", k_ns_data)) {
        for (auto f = x.first_child(); f; f = f.next_sibling()) {
            if (f.type() != pugi::node_element || util::StanzaDom::local_name(f) != "field") continue;
            const std::string_view var = f.attribute("var").value();
            const auto value_node = dom.child(f, "value", k_ns_data);
            const std::string_view value = value_node ? text_of(value_node) : std::string_view();
            if (var == "FORM_TYPE") {
                if (value != k_ns_mam) return xmpp::Unexpected(StanzaError::bad_request);
            } else if (var == "with") {
                if (value.empty()) continue;
                auto jid = xmpp::Jid::parse(value);
                if (!jid) return xmpp::Unexpected(StanzaError::jid_malformed);
                q.with = jid->full();
                q.with_is_bare = jid->is_bare();
            } else if (var == "start" || var == "end") {
                if (value.empty()) continue;
                auto t = parse_datetime(value);
                if (!t) return xmpp::Unexpected(StanzaError::bad_request);
                (var == "start" ? q.start_us : q.end_us) = *t;
            } else if (var == "after-id" || var == "before-id") {
                if (value.empty()) return xmpp::Unexpected(StanzaError::bad_request);
                (var == "after-id" ? q.after_id : q.before_id) = std::string(value);
            } else if (var == "ids") {
                for (auto v = f.first_child(); v; v = v.next_sibling()) {
                    if (v.type() != pugi::node_element || util::StanzaDom::local_name(v) != "value") continue;
                    if (q.ids.size() == k_max_query_ids) return xmpp::Unexpected(StanzaError::policy_violation);
                    q.ids.emplace_back(text_of(v));
                }
            } else {
                // XEP-0313 §4.1.1: a field the archive does not support.
                return xmpp::Unexpected(StanzaError::feature_not_implemented);
            }
        }
    }
    if (dom.child(query, "flip-page", k_ns_mam)) q.flip_page = true;
    if (auto set = dom.child(query, "set", k_ns_rsm)) {
        if (auto m = dom.child(set, "max", k_ns_rsm)) {
            const std::string_view t = text_of(m);
            std::size_t v = 0;
            auto [ptr, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
            if (ec != std::errc() || ptr != t.data() + t.size() || t.empty())
                return xmpp::Unexpected(StanzaError::bad_request);
            q.max = std::min(v, limits.max_max);
        }
        if (auto a = dom.child(set, "after", k_ns_rsm)) q.after = std::string(text_of(a));
        if (auto b = dom.child(set, "before", k_ns_rsm)) q.before = std::string(text_of(b));
        if (dom.child(set, "index", k_ns_rsm)) return xmpp::Unexpected(StanzaError::feature_not_implemented);
        if (q.after && q.after->empty()) return xmpp::Unexpected(StanzaError::bad_request);
    }
    return q;
}

bool with_matches(const Query& q, std::string_view record_with) noexcept {
    if (q.with.empty()) return true;
    if (!q.with_is_bare) return record_with == q.with;
    const auto bare = xmpp::bare_of(record_with);
    return bare == q.with;
}

Page select_page(const std::vector<std::uint64_t>& ids, std::optional<std::uint64_t> after,
                 std::optional<std::uint64_t> before, bool last_page, std::size_t max) noexcept {
    std::size_t lo = 0;
    std::size_t hi = ids.size();
    if (after) lo = static_cast<std::size_t>(std::upper_bound(ids.begin(), ids.end(), *after) - ids.begin());
    if (before) hi = static_cast<std::size_t>(std::lower_bound(ids.begin(), ids.end(), *before) - ids.begin());
    if (hi < lo) hi = lo;
    Page p;
    if (before || last_page) {
        // Paging backwards: the last `max` before the bound; complete when it reaches the
        // first match.
        p.end = hi;
        p.begin = hi - std::min(max, hi - lo);
        p.complete = p.begin == 0;
    } else {
        p.begin = lo;
        p.end = lo + std::min(max, hi - lo);
        p.complete = p.end == ids.size();
    }
    return p;
}

}  // namespace starling::modules::mam
