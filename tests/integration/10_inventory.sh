#!/bin/bash
# 10_inventory.sh - certfleet's inventory against the real ansible-inventory,
# in the same run, for every inventory in tests/inventory/corpus/: --list key
# by key, --graph as text, --host key by key; then error and usage cases.
source "$(dirname "$0")/../lib.sh"

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CORPUS=$ROOT/tests/inventory/corpus
TMP=$(mktemp -d /tmp/cf-inv-test.XXXXXX)
trap 'rm -rf "$TMP"' EXIT

# ansible-inventory: no config file, no cache or warnings outside $TMP
export ANSIBLE_HOME=$TMP/ansible-home ANSIBLE_LOCAL_TEMP=$TMP/ansible-tmp
: >"$TMP/ansible.cfg"
export ANSIBLE_CONFIG=$TMP/ansible.cfg ANSIBLE_INVENTORY_UNPARSED_WARNING=False
export ANSIBLE_LOCALHOST_WARNING=False ANSIBLE_NOCOLOR=1

if ! command -v ansible-inventory >/dev/null; then
    not_ok "ansible-inventory is installed (Debian package ansible; run make deps)"
    finish
fi

# Each corpus entry is a directory (the playbook dir both tools run in) with
# an `args` file: the -i/-e arguments, one per line, shared by both tools.
# The comparison is done in python3 (JSON semantics: numbers by value, dict
# keys unordered, lists ordered because Ansible's host and child lists are).
python3 - "$CORPUS" "$CERTFLEET" >"$TMP/results" <<'EOF'
import json, os, subprocess, sys
from concurrent.futures import ThreadPoolExecutor

corpus, certfleet = sys.argv[1], sys.argv[2]

def run(cmd, cwd):
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout, p.stderr

def diff(a, b, path, out):
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            p = path + [k]
            if k not in b:
                out.append("%s: only in ansible (%s)" % ("/".join(p), json.dumps(a[k])[:80]))
            elif k not in a:
                out.append("%s: only in certfleet (%s)" % ("/".join(p), json.dumps(b[k])[:80]))
            else:
                diff(a[k], b[k], p, out)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            diff(x, y, path + [str(i)], out)
    elif type(a) != type(b) or a != b:
        out.append("%s: ansible %s, certfleet %s" % ("/".join(path) or "(top)",
                   json.dumps(a)[:80], json.dumps(b)[:80]))

def compare_json(name, what, a, b):
    try:
        ja = json.loads(a[1])
    except ValueError:
        return ("not ok", "%s: %s" % (name, what), "ansible-inventory printed no JSON: " + a[2][-300:])
    if b[0] != 0:
        return ("not ok", "%s: %s" % (name, what), "certfleet exited %d: %s" % (b[0], b[2][-300:]))
    try:
        jb = json.loads(b[1])
    except ValueError as e:
        return ("not ok", "%s: %s" % (name, what), "certfleet printed invalid JSON: %s" % e)
    out = []
    diff(ja, jb, [], out)
    nkeys = len(ja.get("_meta", {}).get("hostvars", ja)) if isinstance(ja, dict) else 0
    if out:
        return ("not ok", "%s: %s" % (name, what), "\n".join(out[:20]))
    return ("ok", "%s: %s matches ansible-inventory key by key (%d entries)" % (name, what, nkeys), "")

def one(name):
    d = os.path.join(corpus, name)
    with open(os.path.join(d, "args")) as f:
        args = [l.rstrip("\n") for l in f if l.strip()]
    res = []
    a = run(["ansible-inventory"] + args + ["--list"], d)
    b = run([certfleet, "inventory"] + args + ["--list"], d)
    res.append(compare_json(name, "--list", a, b))
    # --graph: the same text, line for line
    ga = run(["ansible-inventory"] + args + ["--graph"], d)
    gb = run([certfleet, "inventory"] + args + ["--graph"], d)
    if ga[0] == 0 and gb[0] == 0 and ga[1] == gb[1] and ga[1].startswith("@all:"):
        res.append(("ok", "%s: --graph is identical (%d lines)" % (name, ga[1].count("\n")), ""))
    else:
        import difflib
        dd = "".join(difflib.unified_diff(ga[1].splitlines(True), gb[1].splitlines(True),
                                          "ansible", "certfleet"))
        res.append(("not ok", "%s: --graph" % name, (dd or gb[2] or ga[2])[-1500:]))
    # --host: the host with the most variables (from ansible's own list)
    try:
        hv = json.loads(a[1])["_meta"]["hostvars"]
        host = sorted(hv, key=lambda h: (-len(hv[h]), h))[0]
    except (ValueError, KeyError, IndexError):
        host = None
    if host:
        ha = run(["ansible-inventory"] + args + ["--host", host], d)
        hb = run([certfleet, "inventory"] + args + ["--host", host], d)
        res.append(compare_json(name, "--host " + host, ha, hb))
    else:
        res.append(("not ok", "%s: --host" % name, "no host with variables in ansible's --list"))
    return res

names = sorted(n for n in os.listdir(corpus) if os.path.isfile(os.path.join(corpus, n, "args")))
with ThreadPoolExecutor(max_workers=2) as ex:
    for res in ex.map(one, names):
        for status, desc, detail in res:
            print("%s\t%s\t%s" % (status, desc, detail.replace("\t", " ").replace("\n", "\\n")))
print("count\t%d\t" % len(names))
EOF

count=0
while IFS=$'\t' read -r status desc detail; do
    case $status in
    ok) ok "$desc" ;;
    "not ok") not_ok "$desc" "$(printf '%b' "$detail")" ;;
    count) count=$desc ;;
    esac
done <"$TMP/results"
[ "$count" -ge 15 ] && ok "corpus has $count inventories (at least 15)" || not_ok "corpus has at least 15 inventories" "found $count"

