// Random: a CTR-DRBG seeded from the system's entropy, one per shard (no locking). Used for
// SASL nonces, stream ids and generated resources.
//
// Lives on: one shard (or one thread); never shared.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

namespace starling::util {

class Random {
public:
    Random();  // throws std::runtime_error when the system has no entropy source (start-up)
    ~Random();
    Random(const Random&) = delete;
    Random& operator=(const Random&) = delete;

    void fill(void* out, std::size_t n) noexcept;
    // `n` characters from [A-Za-z0-9], e.g. for nonces and ids.
    std::string alnum(std::size_t n);

private:
    struct Impl;
    std::unique_ptr<Impl> _impl;
};

}  // namespace starling::util
