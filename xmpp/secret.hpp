// A string that holds a secret (a password, a decoded SASL payload). Its bytes are wiped when it
// is destroyed, assigned or moved from, so that no copy of the secret is left in freed heap
// memory or in the small-string buffer of a moved-from std::string. Move-only: a secret is not
// copied by accident.
//
// What it does not cover: copies made before the secret got here (the received bytes in the
// XML tokenizer's and the TLS engine's buffers still hold its base64 form until they are reused
// or released).
#pragma once

#include <string.h>  // explicit_bzero (glibc, musl): a memset the compiler may not drop

#include <string>
#include <string_view>

namespace xmpp {

class SecretString {
public:
    SecretString() noexcept = default;
    explicit SecretString(std::string_view s) : _s(s) {}
    explicit SecretString(std::string&& s) noexcept : _s(std::move(s)) { wipe(s); }
    SecretString(SecretString&& o) noexcept : _s(std::move(o._s)) { wipe(o._s); }
    SecretString& operator=(SecretString&& o) noexcept {
        if (this != &o) {
            wipe(_s);
            _s = std::move(o._s);  // may hand our old (wiped) buffer to o
            wipe(o._s);
        }
        return *this;
    }
    SecretString(const SecretString&) = delete;
    SecretString& operator=(const SecretString&) = delete;
    ~SecretString() { wipe(_s); }

    std::string_view view() const noexcept { return _s; }
    bool empty() const noexcept { return _s.empty(); }

private:
    // The whole capacity: a shorter secret may have followed a longer one in the same buffer.
    static void wipe(std::string& s) noexcept {
        explicit_bzero(s.data(), s.capacity());
        s.clear();
    }
    std::string _s;
};

}  // namespace xmpp
