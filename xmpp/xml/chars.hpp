// Character classes of XML 1.0 (Fifth Edition) used by the tokenizer: byte tables for the ASCII
// fast paths and a UTF-8 decoder that also enforces the Char production.
#pragma once

#include <array>
#include <cstdint>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace xmpp::xml::chars {

// Byte classes, one bit each, so that one table lookup answers "can the fast loop go on?".
enum : std::uint8_t {
    k_text_plain = 1 << 0,   // ordinary character data: not '<', '&', ']', control or non-ASCII
    k_value_plain = 1 << 1,  // ordinary attribute value byte: not '<', '&', quotes, \t\r\n, control
    k_name_start = 1 << 2,   // ASCII NameStartChar (letters, '_', ':')
    k_name = 1 << 3,         // ASCII NameChar, except ':'
    k_space = 1 << 4,        // S production: space, tab, CR, LF
    k_cdata_plain = 1 << 5,  // ordinary CDATA byte: not ']', control or non-ASCII
};

constexpr std::array<std::uint8_t, 256> make_table() {
    std::array<std::uint8_t, 256> t{};
    for (int c = 0x20; c < 0x80; ++c) {
        t[c] |= k_text_plain | k_value_plain | k_cdata_plain;
    }
    for (int c : {'<', '&', ']'}) t[c] &= ~k_text_plain;
    for (int c : {'<', '&', '"', '\''}) t[c] &= ~k_value_plain;
    t[']'] &= ~k_cdata_plain;
    for (int c : {'\t', '\n', '\r'}) t[c] |= k_text_plain | k_cdata_plain | k_space;
    t[' '] |= k_space;
    for (int c = 'a'; c <= 'z'; ++c) t[c] |= k_name_start | k_name;
    for (int c = 'A'; c <= 'Z'; ++c) t[c] |= k_name_start | k_name;
    for (int c = '0'; c <= '9'; ++c) t[c] |= k_name;
    // ':' starts a name but is not in k_name: name scans stop at it to note the prefix.
    for (int c : {'_', ':'}) t[c] |= k_name_start;
    t['_'] |= k_name;
    for (int c : {'-', '.'}) t[c] |= k_name;
    return t;
}

inline constexpr std::array<std::uint8_t, 256> k_table = make_table();

inline bool is(std::uint8_t cls, unsigned char c) noexcept { return (k_table[c] & cls) != 0; }

#if defined(__SSE2__)
// Index of the first of 16 bytes at p that equals a, b, c or d, or is below 0x20 or above 0x7F
// (a signed compare catches both); 16 when none does.
inline int find_special16(const unsigned char* p, char a, char b, char c, char d) noexcept {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    __m128i m = _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8(a)), _mm_cmpeq_epi8(v, _mm_set1_epi8(b)));
    m = _mm_or_si128(m, _mm_cmpeq_epi8(v, _mm_set1_epi8(c)));
    m = _mm_or_si128(m, _mm_cmpeq_epi8(v, _mm_set1_epi8(d)));
    m = _mm_or_si128(m, _mm_cmplt_epi8(v, _mm_set1_epi8(0x20)));
    const int mask = _mm_movemask_epi8(m);
    return mask ? __builtin_ctz(static_cast<unsigned>(mask)) : 16;
}
#endif

// Skips ordinary attribute-value bytes; stops at a quote, '<', '&', a control byte or a
// non-ASCII byte (which the caller handles one by one).
inline const unsigned char* skip_value_plain(const unsigned char* p, const unsigned char* end) noexcept {
#if defined(__SSE2__)
    while (end - p >= 16) {
        const int i = find_special16(p, '"', '\'', '<', '&');
        if (i < 16) return p + i;
        p += 16;
    }
#endif
    while (p < end && is(k_value_plain, *p)) ++p;
    return p;
}

// Skips ordinary character data; stops at '<', '&', ']', a control byte (tab, CR and LF
// included: the caller lets them through) or a non-ASCII byte.
inline const unsigned char* skip_text_plain(const unsigned char* p, const unsigned char* end) noexcept {
#if defined(__SSE2__)
    while (end - p >= 16) {
        const int i = find_special16(p, '<', '&', ']', '<');
        if (i < 16) return p + i;
        p += 16;
    }
#endif
    while (p < end && is(k_text_plain, *p)) ++p;
    return p;
}

// XML 1.0 Char production: #x9 | #xA | #xD | [#x20-#xD7FF] | [#xE000-#xFFFD] | [#x10000-#x10FFFF].
constexpr bool is_xml_char(char32_t c) noexcept {
    if (c < 0x20) return c == 0x9 || c == 0xA || c == 0xD;
    if (c <= 0xD7FF) return true;
    if (c < 0xE000) return false;
    if (c <= 0xFFFD) return true;
    return c >= 0x10000 && c <= 0x10FFFF;
}

// XML 1.0 Fifth Edition NameStartChar and NameChar, for code points >= 0x80.
constexpr bool is_name_start_nonascii(char32_t c) noexcept {
    return (c >= 0xC0 && c <= 0xD6) || (c >= 0xD8 && c <= 0xF6) || (c >= 0xF8 && c <= 0x2FF) ||
           (c >= 0x370 && c <= 0x37D) || (c >= 0x37F && c <= 0x1FFF) ||
           (c >= 0x200C && c <= 0x200D) || (c >= 0x2070 && c <= 0x218F) ||
           (c >= 0x2C00 && c <= 0x2FEF) || (c >= 0x3001 && c <= 0xD7FF) ||
           (c >= 0xF900 && c <= 0xFDCF) || (c >= 0xFDF0 && c <= 0xFFFD) ||
           (c >= 0x10000 && c <= 0xEFFFF);
}
constexpr bool is_name_nonascii(char32_t c) noexcept {
    return is_name_start_nonascii(c) || c == 0xB7 || (c >= 0x300 && c <= 0x36F) ||
           (c >= 0x203F && c <= 0x2040);
}