# ---- errors: a broken inventory stops with file:line:column and exit 2 ----
mkdir -p "$TMP/bad"
printf '[web]\nweb1\nweb2 role=x ; oops\n' >"$TMP/bad/semicolon.ini"
out=$("$CERTFLEET" inventory -i "$TMP/bad/semicolon.ini" --list 2>&1 >/dev/null); rc=$?
is "ini host line with a stray token exits 2" "$rc" 2
like "ini error names file:line:column and the token" "$out" "semicolon.ini:3:13: expected key=value host variable assignment, got ';'"

printf 'all:\n  hosts:\n    a:\n   b: [1,\n' >"$TMP/bad/broken.yml"
out=$("$CERTFLEET" inventory -i "$TMP/bad/broken.yml" --list 2>&1 >/dev/null); rc=$?
is "yaml syntax error exits 2" "$rc" 2
like "yaml syntax error has file:line:column" "$out" "broken.yml:[0-9]+:[0-9]+: "

printf '[a:children]\nmissing\n' >"$TMP/bad/children.ini"
out=$("$CERTFLEET" inventory -i "$TMP/bad/children.ini" --graph 2>&1 >/dev/null); rc=$?
is "undefined child group exits 2" "$rc" 2
like "undefined child group is named with its line" "$out" "children.ini:2:1: section \[a:children\] includes undefined group 'missing'"

mkdir -p "$TMP/bad/gv/group_vars"
printf '[web]\nw1\n' >"$TMP/bad/gv/hosts"
printf 'certbot_domains:\n  - domains: [a.example.com\n' >"$TMP/bad/gv/group_vars/web.yml"
out=$("$CERTFLEET" inventory -i "$TMP/bad/gv/hosts" --list 2>&1 >/dev/null); rc=$?
is "broken group_vars file exits 2" "$rc" 2
like "broken group_vars file is named with line and column" "$out" "group_vars/web.yml:3:1: "

out=$("$CERTFLEET" inventory -i "$TMP/bad/nonexistent" --list 2>&1 >/dev/null); rc=$?
is "missing inventory exits 2" "$rc" 2
like "missing inventory is named" "$out" "nonexistent"

# ---- usage errors: exit 2, one line naming the bad argument ----
INV=$CORPUS/04-nested-ini
out=$("$CERTFLEET" inventory -i "$INV/hosts" 2>&1); rc=$?
is "no action is a usage error (exit 2)" "$rc" 2
like "no action: message names the actions" "$out" "--list, --graph or --host"
out=$("$CERTFLEET" inventory -i "$INV/hosts" --list --graph 2>&1); rc=$?
is "two actions are a usage error" "$rc" 2
out=$("$CERTFLEET" inventory -i "$INV/hosts" --list --bogus 2>&1); rc=$?
is "unknown option exits 2" "$rc" 2
like "unknown option is named" "$out" "'--bogus'"
is "usage error is one line" "$(printf '%s\n' "$out" | wc -l)" 1
out=$("$CERTFLEET" inventory --list 2>&1); rc=$?
is "missing -i exits 2" "$rc" 2
out=$("$CERTFLEET" inventory -i "$INV/hosts" --graph nosuchgroup 2>&1); rc=$?
is "--graph with a non-group exits 2" "$rc" 2
like "--graph names the group" "$out" "'nosuchgroup' is not a group"
out=$("$CERTFLEET" inventory -i "$INV/hosts" --host nosuchhost 2>&1); rc=$?
is "--host with an unknown host exits 2" "$rc" 2
out=$("$CERTFLEET" inventory -i "$INV/hosts" -e @/nonexistent.yml --list 2>&1); rc=$?
is "-e @missing-file exits 2" "$rc" 2
like "-e @missing-file is named" "$out" "/nonexistent.yml"
out=$("$CERTFLEET" inventory --help); rc=$?
is "--help exits 0" "$rc" 0
like "--help has examples" "$out" "certfleet inventory -i inventory --graph"

# ---- limits (-l) restrict what inventory shows ----
out=$(cd "$INV" && "$CERTFLEET" inventory -i hosts -l 'europe:!berlin' --graph | grep -v '@' | sed 's/.*--//' | sort | tr '\n' ' ')
is "-l 'europe:!berlin' keeps the other european hosts" "$out" "muc1 par1 par2 "
out=$(cd "$INV" && "$CERTFLEET" inventory -i hosts -l 'germany:&~.*1' --list | python3 -c 'import json,sys; print(" ".join(sorted(json.load(sys.stdin)["_meta"]["hostvars"])))')
is "-l 'germany:&~.*1' intersects with a regex" "$out" "ber1 muc1"
out=$(cd "$INV" && "$CERTFLEET" inventory -i hosts -l 'nomatch*' --list 2>&1); rc=$?
is "a limit matching nothing exits 2" "$rc" 2
like "a limit matching nothing says so" "$out" "limit 'nomatch\*' matches no host in the inventory"

# ---- the repository's top-level layout: inventory/ + group_vars/ beside ----
if [ -d "$ROOT/inventory" ] && [ -d "$ROOT/group_vars" ]; then
    a=$(cd "$ROOT" && ansible-inventory -i inventory --list 2>/dev/null)
    b=$(cd "$ROOT" && "$CERTFLEET" inventory -i inventory --list 2>&1)
    if [ -n "$a" ] && python3 -c 'import json,sys; sys.exit(json.loads(sys.argv[1]) != json.loads(sys.argv[2]))' "$a" "$b" 2>/dev/null; then
        ok "repository inventory/ + group_vars/ match ansible-inventory"
    else
        not_ok "repository inventory/ + group_vars/ match ansible-inventory" "$(printf '%s' "$b" | head -5)"
    fi
fi

finish
