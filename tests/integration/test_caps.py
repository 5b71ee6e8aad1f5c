"""XEP-0115 entity capabilities of the server: after authentication the stream features carry
<c hash='sha-1' node ver/>; ver is the XEP-0115 §5.1 hash of what disco#info on node#ver
returns, so a client can cache the server's features across logins."""
import base64
import hashlib
import re

import harness
from harness import unique

DISCO = "http://jabber.org/protocol/disco#info"


async def test_stream_features_carry_caps_that_match_disco(t):
    s = await t.shared_server()
    user = unique("caps")
    s.add_user(user, "pw")
    r = await t.raw(s.tls_port, tls=True)
    await r.open_stream()
    assert await r.auth_plain(user, "pw") == "success"
    features = await r.open_stream()
    m = re.search(r"<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='([^']+)' ver='([^']+)'/>",
                  features)
    assert m, f"no caps in the features after authentication: {features}"
    node, ver = m.group(1), m.group(2)
    await r.send("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
    await r.expect(r"<iq[^>]*id='b'[^>]*>.*?</iq>")

    await r.send(f"<iq type='get' id='d' to='{s.domain}'><query xmlns='{DISCO}' node='{node}#{ver}'/></iq>")
    info = await r.expect(r"<iq[^>]*id='d'[^>]*>.*?</iq>")
    assert "type='result'" in info, info
    identities = re.findall(r"<identity category='([^']*)' type='([^']*)'(?: name='([^']*)')?/>", info)
    features_ = re.findall(r"<feature var='([^']*)'/>", info)
    assert identities and features_, info
    # XEP-0115 §5.1: identities "category/type/lang/name<", then features "var<", each sorted.
    text = "".join(sorted(f"{c}/{ty}//{n}<" for c, ty, n in identities))
    text += "".join(f + "<" for f in sorted(features_))
    expected = base64.b64encode(hashlib.sha1(text.encode()).digest()).decode()
    assert ver == expected, f"ver {ver} != hash of disco {expected}"
    t.note(f"ver {ver} over {len(features_)} features")

    # A node we never advertised is unknown.
    await r.send(f"<iq type='get' id='e' to='{s.domain}'><query xmlns='{DISCO}' node='{node}#bogus'/></iq>")
    assert "item-not-found" in await r.expect(r"<iq[^>]*id='e'[^>]*>.*?</iq>")


if __name__ == "__main__":
    harness.main(globals())
