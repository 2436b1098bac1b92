#!/usr/bin/env python3
"""check_protocol_vectors.py — an independent decoder of protocol v1, written
from docs/protocol.md alone (Python + the `cryptography` package), run over
tests/vectors/protocol-v1.json: every positive vector must decode to exactly
its plaintext and every key schedule value must match. It shares no code with
the C implementation, so it checks that the document is enough to implement
the protocol. Negative vectors must fail here too (any error).

usage: check_protocol_vectors.py [protocol-v1.json]
"""
import base64
import hashlib
import hmac
import json
import struct
import sys

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PLAIN = {
    "chat.completions": (
        {"max_completion_tokens", "max_tokens", "model", "n", "stream", "stream_options"},
        {"id", "usage"},
    ),
    "completions": (
        {"max_completion_tokens", "max_tokens", "model", "n", "stream", "stream_options"},
        {"id", "usage"},
    ),
    "embeddings": ({"model"}, {"id", "usage"}),
}


class Reject(Exception):
    pass


def b64u_dec(s):
    if "=" in s:
        raise Reject("padding")
    raw = base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != s:
        raise Reject("non-canonical base64url")
    return raw


def hkdf_extract(salt, ikm):
    return hmac.new(salt, ikm, hashlib.sha256).digest()


def hkdf_expand32(prk, info):
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()


def key_id(k):
    return base64.urlsafe_b64encode(hashlib.sha256(b"confide/v1 key-id" + k).digest()[:16]).rstrip(b"=").decode()


WS = " \t\r\n"


def members(text):
    """Top-level members of one JSON object: (name, value_start, value_end,
    name_start) with raw spans, via the stdlib decoder for each value."""
    dec = json.JSONDecoder()
    i = 0
    while text[i] in WS:
        i += 1
    if text[i] != "{":
        raise Reject("not an object")
    i += 1
    out = []
    while True:
        while text[i] in WS:
            i += 1
        if text[i] == "}" and not out:
            i += 1
            break
        ns = i
        name, i = dec.raw_decode(text, i)
        if "\\" in text[ns:i]:
            raise Reject("escaped name")
        while text[i] in WS:
            i += 1
        assert text[i] == ":"
        i += 1
        while text[i] in WS:
            i += 1
        vs = i
        _, i = dec.raw_decode(text, i)
        out.append((name, vs, i, ns))
        while text[i] in WS:
            i += 1
        if text[i] == ",":
            i += 1
            continue
        if text[i] == "}":
            i += 1
            break
        raise Reject("bad object")
    if text[i:].strip(WS):
        raise Reject("trailing data")
    names = [m[0] for m in out]
    if len(set(names)) != len(names):
        raise Reject("duplicate_key")
    return out


def u16(n):
    return struct.pack(">H", n)


def u32(n):
    return struct.pack(">I", n)


def digest(direction, endpoint, status, frame, event, text, mems, plain_set):
    h = hashlib.sha256()
    h.update(b"confide/v1 plain" + bytes([direction]))
    h.update(u16(len(endpoint)) + endpoint.encode())
    h.update(u16(status) + bytes([frame]) + u16(len(event)) + event)
    plain = sorted(((m[0].encode(), text[m[1]:m[2]].encode()) for m in mems if m[0] in plain_set))
    h.update(u32(len(plain)))
    for n, v in plain:
        h.update(u16(len(n)) + n + u32(len(v)) + v)
    return h.digest()


def open_message(key, direction, endpoint, status, frame, event, text, kid, salt, seq, mode):
    """Returns (plaintext text, values used, done_announced)."""
    plain_set = PLAIN[endpoint][0 if direction == 1 else 1]
    mems = members(text)
    d = digest(direction, endpoint, status, frame, event, text, mems, plain_set)
    enc = sorted((m for m in mems if m[0] not in plain_set), key=lambda m: m[0].encode())
    if not enc:
        raise Reject("plaintext_field")
    aead = AESGCM(key)
    repl = {}
    finals = []
    done = False
    for i, (name, vs, ve, ns) in enumerate(enc):
        raw = text[vs:ve]
        if not raw.startswith('"cf1') or raw[4] not in "nf" or raw[5] != ":":
            raise Reject("plaintext_field")
        _, k_id, s_b64, ct_b64 = raw[1:-1].split(":")
        if k_id != kid or b64u_dec(s_b64) != salt:
            raise Reject("bad_ciphertext")
        final = raw[4] == "f"
        finals.append(final)
        aad = b"confide/v1" + bytes([direction]) + struct.pack(">Q", seq + i) + bytes([final])
        aad += u16(len(name.encode())) + name.encode() + d
        nonce = b"\0\0\0\0" + struct.pack(">Q", seq + i)
        try:
            pt = aead.decrypt(nonce, b64u_dec(ct_b64), aad)
        except Exception:
            raise Reject("auth_failed")
        if name == "confide":
            if pt not in (b"", b"[DONE]"):
                raise Reject("bad_ciphertext")
            done = pt == b"[DONE]"
            repl[vs] = None
        else:
            repl[vs] = pt.rstrip(b" ").decode()
    if mode == "last" and (not finals[-1] or any(finals[:-1])):
        raise Reject("truncated")
    if mode == "none" and any(finals):
        raise Reject("bad_ciphertext")
    # splice (the synthetic member goes with its joining comma)
    out, pos = [], 0
    for idx, (name, vs, ve, ns) in enumerate(mems):
        if vs not in repl:
            continue
        if repl[vs] is None:
            if idx > 0:
                s = mems[idx - 1][2]
                e = ve
            elif len(mems) > 1:
                s, e = ns, mems[1][3]
            else:
                s, e = ns, ve
            out.append(text[pos:s])
            pos = e
        else:
            out.append(text[pos:vs] + repl[vs])
            pos = ve
    out.append(text[pos:])
    return "".join(out), len(enc), done


