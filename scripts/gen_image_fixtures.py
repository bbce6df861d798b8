#!/usr/bin/python3
"""gen_image_fixtures.py - writes the image decoder test corpus and PIL reference
decodes into tests/fixtures/images/, plus MANIFEST.tsv that tests/test_image.c
walks.

Run with Debian's python (python3-pil; python3-torchvision for the augmentation
references; libturbojpeg0 for the two subsamplings and the YCCK file PIL cannot
write; a C compiler and libjpeg62-turbo-dev for scripts/jpeg_sampling.c, which
writes the sampling factors TurboJPEG cannot):
    /usr/bin/python3 scripts/gen_image_fixtures.py
The output is deterministic (no clock, no random module): rerunning it rewrites
the same bytes. tests/fixtures/images/README.md says what each file is.

Reference decodes are binary PPM (P6, 8-bit RGB) written from PIL's decode:
  JPEG   Image.open -> ImageOps.exif_transpose -> convert("RGB")
         (scaled decodes: Image.draft("RGB", size) first, PIL's DCT scaling)
  PNG    Image.open -> exif_transpose -> convert("RGB"): alpha dropped.
         *.white.ppm: alpha composited over white (Image.alpha_composite).
         16-bit gray opens as mode I (32-bit), which PIL's convert("RGB") clips
         instead of scaling; its reference takes the high byte of each sample,
         as PIL does itself for 16-bit RGB, RGBA and LA (rawmodes *;16B).
  resize Image.resize(size, filter, box) of a decoded PNG.
Every PNG is written by this script's own encoder (below) from known samples,
and PIL's decode is checked against the values those samples must give, so the
references are cross-checked rather than taken on trust.

MANIFEST.tsv columns: file, check, args, expect, max_diff
  decode  default options (alpha dropped, EXIF orientation applied); expect = reference PPM
  white   alpha composited over white; expect = reference PPM
  raw     EXIF orientation ignored; expect = reference PPM
  scaled  args = min_width,min_height for the JPEG DCT scaling; expect = reference PPM
  resize  args = filter,out_w,out_h,x0,y0,x1,y1 (a source box); expect = reference PPM
  bad     args = expected status (format|limit|io|unsupported); expect = a word
          the error message must contain (besides the file's path)

AUGMENT.tsv (tests/test_data.c), same columns, references made by torchvision
0.14 itself on the decoded resize_src.png:
  eval    args = resize,out_w,out_h: Resize(resize) + CenterCrop((out_h, out_w))
  crop    args = top,left,h,w,out_w,out_h,flip: F.resized_crop (+ F.hflip)
"""

import ctypes
import io
import os
import struct
import subprocess
import sys
import tempfile
import zlib

from PIL import Image, ImageOps

Image.LOAD_TRUNCATED_IMAGES = False

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "images")

W, H = 45, 29        # odd sizes: partial MCUs, partial bytes in packed PNG rows
LW, LH = 96, 72      # the DCT-scaling image: 1/8 is 12x9

manifest = []


def out_path(name):
    return os.path.join(OUT, name)


def write_bytes(name, data):
    with open(out_path(name), "wb") as f:
        f.write(data)


def write_ppm(name, im):
    assert im.mode == "RGB", im.mode
    write_bytes(name, b"P6\n%d %d\n255\n" % im.size + im.tobytes())


def add(file, check, args, expect, max_diff):
    manifest.append((file, check, args, expect, str(max_diff)))


# ---------------------------------------------------------------- source pixels
def lcg(seed):
    state = seed & 0xFFFFFFFF
    while True:
        state = (state * 1664525 + 1013904223) & 0xFFFFFFFF
        yield state >> 24


