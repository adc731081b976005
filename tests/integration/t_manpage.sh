#!/usr/bin/env bash
# The man page (doc/mailferry.1) covers every option --help lists and every
# exit code, renders without warnings, and `make install` puts the binary
# and the page under PREFIX in DESTDIR.
. "$(dirname "$0")/lib.sh"

MAN=$ROOT/doc/mailferry.1
help=$("$MF_REL" --help)
missing=""
for opt in $(grep -o -- '--[a-z][a-z0-9-]*' <<<"$help" | sort -u); do
	esc=${opt//-/\\\\-}
	grep -q -- "$esc" "$MAN" || missing="$missing $opt"
done
[ -z "$missing" ] && ok "manpage-every-option ($(grep -o -- '--[a-z][a-z0-9-]*' <<<"$help" | sort -u | wc -l) options)" ||
	not_ok manpage-every-option "not in doc/mailferry.1:$missing"
codes_ok=1
for c in 0 1 2 3 4 5; do
	grep -q "^\.B $c\$" "$MAN" || codes_ok=0
	grep -q "$c " <<<"$(grep -A3 'Exit status' <<<"$help")" || codes_ok=0
done
[ "$codes_ok" = 1 ] && ok manpage-exit-codes || not_ok manpage-exit-codes "an exit code is missing"
w=$(LC_ALL=C MANWIDTH=80 man --warnings -l "$MAN" 2>&1 >/dev/null | head -n 3)
[ -z "$w" ] && ok manpage-renders || not_ok manpage-renders "$w"
dest=$T_TMP/dest
make -s -C "$ROOT" install DESTDIR="$dest" PREFIX=/opt/mf >/dev/null 2>"$T_TMP/install.err"
if [ -x "$dest/opt/mf/bin/mailferry" ] && [ -f "$dest/opt/mf/share/man/man1/mailferry.1" ] &&
	"$dest/opt/mf/bin/mailferry" version | grep -q '^mailferry '; then
	ok make-install
else
	not_ok make-install "$(tail -n 2 "$T_TMP/install.err")"
fi
