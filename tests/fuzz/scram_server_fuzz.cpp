// ScramServer on arbitrary client messages, with and without channel binding (-PLUS): no crash,
// no sanitizer report, and the first error sticks. Input: one option byte (bit 0 SHA-1, bit 1
// -PLUS chosen, bit 2 -PLUS offered, bit 3 tls-exporter available, bit 4 tls-server-end-point
// available), then client-first-message, a NUL, client-final-message.
#include "xmpp/sasl/scram.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace xmpp::sasl;
    if (size == 0) return 0;
    const std::uint8_t opt = data[0];
    const std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
    const std::size_t nul = rest.find('\0');
    const std::string_view first = rest.substr(0, nul);
    const std::string_view final_msg = nul == std::string_view::npos ? std::string_view() : rest.substr(nul + 1);

    const ScramAlgorithm alg = (opt & 1) != 0 ? ScramAlgorithm::sha_1 : ScramAlgorithm::sha_256;
    ScramServer::Options o;
    o.plus = (opt & 2) != 0;
    o.channel_binding_offered = (opt & 4) != 0;
    if ((opt & 8) != 0) o.bindings.tls_exporter.assign(32, '\x11');
    if ((opt & 16) != 0) o.bindings.tls_server_end_point.assign(32, '\x22');
    ScramServer server(alg, o);
    auto r1 = server.receive_client_first(first);
    if (!r1) {
        (void)to_string(r1.error());
        (void)server_final_error(r1.error());
        // The first error sticks: a later step reports it again.
        auto again = server.receive_client_final(final_msg);
        if (again || again.error() != r1.error()) std::abort();
        return 0;
    }
    if (server.channel_binding() && !o.plus) std::abort();  // a binding only with -PLUS
    ScramCredentials c;
    c.algorithm = alg;
    c.salt = "salt";
    c.iterations = 4096;
    c.stored_key.assign(digest_size(alg), 'k');
    c.server_key.assign(digest_size(alg), 's');
    auto r2 = server.server_first(c, "servernonce");
    if (!r2) return 0;
    auto r3 = server.receive_client_final(final_msg);
    // Without the password behind stored_key no proof can verify.
    if (r3 || server.is_authenticated()) std::abort();
    return 0;
}
