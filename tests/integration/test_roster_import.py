"""starlingctl roster import: a fleet operator provisions device and operator rosters on the
stopped broker; after the start every device sees its contacts with the imported subscription
and presence flows between them without any subscription handshake."""
import harness
from harness import ServerFailed
from test_roster import peer, roster_get


async def test_imported_rosters_give_presence_without_handshakes(t):
    s = await t.server()
    op, dev = await t.users(s, 2, "fleet")
    await s.stop()
    lines = (f"# operator and device\n"
             f"{s.jid(op)},{s.jid(dev)},both,Sensor 1\n"
             f"{s.jid(dev)},{s.jid(op)},both\n")
    out = s.ctl("roster", "import", "-", stdin=lines)
    assert "imported 2 roster items for 2 accounts" in out, out
    s2 = await t.server(data_dir=s.data_dir)

    operator = await peer(t, s2, op, resource="console")
    _, items = await roster_get(operator)
    item = items.get(s2.jid(dev))
    assert item and item["subscription"] == "both" and item.get("name") == "Sensor 1", items

    device = await peer(t, s2, dev, resource="board")
    # The device's initial presence reaches the operator (from/both), with no subscribe first.
    await operator.wait_presence(lambda p: str(p["from"]).startswith(s2.jid(dev)) and p["type"] == "available",
                                 what="the device's presence")
    _, dev_items = await roster_get(device)
    assert dev_items[s2.jid(op)]["subscription"] == "both", dev_items


async def test_bad_line_imports_nothing_and_running_broker_is_refused(t):
    s = await t.server()
    a, b = await t.users(s, 2, "bad")
    # With the broker running: refused with a clear message.
    try:
        s.ctl("roster", "import", "-", stdin=f"{s.jid(a)},{s.jid(b)},both\n")
    except ServerFailed as e:
        assert "stop starlingd first" in str(e), e
    else:
        raise AssertionError("roster import ran against a running broker")
    await s.stop()
    try:
        s.ctl("roster", "import", "-", stdin=f"{s.jid(a)},{s.jid(b)},both\n{s.jid(a)},{s.jid(b)},sometimes\n")
    except ServerFailed as e:
        assert "line 2" in str(e) and "nothing imported" in str(e), e
    else:
        raise AssertionError("a bad line was accepted")
    s2 = await t.server(data_dir=s.data_dir)
    alice = await peer(t, s2, a, resource="r")
    _, items = await roster_get(alice)
    assert items == {}, f"half an import landed: {items}"


if __name__ == "__main__":
    harness.main(globals())
