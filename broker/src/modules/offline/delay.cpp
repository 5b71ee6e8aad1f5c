#include "broker/src/modules/offline/delay.hpp"

#include <cstdio>
#include <ctime>

#include "xmpp/xml/raw_text.hpp"

namespace starling::modules::offline {

std::string format_stamp(std::int64_t unix_ms) {
    std::int64_t secs = unix_ms / 1000;
    std::int64_t ms = unix_ms % 1000;
    if (ms < 0) {  // before 1970: floor, not truncate
        ms += 1000;
        --secs;
    }
    const std::time_t t = static_cast<std::time_t>(secs);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[40];
    const auto n = std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
    return std::string(buf, n > 0 ? static_cast<std::size_t>(n) : 0);
}

bool insert_delay(std::string& stanza, std::string_view from, std::int64_t unix_ms) {
    if (stanza.size() < 3 || stanza.front() != '<' || stanza.back() != '>') return false;
    std::string delay = "<delay xmlns='urn:xmpp:delay' from='";
    xmpp::xml::escape_attribute_into(delay, from);
    delay += "' stamp='";
    delay += format_stamp(unix_ms);
    delay += "'>Offline Storage</delay>";
    // '<' never appears raw in attribute values or text (XML 1.0 §2.4, §3.1), so the last "</"
    // is the root's end tag; a root without one is self-closing.
    const auto close = stanza.rfind("</");
    if (close != std::string::npos && close > 0) {
        stanza.insert(close, delay);
        return true;
    }
    if (stanza[stanza.size() - 2] != '/') return false;
    std::size_t name_end = 1;
    while (name_end < stanza.size() && stanza[name_end] != ' ' && stanza[name_end] != '\t' &&
           stanza[name_end] != '\n' && stanza[name_end] != '\r' && stanza[name_end] != '/' &&
           stanza[name_end] != '>') {
        ++name_end;
    }
    const std::string name = stanza.substr(1, name_end - 1);
    if (name.empty()) return false;
    stanza.resize(stanza.size() - 2);
    stanza += '>';
    stanza += delay;
    stanza += "</";
    stanza += name;
    stanza += '>';
    return true;
}

}  // namespace starling::modules::offline
