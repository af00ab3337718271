#!/usr/bin/env python3
"""Builds the training corpus from the Debian packages listed in shared/DATA.md.

    python3 tools/corpus.py [--out data]

Downloads the .deb files (apt-get download), unpacks them (dpkg-deb -x, nothing is installed),
decodes the containers (Enlightenment .edj with edje_decc, GCompris Qt .rcc with the parser below),
keeps photos only (the lists below drop illustrations), removes exact duplicates, and writes
data/corpus/{train,val}/ with data/corpus/manifest.json (package, version, path in the package,
licence, size, sha256, split). The validation split (about 10% of each package's photos, chosen by
content hash, so it never changes) is never read by training. Every step is skipped when its
output already exists, so the command can be re-run.
"""
import argparse, fnmatch, hashlib, io, json, os, shutil, struct, subprocess, sys, zlib
from pathlib import Path

try:
    from PIL import Image
except ImportError:
    sys.exit("tools/corpus.py needs Pillow: pip install pillow")

ENLIGHTENMENT = ["Bamboo", "Foggy-Trees", "God-Rays", "Green-Maple", "Lichen-Branches", "Mountain",
                 "Peaks", "Red-Maple", "Sea-of-Lanterns", "Snow-Trees", "Spruce-Needles",
                 "Sunset-Clouds", "White-Flower", "Yellow-Flower"]
LXQT = ["Butterfly-Kenneth-Wimer.jpg", "Valendas.png", "after-the-rain.jpg", "appleflower.png",
        "beam.png", "butterfly.png", "cloud.png", "drop.png", "flowers.png", "fog.jpg",
        "this-is-not-windows.jpg"]
PLASMA = ["BytheWater", "ColdRipple", "ColorfulCups", "DarkestHour", "EveningGlow", "FallenLeaf",
          "Grey", "Kite", "OneStandsOut", "Path", "summer_1am"]
# GCompris resource files and the photo folders inside them (DATA.md).
GCOMPRIS = {
    "erase": ["*"],
    "explore_monuments": ["*"],
    "explore_world_animals": ["*"],
    "explore_farm_animals": ["*"],
    "explore_world_music": ["*"],
    "clickgame": ["*sea*.webp"],
    "categorization": ["*images/fishes/*", "*images/monuments/*", "*images/tools/*",
                       "*images/renewable/*", "*images/others/*"],
}
LICENCES = {
    "enlightenment-data": "BSD-2-clause",
    "lomiri-wallpapers-16.04": "per file: CC-BY-4.0 / CC0 / CC-BY-SA-4.0",
    "lomiri-wallpapers-20.04": "CC-BY-SA-3.0",
    "gcompris-qt-data": "per file: GPL-3+, CC-BY(-SA), public domain, CC0, GFDL",
    "lxqt-themes": "LGPL-2.1+",
    "plasma-workspace-wallpapers": "GPL-2+",
    "mate-backgrounds": "GPL-2+",
    "tuxtype-data": "GPL-2",
    "tuxpaint-data": "GPL-2+",
    "palapeli-data": "GPL-2+",
    "sddm-theme-maldives": "CC-BY-3.0",
}
IMAGE_EXT = (".jpg", ".jpeg", ".png", ".webp")
MIN_SIDE = 96  # smaller pictures are icons, not photos


def run(cmd, **kw):
    subprocess.run(cmd, check=True, **kw)


def fetch(out):
    debs, pkgs = out / "debs", out / "pkgs"
    debs.mkdir(parents=True, exist_ok=True)
    pkgs.mkdir(parents=True, exist_ok=True)
    missing = [p for p in LICENCES if not list(debs.glob(f"{p}_*.deb"))]
    if missing:
        print(f"downloading {len(missing)} packages", flush=True)
        run(["apt-get", "download", *missing], cwd=debs)
    versions = {}
    for p in LICENCES:
        deb = sorted(debs.glob(f"{p}_*.deb"))[-1]
        versions[p] = deb.name.split("_")[1].replace("%3a", ":")
        if not (pkgs / p).exists():
            run(["dpkg-deb", "-x", str(deb), str(pkgs / p)])
    return pkgs, versions


