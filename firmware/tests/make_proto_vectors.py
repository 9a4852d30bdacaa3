"""tests/vectors/protocol.json -> a C header of the same vectors, for test_proto.c."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def carray(name: str, data: bytes) -> str:
    body = ", ".join(f"0x{b:02x}" for b in data) or "0"
    return f"static const uint8_t {name}[] = {{{body}}};\n"


def main(src: str, dst: str) -> None:
    d = json.loads(Path(src).read_text())
    out = ["/* Generated from tests/vectors/protocol.json by make_proto_vectors.py. */\n",
           "#include <stdint.h>\n\n",
           "typedef struct { const char *name; uint8_t type; uint16_t seq; const uint8_t *payload;"
           " uint32_t payload_len; const uint8_t *wire; uint32_t wire_len; } frame_vec;\n",
           "typedef struct { const char *name; uint8_t code; uint16_t seq; const uint8_t *wire;"
           " uint32_t wire_len; } reject_vec;\n\n"]
    rows = []
    for i, f in enumerate(d["frames"]):
        p, w = bytes.fromhex(f["payload_hex"]), bytes.fromhex(f["wire_hex"])
        out.append(carray(f"f{i}_payload", p))
        out.append(carray(f"f{i}_wire", w))
        rows.append(f'    {{"{f["name"]}", {f["type"]}, {f["seq"]}, f{i}_payload, {len(p)}u, f{i}_wire, {len(w)}u}},')
    out.append("static const frame_vec frames[] = {\n" + "\n".join(rows) + "\n};\n\n")
    rows = []
    for i, r in enumerate(d["rejects"]):
        w = bytes.fromhex(r["wire_hex"])
        out.append(carray(f"r{i}_wire", w))
        rows.append(f'    {{"{r["name"]}", {r["code"]}, {r["seq"]}, r{i}_wire, {len(w)}u}},')
    out.append("static const reject_vec rejects[] = {\n" + "\n".join(rows) + "\n};\n")
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    Path(dst).write_text("".join(out))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