def sse_events(stream):
    """Minimal SSE split for streams written with LF line ends."""
    for block in stream.split("\n\n")[:-1] if stream.endswith("\n\n") else stream.split("\n\n"):
        ev_type, data = "", []
        for line in block.split("\n"):
            if line.startswith("event: "):
                ev_type = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
        yield ev_type, "\n".join(data), stream.endswith("\n\n")


def salt_of(text):
    for name, vs, ve, ns in members(text):
        raw = text[vs:ve]
        if raw.startswith('"cf1'):
            parts = raw[1:-1].split(":")
            return parts[1], b64u_dec(parts[2])
    raise Reject("plaintext_field")


def run(vec, secret):
    kind, ep = vec["kind"], vec["endpoint"]
    if kind == "request":
        kid, salt = salt_of(vec["encrypted"])
        if kid != key_id(secret):
            raise Reject("unknown_key")
        t = struct.unpack(">Q", salt[:8])[0]
        if abs(vec["now_ms"] - t) > 300000:
            raise Reject("stale_request")
    else:
        kid, salt = salt_of(vec["encrypted_request"])
    prk = hkdf_extract(salt, secret)
    k_req = hkdf_expand32(prk, b"confide/v1 request")
    k_resp = hkdf_expand32(prk, b"confide/v1 response")
    if salt == b64u_dec(vec["salt"]):
        assert prk.hex() == vec["prk"] and k_req.hex() == vec["k_req"] and k_resp.hex() == vec["k_resp"]
    if kind == "request":
        return open_message(k_req, 1, ep, 0, 0, b"", vec["encrypted"], kid, salt, 0, "last")[0]
    if kind == "response":
        return open_message(k_resp, 2, ep, vec["status"], 0, b"", vec["encrypted"], kid, salt, 0, "last")[0]
    out, seq, final, done_announced, done = [], 0, False, False, False
    for ev_type, data, _ in sse_events(vec["encrypted"]):
        if data == "[DONE]":
            if not final:
                raise Reject("truncated")
            if not done_announced:
                raise Reject("bad_ciphertext")
            out.append("data: [DONE]\n\n")
            done = True
            continue
        if final:
            raise Reject("bad_ciphertext")
        mems = members(data)
        is_final = len(mems) == 1 and mems[0][0] == "confide" and data[mems[0][1]:].startswith('"cf1f')
        text, n, ann = open_message(k_resp, 2, ep, vec["status"], 1, ev_type.encode(), data, kid, salt, seq,
                                    "marker" if is_final else "none")
        seq += n
        if is_final:
            final, done_announced = True, ann
        else:
            out.append(("event: %s\n" % ev_type if ev_type else "") +
                       "".join("data: %s\n" % line for line in text.split("\n")) + "\n")
    if not final or (done_announced and not done):
        raise Reject("truncated")
    return "".join(out)


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "tests/vectors/protocol-v1.json"
    doc = json.load(open(path))
    secret = b64u_dec(doc["secret"])
    assert key_id(secret) == doc["key_id"]
    pos = neg = 0
    for vec in doc["vectors"]:
        try:
            got = run(vec, secret)
            ok = True
        except Reject as e:
            got, ok = str(e), False
        if vec["expect"] == "ok":
            if not ok or got != vec["plain"]:
                sys.exit("FAIL %s: %s" % (vec["name"], got if not ok else "plaintext differs"))
            pos += 1
        else:
            if ok:
                sys.exit("FAIL %s: decoded, expected %s" % (vec["name"], vec["expect"]))
            neg += 1
    print("independent decoder: %d positive vectors decoded, %d negative vectors rejected" % (pos, neg))


if __name__ == "__main__":
    main()
