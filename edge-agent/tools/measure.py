#!/usr/bin/env python3
"""Measures starling-agent on this machine against a real starlingd on loopback (STARTTLS,
SCRAM-SHA-256, XEP-0198): time from start to the first acknowledged publish, RSS while
publishing 100 readings/s, and the readings/s one agent sustains over TLS.

    STARLING_BUILD_DIR=$PWD/build/release /usr/bin/python3 edge-agent/tools/measure.py [--seconds 10]

Prints one line per measurement; edge-agent/README.md "Measured" records the results."""
import argparse
import asyncio
import os
import re
import sys
import time

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "..", "tests", "integration"))
import harness  # noqa: E402
from agent_support import Agent  # noqa: E402


def add_sources(agent, n):
    with open(agent.config_path, "a") as f:
        for i in range(n):
            agent.write_sensor(f"s{i}", 1000 + i)
            f.write(f'[[source.file]]\nname = "s{i}"\npath = "{agent.sensor(f"s{i}")}"\n')


async def run(seconds):
    server = harness.Starling()
    await server.start()
    try:
        user = harness.unique("m")
        server.add_user(user, "secret")
        # 1. start to first acknowledged publish
        a = Agent(server, user, "secret", device=user, interval_ms=10)
        add_sources(a, 1)
        t0 = time.monotonic()
        await a.start()
        line = await a.wait_log(r"event=publish\.first_acked since_start_ms=\d+", timeout=10)
        wall = (time.monotonic() - t0) * 1000
        print(f"first acked publish: {line.split('=')[-1]} ms after start (agent's clock), "
              f"{wall:.0f} ms wall incl. process start")
        # 2. RSS at 100 readings/s (one file source, 10 ms interval)
        await asyncio.sleep(seconds)
        st = a.status()
        rss = harness.rss_kib(a.proc.pid)
        print(f"100 readings/s for {seconds}s: VmRSS {rss['VmRSS']} KiB, VmHWM {rss['VmHWM']} KiB, "
              f"published {st['published']}, queue_depth {st['queue_depth']}")
        await a.stop()
        a.cleanup()
        # 3. throughput: N sources x 100 batches/s, how many readings/s get acknowledged
        for n, fsync_always in ((50, True), (100, True), (200, True), (200, False)):
            user = harness.unique("m")
            server.add_user(user, "secret")
            a = Agent(server, user, "secret", device=user, interval_ms=10,
                      extra="max_readings_per_batch = 1000\n")
            if fsync_always:  # the default; the tests' helper writes "never"
                with open(a.config_path) as f:
                    text = f.read()
                with open(a.config_path, "w") as f:
                    f.write(text.replace('fsync = "never"', 'fsync = "always"'))
            add_sources(a, n)
            await a.start()
            await a.wait_status(lambda st: st["state"] == "online" and int(st["published"]) > 0, what="online")
            st0, t1 = a.status(), time.monotonic()
            await asyncio.sleep(seconds)
            st1, t2 = a.status(), time.monotonic()
            rate = (int(st1["published"]) - int(st0["published"])) * n / (t2 - t1)
            offered = (int(st1["readings"]) - int(st0["readings"])) / (t2 - t1)
            rss = harness.rss_kib(a.proc.pid)
            print(f"{n} readings per batch, fsync {'always' if fsync_always else 'never'}: offered {offered:.0f}/s, acknowledged {rate:.0f} readings/s, "
                  f"queue_depth {st1['queue_depth']}, VmHWM {rss['VmHWM']} KiB")
            await a.stop()
            a.cleanup()
    finally:
        await server.stop()
        server.cleanup()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=10)
    asyncio.run(run(p.parse_args().seconds))
