#!/usr/bin/env python3
"""Builds the training corpus from the Debian packages listed in shared/DATA.md.

    python3 tools/corpus.py [--out data]

Downloads the .deb files (apt-get download), unpacks them (dpkg-deb -x, nothing is installed),
decodes the containers (Enlightenment .edj with edje_decc, GCompris Qt .rcc with the parser below),
keeps photos only (the lists below drop illustrations), removes exact and near duplicates (see
near_duplicate), and writes data/corpus/{train,val,test}/ with data/corpus/manifest.json (package,
version, path in the package, licence, size, sha256, split; dropped copies name what they copy).
Splits are by photo and by content hash, so they never change (see assign_splits): validation is
for decisions, test is for reporting only, and training never reads either. Every step is skipped
when its output already exists, so the command can be re-run.
"""
import argparse, fnmatch, hashlib, io, json, os, re, shutil, struct, subprocess, sys, zlib
from pathlib import Path

try:
    import numpy as np
    from PIL import Image, ImageOps
except ImportError:
    sys.exit("tools/corpus.py needs Pillow and numpy: pip install pillow numpy")

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
    # Added 2026-12-06 (DATA.md "More photographs"); their photos were never seen by the f16 pair
    # trained before, so the test split is drawn from them alone.
    "endless-sky-data": "per file: public domain (morgueFile) / CC-BY-SA-3.0 / CC-BY-SA-4.0",
    "scratch": "CC-BY-SA-3.0",
    "kphotoalbum": "GPL-2+",
    "gnome-control-center-data": "per file: GPL-2+ / CC0-1.0",
    "puzzle-jigsaw": "CC0-1.0",
}
# The packages of the corpus the f16 `small` pair was trained on: their photos keep the split they
# had (by content hash), so nothing those models trained on can reach validation or test.
ORIGINAL = ["enlightenment-data", "lomiri-wallpapers-16.04", "lomiri-wallpapers-20.04", "gcompris-qt-data",
            "lxqt-themes", "plasma-workspace-wallpapers", "mate-backgrounds", "tuxtype-data", "tuxpaint-data",
            "palapeli-data", "sddm-theme-maldives"]
EVAL_MIN_SIDE = 256  # validation and test photos are at least this on the short side (no upscaling at 256²)
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
    es = pkgs / "endless-sky-data/usr/share/games/endless-sky/images"
    for f in sorted((es / "land").glob("*.jpg")) + sorted((es / "scene").glob("*.jpg")):
        yield "endless-sky-data", str(f.relative_to(pkgs / "endless-sky-data")), f.read_bytes()
    sc = pkgs / "scratch/usr/share/scratch/Media/Backgrounds"
    for sub in ["Nature", "Outdoors", "Sports", "Indoors"]:
        for f in sorted((sc / sub).glob("*.jpg")):
            yield "scratch", str(f.relative_to(pkgs / "scratch")), f.read_bytes()
    for f in sorted((pkgs / "kphotoalbum/usr/share/kphotoalbum/demo").glob("*.jpg")):
        yield "kphotoalbum", str(f.relative_to(pkgs / "kphotoalbum")), f.read_bytes()
    for f in sorted((pkgs / "gnome-control-center-data/usr/share/pixmaps/faces").glob("*.jpg")):
        yield "gnome-control-center-data", str(f.relative_to(pkgs / "gnome-control-center-data")), f.read_bytes()
    for f in sorted((pkgs / "puzzle-jigsaw/usr/share/puzzle-jigsaw/samples").glob("*.jpg")):
        yield "puzzle-jigsaw", str(f.relative_to(pkgs / "puzzle-jigsaw")), f.read_bytes()


def fingerprint(im):
    """A 256-bit difference hash and a normalised 24×24 grayscale thumbnail of a photo."""
    g = im.convert("L")
    d = np.asarray(g.resize((17, 16), Image.BILINEAR), dtype=np.float32)
    bits = (d[:, 1:] > d[:, :-1]).ravel()
    t = np.asarray(g.resize((24, 24), Image.BILINEAR), dtype=np.float32).ravel()
    t = (t - t.mean()) / (t.std() + 1e-6)
    return bits, t


def stem(path):
    """The file name without folders, extension and punctuation, lower case (for name checks)."""
    parts = path.split("#")[-1].split("/")
    n = parts[-1].rsplit(".", 1)[0].lower()
    if re.fullmatch(r"\d+x\d+", n) and len(parts) >= 4:  # plasma's NAME/contents/images/1920x1080.jpg
        n = parts[-4].lower()
    return "".join(c for c in n if c.isalnum())


def near_duplicate(a, b):
    """Why two photos are the same picture (resized, re-encoded, cropped a little), or None:
    difference hashes within 32 of 256 bits, thumbnails correlated above 0.95, or one name nested
    in the other (at least 5 letters, the rest not starting with a digit: `fish1` and `fish12` are
    two photos) with thumbnails correlated above 0.7; all with aspect ratios within 8%."""
    ham = int(np.count_nonzero(a["_bits"] != b["_bits"]))
    corr = float(np.dot(a["_thumb"], b["_thumb"]) / a["_thumb"].size)
    ra, rb = a["width"] / a["height"], b["width"] / b["height"]
    same_aspect = abs(ra - rb) / max(ra, rb) < 0.08
    if ham <= 32 and same_aspect:
        return f"difference hash {ham}/256 bits apart"
    if corr > 0.95 and same_aspect:
        return f"thumbnails correlate {corr:.3f}"
    na, nb = sorted([stem(a["path"]), stem(b["path"])], key=len)
    rest = nb.replace(na, "", 1)
    if len(na) >= 5 and na in nb and not rest[:1].isdigit() and corr > 0.7 and same_aspect:
        return f"names {na!r} and {nb!r} nest, thumbnails correlate {corr:.2f}"
    return None


