// Jid::parse on arbitrary bytes: no crash, no sanitizer report, and normalisation is idempotent:
// the normalised full() of a valid JID re-parses to an equal JID with the same parts.
#include "xmpp/jid.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    auto jid = xmpp::Jid::parse(input);
    if (!jid) {
        (void)xmpp::to_string(jid.error());
        return 0;
    }
    auto again = xmpp::Jid::parse(jid->full());
    if (!again || *again != *jid || again->localpart() != jid->localpart() ||
        again->domainpart() != jid->domainpart() || again->resourcepart() != jid->resourcepart()) {
        std::abort();
    }
    if (jid->bare_view() != jid->bare().str()) std::abort();
    return 0;
}
