#!/usr/bin/env bash
# Regenerates the seed corpora of the fuzz targets mbr, gpt and logkv_mount
# from real images: partition tables written by Linux's sfdisk and sgdisk
# (Debian packages fdisk and gdisk) on small image files, and LogKv stores
# made by `mirage-kv`. See README.md beside this script for what each seed
# is. Run it from anywhere in the repository:
#
#     bash block/fuzz/corpus/make-seeds.sh
#
# The output is the same on every run (fixed GUIDs and disk identifiers,
# and SOURCE_DATE_EPOCH for mirage-kv's clock). `block/tests/fuzz_seeds.rs`
# checks that every seed still reaches what it was made for.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
for tool in sfdisk sgdisk; do
    command -v "$tool" >/dev/null || { echo "$tool not found (Debian packages fdisk, gdisk)" >&2; exit 1; }
done
(cd "$root" && cargo build -q -p mirage-kv --bin mirage-kv)
mirage_kv="${CARGO_TARGET_DIR:-$root/target}/debug/mirage-kv"
export SOURCE_DATE_EPOCH=1700000000

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

quiet() { "$@" >/dev/null 2>&1 || { echo "failed: $*" >&2; "$@"; exit 1; }; }
sfdisk_image() { # IMAGE SIZE SCRIPT: an image of SIZE written by sfdisk from SCRIPT
    rm -f "$1"; truncate -s "$2" "$1"
    printf '%b' "$3" | quiet sfdisk --no-reread --no-tell-kernel "$1"
}
sector0() { head -c 512 "$1" >"$2"; }

# --- mbr: sector 0 of each image -------------------------------------------
mkdir -p "$here/mbr"
sfdisk_image "$tmp/a.img" 4M 'label: dos\nlabel-id: 0x12345678\nstart=2048, size=2048, type=83, bootable\nstart=4096, size=4096, type=82\n'
sector0 "$tmp/a.img" "$here/mbr/seed-sfdisk-linux-swap"
sfdisk_image "$tmp/b.img" 4M 'label: dos\nlabel-id: 0xcafef00d\nstart=63, size=937, type=c\nstart=1000, size=1000, type=7\nstart=2000, size=3000, type=83, bootable\nstart=5000, size=3192, type=ef\n'
sector0 "$tmp/b.img" "$here/mbr/seed-sfdisk-four-primaries"
sfdisk_image "$tmp/c.img" 4M 'label: dos\nlabel-id: 0x0badcafe\nstart=2048, size=1024, type=83\nstart=3072, size=5120, type=5\nstart=4096, size=1024, type=83\nstart=6144, size=2048, type=83\n'
sector0 "$tmp/c.img" "$here/mbr/seed-sfdisk-extended"