def assign_splits(records, val_every):
    """Splits by photo, never by crop, so no picture (or a near copy of it) is in two splits:
    - the original packages keep the rule the f16 pair was trained under (per package, by content
      hash, every N-th photo to validation); a validation photo shorter than EVAL_MIN_SIDE moves
      to training (that pair never saw it);
    - the added packages: photos of at least EVAL_MIN_SIDE on the short side go to test (22%) or
      validation (12%) by content hash, the rest and the smaller ones to training;
    - near duplicates are grouped; one photo per group is kept (the largest), in training if any
      copy was trained on, and the others are recorded as dropped."""
    for pkg in ORIGINAL:
        rs = sorted((r for r in records if r["package"] == pkg), key=lambda r: r["sha256"])
        for i, r in enumerate(rs):
            val = i % val_every == val_every // 2 or (3 <= len(rs) < val_every and i == 1)
            r["split"] = "val" if val and min(r["width"], r["height"]) >= EVAL_MIN_SIDE else "train"
            r["_trained"] = not val  # in the f16 pair's training split
    for r in records:
        if r["package"] not in ORIGINAL:
            u = int(r["sha256"][:8], 16) / 2**32
            big = min(r["width"], r["height"]) >= EVAL_MIN_SIDE
            r["split"] = "test" if big and u < 0.22 else "val" if big and u < 0.34 else "train"
            r["_trained"] = False
    parent = list(range(len(records)))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i
    why = {}
    for i in range(len(records)):
        for j in range(i + 1, len(records)):
            w = near_duplicate(records[i], records[j])
            if w:
                why[(i, j)] = w
                parent[find(j)] = find(i)
    groups = {}
    for i in range(len(records)):
        groups.setdefault(find(i), []).append(i)
    for members in groups.values():
        if len(members) == 1:
            continue
        keep = max(members, key=lambda i: records[i]["width"] * records[i]["height"])
        if any(records[i]["_trained"] for i in members):
            records[keep]["split"] = "train"
        elif any(records[i]["split"] == "train" for i in members):
            records[keep]["split"] = "train"
        for i in members:
            if i != keep:
                pair = (min(i, keep), max(i, keep))
                records[i]["split"] = "dropped"
                records[i]["duplicate_of"] = f"{records[keep]['package']}:{records[keep]['path']}"
                records[i]["duplicate_why"] = why.get(pair, "same group")
                print(f"near duplicate: {records[i]['package']}:{records[i]['path']} ~ {records[i]['duplicate_of']} ({records[i]['duplicate_why']})")


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
        if pkg == "kphotoalbum":  # its demo photos rely on the EXIF orientation tag
            im = ImageOps.exif_transpose(im)
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
        records[-1]["_bits"], records[-1]["_thumb"] = fingerprint(im)
    assign_splits(records, args.val_every)
    splits = ["train", "val", "test"]
    wanted = {}
    for r in records:
        if r["split"] == "dropped":
            r["file"] = None
        else:
            name = f"{r['package']}-{r['sha256'][:12]}.png"
            r["file"] = f"{r['split']}/{name}"
            wanted.setdefault(r["split"], set()).add(name)
            d = corpus / r["split"]
            d.mkdir(parents=True, exist_ok=True)
            if not (d / name).exists():  # PNG: one decoder for the trainer, no JPEG re-encode
                tmp = d / f".{name}.tmp"  # renamed when whole, so an interrupted run leaves no cut file
                r["_im"].convert("RGB").save(tmp, format="PNG")
                tmp.rename(d / name)
        for k in ["_payload", "_im", "_bits", "_thumb", "_trained"]:
            del r[k]
    for sp in splits:  # files an earlier split left behind
        for f in (corpus / sp).glob("*.png") if (corpus / sp).exists() else []:
            if f.name not in wanted.get(sp, set()):
                f.unlink()
    (corpus / "manifest.json").write_text(json.dumps(records, indent=1))
    by = {}
    for r in records:
        k = by.setdefault(r["package"], dict(train=0, val=0, test=0, dropped=0, mp=0.0))
        k[r["split"]] += 1
        k["mp"] += r["width"] * r["height"] / 1e6
    for p, k in by.items():
        print(f"{p:<28} train {k['train']:>4}  val {k['val']:>3}  test {k['test']:>3}  dropped {k['dropped']:>3}  {k['mp']:8.1f} MP")
    tot = {sp: sum(k[sp] for k in by.values()) for sp in splits + ["dropped"]}
    print(f"total: {tot['train']} train, {tot['val']} val, {tot['test']} test photos in {corpus} "
          f"({tot['dropped']} near duplicates dropped)")


if __name__ == "__main__":
    main()
