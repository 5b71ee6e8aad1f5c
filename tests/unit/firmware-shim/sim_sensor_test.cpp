// examples/sim-sensor, driven over its UNIX socket as an agent would: it says Hello, sends
// temperature/humidity batches, obeys set-led and set-interval, refuses bad arguments and
// unknown commands, and stops once the requested number of batches is acknowledged.
#include "starling_shim.h"

#include "schemas/device/command_result_generated.h"
#include "schemas/device/link_generated.h"
#include "schemas/device/telemetry_generated.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

namespace {

namespace fb = starling::device::fb;
using Bytes = std::vector<uint8_t>;
using Clock = std::chrono::steady_clock;

struct Frame {
    uint8_t type;
    Bytes payload;
};

class SimSensor {
public:
    SimSensor()
    {
        char tmpl[] = "/tmp/sim-sensor-test-XXXXXX";
        const char* dir = mkdtemp(tmpl);
        EXPECT_NE(dir, nullptr);
        _dir = dir ? dir : "/tmp";
        _path = _dir + "/dev.sock";
        _pid = fork();
        if (_pid == 0) {
            execl(STARLING_SIM_SENSOR, "sim-sensor", "--socket", _path.c_str(), "--interval", "100",
                  "--device-id", "sim-test", "--batches", "3", static_cast<char*>(nullptr));
            _exit(127);
        }
        starling_shim_decoder_init(&_dec, _rx, sizeof _rx);
    }

    ~SimSensor()
    {
        if (_fd >= 0) {
            close(_fd);
        }
        if (_pid > 0) {
            kill(_pid, SIGTERM);
            waitpid(_pid, nullptr, 0);
        }
        unlink(_path.c_str());
        rmdir(_dir.c_str());
    }

    bool connect_within(std::chrono::milliseconds limit)
    {
        auto end = Clock::now() + limit;
        while (Clock::now() < end) {
            int fd = socket(AF_UNIX, SOCK_STREAM, 0);
            sockaddr_un addr{};
            addr.sun_family = AF_UNIX;
            std::strncpy(addr.sun_path, _path.c_str(), sizeof addr.sun_path - 1);
            if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
                _fd = fd;
                return true;
            }
            close(fd);
            usleep(20000);
        }
        return false;
    }

    // The next frame of the wanted type (others skipped), or nothing on timeout.
    std::optional<Frame> next(starling_shim_msg want, std::chrono::milliseconds limit = std::chrono::seconds(5))
    {
        auto end = Clock::now() + limit;
        while (Clock::now() < end) {
            while (_pos < _buf.size()) {
                size_t used = 0;
                starling_shim_frame f{};
                bool got = false;
                starling_shim_status st = starling_shim_decoder_push(
                    &_dec, _buf.data() + _pos, _buf.size() - _pos, &used, &f, &got);
                _pos += used;
                EXPECT_EQ(st, STARLING_SHIM_OK) << starling_shim_status_str(st);
                if (got && f.type == want) {
                    return Frame{f.type, Bytes(f.payload, f.payload + f.payload_len)};
                }
            }
            _buf.clear();
            _pos = 0;
            pollfd p{_fd, POLLIN, 0};
            if (poll(&p, 1, 50) > 0) {
                uint8_t tmp[512];
                ssize_t n = read(_fd, tmp, sizeof tmp);
                if (n <= 0) {
                    return std::nullopt;
                }
                _buf.assign(tmp, tmp + n);
            }
        }
        return std::nullopt;
    }

    void send(starling_shim_msg type, const uint8_t* p, size_t n)
    {
        size_t len = 0;
        ASSERT_EQ(starling_shim_frame_encode(type, _seq, p, n, nullptr, 0, &len), STARLING_SHIM_OK);
        Bytes wire(len);
        ASSERT_EQ(starling_shim_frame_encode(type, _seq++, p, n, wire.data(), wire.size(), &len),
                  STARLING_SHIM_OK);
        ASSERT_EQ(write(_fd, wire.data(), wire.size()), static_cast<ssize_t>(wire.size()));
    }

    void command(uint32_t id, const char* name, const starling_shim_kv* args, size_t n)
    {
        starling_shim_command_out c{id, name, args, n};
        uint8_t p[256];
        size_t len = 0;
        ASSERT_EQ(starling_shim_encode_command(&c, p, sizeof p, &len), STARLING_SHIM_OK);
        send(STARLING_SHIM_MSG_COMMAND, p, len);
    }

    void ack(uint32_t seq)
    {
        uint8_t p[64];
        size_t len = 0;
        ASSERT_EQ(starling_shim_encode_ack(seq, p, sizeof p, &len), STARLING_SHIM_OK);
        send(STARLING_SHIM_MSG_ACK, p, len);
    }

