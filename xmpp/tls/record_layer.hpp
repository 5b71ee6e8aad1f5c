// Internal to xmpp/tls: TLS record protection of our own, for a connection whose handshake
// OpenSSL has finished. The broker hands each established connection to it and frees the
// OpenSSL `SSL` object (15 KB per connection in OpenSSL 3.0, even idle); what a parked
// connection then holds is this object: keys, IVs, sequence numbers, ~300 bytes.
//
// Covers exactly what the broker's cipher policy negotiates: TLS 1.3 (RFC 8446 §5.2-5.3) and
// TLS 1.2 (RFC 5246 §6.2.3.3, RFC 5288, RFC 7905) with AES-128-GCM, AES-256-GCM and
// ChaCha20-Poly1305. Anything else stays on OpenSSL's own record layer.
//
// Lives on: the shard of its connection, inside its OpenSslServerSession. No I/O, no buffers
// kept between calls (each call works in the caller's or a stack buffer).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

namespace xmpp::tls::detail {

inline constexpr std::size_t k_record_plain_max = 16384;                        // 2^14
inline constexpr std::size_t k_record_cipher_max = k_record_plain_max + 2048;   // RFC 5246 §6.2.3
inline constexpr std::size_t k_record_open_buffer = k_record_cipher_max;         // open()'s buffer

class RecordLayer {
public:
    enum class Aead : std::uint8_t { aes_128_gcm, aes_256_gcm, chacha20_poly1305 };

    // TLS 1.3: the traffic secrets of both sides (RFC 8446 §7.1, [sender]_application_traffic_secret_0)
    // and how many records the server already sent under its secret (the session tickets).
    // Null if the suite is not one of ours.
    static std::unique_ptr<RecordLayer> tls13(std::uint16_t suite, std::span<const std::uint8_t> client_secret,
                                              std::span<const std::uint8_t> server_secret,
                                              std::uint64_t write_seq) noexcept;
    // TLS 1.2: the key block from the master secret (RFC 5246 §6.3); both sides have sent one
    // record (Finished) under the new keys. Null if the suite is not one of ours.
    static std::unique_ptr<RecordLayer> tls12(std::uint16_t suite, std::span<const std::uint8_t> master,
                                              std::span<const std::uint8_t, 32> client_random,
                                              std::span<const std::uint8_t, 32> server_random) noexcept;
    ~RecordLayer();
    RecordLayer(const RecordLayer&) = delete;
    RecordLayer& operator=(const RecordLayer&) = delete;

    bool is_tls13() const noexcept { return _tls13; }

    // Appends one protected record of content `type` carrying `data` (at most 2^14 bytes).
    // False when the cipher failed (out of memory): the connection cannot go on.
    bool seal(std::uint8_t type, std::span<const char> data, std::vector<char>& out) noexcept;
    // The same record written at `rec`, which has room for sealed_size(data.size()) bytes and
    // does not overlap `data`.
    bool seal_to(std::uint8_t type, std::span<const char> data, std::uint8_t* rec) noexcept;
    // Bytes on the wire of one record carrying `plain` bytes.
    std::size_t sealed_size(std::size_t plain) const noexcept;

    enum class Status : std::uint8_t { ok, need_more, bad_record, record_overflow };
    struct Opened {
        Status status = Status::need_more;
        std::uint8_t type = 0;     // the (inner, for 1.3) content type
        std::size_t consumed = 0;  // ciphertext bytes taken from `in`
        std::size_t length = 0;    // plaintext bytes in the buffer
    };
    // Opens the first record of `in` into `buf` (k_record_open_buffer bytes, or at least the
    // record's length as its header gives it: record_length()).
    Opened open(std::span<const char> in, std::uint8_t* buf) noexcept;
    // The length field of the record at the front of `in` (0 if its header is incomplete): open()
    // writes at most that many bytes into its buffer.
    static std::size_t record_length(std::span<const char> in) noexcept {
        if (in.size() < 5) return 0;
        return static_cast<std::size_t>(static_cast<std::uint8_t>(in[3])) << 8 | static_cast<std::uint8_t>(in[4]);
    }

    // TLS 1.3 KeyUpdate (RFC 8446 §4.6.3, §7.2): next generation of one side's secret.
    bool update_read_key() noexcept;
    bool update_write_key() noexcept;

private:
    struct Direction {
        std::array<std::uint8_t, 48> secret{};  // TLS 1.3 only
        std::array<std::uint8_t, 32> key{};
        std::array<std::uint8_t, 12> iv{};     // TLS 1.2 GCM: 4 bytes of salt
        std::uint64_t seq = 0;
    };
    RecordLayer() = default;
    bool derive13(Direction& d) noexcept;
    void nonce(const Direction& d, std::uint64_t seq, std::uint8_t out[12]) const noexcept;

    Aead _aead = Aead::aes_128_gcm;
    bool _tls13 = false;
    bool _sha384 = false;
    Direction _read;   // the client's side
    Direction _write;  // ours
};

}  // namespace xmpp::tls::detail