# --- gpt: whole images ------------------------------------------------------
mkdir -p "$here/gpt"
guids=(-U 01234567-89AB-CDEF-0123-456789ABCDEF -u 1:11111111-2222-3333-4444-555555555555 -u 2:66666666-7777-8888-9999-AAAAAAAAAAAA)
# The usual 128-entry table: 68 sectors of metadata, 4 usable.
rm -f "$tmp/g128.img"; truncate -s 36K "$tmp/g128.img"
quiet sgdisk -a 1 -o -n 1:34:+1 -t 1:8300 -c 1:root -n 2:0:0 -t 2:ef00 -c 2:EFI "${guids[@]}" "$tmp/g128.img"
quiet sgdisk -v "$tmp/g128.img"
cp "$tmp/g128.img" "$here/gpt/seed-sgdisk-128-entries"
sector0 "$tmp/g128.img" "$here/mbr/seed-sgdisk-protective"
# sgdisk's hybrid MBR: the protective entry plus partition 1.
cp "$tmp/g128.img" "$tmp/hybrid.img"
quiet sgdisk -h 1 "$tmp/hybrid.img"
sector0 "$tmp/hybrid.img" "$here/mbr/seed-sgdisk-hybrid"
# A 4-entry table on 16 sectors: sgdisk refuses to create a table on a disk
# too small for 128 entries, so it is made on 80 sectors, shrunk to 4
# entries, the image truncated and the backup moved to its new end (-e).
rm -f "$tmp/g4.img"; truncate -s 40K "$tmp/g4.img"
quiet sgdisk -a 1 -o --resize-table=4 "${guids[@]:0:2}" "$tmp/g4.img"
truncate -s 8K "$tmp/g4.img"
quiet sgdisk -e "$tmp/g4.img"
quiet sgdisk -a 1 -n 1:3:+1 -t 1:8300 -c 1:root -n 2:0:0 -t 2:ef00 "${guids[@]:2}" "$tmp/g4.img"
quiet sgdisk -v "$tmp/g4.img"
cp "$tmp/g4.img" "$here/gpt/seed-sgdisk-4-entries"
# The same with the primary header's CRC32 damaged: the reader falls back
# to the backup at the last LBA.
cp "$tmp/g4.img" "$here/gpt/seed-sgdisk-4-entries-bad-primary"
printf '\377' | dd of="$here/gpt/seed-sgdisk-4-entries-bad-primary" bs=1 seek=$((512 + 16)) conv=notrunc status=none
sfdisk_image "$tmp/s.img" 8K 'label: gpt\nlabel-id: 01234567-89AB-CDEF-0123-456789ABCDEF\ntable-length: 4\nfirst-lba: 3\nstart=3, size=4, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, uuid=11111111-2222-3333-4444-555555555555, name="data"\nstart=7, size=6, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid=66666666-7777-8888-9999-AAAAAAAAAAAA, name="EFI system"\n'
quiet sgdisk -v "$tmp/s.img"
cp "$tmp/s.img" "$here/gpt/seed-sfdisk-4-entries"

# --- logkv_mount: header byte, image, operations ----------------------------
# The target's input: byte 0 = image sectors - 6 (bit 7 clear: keep the
# image's superblocks), the image, then operations (see
# ../fuzz_targets/logkv_mount.rs): op byte = kind | key A << 2 | key B << 5
# over the keys a b a/x a/y c/d/e c k fuzz (0..7); set and set_partial take
# one more byte (length or offset, in units of 8 bytes).
mkdir -p "$here/logkv_mount"
logkv_seed() { # NAME IMAGE OPS(printf %b): a 16-sector image, then the ops
    { printf '\012'; cat "$2"; printf '%b' "$3"; } >"$here/logkv_mount/$1"
}
put() { printf '%s' "$3" | "$mirage_kv" put "$1" "$2"; }
# Rewrites of a (set a, 200 bytes) until the 7-sector halves compact, a
# rename of c to fuzz, a remove of b, a set_partial of a at 32.
compacting='\000\031\000\031\000\031\000\031\000\031\000\031\000\031\000\031\366\005\003\004'
"$mirage_kv" format "$tmp/keys.img" --size 8K
put "$tmp/keys.img" /a "first value of a"
put "$tmp/keys.img" /b "bee"
put "$tmp/keys.img" /c/d/e "a value three dictionaries down"
put "$tmp/keys.img" /k "kay"
logkv_seed seed-mirage-kv-four-keys "$tmp/keys.img" "$compacting"
cp "$tmp/keys.img" "$tmp/compacted.img"
for i in 1 2 3 4 5 6 7 8; do
    put "$tmp/compacted.img" /a "value $i of a, long enough to take one sector of the log: $(printf '%0200d' "$i")"
done
"$mirage_kv" rm "$tmp/compacted.img" /k
logkv_seed seed-mirage-kv-compacted "$tmp/compacted.img" "$compacting"
mkdir -p "$tmp/site/a" "$tmp/site/c/d"
printf 'x' >"$tmp/site/a/x"
printf 'why' >"$tmp/site/a/y"
printf 'e%.0s' $(seq 700) >"$tmp/site/c/d/e"
"$mirage_kv" build "$tmp/built.img" --from "$tmp/site" --size 8K
# a is a dictionary here: rewrites of a/x instead, then the rename of c, a
# remove of a/y and a set_partial of a/x.
logkv_seed seed-mirage-kv-build "$tmp/built.img" \
    '\010\031\010\031\010\031\010\031\010\031\010\031\010\031\010\031\366\015\013\004'

ls -l "$here"/mbr "$here"/gpt "$here"/logkv_mount