    // Waits for the process to exit; its status, or -1 on timeout.
    int exit_status_within(std::chrono::milliseconds limit)
    {
        auto end = Clock::now() + limit;
        for (;;) {
            int status = 0;
            if (waitpid(_pid, &status, WNOHANG) == _pid) {
                _pid = -1;
                return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
            }
            if (Clock::now() >= end) {
                return -1;
            }
            usleep(20000);
        }
    }

private:
    std::string _dir;
    std::string _path;
    pid_t _pid = -1;
    int _fd = -1;
    uint32_t _seq = 0;
    starling_shim_decoder _dec{};
    alignas(8) uint8_t _rx[STARLING_SHIM_MAX_FRAME]{};
    Bytes _buf;
    size_t _pos = 0;
};

const fb::CommandResult* result_of(const Frame& f)
{
    flatbuffers::Verifier v(f.payload.data(), f.payload.size());
    EXPECT_TRUE(fb::VerifyCommandResultBuffer(v));
    return fb::GetCommandResult(f.payload.data());
}

TEST(SimSensor, ReportsObeysAndStopsWhenAcknowledged)
{
    SimSensor sim;
    ASSERT_TRUE(sim.connect_within(std::chrono::seconds(5)));

    auto hello = sim.next(STARLING_SHIM_MSG_HELLO);
    ASSERT_TRUE(hello);
    flatbuffers::Verifier hv(hello->payload.data(), hello->payload.size());
    ASSERT_TRUE(fb::VerifyHelloBuffer(hv));
    EXPECT_EQ(fb::GetHello(hello->payload.data())->device_id()->str(), "sim-test");

    auto tel = sim.next(STARLING_SHIM_MSG_TELEMETRY);
    ASSERT_TRUE(tel);
    flatbuffers::Verifier tv(tel->payload.data(), tel->payload.size());
    ASSERT_TRUE(fb::VerifyTelemetryBuffer(tv));
    const auto* t = fb::GetTelemetry(tel->payload.data());
    ASSERT_EQ(t->readings()->size(), 2u);
    EXPECT_EQ(t->readings()->Get(0)->unit()->str(), "Cel");
    double temp = t->readings()->Get(0)->value_as_DoubleValue()->v();
    EXPECT_GT(temp, 15.0);
    EXPECT_LT(temp, 27.0);
    EXPECT_EQ(t->readings()->Get(1)->unit()->str(), "%");
    double hum = t->readings()->Get(1)->value_as_DoubleValue()->v();
    EXPECT_GT(hum, 30.0);
    EXPECT_LT(hum, 60.0);

    starling_shim_kv on{"on", {}};
    on.value.type = STARLING_SHIM_VALUE_BOOL;
    on.value.as.b = true;
    sim.command(1, "set-led", &on, 1);
    auto r1 = sim.next(STARLING_SHIM_MSG_COMMAND_RESULT);
    ASSERT_TRUE(r1);
    EXPECT_EQ(result_of(*r1)->id(), 1u);
    EXPECT_EQ(result_of(*r1)->status(), fb::CommandStatus::ok);
    ASSERT_NE(result_of(*r1)->outputs(), nullptr);
    EXPECT_TRUE(result_of(*r1)->outputs()->Get(0)->value_as_BoolValue()->v());

    starling_shim_kv ms{"ms", {}};
    ms.value.type = STARLING_SHIM_VALUE_INT;
    ms.value.as.i = 5; // below the minimum
    sim.command(2, "set-interval", &ms, 1);
    auto r2 = sim.next(STARLING_SHIM_MSG_COMMAND_RESULT);
    ASSERT_TRUE(r2);
    EXPECT_EQ(result_of(*r2)->status(), fb::CommandStatus::bad_arguments);

    ms.value.as.i = 150;
    sim.command(3, "set-interval", &ms, 1);
    auto r3 = sim.next(STARLING_SHIM_MSG_COMMAND_RESULT);
    ASSERT_TRUE(r3);
    EXPECT_EQ(result_of(*r3)->status(), fb::CommandStatus::ok);
    EXPECT_EQ(result_of(*r3)->outputs()->Get(0)->value_as_IntValue()->v(), 150);

    sim.command(4, "reboot", nullptr, 0);
    auto r4 = sim.next(STARLING_SHIM_MSG_COMMAND_RESULT);
    ASSERT_TRUE(r4);
    EXPECT_EQ(result_of(*r4)->status(), fb::CommandStatus::unknown_command);

    // Acknowledge batches as they come; the sensor exits after 3 acknowledged.
    uint32_t last = t->seq();
    sim.ack(last);
    int status = -1;
    for (int i = 0; i < 10 && status < 0; ++i) {
        auto more = sim.next(STARLING_SHIM_MSG_TELEMETRY, std::chrono::seconds(2));
        if (more) {
            last = fb::GetTelemetry(more->payload.data())->seq();
            sim.ack(last);
        }
        status = sim.exit_status_within(std::chrono::milliseconds(more ? 0 : 500));
    }
    if (status < 0) {
        status = sim.exit_status_within(std::chrono::seconds(3));
    }
    EXPECT_EQ(status, 0);
}

} // namespace
