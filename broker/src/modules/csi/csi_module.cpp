#include "broker/src/modules/csi/csi_module.hpp"

#include <memory>

#include "xmpp/xml/tokenizer.hpp"

namespace starling::modules {

namespace {
constexpr std::string_view k_ns_csi = "urn:xmpp:csi:0";
}  // namespace

// Per-session CSI state: the queue, and the filter the session delivers through while inactive.
struct CsiSession final : session::DeliveryFilter {
    CsiModule* module = nullptr;
    csi::CsiQueue queue;
    bool inactive = false;
    bool flushing = false;  // our own deliver() calls while writing the queue pass straight through

    session::Filtered filter(Session& session, std::string_view stanza) override {
        if (flushing) return session::Filtered::pass;
        const csi::Classified c = csi::classify(stanza);
        if (c.urgency == csi::Urgency::bypass) return session::Filtered::pass;  // held stays held
        if (c.urgency == csi::Urgency::urgent) {
            // Everything held goes first, in order, then the urgent stanza itself (written by
            // the session when we answer pass).
            module->flush(session, CsiModule::Reason::urgent);
            return session::Filtered::pass;
        }
        ++module->_counters.held;
        const std::size_t before = queue.bytes();
        switch (queue.push(stanza, c)) {
            case csi::CsiQueue::Push::held: break;
            case csi::CsiQueue::Push::coalesced:
                ++module->_counters.coalesced;
                module->_counters.coalesced_bytes += before + stanza.size() - queue.bytes();
                break;
            case csi::CsiQueue::Push::overflow: module->flush(session, CsiModule::Reason::overflow); break;
        }
        // A flush must never be what ends the stream: stay within half of what the session can
        // still take (XEP-0198's unacknowledged stanzas, the output queue's bytes).
        const Session::OutputBudget budget = session.output_budget();
        if (!queue.empty() && (queue.size() > budget.stanzas / 2 || queue.bytes() > budget.bytes / 2)) {
            module->flush(session, CsiModule::Reason::overflow);
        }
        return session::Filtered::consumed;
    }
};

void CsiModule::install(ModuleContext& ctx) {
    // XEP-0352 §4.1: advertised after authentication only.
    ctx.on_stream_features([](Session&, bool authenticated, std::string& out) {
        if (authenticated) out += "<csi xmlns='urn:xmpp:csi:0'/>";
    });
    // §4.2: no reply to either element. §5.1: handled before the next element of the stream is
    // read, so an <active/> followed by a ping gets the flushed stanzas before the pong.
    ctx.on_stream_element(k_ns_csi, "inactive", [this](Session& s, const xmpp::xml::ElementView&) {
        set_inactive(s);
        return Handled::yes;
    });
    ctx.on_stream_element(k_ns_csi, "active", [this](Session& s, const xmpp::xml::ElementView&) {
        set_active(s);
        return Handled::yes;
    });
    ctx.on_session([](Session& s, SessionEvent e) {
        if (e != SessionEvent::closed) return;
        // The stream is over: nothing more is written to it. The filter must not outlive the slot.
        if (auto* st = s.find_slot<CsiSession>()) {
            s.set_delivery_filter(nullptr);
            st->inactive = false;
            st->queue.drain([](std::string_view) {});
        }
    });

    ctx.add_counter("starling_csi_inactive_total", "XEP-0352 <inactive/> received from an active session", {},
                    &_counters.inactive);
    ctx.add_counter("starling_csi_held_total", "Stanzas held for inactive clients (XEP-0352)", {},
                    &_counters.held);
    ctx.add_counter("starling_csi_coalesced_total",
                    "Held presence or chat states replaced by a newer one from the same full JID", {},
                    &_counters.coalesced);
    ctx.add_counter("starling_csi_coalesced_bytes_total", "Bytes of held stanzas replaced before being written", {},
                    &_counters.coalesced_bytes);
    ctx.add_counter("starling_csi_flushes_total", "Queues of inactive clients written out, by reason",
                    {{"reason", "urgent"}}, &_counters.flush_urgent);
    ctx.add_counter("starling_csi_flushes_total", "Queues of inactive clients written out, by reason",
                    {{"reason", "active"}}, &_counters.flush_active);
    ctx.add_counter("starling_csi_flushes_total", "Queues of inactive clients written out, by reason",
                    {{"reason", "overflow"}}, &_counters.flush_overflow);
    ctx.add_counter("starling_csi_flushed_total", "Held stanzas written by flushes", {}, &_counters.flushed);
}

void CsiModule::set_inactive(Session& session) {
    auto& st = session.slot<CsiSession>();
    if (st.inactive) return;
    if (st.module == nullptr) {
        st.module = this;
        st.queue = csi::CsiQueue(_limits);
    }
    st.inactive = true;
    ++_counters.inactive;
    session.set_delivery_filter(&st);
}

void CsiModule::set_active(Session& session) {
    auto* st = session.find_slot<CsiSession>();
    if (st == nullptr || !st->inactive) return;  // §5: streams start active; repeating is harmless
    flush(session, Reason::active);
    st->inactive = false;
    session.set_delivery_filter(nullptr);
}

void CsiModule::flush(Session& session, Reason reason) {
    auto* st = session.find_slot<CsiSession>();
    if (st == nullptr || st->queue.empty()) return;
    switch (reason) {
        case Reason::urgent: ++_counters.flush_urgent; break;
        case Reason::active: ++_counters.flush_active; break;
        case Reason::overflow: ++_counters.flush_overflow; break;
    }
    st->flushing = true;
    _counters.flushed += st->queue.drain([&session](std::string_view bytes) { session.deliver(bytes); });
    st->flushing = false;
}

ModuleSpec CsiModule::spec() {
    return {
        .name = "csi",
        .summary = "XEP-0352 client state indication",
        .optional = true,
        .options =
            {
                OptionSpec::integer("max_held", 10'000, 1, 1'000'000,
                                    "Stanzas held for an inactive client (one presence per contact once coalesced); one more writes them all, nothing is dropped"),
                OptionSpec::integer("max_held_bytes", 1u << 20, 1024, 64u << 20,
                                    "Bytes held for an inactive client; past it, or past half of what the session's own limits still allow ([c2s] max_output_bytes, max_unacked_stanzas), they are all written"),
            },
        .make = [](const OptionValues& v) -> std::unique_ptr<Module> {
            csi::QueueLimits limits;
            limits.max_held = static_cast<std::size_t>(v.integer("csi.max_held"));
            limits.max_held_bytes = static_cast<std::size_t>(v.integer("csi.max_held_bytes"));
            return std::make_unique<CsiModule>(limits);
        },
    };
}

}  // namespace starling::modules