def rcc_files(path):
    """Yields (name, bytes) of every file in a Qt resource (.rcc) file."""
    b = path.read_bytes()
    if b[:4] != b"qres":
        raise ValueError(f"{path}: not a Qt resource file (magic {b[:4]!r}, expected b'qres')")
    version, tree, data, names = struct.unpack(">4I", b[4:20])
    node = 22 if version >= 2 else 14

    def name(off):
        n, = struct.unpack(">H", b[names + off:names + off + 2])
        return b[names + off + 6:names + off + 6 + 2 * n].decode("utf-16-be")

    def walk(i, prefix):
        base = tree + i * node
        name_off, flags = struct.unpack(">IH", b[base:base + 6])
        nm = name(name_off) if i else ""
        full = f"{prefix}/{nm}" if nm else prefix
        if flags & 2:  # directory
            count, first = struct.unpack(">II", b[base + 6:base + 14])
            for c in range(first, first + count):
                yield from walk(c, full)
        else:
            off, = struct.unpack(">I", b[base + 10:base + 14])
            size, = struct.unpack(">I", b[data + off:data + off + 4])
            payload = b[data + off + 4:data + off + 4 + size]
            if flags & 1:  # zlib, behind a 4-byte uncompressed length
                payload = zlib.decompress(payload[4:])
            if not flags & 4:  # zstd (flag 4) is not used by the files we take
                yield full, payload

    yield from walk(0, "")


