// libFuzzer harness for fwd::read_facts and fwd::read_facts_removing (the carbons and MAM hooks'
// reading of a <message/>, issue 14), differential against the pugixml DOM reading they replace.
//
// 1. The input as it is, whatever its bytes: no read out of bounds (ASan), and when both
//    readings take it as one element, the same facts.
// 2. The input after a stream header, through the tokenizer, as the hooks get it: for every
//    stanza the DOM must parse and both readings must agree exactly; removing <stanza-id/>
//    leaves a stanza that still reads as one element with the same facts, and remove_children
//    makes the same cut; the reading from the tokenizer's view gives the same facts.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "broker/src/modules/carbons/forward.hpp"
#include "tests/support/dom_facts.hpp"
#include "xmpp/xml/tokenizer.hpp"

namespace {

namespace fwd = starling::modules::fwd;
using starling::test::dom_facts;
using starling::test::same_facts;
using starling::test::same_routing_facts;

void check_stanza(std::string_view bytes) {
    const auto raw = fwd::read_facts(bytes);
    const auto dom = dom_facts(bytes);
    if (!raw.parsed || !dom.parsed || !same_facts(raw, dom)) std::abort();

    std::string cut(bytes);
    bool removed = false;
    const auto facts = fwd::read_facts_removing(cut, "stanza-id", fwd::k_ns_sid, "a@x", removed);
    if (!facts.parsed || removed != (cut.size() != bytes.size())) std::abort();
    const auto after = fwd::read_facts(cut);
    if (!same_facts(after, facts) || !same_facts(dom_facts(cut), facts)) std::abort();
    // The facts left are those of the message: a <stanza-id/> is none of them (only whether
    // one is left, which the removal may change).
    if (!same_routing_facts(facts, raw)) std::abort();
    if (removed && !raw.has_stanza_id) std::abort();

    std::string again(bytes);
    if (fwd::remove_children(again, "stanza-id", fwd::k_ns_sid, "a@x") != removed || again != cut) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);

    // 1. Any bytes. pugixml takes some that are not XML (and the walk others), so only the
    //    facts of what both take are compared.
    const auto raw = fwd::read_facts(input);
    if (raw.parsed) {
        const auto dom = dom_facts(input);
        if (dom.parsed && !same_facts(raw, dom)) std::abort();
    }

    // 2. Through the tokenizer. The header declares a prefix the stanzas may use without
    //    declaring it (depends_on_outer_prefixes): both readings then see an unknown prefix.
    xmpp::xml::Limits limits;
    limits.max_stanza_bytes = 4096;
    limits.max_depth = 8;
    limits.max_attributes = 8;
    xmpp::xml::Tokenizer tok(limits);
    tok.append("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "
               "xmlns:h='urn:xmpp:hints' to='x'>");
    tok.append(input);
    for (;;) {
        const auto ev = tok.next();
        if (ev.kind() == xmpp::xml::EventKind::stanza) {
            check_stanza(ev.element().bytes());
            // The hooks' reading from the tokenizer's view (start tag not read again).
            const auto viewed = fwd::read_facts(ev.element());
            if (!viewed.parsed || !same_facts(viewed, fwd::read_facts(ev.element().bytes()))) std::abort();
            continue;
        }
        if (ev.kind() == xmpp::xml::EventKind::stream_open) continue;
        break;
    }
    return 0;
}
