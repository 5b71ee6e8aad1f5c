#!/usr/bin/env python3
"""Smoke test of the arm64 starling-agent under qemu-user (issue 12) against the host's
starlingd: the cross-built binary (really aarch64) connects over STARTTLS, publishes the readings
of a file source and of a program source, each batch is acknowledged and on the node, and an
operator runs a `program` command (the child process path that hung under qemu with fork()).
scripts/test.sh builds build/arm64 and runs it as

    STARLING_AGENT_BINARY=$PWD/build/arm64/edge-agent/starling-agent \\
    STARLING_AGENT_EMULATOR="qemu-aarch64 -L /usr/aarch64-linux-gnu" \\
      tests/integration/run.sh build/release "$PWD/tests/cross/test_agent_qemu.py"
"""
import asyncio
import os
import sys
from xml.etree import ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import harness  # noqa: E402
from agent_support import NS_CMD, Agent, all_items, item_seq, readings_of, run_command  # noqa: E402

EM_AARCH64 = 183

SOURCES = """[[source.file]]
name = "board.temp"
path = "{path}"
scale = 0.001
unit = "Cel"

[[source.program]]
name = "prog"
argv = ["/bin/sh", "-c", "echo load 7 %"]

[[command]]
name = "say"
kind = "program"
argv = ["/bin/echo", "arm64 says", "{{word}}"]
args = [{{ name = "word", type = "string", max_len = 16 }}]
"""


def elf_machine(path: str) -> int:
    with open(path, "rb") as f:
        head = f.read(20)
    assert head[:4] == b"\x7fELF", f"{path} is not an ELF file"
    return int.from_bytes(head[18:20], "little")


@harness.timeout(90)
async def test_arm64_agent_under_qemu_publishes_and_runs_a_program_command(t):
    binary = os.environ.get("STARLING_AGENT_BINARY", "")
    emulator = os.environ.get("STARLING_AGENT_EMULATOR", "")
    assert binary and emulator, "set STARLING_AGENT_BINARY (the arm64 build) and STARLING_AGENT_EMULATOR (qemu-aarch64 -L ...)"
    assert elf_machine(binary) == EM_AARCH64, f"{binary} is not an aarch64 binary"
    server = await t.server()
    dev, op = await t.users(server, 2, prefix="aq")
    agent = Agent(server, dev, "secret", device=dev, interval_ms=200, operators=(f"{op}@localhost",))
    try:
        assert agent.cmd[0].startswith("qemu-aarch64"), agent.cmd
        agent.write_sensor("temp1_input", 21500)
        with open(agent.config_path, "a") as f:
            f.write(SOURCES.format(path=agent.sensor("temp1_input")))
        await agent.start()
        st = await agent.wait_status(lambda s: s["state"] == "online" and int(s["published"]) >= 5, timeout=30,
                                     what="online with 5 acknowledged publishes")
        assert st["jid"] == f"{agent.jid}/agent", st
        await agent.wait_log(r"event=publish\.first_acked")

        c = await t.client(server, op, "secret")
        c.xmpp.register_plugin("xep_0060")
        items = await all_items(c.xmpp["xep_0060"], agent.node)
        assert len(items) >= 5, items
        seqs = sorted(item_seq(i) for i, _ in items)
        assert seqs[:5] == [1, 2, 3, 4, 5], seqs
        names = set()
        for _, payload in items:
            for n, v, u, _t in readings_of(payload):
                names.add(n)
                if n == "board.temp":
                    assert (v, u) == (21.5, "Cel")
                if n == "prog.load":
                    assert (v, u) == (7.0, "%")
        assert names == {"board.temp", "prog.load"}, names

        done = await run_command(c, f"{agent.jid}/agent", "say", {"word": "hello"})
        assert done.get("status") == "completed", ET.tostring(done)
        note = done.find(f"{{{NS_CMD}}}note")
        assert note.get("type") == "info" and note.text == "arm64 says hello", ET.tostring(done)
        await agent.stop(timeout=15)
    finally:
        agent.cleanup()


if __name__ == "__main__":
    harness.main(globals())
