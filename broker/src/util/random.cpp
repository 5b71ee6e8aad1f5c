#include "broker/src/util/random.hpp"

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>

#include <cstdlib>
#include <stdexcept>

namespace starling::util {

struct Random::Impl {
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
    Impl() {
        mbedtls_entropy_init(&entropy);
        mbedtls_ctr_drbg_init(&drbg);
        static const unsigned char k_personal[] = "starling-random";
        if (mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy, k_personal, sizeof k_personal) != 0) {
            throw std::runtime_error("cannot seed the random generator from the system's entropy");
        }
    }
    ~Impl() {
        mbedtls_ctr_drbg_free(&drbg);
        mbedtls_entropy_free(&entropy);
    }
};

Random::Random() : _impl(std::make_unique<Impl>()) {}
Random::~Random() = default;

void Random::fill(void* out, std::size_t n) noexcept {
    auto* p = static_cast<unsigned char*>(out);
    while (n > 0) {
        const std::size_t chunk = n < MBEDTLS_CTR_DRBG_MAX_REQUEST ? n : MBEDTLS_CTR_DRBG_MAX_REQUEST;
        if (mbedtls_ctr_drbg_random(&_impl->drbg, p, chunk) != 0) {
            std::abort();  // reseed failure: no safe way to go on handing out nonces
        }
        p += chunk;
        n -= chunk;
    }
}

std::string Random::alnum(std::size_t n) {
    static constexpr char k_chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    std::string out(n, '\0');
    unsigned char buf[64];
    std::size_t i = 0;
    while (i < n) {
        fill(buf, sizeof buf);
        for (unsigned char b : buf) {
            if (i == n) break;
            if (b >= 248) continue;  // 248 = 4 * 62: keep the distribution uniform
            out[i++] = k_chars[b % 62];
        }
    }
    return out;
}

}  // namespace starling::util