def base_pixels(w, h, seed):
    """A photo-like but asymmetric picture: gradients, a disc, a bar, noise.
    Asymmetric so that every EXIF orientation gives a different image."""
    noise = lcg(seed)
    px = []
    for y in range(h):
        row = []
        for x in range(w):
            r = (x * 255) // (w - 1)
            g = (y * 255) // (h - 1)
            b = 60 + (x * y) % 120
            if (x - w // 3) ** 2 + (y - h // 3) ** 2 < (h // 4) ** 2:
                r, g, b = 230, 40, 50
            if w // 2 < x < w // 2 + 4 and y > h // 2:
                r, g, b = 20, 20, 200
            n = next(noise) % 17 - 8
            row.append(tuple(min(255, max(0, v + n)) for v in (r, g, b)))
        px.append(row)
    return px


def pil_rgb(px):
    h, w = len(px), len(px[0])
    im = Image.new("RGB", (w, h))
    im.putdata([p for row in px for p in row])
    return im


# ---------------------------------------------------------------- PNG encoder
def png_chunk(tag, data):
    crc = zlib.crc32(tag + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)


def pack_row(samples, depth):
    if depth == 16:
        return b"".join(struct.pack(">H", s) for s in samples)
    if depth == 8:
        return bytes(samples)
    out, acc, nbits = bytearray(), 0, 0
    for s in samples:
        acc = (acc << depth) | s
        nbits += depth
        if nbits == 8:
            out.append(acc)
            acc, nbits = 0, 0
    if nbits:
        out.append(acc << (8 - nbits))
    return bytes(out)


def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def filter_rows(rows, bpp):
    """Filters each packed row with type (row index mod 5), so that every PNG
    exercises all five filters."""
    out, prev = bytearray(), bytes(len(rows[0])) if rows else b""
    for i, row in enumerate(rows):
        ft = i % 5
        f = bytearray()
        for j, v in enumerate(row):
            a = row[j - bpp] if j >= bpp else 0
            b = prev[j]
            c = prev[j - bpp] if j >= bpp else 0
            pred = (0, a, b, (a + b) // 2, paeth(a, b, c))[ft]
            f.append((v - pred) & 0xFF)
        out.append(ft)
        out += f
        prev = row
    return bytes(out)


ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4),
         (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def png_encode(samples, color_type, depth, palette=None, trns=None, interlace=False,
               exif=None):
    """samples[y][x] is a tuple of channel values at `depth` bits."""
    h, w = len(samples), len(samples[0])
    ch = CHANNELS[color_type]
    bpp = max(1, ch * depth // 8)

    def encode(sub):
        rows = [pack_row([v for p in r for v in p], depth) for r in sub]
        return filter_rows(rows, bpp) if rows and rows[0] else b""

    if interlace:
        raw = b""
        for x0, y0, dx, dy in ADAM7:
            sub = [samples[y][x0::dx] for y in range(y0, h, dy)]
            if sub and sub[0]:
                raw += encode(sub)
    else:
        raw = encode(samples)
    ihdr = struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0, 1 if interlace else 0)
    data = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
    if exif is not None:
        data += png_chunk(b"eXIf", exif)
    if palette is not None:
        data += png_chunk(b"PLTE", b"".join(bytes(c) for c in palette))
    if trns is not None:
        data += png_chunk(b"tRNS", trns)
    # two IDAT chunks: the decoder must join them
    z = zlib.compress(raw, 9)
    half = len(z) // 2
    data += png_chunk(b"IDAT", z[:half]) + png_chunk(b"IDAT", z[half:])
    return data + png_chunk(b"IEND", b"")


# ---------------------------------------------------------------- TurboJPEG via ctypes
class TurboJPEG:
    """Just enough of libturbojpeg's compressor for what PIL cannot write:
    4:4:0 and 4:1:1 subsampling and YCCK (compressing CMYK pixels)."""
    PF_RGB, PF_CMYK = 0, 11
    SAMP = {"444": 0, "422": 1, "420": 2, "gray": 3, "440": 4, "411": 5}
    FLAG_PROGRESSIVE = 16384

    def __init__(self):
        self.lib = ctypes.CDLL("libturbojpeg.so.0")
        self.lib.tjInitCompress.restype = ctypes.c_void_p
        self.lib.tjGetErrorStr2.restype = ctypes.c_char_p
        self.lib.tjGetErrorStr2.argtypes = [ctypes.c_void_p]
        self.lib.tjDestroy.argtypes = [ctypes.c_void_p]
        self.lib.tjFree.argtypes = [ctypes.c_void_p]
        self.lib.tjInitDecompress.restype = ctypes.c_void_p
        self.lib.tjCompress2.argtypes = [
            ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_int, ctypes.c_int,
            ctypes.c_int, ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_ulong),
            ctypes.c_int, ctypes.c_int, ctypes.c_int]

    def compress(self, pixels, w, h, pf, samp, quality, flags=0):
        handle = self.lib.tjInitCompress()
        if not handle:
            raise RuntimeError("tjInitCompress failed")
        buf, size = ctypes.c_void_p(), ctypes.c_ulong(0)
        try:
            rc = self.lib.tjCompress2(handle, pixels, w, 0, h, pf, ctypes.byref(buf),
                                      ctypes.byref(size), self.SAMP[samp], quality, flags)
            if rc != 0:
                raise RuntimeError(self.lib.tjGetErrorStr2(handle).decode())
            return ctypes.string_at(buf, size.value)
        finally:
            self.lib.tjFree(buf)
            self.lib.tjDestroy(handle)


    def header_refused(self, jpeg):
        """Whether TurboJPEG's header reader refuses the file (as it does
        sampling factors outside its list): whisker then decodes it through
        libjpeg's own API, the path these fixtures exist for."""
        handle = self.lib.tjInitDecompress()
        dims = [ctypes.c_int(0) for _ in range(4)]
        try:
            return self.lib.tjDecompressHeader3(
                ctypes.c_void_p(handle), jpeg, ctypes.c_ulong(len(jpeg)),
                *[ctypes.byref(d) for d in dims]) != 0
        finally:
            self.lib.tjDestroy(ctypes.c_void_p(handle))


def libjpeg_compress(raw, w, h, factors, quality=90, progressive=False):
    """A JPEG with the given (h, v) sampling factors of Y, Cb and Cr, by
    scripts/jpeg_sampling.c (libjpeg's own encoder), compiled here."""
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "jpeg_sampling.c")
    with tempfile.TemporaryDirectory() as tmp:
        exe = os.path.join(tmp, "jpeg_sampling")
        subprocess.run(["cc", "-O1", "-o", exe, src, "-ljpeg"], check=True)
        args = [exe, str(w), str(h), str(quality)] + [str(f) for hv in factors for f in hv]
        if progressive:
            args.append("progressive")
        return subprocess.run(args, input=raw, stdout=subprocess.PIPE, check=True).stdout


