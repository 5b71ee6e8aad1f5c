#!/usr/bin/env python3
"""Writes the XML benchmark corpus: one client-to-server XMPP stream (RFC 6120).

The stream is a complete document: an XML declaration, the <stream:stream> header, a mix of
stanzas, and </stream:stream>. All three parsers in xml_bench read exactly these bytes (pugixml
parses the whole document; Starling and expat are fed 16 KiB chunks).

Mix, by stanza count (weights in MIX below):
  chat messages   Unicode bodies (Latin, Cyrillic, CJK, Arabic, emoji), the five predefined
                  entities and character references, <thread>, XEP-0085 chat states
  presence        XEP-0115 caps, XEP-0203 delay, show/status/priority
  PubSub publish  XEP-0060 IQ set carrying a sensor reading payload (nested, many attributes)
  roster push     RFC 6121 IQ set with an item, name (escaped) and groups

Only restricted XML (RFC 6120 §11.1): no comments, PIs, DTD or entities beyond the predefined
five and character references. Fixed seed and the standard library only, so the output is
byte-identical from run to run.

Usage: gen_corpus.py OUTPUT [--bytes N] [--seed S]
"""

import argparse
import random
import sys

DOMAIN = "fleet.example.net"
PUBSUB = "pubsub." + DOMAIN

USERS = ["alice", "bob", "carol", "dmitri", "eun-ji", "farid", "greta", "hiro", "ines",
         "jonas", "kasia", "li.wei", "mateo", "nadia", "oskar", "priya"]
RESOURCES = ["phone", "laptop", "desk", "tablet-4f2a", "conversations.Xk3p", "gajim.91AB"]
DEVICES = ["thermo-%04d" % i for i in range(1, 400)]

BODIES = [
    "On my way, see you in ten minutes.",
    "Did the firmware update on the north gateway finish?",
    "Grüße aus München! Die Sensoren im Keller melden 14,2 °C.",
    "Привет! Датчик влажности снова офлайн, проверишь?",
    "こんにちは、温度センサーの値が正常に戻りました。",
    "温度正常，湿度偏高，请检查通风系统。",
    "مرحبا، هل وصلت الشحنة إلى المستودع؟",
    "Ça marche, je redémarre la passerelle à 18 h.",
    "Battery at 12% 🔋 on unit 7, swapping it now 🛠️",
    "Threshold check: if temp &lt; 5 &amp;&amp; humidity &gt; 80 then alert",
    "He said &quot;reboot it&quot; and it&apos;s been fine since.",
    "Price is 20&#8364; per unit &#x2014; ok for 500 pcs?",
    "Smiley test &#x1F600; and é&#233; and tab&#9;separated",
    "Meeting moved to Thursday 10:30 (room Ærø 2)",
    "Can you send me the log for gateway-eu-3? The one from last night.",
    "ok",
    "👍",
    "Yes, confirmed. Closing the ticket. Thanks for the quick turnaround on this one, "
    "it saved us a truck roll to the site.",
]

STATUSES = ["Working from home", "In a meeting", "On call until 18:00 📟", "Im Urlaub bis Montag",
            "Out &amp; about", "Driving, reply later", "", "Available"]
SHOWS = [None, None, "away", "xa", "dnd", "chat"]
CAPS_NODES = ["https://conversations.im", "https://gajim.org", "http://psi-im.org",
              "https://starling.example/agent"]
GROUPS = ["Friends", "Work", "Ops on-call", "Familie", "同事", "Sensors &amp; Gateways"]
NAMES = ["Alice Liddell", "Bob O&apos;Neil", "Carol &amp; Dave", "Дмитрий", "은지", "فريد",
         "Greta Müller", "裕 (Hiro)"]
QUANTITIES = [("temperature", "Cel", -20.0, 45.0), ("humidity", "%RH", 5.0, 99.0),
              ("pressure", "hPa", 950.0, 1050.0), ("co2", "ppm", 380.0, 2400.0),
              ("battery", "V", 2.7, 4.2)]


