# shellcheck shell=dash
# remote.sh - the fixed script behind every remote batch (see remote.c for the
# wire format: op lines and data on stdin, NUL-terminated records on stdout).
#
# The build embeds this file into certfleet (build/gen/remote_sh.h), and every
# batch runs it as the argument of `sh -c`, inside single quotes.  So:
#   - it must contain no single quote (the build and test_remote check);
#   - lines starting with # are dropped when embedding, so these notes cost
#     nothing on the wire; no line of the script itself may start with one.
# Only digits and checked paths and names come from the op lines; content and
# commands are read from the data file by offset.
set -f -u
export LC_ALL=C
umask 022
TAB="	"
NL="
"
exec 3>&1
IFS=" " read -r magic nops dlen || exit 96
[ "$magic" = CF1 ] || exit 96
ops=
n=0
while [ "$n" -lt "$nops" ]; do
  IFS= read -r line || exit 96
  ops="$ops$line$NL"
  n=$((n + 1))
done
T=
if [ "$dlen" -gt 0 ]; then
  T=$(mktemp -d) || exit 97
  trap "rm -rf -- \"\$T\"" EXIT
  trap "exit 98" HUP INT TERM PIPE
  cat >"$T/data" || exit 97
  # a controller killed while sending leaves the data short: run nothing
  [ "$(wc -c <"$T/data")" -eq "$dlen" ] || exit 97
fi
# From here the batch runs to its end even when the controller has gone
# (killed, or its connection lost): a write to the closed channel fails
# quietly instead of killing the script between two link swaps, so the
# live links never name two versions.
trap "" HUP PIPE
reads=
skip=0
o=
t=
stats() {
  if [ $# -gt 0 ]; then
    w=$(find "$@" -maxdepth 0 -printf "F\t%p\t%y\t%m\t%u\t%g\t%s\t%l\0" -type f -exec sha256sum -z -- {} + 2>&1 >&3 3>&-)
    [ -z "$w" ] || printf "W\t%s\0" "$w"
  fi
  if [ -n "$reads" ]; then
    while IFS="$TAB" read -r ri rp rm; do
      printf "C\t%s\t" "$ri"
      if [ -f "$rp" ]; then head -c "$rm" -- "$rp" | base64 -w0; fi
      printf "\0"
    done <<EOF
$reads
EOF
  fi
  reads=
  printf "E\0"
}
ownspec() { o=; [ "$1" = - ] || o=$1; [ "$2" = - ] || o="$o:$2"; }
result() { printf "O\t%s\t%s\t%s\0" "$1" "$2" "$3"; }
post() {
  printf "S\t%s\t%s\0" "$1" "$2"
  find "$2" -maxdepth 0 -printf "F\t%p\t%y\t%m\t%u\t%g\t%s\t%l\0" 2>/dev/null
  printf "E\0"
}
set --
while IFS="$TAB" read -r k i p a b c d e; do
  [ -n "$k" ] || continue
  if [ "$skip" = 1 ]; then printf "K\t%s\0" "$i"; continue; fi
  case $k in
  S) printf "S\t%s\t%s\0" "$i" "$p"; set -- "$@" "$p"; continue ;;
  R) printf "S\t%s\t%s\0" "$i" "$p"; set -- "$@" "$p"
     reads="$reads${reads:+$NL}$i$TAB$p$TAB$a"; continue ;;
  esac
  if [ $# -gt 0 ]; then stats "$@"; set --; fi
  case $k in
  M) ownspec "$b" "$c"
     err=$( { mkdir -p -- "$p" && chmod -- "$a" "$p" && { [ -z "$o" ] || chown -- "$o" "$p"; }; } 2>&1 ); rc=$?
     result "$i" "$rc" "$err"; post "$i" "$p" ;;
  W) ownspec "$b" "$c"; t=
     err=$( { t=$(mktemp -- "${p%/*}/.cf-XXXXXXXX") && dd if="$T/data" of="$t" bs=65536 iflag=skip_bytes,count_bytes skip="$d" count="$e" status=none && chmod -- "$a" "$t" && { [ -z "$o" ] || chown -- "$o" "$t"; } && sync -- "$t" && mv -fT -- "$t" "$p"; } 2>&1 || { [ -z "$t" ] || rm -f -- "$t"; exit 1; } ); rc=$?
     result "$i" "$rc" "$err"; post "$i" "$p" ;;
  L) t="${p%/*}/.cf-$$-$i.lnk"
     err=$( { ln -sfn -- "$a" "$t" && mv -fT -- "$t" "$p"; } 2>&1 || { rm -f -- "$t"; exit 1; } ); rc=$?
     result "$i" "$rc" "$err"; post "$i" "$p" ;;
  D) err=$( { if [ -d "$p" ] && [ ! -L "$p" ]; then rmdir -- "$p"; else rm -f -- "$p"; fi; } 2>&1 ); rc=$?
     result "$i" "$rc" "$err" ;;
  X) cmd=$(dd if="$T/data" bs=65536 iflag=skip_bytes,count_bytes skip="$a" count="$b" status=none)
     # the command gets the default HUP and PIPE (a daemon it starts must not
     # inherit them ignored)
     (trap - HUP PIPE; exec sh -c "$cmd") </dev/null >"$T/o" 2>"$T/e" 3>&-; rc=$?
     printf "X\t%s\t%s\t" "$i" "$rc"; base64 -w0 "$T/o"; printf "\t"; base64 -w0 "$T/e"; printf "\0"
     [ "$rc" -eq 0 ] || [ "$p" != 1 ] || skip=1 ;;
  *) printf "P\t%s\0" "$i" ;;
  esac
done <<EOF
$ops
EOF
if [ $# -gt 0 ]; then stats "$@"; fi
printf "Z\0"
