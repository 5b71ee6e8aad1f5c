#include "xmpp/base85.hpp"

#include <array>

namespace xmpp {

namespace {

constexpr std::string_view k_alphabet =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz!#$%()*+,-./:;=?@[]^_{}";
static_assert(k_alphabet.size() == 85);

constexpr std::array<std::int8_t, 256> make_values() {
    std::array<std::int8_t, 256> v{};
    for (auto& x : v) x = -1;
    for (std::size_t i = 0; i < k_alphabet.size(); ++i) v[static_cast<unsigned char>(k_alphabet[i])] = static_cast<std::int8_t>(i);
    return v;
}
constexpr auto k_values = make_values();

constexpr std::uint32_t k_pow85[5] = {52200625u, 614125u, 7225u, 85u, 1u};

}  // namespace

std::string_view to_string(Base85Error e) noexcept {
    switch (e) {
        case Base85Error::bad_length: return "bad length";
        case Base85Error::bad_character: return "bad character";
        case Base85Error::overflow: return "group out of range";
        case Base85Error::too_long: return "too long";
    }
    return "?";
}

void base85_encode_append(std::string_view in, std::string& out) {
    out.reserve(out.size() + base85_encoded_size(in.size()));
    for (std::size_t i = 0; i < in.size(); i += 4) {
        const std::size_t n = std::min<std::size_t>(4, in.size() - i);
        std::uint32_t v = 0;
        for (std::size_t k = 0; k < 4; ++k) {
            v = (v << 8) | (k < n ? static_cast<unsigned char>(in[i + k]) : 0u);
        }
        char digits[5];
        for (int k = 4; k >= 0; --k) {
            digits[k] = k_alphabet[v % 85];
            v /= 85;
        }
        out.append(digits, n == 4 ? 5 : n + 1);
    }
}

std::string base85_encode(std::string_view in) {
    std::string out;
    base85_encode_append(in, out);
    return out;
}

Result<std::string, Base85Error> base85_decode(std::string_view in, std::size_t max_input) noexcept {
    if (in.size() > max_input) return Unexpected(Base85Error::too_long);
    if (in.size() % 5 == 1) return Unexpected(Base85Error::bad_length);
    std::string out;
    out.reserve(in.size() / 5 * 4 + 4);
    for (std::size_t i = 0; i < in.size(); i += 5) {
        const std::size_t n = std::min<std::size_t>(5, in.size() - i);
        std::uint64_t v = 0;
        for (std::size_t k = 0; k < 5; ++k) {
            std::int8_t d = 84;  // a partial group is padded with the highest digit
            if (k < n) {
                d = k_values[static_cast<unsigned char>(in[i + k])];
                if (d < 0) return Unexpected(Base85Error::bad_character);
            }
            v += static_cast<std::uint64_t>(d) * k_pow85[k];
        }
        const std::size_t bytes = n == 5 ? 4 : n - 1;
        // Padding with the highest digit rounds a partial group up by less than one unit of its
        // last kept byte, so what an encoder wrote never exceeds 2^32 - 1.
        if (v > 0xFFFFFFFFu) return Unexpected(Base85Error::overflow);
        for (std::size_t k = 0; k < bytes; ++k) out.push_back(static_cast<char>((v >> (24 - 8 * k)) & 0xFF));
        if (n < 5) {
            std::string again;
            base85_encode_append(std::string_view(out).substr(out.size() - bytes), again);
            if (again != in.substr(i, n)) return Unexpected(Base85Error::overflow);
        }
    }
    return out;
}

}  // namespace xmpp