class Gen:
    def __init__(self, seed):
        self.r = random.Random(seed)
        self.ids = 0

    def hexid(self, n):
        return "".join(self.r.choice("0123456789abcdef") for _ in range(n))

    def b64(self, n):
        a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
        return "".join(self.r.choice(a) for _ in range(n))

    def sid(self):
        self.ids += 1
        return "%s-%d" % (self.hexid(8), self.ids)

    def full_jid(self):
        return "%s@%s/%s" % (self.r.choice(USERS), DOMAIN, self.r.choice(RESOURCES))

    def stamp(self):
        r = self.r
        return "2024-%02d-%02dT%02d:%02d:%02d.%03dZ" % (
            r.randint(1, 12), r.randint(1, 28), r.randint(0, 23), r.randint(0, 59),
            r.randint(0, 59), r.randint(0, 999))

    def chat(self):
        r = self.r
        body = r.choice(BODIES)
        if r.random() < 0.3:
            body = body + " " + r.choice(BODIES)
        parts = ["<message type='chat' id='%s' to='%s' from='%s' xml:lang='%s'>"
                 % (self.sid(), self.full_jid(), self.full_jid(), r.choice(["en", "de", "ru", "ja"])),
                 "<body>%s</body>" % body]
        if r.random() < 0.7:
            parts.append("<thread>%s</thread>" % self.hexid(32))
        parts.append("<active xmlns='http://jabber.org/protocol/chatstates'/>")
        if r.random() < 0.5:
            parts.append("<request xmlns='urn:xmpp:receipts'/>")
        if r.random() < 0.3:
            parts.append("<origin-id xmlns='urn:xmpp:sid:0' id='%s'/>" % self.hexid(24))
        parts.append("</message>")
        return "".join(parts)

    def presence(self):
        r = self.r
        parts = ["<presence from='%s' to='%s@%s' id='%s'>"
                 % (self.full_jid(), r.choice(USERS), DOMAIN, self.sid())]
        show = r.choice(SHOWS)
        if show:
            parts.append("<show>%s</show>" % show)
        status = r.choice(STATUSES)
        if status:
            parts.append("<status>%s</status>" % status)
        parts.append("<priority>%d</priority>" % r.choice([0, 1, 5, 10, 50]))
        parts.append("<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='%s' ver='%s='/>"
                     % (r.choice(CAPS_NODES), self.b64(27)))
        if r.random() < 0.4:
            parts.append("<delay xmlns='urn:xmpp:delay' from='%s' stamp='%s'>Offline storage</delay>"
                         % (DOMAIN, self.stamp()))
        parts.append("</presence>")
        return "".join(parts)

    def publish(self):
        r = self.r
        dev = r.choice(DEVICES)
        site = r.choice(["eu-1", "eu-3", "us-2", "ap-1"])
        readings = []
        for q, unit, lo, hi in r.sample(QUANTITIES, r.randint(2, 5)):
            readings.append("<value quantity='%s' unit='%s' quality='%s'>%.2f</value>"
                            % (q, unit, r.choice(["good", "good", "good", "uncertain"]),
                               r.uniform(lo, hi)))
        samples = []
        if r.random() < 0.4:
            for _ in range(r.randint(4, 12)):
                samples.append("<s t='%d' v='%.3f'/>" % (r.randint(0, 59999), r.uniform(0, 100)))
            samples = ["<series interval='PT5S'>"] + samples + ["</series>"]
        return ("<iq type='set' from='%s@%s/sensor' to='%s' id='%s'>"
                "<pubsub xmlns='http://jabber.org/protocol/pubsub'>"
                "<publish node='sites/%s/%s/readings'><item id='%s'>"
                "<reading xmlns='urn:starling:sensor:1' device='%s' seq='%d' ts='%s'>"
                "%s%s<location lat='%.5f' lon='%.5f'/></reading>"
                "</item></publish>"
                "<publish-options><x xmlns='jabber:x:data' type='submit'>"
                "<field var='FORM_TYPE' type='hidden'>"
                "<value>http://jabber.org/protocol/pubsub#publish-options</value></field>"
                "<field var='pubsub#persist_items'><value>true</value></field>"
                "</x></publish-options>"
                "</pubsub></iq>"
                % (dev, DOMAIN, PUBSUB, self.sid(), site, dev, self.hexid(16), dev,
                   r.randint(1, 10 ** 7), self.stamp(), "".join(readings), "".join(samples),
                   r.uniform(-60, 70), r.uniform(-180, 180)))

    def roster_push(self):
        r = self.r
        groups = "".join("<group>%s</group>" % g for g in r.sample(GROUPS, r.randint(0, 2)))
        return ("<iq type='set' to='%s' id='%s'><query xmlns='jabber:iq:roster' ver='ver%d'>"
                "<item jid='%s@%s' name='%s' subscription='%s'>%s</item></query></iq>"
                % (self.full_jid(), self.sid(), r.randint(1, 99999), r.choice(USERS), DOMAIN,
                   r.choice(NAMES), r.choice(["both", "to", "from", "none"]), groups))


MIX = [("chat", 45), ("presence", 30), ("publish", 17), ("roster_push", 8)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("output")
    ap.add_argument("--bytes", type=int, default=4 * 1000 * 1000,
                    help="approximate corpus size (default 4 MB)")
    ap.add_argument("--seed", type=int, default=20240602)
    args = ap.parse_args()

    g = Gen(args.seed)
    kinds = [k for k, _ in MIX]
    weights = [w for _, w in MIX]
    out = ["<?xml version='1.0'?>",
           "<stream:stream from='%s' to='%s' version='1.0' xml:lang='en' "
           "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
           % ("alice@" + DOMAIN, DOMAIN)]
    size = sum(len(s.encode()) for s in out)
    counts = dict.fromkeys(kinds, 0)
    while size < args.bytes:
        kind = g.r.choices(kinds, weights)[0]
        s = getattr(g, kind)()
        counts[kind] += 1
        out.append(s)
        size += len(s.encode())
    out.append("</stream:stream>")
    data = "".join(out).encode("utf-8")
    with open(args.output, "wb") as f:
        f.write(data)
    total = sum(counts.values())
    print("gen_corpus: %s: %d bytes, %d stanzas (%s)" % (
        args.output, len(data), total, ", ".join("%s %d" % kv for kv in counts.items())),
        file=sys.stderr)


if __name__ == "__main__":
    main()
