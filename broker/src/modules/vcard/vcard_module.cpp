#include "broker/src/modules/vcard/vcard_module.hpp"

#include "broker/src/session/input_hold.hpp"

#include "broker/src/storage/write_path.hpp"

#include "broker/src/session/shard_services.hpp"
#include "broker/src/modules/vcard/vcard_store.hpp"
#include "broker/src/util/dom.hpp"
#include "broker/src/util/log.hpp"

namespace starling::modules {

namespace {

constexpr std::string_view k_ns_vcard = "vcard-temp";
constexpr std::string_view k_empty_vcard = "<vCard xmlns='vcard-temp'/>";

struct StringWriter final : pugi::xml_writer {
    std::string& out;
    explicit StringWriter(std::string& o) : out(o) {}
    void write(const void* data, std::size_t size) override { out.append(static_cast<const char*>(data), size); }
};


bool has_child_element(pugi::xml_node n) {
    for (auto c = n.first_child(); c; c = c.next_sibling()) {
        if (c.type() == pugi::node_element) return true;
    }
    return false;
}

}  // namespace

namespace {

// The result (or, on a failed commit, internal-server-error: nothing is acknowledged that was not
// stored) once this shard's writes so far are synced.
void reply_when_durable(storage::ShardWriter& writer, DeferredIq reply) {
    writer.when_durable(storage::Durability::synced,
                        [reply = std::move(reply)](xmpp::Result<void, storage::Errc> r) mutable {
                            if (r) {
                                reply.result();
                            } else {
                                STARLING_LOG(warn, "vcard: storing failed: {}", storage::to_string(r.error()));
                                reply.error(xmpp::StanzaError::internal_server_error);
                            }
                        });
}

// An IqEvent answered now, with DeferredIq's interface (the get's answer is written once).
struct IqReply {
    IqEvent& ev;
    void result(std::string_view inner) { ev.reply_result(inner); }
    void error(xmpp::StanzaError condition) { ev.reply_error(condition); }
};

}  // namespace

std::string serialize_vcard(pugi::xml_node vcard) {
    pugi::xml_document doc;
    pugi::xml_node copy = doc.append_copy(vcard);
    copy.set_name("vCard");
    // Its own namespace, as a default declaration on itself (the client may have used a prefix
    // declared on the <iq/> or on the stream: DESIGN §3's forwarding rule applies to storage too).
    if (auto a = copy.attribute("xmlns")) {
        a.set_value(k_ns_vcard.data());
    } else {
        copy.prepend_attribute("xmlns").set_value(k_ns_vcard.data());
    }
    // Prefixes declared on the ancestors that the content may use.
    for (pugi::xml_node n = vcard.parent(); n && n.type() == pugi::node_element; n = n.parent()) {
        for (auto a = n.first_attribute(); a; a = a.next_attribute()) {
            const std::string_view name = a.name();
            if (name.substr(0, 6) != "xmlns:") continue;
            if (!copy.attribute(a.name())) copy.append_attribute(a.name()).set_value(a.value());
        }
    }
    std::string out;
    StringWriter w(out);
    copy.print(w, "", pugi::format_raw, pugi::encoding_utf8);
    return out;
}

VcardModule::VcardModule() = default;

VcardModule::VcardModule(storage::Store* store, VcardOptions options) : _store_override(store), _options(options) {}

VcardModule::~VcardModule() = default;

void VcardModule::install(ModuleContext& ctx) {
    storage::Store* store = _store_override != nullptr ? _store_override : ctx.shard().store;
    if (store == nullptr) {
        STARLING_LOG(warn, "vcard: no store on this shard context; vCard-temp is not offered");
        return;
    }
    _store = std::make_unique<VcardStore>(*store);
    const VcardOptions options = _options ? *_options : VcardOptions{};
    VcardStore* vcards = _store.get();

    ctx.add_disco_feature(k_ns_vcard);

    // XEP-0054 §3.1 (own) and §3.3 (another user's).
    ctx.on_iq(IqType::get, k_ns_vcard, "vCard", [vcards](IqEvent& ev) {
        if (!ev.to_account) return Handled::no;  // the server's own vCard: none (service-unavailable)
        const bool own = ev.to == ev.from().bare_view();
        // `error` none: `vcard` is the stored one.
        auto answer = [own, to = std::string(ev.to)](auto& reply, std::optional<storage::Errc> error,
                                                     std::string_view vcard) {
            if (!error) {
                reply.result(vcard);
            } else if (*error != storage::Errc::not_found) {
                STARLING_LOG(warn, "vcard: reading {} failed: {}", to, storage::to_string(*error));
                reply.error(xmpp::StanzaError::internal_server_error);
            } else if (own) {
                reply.result(k_empty_vcard);  // §3.1: an empty <vCard/> when there is none
            } else {
                // §3.3: an error when there is none or the user does not exist; the same answer
                // for both, so that nobody learns which accounts exist.
                reply.error(xmpp::StanzaError::item_not_found);
            }
        };
        auto* writer = ev.session.shard().writer;
        if (writer == nullptr) {
            IqReply reply{ev};
            const auto got = vcards->get(ev.to);
            if (got) answer(reply, std::nullopt, *got);
            else answer(reply, got.error(), {});
            return Handled::yes;
        }
        // Through the writer (a vCard set a moment ago and not yet committed is what the user
        // sees), without touching the disk on this thread (issue 14): inline from memory, else
        // on the store's reader thread, the session's input held until the answer is out.
        auto hold = std::make_shared<session::InputHold>(ev.session);
        writer->get_async(storage::Column::vcards, ev.to,
                          [answer, reply = ev.defer(), hold](xmpp::Result<std::optional<std::string>, storage::Errc> raw) mutable {
                              if (!raw) answer(reply, raw.error(), {});
                              else if (!*raw) answer(reply, storage::Errc::not_found, {});
                              else answer(reply, std::nullopt, **raw);
                              hold->done();
                          });
        hold->arm();
        return Handled::yes;
    });

    // XEP-0054 §3.2: set one's own; another's (or the server's) is forbidden.
    ctx.on_iq(IqType::set, k_ns_vcard, "vCard", [vcards, options](IqEvent& ev) {
        if (!ev.to_account || ev.to != ev.from().bare_view()) {
            ev.reply_error(xmpp::StanzaError::forbidden);
            return Handled::yes;
        }
        auto* writer = ev.session.shard().writer;
        if (!has_child_element(ev.payload)) {
            // An empty vCard clears it: nothing to keep.
            if (writer != nullptr) {
                if (!writer->erase(storage::Column::vcards, ev.to, storage::Durability::synced)) {
                    ev.reply_error(xmpp::StanzaError::internal_server_error);
                    return Handled::yes;
                }
                reply_when_durable(*writer, ev.defer());
                return Handled::yes;
            }
            auto r = vcards->remove(ev.to);
            if (!r) {
                ev.reply_error(xmpp::StanzaError::internal_server_error);
            } else {
                ev.reply_result();
            }
            return Handled::yes;
        }
        const std::string xml = serialize_vcard(ev.payload);
        if (xml.size() > options.max_bytes) {
            // RFC 6120 §8.3.3.12 not-acceptable: the request does not meet a criterion of the
            // server (XEP-0060 §7.1.3.4 answers an over-size payload the same way).
            ev.reply_error(xmpp::StanzaError::not_acceptable,
                           "vCard larger than " + std::to_string(options.max_bytes) + " bytes");
            return Handled::yes;
        }
        if (writer != nullptr) {
            // Batched with the shard's other writes this turn, committed off the reactor; the
            // result goes out once it is synced (DESIGN §6).
            if (auto r = writer->put(storage::Column::vcards, ev.to, xml, storage::Durability::synced); !r) {
                ev.reply_error(xmpp::StanzaError::internal_server_error);
                return Handled::yes;
            }
            reply_when_durable(*writer, ev.defer());
            return Handled::yes;
        }
        auto r = vcards->put(ev.to, xml);
        if (!r) {
            STARLING_LOG(warn, "vcard: writing {} failed: {}", ev.to, storage::to_string(r.error()));
            ev.reply_error(xmpp::StanzaError::internal_server_error);
            return Handled::yes;
        }
        ev.reply_result();  // after the synced write: what is acknowledged is durable
        return Handled::yes;
    });
}

ModuleSpec VcardModule::spec() {
    return {
        .name = "vcard",
        .summary = "XEP-0054 vCard-temp",
        .optional = true,
        .options = {
            OptionSpec::integer("max_bytes", 65'536, 1'024, 16u << 20, "serialized size limit of one vCard"),
        },
        .make = [](const OptionValues& v) -> std::unique_ptr<Module> {
        VcardOptions o;
        o.max_bytes = static_cast<std::size_t>(v.integer("vcard.max_bytes"));
        return std::make_unique<VcardModule>(nullptr, o);
    },
    };
}

}  // namespace starling::modules
