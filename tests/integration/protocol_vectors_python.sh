#!/usr/bin/env bash
# An independent Python decoder written from docs/protocol.md alone must
# agree with every committed protocol v1 vector (see the script's header).
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
python3 -c 'import cryptography' 2>/dev/null || { echo "python3-cryptography missing: run scripts/deps.sh"; exit 1; }
exec python3 "$root/tests/vectors/check_protocol_vectors.py" "$root/tests/vectors/protocol-v1.json"
