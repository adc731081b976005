#!/usr/bin/env bash
# t_layers — the layers point one way (README "Architecture"):
#   engine/cli → engine/sync → {protocols, store} → engine/runtime → engine/base
# A file may include its own layer or any layer below it, never one above;
# protocols/ and store/ are siblings and do not include each other. Also:
# no .c file in engine/ is over 1,000 lines, and every one opens with a
# comment saying what it owns.
set -u
cd "$(dirname "$0")/../.." || exit 2

rank() { # path -> layer rank (higher = above)
	case $1 in
	engine/base/*) echo 0 ;;
	engine/runtime/*) echo 1 ;;
	protocols/*) echo 2p ;;
	store/*) echo 2s ;;
	engine/sync/*) echo 3 ;;
	engine/cli/*) echo 4 ;;
	*) echo x ;;
	esac
}
num() { echo "${1%[ps]}"; }

bad=0
for f in $(git ls-files 'engine/*.[ch]' 'protocols/*.[ch]' 'store/*.[ch]'); do
	rf=$(rank "$f")
	[ "$rf" = x ] && { echo "not ok - layer-known: $f is in no layer"; bad=1; continue; }
	while read -r inc; do
		ri=$(rank "$inc")
		[ "$ri" = x ] && continue
		if [ "$(num "$ri")" -gt "$(num "$rf")" ] ||
			{ [ "$(num "$ri")" = 2 ] && [ "$(num "$rf")" = 2 ] && [ "$ri" != "$rf" ]; }; then
			echo "not ok - layers: $f includes $inc (a layer above or beside it)"
			bad=1
		fi
	done < <(sed -n 's/^#include "\([^"]*\)".*/\1/p' "$f")
done
[ $bad = 0 ] && echo "ok - layers"

long=0
for f in $(git ls-files 'engine/*.c'); do
	n=$(wc -l <"$f")
	[ "$n" -gt 1000 ] && { echo "not ok - file-size: $f has $n lines (over 1,000)"; long=1; }
	head -c 3 "$f" | grep -q '^/\*' || { echo "not ok - opening-comment: $f does not open with a comment"; long=1; }
done
[ $long = 0 ] && echo "ok - engine-files-small-and-described"
