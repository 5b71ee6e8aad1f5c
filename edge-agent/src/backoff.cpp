#include "edge-agent/src/backoff.hpp"

namespace starling::agent {

Backoff::Ms Backoff::ceiling() const noexcept {
    std::int64_t v = _base.count();
    for (std::uint32_t i = 0; i < _attempts && v < _cap.count(); ++i) v *= 2;
    return Ms(v < _cap.count() ? v : _cap.count());
}

}  // namespace starling::agent
