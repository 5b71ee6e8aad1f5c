// libFuzzer harness for the stream tokenizer. The first input byte picks a chunk size, so the
// fuzzer explores chunk boundaries as well as content; the same input is then fed whole to a
// second tokenizer and both must agree on every event (the chunking invariant).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "xmpp/xml/tokenizer.hpp"

namespace {

using xmpp::xml::EventKind;
using xmpp::xml::Tokenizer;

void record(Tokenizer& tok, std::vector<std::string>& out) {
    for (;;) {
        auto ev = tok.next();
        switch (ev.kind()) {
        case EventKind::need_more:
            return;
        case EventKind::stream_open:
        case EventKind::stanza: {
            const auto& e = ev.element();
            std::string s(ev.kind() == EventKind::stanza ? "S" : "O");
            s.append(e.bytes());
            s.push_back('|');
            s.append(e.ns().raw());
            for (const auto& a : e.attributes()) {
                s.push_back('|');
                s.append(a.name);
                s.push_back('=');
                a.value.unescape_into(s);  // exercise lazy unescaping
            }
            if (e.local_name().size() > e.qualified_name().size()) std::abort();
            if (e.start_tag().size() > e.bytes().size()) std::abort();
            out.push_back(std::move(s));
            break;
        }
        case EventKind::stream_close:
            out.emplace_back("C");
            break;
        case EventKind::error:
            out.push_back("E" + std::string(xmpp::to_string(ev.error().condition)) + "@" +
                          std::to_string(ev.error().offset));
            return;
        }
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const std::size_t chunk = 1 + data[0] % 64;
    const std::string_view input(reinterpret_cast<const char*>(data + 1), size - 1);

    xmpp::xml::Limits limits;
    limits.max_stanza_bytes = 4096;  // small, so the fuzzer reaches the limit paths
    limits.max_depth = 8;
    limits.max_attributes = 8;
    limits.max_name_bytes = 32;

    std::vector<std::string> chunked;
    Tokenizer a(limits);
    for (std::size_t at = 0; at < input.size() && !a.failed(); at += chunk) {
        const auto piece = input.substr(at, chunk);
        auto space = a.prepare(piece.size());
        piece.copy(space.data(), piece.size());
        a.commit(piece.size());
        record(a, chunked);
        if (!chunked.empty() && chunked.back() == "C") a.restart();  // streams may follow
    }

    std::vector<std::string> whole;
    Tokenizer b(limits);
    b.append(input);
    record(b, whole);
    // Whole input may continue past a close that the chunked run restarted after; compare the
    // common prefix of events only when no close happened.
    bool closed = false;
    for (const auto& e : chunked) closed |= e == "C";
    if (!closed && chunked != whole) {
        // A size-limit error can be seen earlier in whole input (more is buffered at once);
        // everything before it must still agree.
        const bool limit_error = (!chunked.empty() && chunked.back().rfind("Epolicy-violation", 0) == 0) ||
                                 (!whole.empty() && whole.back().rfind("Epolicy-violation", 0) == 0);
        if (!limit_error) std::abort();
    }
    return 0;
}
