#!/usr/bin/python3
"""Writes Prosody 0.12 mod_auth_internal_hashed account files for PREFIX1..PREFIXN@DOMAIN.

One file per account, DATA_DIR/<host>/accounts/<user>.dat, in the shape Prosody's own
util.serialization writes: SCRAM-SHA-1 stored_key/server_key (hex), salt, iteration_count.
The PBKDF2 runs once: every account gets the same salt, which the server cannot tell from
per-user salts and which costs it the same PBKDF2 per PLAIN login (4096 iterations, like
Starling's and ejabberd's defaults). 100,000 accounts take a few seconds.
"""
import argparse, hashlib, hmac, os, uuid


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--domain", default="localhost")
    ap.add_argument("--users", type=int, required=True)
    ap.add_argument("--prefix", default="user")
    ap.add_argument("--password", default="pass")
    ap.add_argument("--first", type=int, default=1)
    ap.add_argument("--iterations", type=int, default=4096)
    a = ap.parse_args()

    salt = str(uuid.uuid4())
    salted = hashlib.pbkdf2_hmac("sha1", a.password.encode(), salt.encode(), a.iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha1).digest()
    stored_key = hashlib.sha1(client_key).hexdigest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha1).hexdigest()
    body = ('return {\n\t["iteration_count"] = %d;\n\t["salt"] = "%s";\n'
            '\t["server_key"] = "%s";\n\t["stored_key"] = "%s";\n};\n'
            % (a.iterations, salt, server_key, stored_key)).encode()

    # Prosody's util.datamanager encode(): every non-alphanumeric byte becomes %xx (lower case).
    enc = lambda s: "".join(c if c.isascii() and c.isalnum() else "%%%02x" % ord(c) for c in s)
    d = os.path.join(a.data_dir, enc(a.domain), "accounts")
    os.makedirs(d, exist_ok=True)
    for i in range(a.first, a.first + a.users):
        with open(os.path.join(d, enc(f"{a.prefix}{i}".lower()) + ".dat"), "wb") as f:
            f.write(body)


if __name__ == "__main__":
    main()