# ---------------------------------------------------------------- JPEG helpers
def pil_jpeg(im, **kw):
    b = io.BytesIO()
    im.save(b, "JPEG", **kw)
    return b.getvalue()


def exif_tiff(orientation, big_endian):
    """A TIFF block with IFD0 holding an ImageDescription (ASCII, stored out
    of line), then Orientation: the parser must walk past other tags."""
    e = ">" if big_endian else "<"
    desc = b"whisker fixture\x00"
    n = 2
    ifd_size = 2 + 12 * n + 4
    desc_off = 8 + ifd_size
    tiff = (b"MM" if big_endian else b"II") + struct.pack(e + "HI", 42, 8)
    tiff += struct.pack(e + "H", n)
    tiff += struct.pack(e + "HHII", 0x010E, 2, len(desc), desc_off)
    tiff += struct.pack(e + "HHIHH", 0x0112, 3, 1, orientation, 0)
    tiff += struct.pack(e + "I", 0)
    return tiff + desc


def with_exif(jpeg, orientation, big_endian=False):
    payload = b"Exif\x00\x00" + exif_tiff(orientation, big_endian)
    app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    # after SOI and, when present, the JFIF APP0 segment
    pos = 2
    if jpeg[2:4] == b"\xff\xe0":
        pos = 4 + struct.unpack(">H", jpeg[4:6])[0]
    return jpeg[:pos] + app1 + jpeg[pos:]


