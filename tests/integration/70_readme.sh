#!/bin/bash
# The README's examples marked <!-- readme-test[: DIR] --> are run as
# written (from the repository root, or DIR) and must print exactly what the
# README shows, with the exit code it shows ([exit N], default 0).
source "$(dirname "$0")/../lib.sh"
cd "$CF_ROOT" || exit 1
python3 - "$CERTFLEET" <<'PY'
import re, subprocess, sys
certfleet = sys.argv[1]
text = open("README.md").read()
blocks = re.findall(r"<!-- readme-test(?:: *(\S+))? -->\n```console\n(.*?)```", text, re.S)
n = 0
for d, body in blocks:
    lines = body.rstrip("\n").split("\n")
    assert lines[0].startswith("$ "), lines[0]
    cmd = lines[0][2:]
    want_rc = 0
    expect = lines[1:]
    if expect and re.fullmatch(r"\[exit (\d+)\]", expect[-1]):
        want_rc = int(re.fullmatch(r"\[exit (\d+)\]", expect[-1]).group(1))
        expect = expect[:-1]
    argv = cmd.split()
    assert argv[0] == "certfleet"
    p = subprocess.run([certfleet] + argv[1:], cwd=d or ".", capture_output=True, text=True)
    got = (p.stdout + p.stderr).rstrip("\n").split("\n") if (p.stdout + p.stderr) else []
    n += 1
    name = f"README example '{cmd}'" + (f" in {d}" if d else "")
    if got == expect and p.returncode == want_rc:
        print(f"ok {n} - {name}")
    else:
        print(f"not ok {n} - {name}")
        print(f"#   exit {p.returncode} (want {want_rc})")
        for l in got[:20]: print("#   got:  " + l)
        for l in expect[:20]: print("#   want: " + l)
if n < 5:
    print(f"not ok {n+1} - at least 5 tested README examples (found {n})")
else:
    print(f"ok {n+1} - {n} README examples are tested")
PY
