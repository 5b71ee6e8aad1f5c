#!/usr/bin/env python3
"""XEP-0050 ad-hoc commands on starling-agent (issue 12): an operator lists the device's
commands, executes one with a data form and the device side sees it (a sysfs-style file is
written; an allow-listed program runs with the validated argument); a bad argument is refused
with bad-request + bad-payload; a JID that is not an operator is refused with forbidden."""
import asyncio
import os
import sys
from xml.etree import ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from agent_support import NS_CMD, NS_DATA, Agent, iq_set, run_command, submit  # noqa: E402

from slixmpp.exceptions import IqError  # noqa: E402

NS_ITEMS = "http://jabber.org/protocol/disco#items"

COMMANDS = """[[command]]
name = "set-brightness"
title = "Set the LED brightness"
kind = "file"
path = "{path}"
args = [{{ name = "level", type = "integer", min = 0, max = 100 }}]

[[command]]
name = "say"
kind = "program"
argv = ["/bin/echo", "device says", "{{word}}"]
args = [{{ name = "word", type = "string", max_len = 16 }}]
"""


def conditions(e: IqError):
    err = e.iq.xml.find("{jabber:client}error")
    return [child.tag.split("}", 1)[1] for child in err]


async def setup(t):
    server = await t.server()
    dev, op, stranger = await t.users(server, 3, prefix="ac")
    agent = Agent(server, dev, "secret", device=dev, interval_ms=1000, operators=(f"{op}@localhost",))
    led = agent.sensor("brightness")
    with open(led, "w") as f:
        f.write("0\n")
    with open(agent.config_path, "a") as f:
        f.write(COMMANDS.format(path=led))
    await agent.start()
    await agent.wait_status(lambda st: st["state"] == "online", what="online")
    return server, agent, led, op, stranger


@harness.timeout(40)
async def test_an_operator_lists_and_executes_commands_and_the_device_sees_them(t):
    server, agent, led, op, _ = await setup(t)
    try:
        c = await t.client(server, op, "secret")
        to = f"{agent.jid}/agent"
        items = await c.iq_get(to, f"<query xmlns='{NS_ITEMS}' node='{NS_CMD}'/>")
        nodes = [i.get("node") for i in items.xml.find(f"{{{NS_ITEMS}}}query")]
        assert nodes == ["set-brightness", "say"], nodes

        done = await run_command(c, to, "set-brightness", {"level": "42"})
        assert done.get("status") == "completed", ET.tostring(done)
        with open(led) as f:
            assert f.read() == "42\n"

        done = await run_command(c, to, "say", {"word": "hello"})
        assert done.get("status") == "completed"
        note = done.find(f"{{{NS_CMD}}}note")
        assert note.get("type") == "info" and note.text == "device says hello", ET.tostring(done)

        # At the limit and one past it: 100 is fine, 101 is bad-request + bad-payload.
        assert (await run_command(c, to, "set-brightness", {"level": "100"})).get("status") == "completed"
        try:
            await run_command(c, to, "set-brightness", {"level": "101"})
            raise AssertionError("101 accepted")
        except IqError as e:
            assert e.iq["error"]["condition"] == "bad-request"
            assert "bad-payload" in conditions(e), conditions(e)
        with open(led) as f:
            assert f.read() == "100\n"
        # No shell: a word with shell syntax is refused before anything runs.
        try:
            await run_command(c, to, "say", {"word": "x;rm"})
            raise AssertionError("shell syntax accepted")
        except IqError as e:
            assert e.iq["error"]["condition"] == "bad-request"
        try:
            await iq_set(c, to, f"<command xmlns='{NS_CMD}' node='reboot' action='execute'/>")
            raise AssertionError("unknown command accepted")
        except IqError as e:
            assert e.iq["error"]["condition"] == "item-not-found"
        await agent.wait_log(r"event=command\.executed from=\S+ command=set-brightness ok=true")
        await agent.stop()
    finally:
        agent.cleanup()


@harness.timeout(40)
async def test_a_jid_that_is_not_an_operator_is_refused(t):
    server, agent, led, _, stranger = await setup(t)
    try:
        c = await t.client(server, stranger, "secret")
        to = f"{agent.jid}/agent"
        items = await c.iq_get(to, f"<query xmlns='{NS_ITEMS}' node='{NS_CMD}'/>")
        assert len(items.xml.find(f"{{{NS_ITEMS}}}query")) == 0  # nothing advertised to strangers
        try:
            await iq_set(c, to, f"<command xmlns='{NS_CMD}' node='set-brightness' action='execute'/>")
            raise AssertionError("a stranger executed a command")
        except IqError as e:
            assert e.iq["error"]["condition"] == "forbidden"
            assert e.iq["error"]["type"] == "auth"
        # Not even with a form submitted straight away.
        try:
            await iq_set(c, to, submit("set-brightness", "", {"level": "5"}).replace(" sessionid=''", ""))
            raise AssertionError("a stranger executed a command")
        except IqError as e:
            assert e.iq["error"]["condition"] == "forbidden"
        with open(led) as f:
            assert f.read() == "0\n"
        await agent.wait_log(r"event=command\.refused from=\S+ command=set-brightness")
        assert agent.status()["refused"] == "2"
        await agent.stop()
    finally:
        agent.cleanup()


if __name__ == "__main__":
    harness.main(globals())