// Decodes the multi-byte UTF-8 sequence starting at p (p[0] >= 0x80). Returns its length (2-4)
// when it is complete, well-formed (no overlong forms, no surrogates, at most U+10FFFF) and an
// XML Char; 0 when the input ends before the sequence does and the bytes seen so far are valid;
// -1 otherwise.
inline int decode_utf8(const unsigned char* p, const unsigned char* end, char32_t& cp) noexcept {
    const unsigned c = p[0];
    int n;
    char32_t v;
    unsigned lo = 0x80, hi = 0xBF;  // bounds of the second byte
    if (c < 0xC2) {
        return -1;  // a continuation byte, or an overlong two-byte form
    } else if (c < 0xE0) {
        n = 2, v = c & 0x1F;
    } else if (c < 0xF0) {
        n = 3, v = c & 0x0F;
        if (c == 0xE0) lo = 0xA0;        // overlong
        else if (c == 0xED) hi = 0x9F;   // surrogates
    } else if (c < 0xF5) {
        n = 4, v = c & 0x07;
        if (c == 0xF0) lo = 0x90;        // overlong
        else if (c == 0xF4) hi = 0x8F;   // above U+10FFFF
    } else {
        return -1;
    }
    for (int i = 1; i < n; ++i) {
        if (p + i >= end) return 0;
        const unsigned b = p[i];
        if (b < (i == 1 ? lo : 0x80u) || b > (i == 1 ? hi : 0xBFu)) return -1;
        v = (v << 6) | (b & 0x3F);
    }
    if (v == 0xFFFE || v == 0xFFFF) return -1;
    cp = v;
    return n;
}

}  // namespace xmpp::xml::chars

namespace xmpp::xml::chars {

enum class RefStatus : std::uint8_t {
    ok,               // a predefined entity or a character reference to an XML Char
    incomplete,       // input ends inside the reference
    not_well_formed,  // malformed reference, or a character reference to a non-Char
    restricted,       // a named entity other than the five predefined ones (RFC 6120 §11.1)
};

struct Ref {
    RefStatus status;
    int length;    // bytes from '&' to ';' inclusive, when ok
    char32_t cp;   // the character referred to, when ok
};

// Longest reference accepted, leading zeros of character references included.
inline constexpr int k_max_ref_bytes = 32;

// Parses the reference that starts at p (p[0] == '&').
inline Ref parse_reference(const unsigned char* p, const unsigned char* end) noexcept {
    const unsigned char* q = p + 1;
    const unsigned char* limit = end - p > k_max_ref_bytes ? p + k_max_ref_bytes : end;
    if (q >= limit) return {limit == end ? RefStatus::incomplete : RefStatus::not_well_formed, 0, 0};
    if (*q == '#') {
        ++q;
        bool hex = false;
        if (q < limit && *q == 'x') hex = true, ++q;
        char32_t v = 0;
        int digits = 0;
        for (; q < limit; ++q) {
            unsigned d;
            const unsigned char c = *q;
            if (c >= '0' && c <= '9') d = c - '0';
            else if (hex && c >= 'a' && c <= 'f') d = c - 'a' + 10;
            else if (hex && c >= 'A' && c <= 'F') d = c - 'A' + 10;
            else break;
            v = v * (hex ? 16 : 10) + d;
            if (v > 0x10FFFF) return {RefStatus::not_well_formed, 0, 0};
            ++digits;
        }
        if (q == limit) {
            return {limit == end ? RefStatus::incomplete : RefStatus::not_well_formed, 0, 0};
        }
        if (*q != ';' || digits == 0 || !is_xml_char(v)) return {RefStatus::not_well_formed, 0, 0};
        return {RefStatus::ok, static_cast<int>(q - p + 1), v};
    }
    // A name: only lt, gt, amp, quot and apos are defined without a DTD.
    if (!is(k_name_start, *q) && *q < 0x80) return {RefStatus::not_well_formed, 0, 0};
    const unsigned char* name = q;
    while (q < limit && *q != ';') {
        if (*q < 0x80 && !is(k_name, *q) && *q != ':') return {RefStatus::not_well_formed, 0, 0};
        ++q;
    }
    if (q == limit) return {limit == end ? RefStatus::incomplete : RefStatus::not_well_formed, 0, 0};
    const auto n = q - name;
    const int len = static_cast<int>(q - p + 1);
    auto eq = [&](const char* s, long sl) {
        if (n != sl) return false;
        for (long i = 0; i < sl; ++i) {
            if (name[i] != static_cast<unsigned char>(s[i])) return false;
        }
        return true;
    };
    if (eq("lt", 2)) return {RefStatus::ok, len, U'<'};
    if (eq("gt", 2)) return {RefStatus::ok, len, U'>'};
    if (eq("amp", 3)) return {RefStatus::ok, len, U'&'};
    if (eq("quot", 4)) return {RefStatus::ok, len, U'"'};
    if (eq("apos", 4)) return {RefStatus::ok, len, U'\''};
    return {RefStatus::restricted, 0, 0};
}

}  // namespace xmpp::xml::chars