def ref_decode(data, draft=None):
    im = Image.open(io.BytesIO(data))
    if draft:
        im.draft("RGB", draft)
    im.load()
    return ImageOps.exif_transpose(im).convert("RGB")


def add_jpeg(name, data, max_diff=1):
    write_bytes(name, data)
    ref = name.rsplit(".", 1)[0] + ".ppm"
    write_ppm(ref, ref_decode(data))
    add(name, "decode", "-", ref, max_diff)


def gen_jpeg(tj):
    base = pil_rgb(base_pixels(W, H, 1))
    for samp, pil_sub in (("444", 0), ("422", 1), ("420", 2)):
        add_jpeg("jpeg_%s.jpg" % samp, pil_jpeg(base, quality=90, subsampling=pil_sub))
    raw = base.tobytes()
    for samp in ("440", "411"):
        add_jpeg("jpeg_%s.jpg" % samp, tj.compress(raw, W, H, tj.PF_RGB, samp, 90))
    # sampling factors TurboJPEG 2 refuses: 4:1:0, 3x1, Cb and Cr unlike
    for name, factors, prog in (("jpeg_410.jpg", ((4, 2), (1, 1), (1, 1)), False),
                                ("jpeg_31.jpg", ((3, 1), (1, 1), (1, 1)), False),
                                ("jpeg_cb21.jpg", ((2, 2), (2, 1), (1, 1)), False),
                                ("jpeg_410_progressive.jpg", ((4, 2), (1, 1), (1, 1)), True)):
        data = libjpeg_compress(raw, W, H, factors, progressive=prog)
        assert tj.header_refused(data), name
        add_jpeg(name, data)
    add_jpeg("jpeg_gray.jpg", pil_jpeg(base.convert("L"), quality=90))
    add_jpeg("jpeg_progressive.jpg", pil_jpeg(base, quality=90, progressive=True))
    add_jpeg("jpeg_progressive_422.jpg",
             tj.compress(raw, W, H, tj.PF_RGB, "422", 85, tj.FLAG_PROGRESSIVE))
    # CMYK as PIL writes it (Adobe APP14 marker, inverted), and YCCK from TurboJPEG.
    add_jpeg("jpeg_cmyk.jpg", pil_jpeg(base.convert("CMYK"), quality=92))
    cmyk = base.convert("CMYK").tobytes()
    add_jpeg("jpeg_ycck.jpg", tj.compress(cmyk, W, H, tj.PF_CMYK, "420", 92))
    assert Image.open(out_path("jpeg_ycck.jpg")).mode == "CMYK"

    # EXIF orientations 1..8 around the same compressed picture
    plain = pil_jpeg(base, quality=90, subsampling=2)
    for o in range(1, 9):
        add_jpeg("jpeg_exif%d.jpg" % o, with_exif(plain, o))
    add_jpeg("jpeg_exif6_be.jpg", with_exif(plain, 6, big_endian=True))
    write_ppm("jpeg_exif6.raw.ppm", Image.open(io.BytesIO(plain)).convert("RGB"))
    add("jpeg_exif6.jpg", "raw", "-", "jpeg_exif6.raw.ppm", 1)
    # an Exif APP1 whose IFD offset points outside the block: orientation ignored
    broken = bytearray(with_exif(plain, 6))
    at = broken.find(b"Exif\x00\x00") + 6 + 4
    broken[at:at + 4] = struct.pack("<I", 0x7FFFFFF0)
    add_jpeg("jpeg_exif_bad_offset.jpg", bytes(broken))

    # DCT scaling: PIL's draft() uses the same libjpeg scaled IDCT
    large = pil_rgb(base_pixels(LW, LH, 2))
    data = pil_jpeg(large, quality=90, subsampling=2)
    write_bytes("jpeg_large.jpg", data)
    for s in (1, 2, 4, 8):
        ref = "jpeg_large.s%d.ppm" % s
        im = ref_decode(data, draft=(LW // s, LH // s) if s > 1 else None)
        assert im.size == ((LW + s - 1) // s, (LH + s - 1) // s), im.size
        write_ppm(ref, im)
        add("jpeg_large.jpg", "scaled", "%d,%d" % (LW // s, LH // s), ref, 1)
    # a minimum just above 1/4 of the size must give 1/2
    add("jpeg_large.jpg", "scaled", "%d,%d" % (LW // 4 + 1, 1), "jpeg_large.s2.ppm", 1)
    # scaled and rotated: the minimum applies to the displayed (rotated) size
    rot = with_exif(data, 6)
    write_bytes("jpeg_large_exif6.jpg", rot)
    im = ref_decode(rot, draft=(LW // 4, LH // 4))
    write_ppm("jpeg_large_exif6.s4.ppm", im)
    add("jpeg_large_exif6.jpg", "scaled", "%d,%d" % (LH // 4, LW // 4),
        "jpeg_large_exif6.s4.ppm", 1)
    # scaled, rotated and 4:1:0: libjpeg's own API (TurboJPEG refuses the header)
    odd = with_exif(libjpeg_compress(large.tobytes(), LW, LH, ((4, 2), (1, 1), (1, 1))), 6)
    assert tj.header_refused(odd)
    write_bytes("jpeg_large_410_exif6.jpg", odd)
    write_ppm("jpeg_large_410_exif6.s2.ppm", ref_decode(odd, draft=(LW // 2, LH // 2)))
    add("jpeg_large_410_exif6.jpg", "scaled", "%d,%d" % (LH // 2, LW // 2),
        "jpeg_large_410_exif6.s2.ppm", 1)
    return data


# ---------------------------------------------------------------- PNGs
def png_cases():
    """(name, color_type, depth, samples, palette, trns, expected RGBA rows)."""
    px = base_pixels(W, H, 3)
    alpha = [[(x * 255) // (W - 1) if y % 3 else (0, 255, 128)[x % 3]
              for x in range(W)] for y in range(H)]
    cases = []

    def gray8(p):
        return (p[0] * 299 + p[1] * 587 + p[2] * 114) // 1000

    for d in (1, 2, 4, 8, 16):
        maxv = (1 << d) - 1
        if d == 16:
            s = [[((gray8(p) << 8) | ((x * 37 + y * 11) & 0xFF),) for x, p in enumerate(r)]
                 for y, r in enumerate(px)]
            exp = [[(v[0] >> 8,) * 3 + (255,) for v in r] for r in s]
        else:
            s = [[(gray8(p) >> (8 - d),) for p in r] for r in px]
            exp = [[((v[0] * 255) // maxv,) * 3 + (255,) for v in r] for r in s]
        cases.append(("png_gray%d" % d, 0, d, s, None, None, exp))
    for d in (8, 16):
        if d == 16:
            s = [[tuple((c << 8) | ((x + 3 * k) & 0xFF) for k, c in enumerate(p))
                  for x, p in enumerate(r)] for r in px]
        else:
            s = [[tuple(p) for p in r] for r in px]
        exp = [[tuple(v >> (d - 8) for v in p) + (255,) for p in r] for r in s]
        cases.append(("png_rgb%d" % d, 2, d, s, None, None, exp))
    for d in (1, 2, 4, 8):
        n = 1 << d
        pal = [((i * 97) % 256, (i * 57 + 30) % 256, (255 - i * 13) % 256) for i in range(n)]
        s = [[((gray8(p) + x) % n,) for x, p in enumerate(r)] for r in px]
        exp = [[pal[v[0]] + (255,) for v in r] for r in s]
        cases.append(("png_pal%d" % d, 3, d, s, pal, None, exp))
    for d in (8, 16):
        sh = d - 8
        s = [[((gray8(p) << sh) | (x & 0xFF if d == 16 else 0),
               (a << sh) | (y & 0xFF if d == 16 else 0))
              for x, (p, a) in enumerate(zip(r, ar))] for y, (r, ar) in enumerate(zip(px, alpha))]
        exp = [[(v[0] >> sh,) * 3 + (v[1] >> sh,) for v in r] for r in s]
        cases.append(("png_graya%d" % d, 4, d, s, None, None, exp))
    for d in (8, 16):
        sh = d - 8
        s = [[tuple((c << sh) | ((x * 5 + k) & 0xFF if d == 16 else 0) for k, c in enumerate(p))
              + ((a << sh) | (y if d == 16 else 0),)
              for x, (p, a) in enumerate(zip(r, ar))] for y, (r, ar) in enumerate(zip(px, alpha))]
        exp = [[tuple(v >> sh for v in q) for q in r] for r in s]
        cases.append(("png_rgba%d" % d, 6, d, s, None, None, exp))
    # single-colour transparency (tRNS) for gray, RGB and palette
    s = [[(gray8(p),) for p in r] for r in px]
    key = s[H // 3][W // 3][0]
    exp = [[(v[0],) * 3 + (0 if v[0] == key else 255,) for v in r] for r in s]
    cases.append(("png_gray8_trns", 0, 8, s, None, struct.pack(">H", key), exp))
    s = [[tuple(p) for p in r] for r in px]
    keyc = s[H // 3][W // 3]
    exp = [[p + (0 if p == keyc else 255,) for p in r] for r in s]
    cases.append(("png_rgb8_trns", 2, 8, s, None, struct.pack(">HHH", *keyc), exp))
    n = 16
    pal = [((i * 31) % 256, (i * 71) % 256, (i * 11 + 100) % 256) for i in range(n)]
    palpha = [0, 64, 128, 200]  # entries 4.. are opaque (tRNS shorter than PLTE)
    s = [[((gray8(p) + x) % n,) for x, p in enumerate(r)] for r in px]
    exp = [[pal[v[0]] + (palpha[v[0]] if v[0] < 4 else 255,) for v in r] for r in s]
    cases.append(("png_pal8_trns", 3, 8, s, pal, bytes(palpha), exp))
    return cases


def composite_white(rgba):
    r, g, b, a = rgba
    return tuple((t + 128 + ((t + 128) >> 8)) >> 8
                 for t in (c * a + 255 * (255 - a) for c in (r, g, b)))


def check_ref(name, im, expected):
    got = list(im.getdata())
    want = [p for r in expected for p in r]
    assert got == want, "%s: PIL's decode differs from the encoded samples" % name


def gen_png():
    for name, ct, d, s, pal, trns, exp in png_cases():
        for interlace in (False, True) if name in ("png_rgb8", "png_rgba8", "png_gray2") \
                else (False,):
            fname = name + ("_adam7" if interlace else "") + ".png"
            write_bytes(fname, png_encode(s, ct, d, pal, trns, interlace))
            im = Image.open(out_path(fname))
            im.load()
            if im.mode == "I" or im.mode.startswith("I;16"):
                ref = Image.new("RGB", im.size)
                ref.putdata([(v >> 8,) * 3 for v in im.getdata()])
            else:
                ref = im.convert("RGB")
            check_ref(fname, ref, [[p[:3] for p in r] for r in exp])
            stem = fname[:-4]
            write_ppm(stem + ".ppm", ref)
            add(fname, "decode", "-", stem + ".ppm", 0)
            has_alpha = ct in (4, 6) or trns is not None
            if has_alpha and d == 8:
                bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
                bg.alpha_composite(im.convert("RGBA"))
                white = bg.convert("RGB")
                check_ref(fname + " (white)", white,
                          [[composite_white(p) for p in r] for r in exp])
                write_ppm(stem + ".white.ppm", white)
                add(fname, "white", "-", stem + ".white.ppm", 0)
            elif has_alpha:
                # PIL cannot composite 16-bit alpha; the expected values come
                # from the samples with the same high-byte rule
                white = Image.new("RGB", im.size)
                white.putdata([composite_white(p) for r in exp for p in r])
                write_ppm(stem + ".white.ppm", white)
                add(fname, "white", "-", stem + ".white.ppm", 0)
    # EXIF orientation in a PNG eXIf chunk
    px = base_pixels(W, H, 4)
    data = png_encode([[tuple(p) for p in r] for r in px], 2, 8, exif=exif_tiff(8, True))
    write_bytes("png_exif8.png", data)
    ref = ref_decode(data)
    assert ref.size == (H, W), "PIL did not apply the PNG eXIf orientation"
    write_ppm("png_exif8.ppm", ref)
    add("png_exif8.png", "decode", "-", "png_exif8.ppm", 0)


# ---------------------------------------------------------------- resize
def gen_resize():
    src = pil_rgb(base_pixels(LW, LH, 5))
    write_bytes("resize_src.png", png_encode([[tuple(p) for p in r]
                                              for r in base_pixels(LW, LH, 5)], 2, 8))
    cases = [
        ("bilinear", 40, 30, (0, 0, LW, LH)),        # shrink: antialiased
        ("bilinear", 13, 70, (0, 0, LW, LH)),        # shrink one way, keep the other
        ("bilinear", 150, 101, (0, 0, LW, LH)),      # enlarge
        ("bilinear", 24, 24, (10.5, 7.25, 70, 61.5)),  # a fractional box
        ("box", 40, 30, (0, 0, LW, LH)),
        ("box", 17, 9, (5, 3, 90, 71)),
    ]
    filters = {"bilinear": Image.BILINEAR, "box": Image.BOX}
    for i, (flt, ow, oh, box) in enumerate(cases):
        ref = "resize_%d_%s_%dx%d.ppm" % (i, flt, ow, oh)
        write_ppm(ref, src.resize((ow, oh), filters[flt], box=box))
        args = "%s,%d,%d,%s" % (flt, ow, oh, ",".join(repr(float(v)) for v in box))
        add("resize_src.png", "resize", args, ref, 1)


# ---------------------------------------------------------------- bad files
def png_ihdr_only(w, h):
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    z = zlib.compress(b"\x00" * 64)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", z)
            + png_chunk(b"IEND", b""))


def sof_patch(jpeg, w, h):
    b = bytearray(jpeg)
    i = 2
    while i + 4 <= len(b):
        marker = b[i + 1]
        seg = struct.unpack(">H", b[i + 2:i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            b[i + 5:i + 9] = struct.pack(">HH", h, w)
            return bytes(b)
        i += 2 + seg
    raise RuntimeError("no SOF marker")


def pil_refuses(name):
    try:
        with Image.open(out_path(name)) as im:
            im.load()
    except Exception as e:  # noqa: BLE001 - any refusal will do
        return type(e).__name__
    raise AssertionError("PIL accepted bad fixture " + name)


def gen_augment():
    """torchvision's own geometry for the evaluation transform and a given
    random-resized-crop, to hold whisker's augment output against."""
    from torchvision import transforms
    import torchvision.transforms.functional as F
    src = Image.open(out_path("resize_src.png")).convert("RGB")
    rows = []
    for resize, ow, oh in ((32, 24, 24), (40, 26, 20), (72, 72, 72)):
        ref = "augment_eval_r%d_%dx%d.ppm" % (resize, ow, oh)
        im = transforms.CenterCrop((oh, ow))(transforms.Resize(resize)(src))
        write_ppm(ref, im)
        rows.append(("resize_src.png", "eval", "%d,%d,%d" % (resize, ow, oh), ref, "1"))
    for top, left, h, w, ow, oh, flip in ((5, 11, 40, 50, 24, 24, 1), (0, 0, 72, 96, 30, 20, 0),
                                          (20, 3, 9, 13, 32, 24, 0)):
        ref = "augment_crop_%d_%d_%d_%d_%dx%d%s.ppm" % (top, left, h, w, ow, oh,
                                                         "_flip" if flip else "")
        im = F.resized_crop(src, top, left, h, w, [oh, ow])
        if flip:
            im = F.hflip(im)
        write_ppm(ref, im)
        rows.append(("resize_src.png", "crop", "%d,%d,%d,%d,%d,%d,%d" % (top, left, h, w, ow, oh,
                                                                       flip), ref, "1"))
    with open(out_path("AUGMENT.tsv"), "w") as f:
        f.write("# file\tcheck\targs\texpect\tmax_diff  (written by scripts/gen_image_fixtures.py)\n")
        for row in rows:
            f.write("\t".join(row) + "\n")


def gen_bad(large_jpeg):
    bad = []

    def put(name, data, status, word, pil_must_refuse=True):
        write_bytes(name, data)
        if pil_must_refuse:
            pil_refuses(name)
        bad.append(name)
        add(name, "bad", status, word, "-")

    put("bad_zero.jpg", b"", "format", "empty")
    put("bad_zero.png", b"", "format", "empty")
    put("bad_text.jpg", b"This is not a picture, it only has a .jpg name.\n", "format",
        "not an image")
    put("bad_truncated.jpg", large_jpeg[:len(large_jpeg) * 6 // 10], "format", "truncated")
    prog = pil_jpeg(pil_rgb(base_pixels(LW, LH, 6)), quality=90, progressive=True)
    put("bad_truncated_progressive.jpg", prog[:len(prog) // 2], "format", "truncated")
    put("bad_header_only.jpg", large_jpeg[:200], "format", "JPEG")
    odd = libjpeg_compress(pil_rgb(base_pixels(LW, LH, 8)).tobytes(), LW, LH,
                           ((4, 2), (1, 1), (1, 1)))
    put("bad_truncated_410.jpg", odd[:len(odd) * 6 // 10], "format", "truncated")
    # a progressive 4:1:0 file whose shortest scan repeats to 501 scans (each a
    # pass over the coefficients: a few bytes buy seconds); refused, as
    # TurboJPEG's TJFLAG_LIMITSCANS refuses the files it reads
    prog = libjpeg_compress(pil_rgb(base_pixels(W, H, 9)).tobytes(), W, H,
                            ((4, 2), (1, 1), (1, 1)), progressive=True)
    end = prog.rfind(b"\xff\xd9")
    starts = [i for i in range(len(prog) - 1) if prog[i:i + 2] == b"\xff\xda"]
    scans = [prog[a:b] for a, b in zip(starts, starts[1:] + [end])]
    short = min(scans, key=len)
    put("bad_scans_410.jpg", prog[:end] + short * (501 - len(scans)) + prog[end:], "format",
        "scans", pil_must_refuse=False)
    png = png_encode([[tuple(p) for p in r] for r in base_pixels(LW, LH, 7)], 2, 8)
    put("bad_truncated.png", png[:len(png) * 6 // 10], "format", "truncated")
    put("bad_signature_only.png", png[:8], "format", "truncated")
    crc = bytearray(png)
    at = crc.find(b"IDAT") + 20
    crc[at] ^= 0x55
    put("bad_crc.png", bytes(crc), "format", "PNG")
    put("bad_huge.png", png_ihdr_only(100000, 100000), "limit", "pixel limit")
    put("bad_huge.jpg", sof_patch(large_jpeg, 65000, 65000), "limit", "pixel limit")
    put("bad_zero_width.png", png_ihdr_only(0, 10), "format", "PNG")
    gif = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(gif, "GIF")
    put("bad_gif.png", gif.getvalue(), "unsupported", "GIF", pil_must_refuse=False)
    return bad


def main():
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        if f.endswith((".jpg", ".png", ".ppm", ".tsv")):
            os.remove(out_path(f))
    tj = TurboJPEG()
    large = gen_jpeg(tj)
    gen_png()
    gen_resize()
    gen_augment()
    gen_bad(large)
    with open(out_path("MANIFEST.tsv"), "w") as f:
        f.write("# file\tcheck\targs\texpect\tmax_diff  (written by scripts/gen_image_fixtures.py)\n")
        for row in manifest:
            f.write("\t".join(row) + "\n")
    total = sum(os.path.getsize(out_path(f)) for f in os.listdir(OUT))
    print("gen_image_fixtures: %d checks, %d files, %d bytes in %s"
          % (len(manifest), len(os.listdir(OUT)), total, OUT))


if __name__ == "__main__":
    sys.exit(main())
