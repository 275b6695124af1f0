#!/usr/bin/env bash
# Installs the Debian packages the test suite needs (Fashion-MNIST for the accuracy tests, Chromium
# for the test that renders a run report in a real browser, PostgreSQL's server for the tuning test
# that starts a throwaway one of its own on 127.0.0.1), and
# fetches apt's package lists when they are empty (the text tests read Debian's package
# descriptions through `apt-cache dumpavail`), when this machine can: apt-get as root, or through
# password-less sudo. Otherwise it says what is missing and the tests that need it fail saying the same.
set -euo pipefail
missing=()
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || missing+=(dataset-fashion-mnist)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || command -v initdb >/dev/null 2>&1 || missing+=(postgresql)
lists_empty=false
if command -v apt-cache >/dev/null 2>&1 && [ -z "$(apt-cache dumpavail 2>/dev/null | head -c 1)" ]; then
    lists_empty=true
fi
[ ${#missing[@]} -eq 0 ] && [ "$lists_empty" = false ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
    echo "scripts/system-packages.sh: no apt-get here; install ${missing[*]:-no package} by hand (the text tests need Debian's package lists)" >&2
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
    as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
else
    echo "scripts/system-packages.sh: not root and no password-less sudo; run: sudo apt-get update && sudo apt-get install ${missing[*]:-}" >&2
    exit 0
fi
"${as_root[@]}" apt-get update -qq
if [ ${#missing[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
fi