def ensure_edje_decc():
    """edje_decc (Debian's libedje-bin) decodes the Enlightenment .edj archives; a fresh machine lacks it."""
    if shutil.which("edje_decc"):
        return
    print("installing libedje-bin (edje_decc)", flush=True)
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    run([*sudo, "apt-get", "update", "-qq"])
    run([*sudo, "apt-get", "install", "-y", "-qq", "libedje-bin"], env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


def candidates(pkgs, work):
    """Yields (package, path in package, bytes) of every photo DATA.md lists."""
    bg = pkgs / "enlightenment-data/usr/share/enlightenment/data/backgrounds"
    for n in ENLIGHTENMENT:
        dst = work / "edj" / n
        if not (dst / "img.png").exists() and not list(dst.glob("**/*.png")):
            ensure_edje_decc()
            dst.mkdir(parents=True, exist_ok=True)
            print(f"edje_decc {n}.edj (about 30 s)", flush=True)
            run(["edje_decc", str(bg / f"{n}.edj"), "-output", str(dst)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        pngs = sorted(dst.glob("**/*.png"), key=lambda p: -p.stat().st_size)
        yield "enlightenment-data", f"usr/share/enlightenment/data/backgrounds/{n}.edj#{pngs[0].name}", pngs[0].read_bytes()
    for f in sorted((pkgs / "lomiri-wallpapers-16.04/usr/share/backgrounds").glob("*.jpg")):
        if not f.name.startswith(("Picture_0B_", "Picture_1A_")):
            yield "lomiri-wallpapers-16.04", f"usr/share/backgrounds/{f.name}", f.read_bytes()
    f = pkgs / "lomiri-wallpapers-20.04/usr/share/backgrounds/Kleiber_by_Lukas_Baubkus.jpg"
    yield "lomiri-wallpapers-20.04", "usr/share/backgrounds/Kleiber_by_Lukas_Baubkus.jpg", f.read_bytes()
    rcc = pkgs / "gcompris-qt-data/usr/share/gcompris-qt/rcc"
    for name, patterns in GCOMPRIS.items():
        for inner, payload in rcc_files(rcc / f"{name}.rcc"):
            if inner.lower().endswith(IMAGE_EXT) and any(fnmatch.fnmatch(inner, p) for p in patterns):
                yield "gcompris-qt-data", f"usr/share/gcompris-qt/rcc/{name}.rcc#{inner}", payload
    for n in LXQT:
        yield "lxqt-themes", f"usr/share/lxqt/wallpapers/{n}", (pkgs / "lxqt-themes/usr/share/lxqt/wallpapers" / n).read_bytes()
    for n in PLASMA:
        d = pkgs / f"plasma-workspace-wallpapers/usr/share/wallpapers/{n}/contents/images"
        f = max(d.iterdir(), key=lambda p: p.stat().st_size)
        yield "plasma-workspace-wallpapers", str(f.relative_to(pkgs / "plasma-workspace-wallpapers")), f.read_bytes()
    for f in sorted((pkgs / "mate-backgrounds/usr/share/backgrounds/mate/nature").glob("*.jpg")):
        yield "mate-backgrounds", str(f.relative_to(pkgs / "mate-backgrounds")), f.read_bytes()
    td = pkgs / "tuxtype-data/usr/share/tuxtype/images"
    for f in [td / f"kcas{i}.jpg" for i in range(12)] + [td / f"backgrounds/{i}.jpg" for i in range(5)]:
        yield "tuxtype-data", str(f.relative_to(pkgs / "tuxtype-data")), f.read_bytes()
    for f in sorted((pkgs / "tuxpaint-data/usr/share/tuxpaint/templates").glob("*.jpg")):
        yield "tuxpaint-data", str(f.relative_to(pkgs / "tuxpaint-data")), f.read_bytes()
    for f in sorted((pkgs / "palapeli-data/usr/share/palapeli/collection").glob("*.jpg")):
        yield "palapeli-data", str(f.relative_to(pkgs / "palapeli-data")), f.read_bytes()
    f = pkgs / "sddm-theme-maldives/usr/share/sddm/themes/maldives/background.jpg"
    yield "sddm-theme-maldives", "usr/share/sddm/themes/maldives/background.jpg", f.read_bytes()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="data", type=Path, help="cache folder (git-ignored)")
    ap.add_argument("--val-every", type=int, default=10, help="one photo in N goes to validation")
    args = ap.parse_args()
    out = args.out
    pkgs, versions = fetch(out)
    run(["bash", str(Path(__file__).parent / "fetch_lpips.sh")])  # the perceptual loss's weights
    corpus = out / "corpus"
    seen, records = {}, []
    for pkg, path, payload in candidates(pkgs, out / "work"):
        digest = hashlib.sha256(payload).hexdigest()
        try:
            im = Image.open(io.BytesIO(payload))
            im.load()
        except Exception as e:  # noqa: BLE001 - a broken file is reported and skipped
            print(f"skipping {pkg}:{path}: {e}", file=sys.stderr)
            continue
        w, h = im.size
        if min(w, h) < MIN_SIDE:
            continue
        # Exact duplicates by pixels (the same photo stored twice, possibly re-encoded identically).
        pix = hashlib.sha256(im.convert("RGB").tobytes()).hexdigest()
        if pix in seen:
            print(f"duplicate: {pkg}:{path} = {seen[pix]}")
            continue
        seen[pix] = f"{pkg}:{path}"
        records.append(dict(package=pkg, version=versions[pkg], path=path, licence=LICENCES[pkg],
                            copyright=f"usr/share/doc/{pkg}/copyright", width=w, height=h,
                            bytes=len(payload), sha256=digest, _payload=payload, _im=im))
    # Validation: per package, sorted by content hash, every N-th photo (at least one where a
    # package has three or more).
    for pkg in LICENCES:
        rs = sorted((r for r in records if r["package"] == pkg), key=lambda r: r["sha256"])
        for i, r in enumerate(rs):
            r["split"] = "val" if (i % args.val_every == args.val_every // 2 or (len(rs) >= 3 and len(rs) < args.val_every and i == 1)) else "train"
    for r in records:
        d = corpus / r["split"]
        d.mkdir(parents=True, exist_ok=True)
        name = f"{r['package']}-{r['sha256'][:12]}.png"
        r["file"] = f"{r['split']}/{name}"
        if not (d / name).exists():
            r["_im"].convert("RGB").save(d / name)  # PNG: one decoder for the trainer, no JPEG re-encode
        del r["_payload"], r["_im"]
    (corpus / "manifest.json").write_text(json.dumps(records, indent=1))
    by = {}
    for r in records:
        k = by.setdefault(r["package"], [0, 0, 0])
        k[0 if r["split"] == "train" else 1] += 1
        k[2] += r["width"] * r["height"]
    for p, (t, v, px) in by.items():
        print(f"{p:<30} train {t:>4}  val {v:>3}  {px / 1e6:8.1f} MP")
    print(f"total: {sum(b[0] for b in by.values())} train, {sum(b[1] for b in by.values())} val photos in {corpus}")


if __name__ == "__main__":
    main()
