// RawText: character data or an attribute value exactly as it stands in the stream, still
// escaped. The tokenizer has already checked every reference in it, so unescaping cannot fail;
// it happens only when someone asks (DESIGN §3: nothing is copied on the fast path).
#pragma once

#include <string>
#include <string_view>

namespace xmpp::xml {

class RawText {
public:
    constexpr RawText() noexcept = default;
    constexpr RawText(std::string_view raw, bool has_refs) noexcept
        : _raw(raw), _has_refs(has_refs), _present(true) {}
    // Plain text with no references (e.g. a literal in a test).
    static constexpr RawText plain(std::string_view s) noexcept { return RawText(s, false); }

    // False for an attribute that is not there; an empty value is present().
    constexpr bool present() const noexcept { return _present; }
    constexpr explicit operator bool() const noexcept { return _present; }
    constexpr bool empty() const noexcept { return _raw.empty(); }
    // The bytes as written, references included.
    constexpr std::string_view raw() const noexcept { return _raw; }
    // True when raw() holds '&' references, i.e. raw() differs from the text.
    constexpr bool has_refs() const noexcept { return _has_refs; }

    // The text with references replaced.
    std::string unescape() const;
    void unescape_into(std::string& out) const;
    // Compares the unescaped text with `text` without allocating.
    bool equals(std::string_view text) const noexcept;

private:
    std::string_view _raw;
    bool _has_refs = false;
    bool _present = false;
};

// Appends `text` escaped for character data (& < >) or for an attribute value in either
// quote (& < > " '). Invalid characters are not the writer's business: callers pass valid text.
void escape_text_into(std::string& out, std::string_view text);
void escape_attribute_into(std::string& out, std::string_view text);

}  // namespace xmpp::xml
