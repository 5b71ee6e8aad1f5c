#include "xmpp/xml/raw_text.hpp"

#include <array>

#include "xmpp/xml/chars.hpp"

namespace xmpp::xml {

namespace {

// Writes c as UTF-8 into out (4 bytes of room); returns the length.
int encode_utf8(char32_t c, char* out) noexcept {
    if (c < 0x80) {
        out[0] = static_cast<char>(c);
        return 1;
    }
    if (c < 0x800) {
        out[0] = static_cast<char>(0xC0 | (c >> 6));
        out[1] = static_cast<char>(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        out[0] = static_cast<char>(0xE0 | (c >> 12));
        out[1] = static_cast<char>(0x80 | ((c >> 6) & 0x3F));
        out[2] = static_cast<char>(0x80 | (c & 0x3F));
        return 3;
    }
    out[0] = static_cast<char>(0xF0 | (c >> 18));
    out[1] = static_cast<char>(0x80 | ((c >> 12) & 0x3F));
    out[2] = static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out[3] = static_cast<char>(0x80 | (c & 0x3F));
    return 4;
}

// Calls sink(piece) for consecutive pieces of the unescaped text. The tokenizer has validated
// every reference, so a reference that does not parse is passed through as written.
template <class Sink>
void for_each_piece(std::string_view raw, Sink&& sink) {
    const auto* p = reinterpret_cast<const unsigned char*>(raw.data());
    const auto* end = p + raw.size();
    const auto* run = p;
    char utf8[4];
    while (p < end) {
        const unsigned char c = *p;
        if (c != '&' && c != '\t' && c != '\n' && c != '\r') {
            ++p;
            continue;
        }
        if (run < p) sink(std::string_view(reinterpret_cast<const char*>(run), static_cast<std::size_t>(p - run)));
        if (c == '&') {
            const auto ref = chars::parse_reference(p, end);
            if (ref.status != chars::RefStatus::ok) {
                sink(std::string_view("&", 1));
                ++p;
            } else {
                const int n = encode_utf8(ref.cp, utf8);
                sink(std::string_view(utf8, static_cast<std::size_t>(n)));
                p += ref.length;
            }
        } else {
            // XML 1.0 §2.11 then §3.3.3: CR LF and lone CR become LF, and literal white space in
            // an attribute value becomes a space.
            if (c == '\r' && p + 1 < end && p[1] == '\n') ++p;
            sink(std::string_view(" ", 1));
            ++p;
        }
        run = p;
    }
    if (run < p) sink(std::string_view(reinterpret_cast<const char*>(run), static_cast<std::size_t>(p - run)));
}

}  // namespace

std::string RawText::unescape() const {
    std::string out;
    unescape_into(out);
    return out;
}

void RawText::unescape_into(std::string& out) const {
    if (!_has_refs) {
        out.append(_raw);
        return;
    }
    out.reserve(out.size() + _raw.size());
    for_each_piece(_raw, [&](std::string_view piece) { out.append(piece); });
}

bool RawText::equals(std::string_view text) const noexcept {
    if (!_has_refs) return _raw == text;
    if (text.size() > _raw.size()) return false;  // unescaping never lengthens
    bool same = true;
    std::size_t at = 0;
    for_each_piece(_raw, [&](std::string_view piece) {
        if (!same) return;
        if (text.compare(at, piece.size(), piece) != 0 || at + piece.size() > text.size()) {
            same = false;
            return;
        }
        at += piece.size();
    });
    return same && at == text.size();
}

namespace {

// The bytes escape_into<Attribute> replaces: one table load per byte to find the first, so
// that text with none (most JIDs and ids) is appended in one piece.
template <bool Attribute>
constexpr std::array<bool, 256> k_escaped = [] {
    std::array<bool, 256> t{};
    for (const unsigned char c : {'&', '<', '>', '\r'}) t[c] = true;
    if (Attribute) {
        for (const unsigned char c : {'"', '\'', '\t', '\n'}) t[c] = true;
    }
    return t;
}();

template <bool Attribute>
void escape_into(std::string& out, std::string_view text) {
    std::size_t first = 0;
    while (first < text.size() && !k_escaped<Attribute>[static_cast<unsigned char>(text[first])]) ++first;
    if (first == text.size()) {
        out.append(text);
        return;
    }
    out.reserve(out.size() + text.size() + 8);
    std::size_t run = 0;
    for (std::size_t i = first; i < text.size(); ++i) {
        const char* rep;
        switch (text[i]) {
        case '&': rep = "&amp;"; break;
        case '<': rep = "&lt;"; break;
        case '>': rep = "&gt;"; break;
        case '"': if (!Attribute) continue; rep = "&quot;"; break;
        case '\'': if (!Attribute) continue; rep = "&apos;"; break;
        // Kept literally they would be normalised away when the attribute is read back.
        case '\t': if (!Attribute) continue; rep = "&#9;"; break;
        case '\n': if (!Attribute) continue; rep = "&#10;"; break;
        case '\r': rep = "&#13;"; break;
        default: continue;
        }
        out.append(text.substr(run, i - run));
        out.append(rep);
        run = i + 1;
    }
    out.append(text.substr(run));
}

}  // namespace

void escape_text_into(std::string& out, std::string_view text) { escape_into<false>(out, text); }
void escape_attribute_into(std::string& out, std::string_view text) { escape_into<true>(out, text); }

}  // namespace xmpp::xml
