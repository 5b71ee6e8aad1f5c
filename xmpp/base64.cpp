#include "xmpp/base64.hpp"

#include <array>

namespace xmpp {
namespace {

constexpr std::string_view k_alphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

constexpr std::uint8_t k_invalid = 0xff;
constexpr std::uint8_t k_pad = 0xfe;

constexpr std::array<std::uint8_t, 256> make_decode_table() {
    std::array<std::uint8_t, 256> t{};
    for (auto& v : t) v = k_invalid;
    for (std::size_t i = 0; i < k_alphabet.size(); ++i) {
        t[static_cast<unsigned char>(k_alphabet[i])] = static_cast<std::uint8_t>(i);
    }
    t['='] = k_pad;
    return t;
}

constexpr auto k_decode = make_decode_table();

}  // namespace

std::string_view to_string(Base64Error e) noexcept {
    switch (e) {
        case Base64Error::bad_length: return "bad-length";
        case Base64Error::bad_character: return "bad-character";
        case Base64Error::bad_padding: return "bad-padding";
        case Base64Error::too_long: return "too-long";
    }
    return "unknown";
}

void base64_encode_append(std::string_view in, std::string& out) {
    const auto* p = reinterpret_cast<const unsigned char*>(in.data());
    std::size_t n = in.size();
    std::size_t at = out.size();
    out.resize(at + base64_encoded_size(n));
    char* o = out.data() + at;
    for (; n >= 3; n -= 3, p += 3) {
        std::uint32_t v = (std::uint32_t{p[0]} << 16) | (std::uint32_t{p[1]} << 8) | p[2];
        *o++ = k_alphabet[(v >> 18) & 63];
        *o++ = k_alphabet[(v >> 12) & 63];
        *o++ = k_alphabet[(v >> 6) & 63];
        *o++ = k_alphabet[v & 63];
    }
    if (n > 0) {
        std::uint32_t v = std::uint32_t{p[0]} << 16;
        if (n == 2) v |= std::uint32_t{p[1]} << 8;
        *o++ = k_alphabet[(v >> 18) & 63];
        *o++ = k_alphabet[(v >> 12) & 63];
        *o++ = n == 2 ? k_alphabet[(v >> 6) & 63] : '=';
        *o++ = '=';
    }
}

std::string base64_encode(std::string_view in) {
    std::string out;
    base64_encode_append(in, out);
    return out;
}

Result<std::string, Base64Error> base64_decode(std::string_view in, std::size_t max_input) noexcept {
    if (in.size() > max_input) return Unexpected(Base64Error::too_long);
    if (in.size() % 4 != 0) return Unexpected(Base64Error::bad_length);
    std::string out;
    if (in.empty()) return out;
    out.reserve(in.size() / 4 * 3);
    const std::size_t groups = in.size() / 4;
    for (std::size_t g = 0; g < groups; ++g) {
        std::uint8_t d[4];
        for (int i = 0; i < 4; ++i) {
            d[i] = k_decode[static_cast<unsigned char>(in[g * 4 + i])];
            if (d[i] == k_invalid) return Unexpected(Base64Error::bad_character);
        }
        const bool last = g + 1 == groups;
        // Padding may only fill the last one or two places of the last group.
        if (d[0] == k_pad || d[1] == k_pad) return Unexpected(Base64Error::bad_padding);
        if (d[2] == k_pad && d[3] != k_pad) return Unexpected(Base64Error::bad_padding);
        if ((d[2] == k_pad || d[3] == k_pad) && !last) return Unexpected(Base64Error::bad_padding);
        std::uint32_t v = (std::uint32_t{d[0]} << 18) | (std::uint32_t{d[1]} << 12);
        out.push_back(static_cast<char>(v >> 16));
        if (d[2] == k_pad) {
            // RFC 4648 §3.5: the 4 bits below the one output byte must be zero.
            if (d[1] & 0x0f) return Unexpected(Base64Error::bad_padding);
            break;
        }
        v |= std::uint32_t{d[2]} << 6;
        out.push_back(static_cast<char>((v >> 8) & 0xff));
        if (d[3] == k_pad) {
            if (d[2] & 0x03) return Unexpected(Base64Error::bad_padding);
            break;
        }
        v |= d[3];
        out.push_back(static_cast<char>(v & 0xff));
    }
    return out;
}

}  // namespace xmpp
