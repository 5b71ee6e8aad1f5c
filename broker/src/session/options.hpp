// Module options (CONVENTIONS §5): each module declares its options — name, type, default,
// bounds, help — next to its code, in its ModuleSpec. The configuration loader reads the TOML
// table named after the module (`[offline] max_messages = 1000`) from these declarations and
// nothing else, `starlingd --print-config` writes the documented defaults from them, and the
// module reads its values at install time with typed, bounded getters.
//
// Lives on: start-up. Specs are immutable tables; an OptionValues is filled once by the loader
// and then read, unchanged, by every shard.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <map>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace starling::session {

struct OptionSpec {
    enum class Type : std::uint8_t { boolean, integer, text, choice, jid_list };

    std::string_view name;  // the key inside the module's table
    Type type = Type::boolean;
    bool default_bool = false;
    std::uint64_t default_int = 0;
    std::uint64_t min = 0;  // integers: inclusive bounds
    std::uint64_t max = 0;
    std::string_view default_text;           // text and choice
    std::vector<std::string_view> choices;  // choice: the accepted words
    std::string_view help;                  // one sentence; the documentation of the option

    static OptionSpec boolean(std::string_view name, bool def, std::string_view help) {
        OptionSpec s;
        s.name = name;
        s.type = Type::boolean;
        s.default_bool = def;
        s.help = help;
        return s;
    }
    static OptionSpec integer(std::string_view name, std::uint64_t def, std::uint64_t min, std::uint64_t max,
                              std::string_view help) {
        OptionSpec s;
        s.name = name;
        s.type = Type::integer;
        s.default_int = def;
        s.min = min;
        s.max = max;
        s.help = help;
        return s;
    }
    static OptionSpec text(std::string_view name, std::string_view def, std::string_view help) {
        OptionSpec s;
        s.name = name;
        s.type = Type::text;
        s.default_text = def;
        s.help = help;
        return s;
    }
    // A TOML array of bare JIDs ("admin@example.org"), checked and normalised when read; empty
    // by default.
    static OptionSpec jids(std::string_view name, std::string_view help) {
        OptionSpec s;
        s.name = name;
        s.type = Type::jid_list;
        s.help = help;
        return s;
    }
    static OptionSpec choice(std::string_view name, std::string_view def, std::initializer_list<std::string_view> words,
                             std::string_view help) {
        OptionSpec s;
        s.name = name;
        s.type = Type::choice;
        s.default_text = def;
        s.choices = words;
        s.help = help;
        return s;
    }
};

using OptionValue = std::variant<bool, std::uint64_t, std::string, std::vector<std::string>>;

// The value of every declared option, keyed "module.option". A key that was never declared is a
// bug in the module that asks for it: the getters abort with its name (start-up only).
class OptionValues {
public:
    void set(std::string key, OptionValue value) { _values[std::move(key)] = std::move(value); }
    bool has(std::string_view key) const { return _values.find(key) != _values.end(); }

    bool boolean(std::string_view key) const;
    std::uint64_t integer(std::string_view key) const;
    const std::string& text(std::string_view key) const;  // text and choice
    const std::vector<std::string>& jids(std::string_view key) const;

    const std::map<std::string, OptionValue, std::less<>>& all() const noexcept { return _values; }
    friend bool operator==(const OptionValues&, const OptionValues&) = default;

private:
    const OptionValue& get(std::string_view key) const;
    std::map<std::string, OptionValue, std::less<>> _values;
};

// What the configuration says about modules: which optional ones are on, and every declared
// option's value (defaults filled in). Modules absent from `enabled` are on.
struct ModuleSettings {
    std::map<std::string, bool, std::less<>> enabled;
    OptionValues values;

    bool is_enabled(std::string_view module) const {
        auto it = enabled.find(module);
        return it == enabled.end() || it->second;
    }
    friend bool operator==(const ModuleSettings&, const ModuleSettings&) = default;
};

// The value of `spec` when nothing sets it.
OptionValue default_value(const OptionSpec& spec);
// "an integer between 1 and 1000000", "true or false", "one of closed, open": for errors and docs.
std::string describe_type(const OptionSpec& spec);
// The value as TOML writes it: 1000, true, "closed", ["a@b", "c@d"].
std::string to_toml(const OptionValue& value);

}  // namespace starling::session
