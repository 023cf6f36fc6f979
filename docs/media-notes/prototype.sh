#!/usr/bin/env bash
# studio — CPU-only "animatic" media pipeline prototype.
#
# Runs end-to-end on 2 scenes x 2 shots and writes an episode to
# /tmp/media-proto/out (override with OUT=...). Every external tool is invoked
# as an argv ARRAY (never through a shell string), exactly like the Rust port
# will do with std::process::Command. Arithmetic/geometry/MIDI/SRT/ffmetadata
# generation lives in an embedded Python helper; that is the part the Rust core
# re-implements (no python at runtime in studio).
#
# Needs: ffmpeg/ffprobe (tested 5.1.x), espeak-ng 1.51, fluidsynth 2.3,
# fluid-soundfont-gm, fonts-noto-cjk, python3 (prototype only).
# CPU: every ffmpeg is capped with -threads 2 / -filter_threads 2.
set -euo pipefail

ROOT=${ROOT:-/tmp/media-proto}
OUT=${OUT:-$ROOT/out}
WORK=${WORK:-$ROOT/work}
FONT=${FONT:-/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc}   # face 0 = Noto Sans CJK JP
SF2=${SF2:-/usr/share/sounds/sf2/FluidR3_GM.sf2}
MEDIA_REPORT=${MEDIA_REPORT:-/work/shared/tools/media-report}
FPS=30                 # output frame rate
SPF=1600               # audio samples per video frame at 48 kHz / 30 fps (48000/30)
SHOT_MIN_FRAMES=120    # 4.0 s default shot length
VOICE_LEAD_FRAMES=15   # dialogue starts 0.5 s into its shot
VOICE_TAIL_FRAMES=15   # and the shot lasts at least 0.5 s past the end of the line

rm -rf "$OUT" "$WORK"
mkdir -p "$OUT" "$WORK"
LOG=$OUT/commands.log       # every argv, shell-quoted, for the notes
TIMES=$OUT/timings.tsv      # step <TAB> wall s <TAB> user s <TAB> sys s
: >"$LOG"; printf 'step\twall_s\tuser_s\tsys_s\n' >"$TIMES"

# run STEP argv... : log the argv, time it, fail loudly.
run() {
  local step=$1; shift
  { printf '# %s\n' "$step"; printf '%q ' "$@"; printf '\n\n'; } >>"$LOG"
  local t=$WORK/.time
  if ! /usr/bin/time -f '%e\t%U\t%S' -o "$t" "$@" >"$WORK/.stdout" 2>"$WORK/.stderr"; then
    echo "FAILED: $step" >&2; tail -20 "$WORK/.stderr" >&2; exit 1
  fi
  printf '%s\t%s\n' "$step" "$(tail -1 "$t")" >>"$TIMES"
}

FF=(ffmpeg -hide_banner -nostdin -y -v error -filter_threads 2 -filter_complex_threads 2)

# ---------------------------------------------------------------------------
# Embedded helper (the logic the Rust core owns)
# ---------------------------------------------------------------------------
HELPER=$WORK/helper.py
cat >"$HELPER" <<'PY'
import json, math, struct, sys, unicodedata

CW, CH = 1200, 1800            # storyboard canvas (1.25x of 960x1440: room for camera moves)
OW, OH = 960, 1440

def fnv1a(s):
    h = 0x811c9dc5
    for b in s.encode("utf-8"):
        h = ((h ^ b) * 0x01000193) & 0xffffffff
    return h

TOD = {  # time of day -> (top rgb, bottom rgb) of the sky gradient
    "dawn":      ((120, 140, 200), (250, 180, 160)),
    "morning":   ((150, 195, 245), (250, 235, 205)),
    "day":       ((100, 165, 240), (205, 230, 250)),
    "afternoon": ((120, 170, 230), (250, 220, 170)),
    "dusk":      ((40, 50, 110), (245, 150, 90)),
    "evening":   ((25, 30, 75), (120, 80, 120)),
    "night":     ((8, 12, 40), (45, 55, 95)),
}

def hsv(h, s, v):
    i = int(h * 6) % 6; f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    r, g, b = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return (int(r * 255), int(g * 255), int(b * 255))

def palette(tod, location):
    top, bot = TOD.get(tod, TOD["day"])
    tint = hsv((fnv1a(location) % 360) / 360.0, 0.5, 0.9)   # stable per location
    mix = lambda c: tuple(int(0.8 * a + 0.2 * b) for a, b in zip(c, tint))
    return mix(top), mix(bot)

POS = {"left": 0.22, "center": 0.5, "right": 0.78}
ANGLE_HORIZON = {"eye_level": 0.0, "high": -0.12, "low": 0.10, "birds_eye": None, "worms_eye": None, "dutch": 0.0}

def layout(shot_type, angle, chars):
    """chars: [(rgb, position|None)] -> figures [(cx, headY, R, rgb, eyes)] back-to-front, horizon y|None."""
    fg = None
    if shot_type in ("close_up", "extreme_close_up"):
        chars = chars[:1]                      # the focus character only
    elif shot_type == "over_shoulder" and len(chars) >= 2:
        fg, chars = chars[0], chars[1:2]       # back of chars[0]'s head in the foreground
    n = len(chars)
    slots = {1: [0.5], 2: [0.3, 0.7], 3: [0.2, 0.5, 0.8]}.get(n) or [0.1 + 0.8 * i / (n - 1) for i in range(n)]
    if shot_type == "over_shoulder":
        slots = [0.66]
    xs = [POS[p] if p in POS else d for (c, p), d in zip(chars, slots)]
    if shot_type == "establishing":
        R = 0.022 * CH; head_y = 0.80 * CH - 7.2 * R; horizon = 0.66
    elif shot_type == "wide":
        R = 0.035 * CH; head_y = 0.80 * CH - 7.2 * R; horizon = 0.70
    elif shot_type in ("medium", "pov", "over_shoulder"):
        R = (0.075 if n <= 2 else 0.062) * CH; head_y = 0.36 * CH; horizon = 0.78
    elif shot_type == "close_up":
        R = 0.20 * CH; head_y = 0.42 * CH; horizon = None
    else:  # extreme_close_up
        R = 0.34 * CH; head_y = 0.50 * CH; horizon = None
    shift = ANGLE_HORIZON.get(angle, 0.0)
    if horizon is not None:
        horizon = None if shift is None else (horizon + shift) * CH
    figs = [(x, head_y, R, c, True) for x, (c, p) in zip(xs, chars)]
    if fg is not None:                         # drawn last = in front, no eyes (seen from behind)
        figs.append((0.24, 0.74 * CH, 0.19 * CH, fg[0], False))
    return [(x * CW, y, R, c, e) for x, y, R, c, e in figs], horizon

def frame_geq(tod, location, shot_type, angle, chars):
    top, bot = palette(tod, location)
    if angle == "birds_eye":                   # looking down: all ground
        top, bot = tuple(int(c * 0.62) for c in bot), tuple(int(c * 0.5) for c in bot)
    figs, horizon = layout(shot_type, angle, chars)
    def chan(k):
        e = ["st(0,%d+%d*Y/H)" % (top[k], bot[k] - top[k])]
        if horizon is not None:
            e.append("if(gte(Y,%.1f),st(0,ld(0)*0.62))" % horizon)
        for cx, hy, R, col, eyes in figs:
            by = hy + R + 3.0 * R          # body ellipse centre, semi-axes 1.5R x 3.2R
            o = max(2.0, 0.03 * R)         # outline width
            look = 0.12 * R * (1 if cx < CW / 2 else -1 if cx > CW / 2 else 0)
            head = "lt(hypot(X-%.1f,Y-%.1f),%.1f)" % (cx, hy, R)
            head_o = "lt(hypot(X-%.1f,Y-%.1f),%.1f)" % (cx, hy, R + o)
            body = "lt(pow((X-%.1f)/%.1f,2)+pow((Y-%.1f)/%.1f,2),1)" % (cx, 1.5 * R, by, 3.2 * R)
            body_o = "lt(pow((X-%.1f)/%.1f,2)+pow((Y-%.1f)/%.1f,2),1)" % (cx, 1.5 * R + o, by, 3.2 * R + o)
            eye = "lt(min(hypot(X-%.1f,Y-%.1f),hypot(X-%.1f,Y-%.1f)),%.1f)" % (
                cx - 0.35 * R + look, hy - 0.1 * R, cx + 0.35 * R + look, hy - 0.1 * R, 0.12 * R) if eyes else "0"
            bbox = "between(X,%.1f,%.1f)*between(Y,%.1f,%.1f)" % (
                cx - 1.5 * R - o, cx + 1.5 * R + o, hy - R - o, by + 3.2 * R + o)
            light = int(col[k] + (255 - col[k]) * 0.6)
            dark = int(col[k] * 0.35)
            e.append("if(%s,if(%s,st(0,25),if(%s,st(0,%d),if(%s,st(0,%d),if(%s,st(0,%d),if(%s,st(0,%d)))))))" % (
                bbox, eye, head, light, head_o, dark, body, col[k], body_o, dark))
        e.append("ld(0)")
        return ";".join(e)
    return "geq=r='%s':g='%s':b='%s'" % (chan(0), chan(1), chan(2))

def char_width(ch, fs):
    return fs * (1.0 if unicodedata.east_asian_width(ch) in "WF" else 0.56)

def wrap(text, fs, max_w):
    """Greedy wrap: break at spaces for Latin, anywhere between wide (CJK) chars."""
    out = []
    for para in text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", " ").split("\n"):
        line, w, last_space = "", 0.0, -1
        for ch in para:
            if unicodedata.category(ch) == "Cc":
                continue
            cw = char_width(ch, fs)
            if w + cw > max_w and line:
                if ch == " ":
                    out.append(line); line, w, last_space = "", 0.0, -1; continue
                if last_space > 0 and unicodedata.east_asian_width(ch) not in "WF":
                    out.append(line[:last_space]); line = line[last_space + 1:]
                else:
                    out.append(line); line = ""
                w = sum(char_width(c, fs) for c in line); last_space = line.rfind(" ")
            line += ch; w += cw
            if ch == " ": last_space = len(line) - 1
        out.append(line)
    return "\n".join(out)

MOVES = {  # view rect (cx, cy, v) in canvas fractions; v = view width / canvas width
    "hold":       ((0.5, 0.5, 1.0), (0.5, 0.5, 1.0)),
    "push_in":    ((0.5, 0.5, 1.0), (0.5, 0.45, 0.8)),
    "pull_out":   ((0.5, 0.45, 0.8), (0.5, 0.5, 1.0)),
    "pan_left":   ((0.6, 0.5, 0.8), (0.4, 0.5, 0.8)),
    "pan_right":  ((0.4, 0.5, 0.8), (0.6, 0.5, 0.8)),
    "tilt_up":    ((0.5, 0.6, 0.8), (0.5, 0.4, 0.8)),
    "tilt_down":  ((0.5, 0.4, 0.8), (0.5, 0.6, 0.8)),
}

def camera(move, frames, dutch_deg=0.0):
    """perspective filter (sub-pixel, smooth) mapping the moving view rect to the frame.
    dutch_deg != 0 rolls the view (dutch angle); the view shrinks so rotated corners stay inside."""
    (ax, ay, av), (bx, by, bv) = MOVES[move]
    th = math.radians(dutch_deg)
    k = 1.0 / (math.cos(th) + math.sin(abs(th)) * CH / CW) if th else 1.0   # fit the rotated rect
    def rect(cx, cy, v):
        v = v * k
        cx = min(max(cx, v / 2), 1 - v / 2); cy = min(max(cy, v / 2), 1 - v / 2)   # stay inside
        return ((cx - v / 2) * CW, (cy - v / 2) * CH, (cx + v / 2) * CW, (cy + v / 2) * CH)
    a, b = rect(ax, ay, av), rect(bx, by, bv)
    if a == b and not th:  # static framing: a plain integer crop (no per-frame resampling, ~4x cheaper)
        return "crop=%d:%d:%d:%d" % (round(a[2] - a[0]), round(a[3] - a[1]), round(a[0]), round(a[1]))
    def corners(r):  # TL, TR, BL, BR rotated about the rect centre
        cx, cy = (r[0] + r[2]) / 2, (r[1] + r[3]) / 2
        rot = lambda x, y: (cx + (x - cx) * math.cos(th) - (y - cy) * math.sin(th),
                            cy + (x - cx) * math.sin(th) + (y - cy) * math.cos(th))
        return [c for p in ((r[0], r[1]), (r[2], r[1]), (r[0], r[3]), (r[2], r[3])) for c in rot(*p)]
    ca, cb = corners(a), corners(b)
    ease = "st(0,clip(in/%d,0,1));st(0,ld(0)*ld(0)*(3-2*ld(0)))" % max(frames - 1, 1)  # smoothstep
    e = ["'%s;%.3f+%.3f*ld(0)'" % (ease, ca[i], cb[i] - ca[i]) for i in range(8)]
    return ("perspective=x0=%s:y0=%s:x1=%s:y1=%s:x2=%s:y2=%s:x3=%s:y3=%s"
            ":interpolation=linear:sense=source:eval=frame" % tuple(e))

# ---- minimal SMF (format 1) writer --------------------------------------
MOODS = {  # bpm, tonic midi note, minor?, progression (scale degrees, 0-based), GM programs (0-based)
    "calm":       dict(bpm=72,  tonic=60, minor=False, prog=[0, 4, 5, 3], pad=89, lead=0,  bass=32),  # C:  I-V-vi-IV, warm pad/piano/ac.bass
    "tense":      dict(bpm=96,  tonic=62, minor=True,  prog=[0, 5, 6, 0], pad=44, lead=45, bass=43),  # Dm: i-VI-VII-i, tremolo/pizz./contrabass
    "melancholy": dict(bpm=64,  tonic=57, minor=True,  prog=[0, 3, 5, 4], pad=48, lead=0,  bass=42),  # Am: i-iv-VI-v, strings/piano/cello
    "joyful":     dict(bpm=120, tonic=67, minor=False, prog=[0, 3, 4, 0], pad=48, lead=12, bass=33),  # G:  I-IV-V-I, strings/marimba/finger bass
    "mysterious": dict(bpm=80,  tonic=64, minor=True,  prog=[0, 1, 0, 6], pad=91, lead=8,  bass=35),  # Em: i-ii-i-VII, choir pad/celesta/fretless
    "action":     dict(bpm=140, tonic=64, minor=True,  prog=[0, 5, 2, 6], pad=50, lead=30, bass=38),  # Em: i-VI-III-VII, synth str/dist.gtr/synth bass
    "romantic":   dict(bpm=76,  tonic=65, minor=False, prog=[0, 5, 3, 4], pad=48, lead=73, bass=32),  # F:  I-vi-IV-V, strings/flute/ac.bass
    "comedic":    dict(bpm=132, tonic=60, minor=False, prog=[0, 3, 0, 4], pad=45, lead=71, bass=58),  # C:  I-IV-I-V, pizzicato/clarinet/tuba
    "hopeful":    dict(bpm=88,  tonic=62, minor=False, prog=[3, 0, 4, 5], pad=48, lead=46, bass=32),  # D:  IV-I-V-vi, strings/harp/ac.bass
    "eerie":      dict(bpm=60,  tonic=59, minor=True,  prog=[0, 1, 0, 1], pad=94, lead=8,  bass=43),  # Bm: i-ii-i-ii, halo pad/celesta/contrabass
}
MAJOR = [0, 2, 4, 5, 7, 9, 11]; MINOR = [0, 2, 3, 5, 7, 8, 10]

def vlq(n):
    b = [n & 0x7f]; n >>= 7
    while n: b.append((n & 0x7f) | 0x80); n >>= 7
    return bytes(reversed(b))

def track(events):  # events: (abs_tick, order, bytes) ; order puts note-offs before note-ons
    data, last = b"", 0
    for t, _, ev in sorted(events, key=lambda e: (e[0], e[1])):
        data += vlq(t - last) + ev; last = t
    data += vlq(0) + b"\xff\x2f\x00"
    return b"MTrk" + struct.pack(">I", len(data)) + data

def midi(mood, seconds, path):
    m = MOODS.get(mood, MOODS["calm"]); ppq = 480
    scale = MINOR if m["minor"] else MAJOR
    beat_s = 60.0 / m["bpm"]; bars = int(math.ceil(seconds / (4 * beat_s))) + 1   # +1 bar of tail
    key_sf = 0
    meta = [(0, 0, b"\xff\x51\x03" + struct.pack(">I", int(60e6 / m["bpm"]))[1:]),
            (0, 0, b"\xff\x58\x04\x04\x02\x18\x08"),
            (0, 0, b"\xff\x59\x02" + struct.pack(">bB", key_sf, 1 if m["minor"] else 0))]
    def chord(deg):
        return [m["tonic"] + 12 * ((deg + i) // 7) + scale[(deg + i) % 7] for i in (0, 2, 4)]
    pad, lead, bass = [], [], []
    for ch, prog, evs in ((0, m["pad"], pad), (1, m["lead"], lead), (2, m["bass"], bass)):
        evs.append((0, 0, bytes([0xC0 | ch, prog])))
        evs.append((0, 0, bytes([0xB0 | ch, 7, [70, 80, 90][ch]])))   # channel volume
    for bar in range(bars):
        t0 = bar * 4 * ppq; notes = chord(m["prog"][bar % len(m["prog"])])
        for k in notes:                                              # sustained pad chord
            pad += [(t0, 1, bytes([0x90, k, 60])), (t0 + 4 * ppq, 0, bytes([0x80, k, 0]))]
        for i in range(8):                                           # eighth-note arpeggio
            k = notes[[0, 1, 2, 1][i % 4]] + 12; t = t0 + i * ppq // 2
            lead += [(t, 1, bytes([0x91, k, 50 + (12 if i % 4 == 0 else 0)])), (t + ppq // 2, 0, bytes([0x81, k, 0]))]
        for i in range(2):                                           # half-note root bass
            k = notes[0] - 24; t = t0 + i * 2 * ppq
            bass += [(t, 1, bytes([0x92, k, 80])), (t + 2 * ppq, 0, bytes([0x82, k, 0]))]
    tracks = [track(meta), track(pad), track(lead), track(bass)]
    with open(path, "wb") as f:
        f.write(b"MThd" + struct.pack(">IHHH", 6, 1, len(tracks), ppq) + b"".join(tracks))

# ---- text escaping ---------------------------------------------------------
WJ = "\u2060"  # WORD JOINER, invisible
def srt_text(s):
    s = s.replace("\r\n", "\n").replace("\r", "\n")
    s = "\n".join(l for l in s.split("\n") if l.strip())       # a blank line would end the cue
    return (s.replace("\\", "\\" + WJ).replace("{", "{" + WJ)  # \N \h and {\tags} are ASS markup
             .replace("<", "<" + WJ).replace("-->", "--" + WJ + ">"))
def meta_text(s):  # ffmetadata: escape = ; # \ and newline with a backslash
    return "".join("\\" + c if c in "=;#\\\n" else c for c in s)
def ts_srt(ms):
    return "%02d:%02d:%02d,%03d" % (ms // 3600000, ms // 60000 % 60, ms // 1000 % 60, ms % 1000)

def cmd_timeline(manifest, scenes_tsv, srt_path, meta_path, offsets_path, title):
    """manifest rows: scene shot shot_start_frame frames voice_off_samples voice_samples textfile
       scenes rows: scene frames transition trans_frames title"""
    scenes = [l.rstrip("\n").split("\t") for l in open(scenes_tsv, encoding="utf-8") if l.strip()]
    starts, acc = [], 0                     # scene start (frames) on the episode timeline
    for i, s in enumerate(scenes):
        starts.append(acc if i == 0 else acc - int(scenes[i - 1][3]))
        acc = starts[-1] + int(s[1])
    total = acc
    with open(offsets_path, "w") as f:      # xfade offsets: start of scene i (i>=1), seconds
        f.write(" ".join("%.6f" % (st / 30.0) for st in starts[1:]) + "\n%d\n" % total)
    with open(meta_path, "w", encoding="utf-8") as f:
        f.write(";FFMETADATA1\ntitle=%s\n" % meta_text(title))
        for i, s in enumerate(scenes):
            end = starts[i + 1] if i + 1 < len(scenes) else total
            f.write("[CHAPTER]\nTIMEBASE=1/1000\nSTART=%d\nEND=%d\ntitle=%s\n" % (
                round(starts[i] * 1000 / 30), round(end * 1000 / 30), meta_text(s[4])))
    cues = []
    for l in open(manifest, encoding="utf-8"):
        sc, sh, sf, nf, vo, vs, tf = l.rstrip("\n").split("\t")
        if int(vs) == 0: continue
        t0 = starts[int(sc)] * 1000 / 30 + int(vo) / 48.0
        t1 = t0 + max(int(vs) / 48.0, 1000)
        cues.append((round(t0), round(t1), open(tf, encoding="utf-8").read()))
    with open(srt_path, "w", encoding="utf-8") as f:
        for n, (a, b, t) in enumerate(cues, 1):
            f.write("%d\n%s --> %s\n%s\n\n" % (n, ts_srt(a), ts_srt(b), srt_text(t)))

def cmd_loudnorm_args(stderr_path, target_i, target_tp, lra_min):
    err = open(stderr_path, encoding="utf-8", errors="replace").read()
    j = json.loads(err[err.rindex("{"):err.rindex("}") + 1])
    lra = max(float(lra_min), math.ceil(float(j["input_lra"]) + 1))   # linear mode needs measured LRA <= target
    print("loudnorm=I=%s:TP=%s:LRA=%g:measured_I=%s:measured_TP=%s:measured_LRA=%s:measured_thresh=%s"
          ":offset=%s:linear=true:print_format=json" % (target_i, target_tp, lra, j["input_i"], j["input_tp"],
                                                          j["input_lra"], j["input_thresh"], j["target_offset"]))

def cmd_limiter(stderr_path, target_i, target_tp, margin):
    """Print an alimiter pre-filter when linear loudnorm is impossible, else nothing."""
    err = open(stderr_path, encoding="utf-8", errors="replace").read()
    j = json.loads(err[err.rindex("{"):err.rindex("}") + 1])
    gain = float(target_i) - float(j["input_i"])
    if float(j["input_tp"]) + gain <= float(target_tp):
        return
    limit_db = float(target_tp) - gain - float(margin)
    limit = min(1.0, max(0.0625, 10 ** (limit_db / 20)))
    print("alimiter=limit=%.4f:attack=5:release=50:level=0:latency=1" % limit)

if __name__ == "__main__":
    a = sys.argv[1:]
    if a[0] == "frame-geq":   # frame-geq TOD LOCATION SHOT_TYPE ANGLE R,G,B[@position]...
        cs = [(tuple(int(v) for v in c.split("@")[0].split(",")), (c.split("@") + [None])[1]) for c in a[5:]]
        print(frame_geq(a[1], a[2], a[3], a[4], cs))
    elif a[0] == "wrap":      open(a[4], "w", encoding="utf-8").write(wrap(open(a[1], encoding="utf-8").read(), float(a[2]), float(a[3])))
    elif a[0] == "camera":    print(camera(a[1], int(a[2]), float(a[3]) if len(a) > 3 else 0.0))
    elif a[0] == "midi":      midi(a[1], float(a[2]), a[3])
    elif a[0] == "timeline":  cmd_timeline(*a[1:7])
    elif a[0] == "loudnorm":  cmd_loudnorm_args(*a[1:5])
    elif a[0] == "limiter":   cmd_limiter(*a[1:5])
    elif a[0] == "json":      # json FILE KEY... -> value
        d = json.load(open(a[1]))
        for k in a[2:]: d = d[int(k)] if isinstance(d, list) else d[k]
        print(d)
PY
H() { python3 "$HELPER" "$@"; }

# ---------------------------------------------------------------------------
# Screenplay (what studio's core would hand to the media layer)
# ---------------------------------------------------------------------------
declare -A CHAR_RGB=([aoi]="225,70,95" [ren]="70,105,225" [kai]="60,170,90")
declare -A CHAR_VOICE=([aoi]="en-us+f3" [ren]="en-us+m3" [kai]="ja")
declare -A CHAR_PITCH=([aoi]=65 [ren]=35 [kai]=55)
declare -A CHAR_RATE=([aoi]=165 [ren]=150 [kai]=150)

SCENE_TITLE=('Rooftop: "after school"; #1' 'Street = night \ chase 「夜」')
SCENE_LOC=("school rooftop" "city street")
SCENE_TOD=(dusk night)
SCENE_MOOD=(calm tense)
SCENE_TRANS=(dissolve fadeblack)          # transition INTO the next scene
SCENE_TRANS_FRAMES=(12 12)                # 0.4 s

SHOT_SCENE=(0 0 1 1)
SHOT_TYPE=(wide over_shoulder medium close_up)
SHOT_ANGLE=(high dutch eye_level low)
SHOT_CAM=(push_in hold pan_right tilt_down)
SHOT_CHARS=("aoi@left ren@right" "aoi ren" "aoi@left kai@center ren@right" "aoi")
SHOT_SPEAKER=(aoi ren kai aoi)
SHOT_LINE=(
  "It's late: the sun's \"almost\" gone..."
  "-Don't worry; we have time, [right]?"
  "まって！ ほんとうに？"
  'C:\New {x} <b> 50% #1 = ok'
)

# ---------------------------------------------------------------------------
# 4. Voice lines (first: shot length depends on line length)
# ---------------------------------------------------------------------------
MANIFEST=$WORK/manifest.tsv; : >"$MANIFEST"
declare -a SHOT_FRAMES VOICE_SAMPLES
for i in "${!SHOT_SCENE[@]}"; do
  d=$WORK/shot$i; mkdir -p "$d"
  printf '%s' "${SHOT_LINE[$i]}" >"$d/line.txt"          # text goes through a file, never argv
  spk=${SHOT_SPEAKER[$i]}
  run "voice$i.espeak" espeak-ng -v "${CHAR_VOICE[$spk]}" -p "${CHAR_PITCH[$spk]}" -s "${CHAR_RATE[$spk]}" \
      -a 120 -w "$d/voice_raw.wav" -f "$d/line.txt"
  [[ -s $d/voice_raw.wav ]] || { echo "espeak-ng produced nothing" >&2; exit 1; }   # it exits 0 on bad args
  run "voice$i.resample" "${FF[@]}" -i "$d/voice_raw.wav" -af "aresample=48000:resampler=soxr" \
      -ac 1 -c:a pcm_s16le "$d/voice.wav"
  run "voice$i.probe" ffprobe -v error -select_streams a:0 -show_entries stream=duration_ts,sample_rate,duration \
      -of json "$d/voice.wav"
  cp "$WORK/.stdout" "$d/voice.json"
  VOICE_SAMPLES[$i]=$(H json "$d/voice.json" streams 0 duration_ts)
  need=$(( VOICE_LEAD_FRAMES + (VOICE_SAMPLES[$i] + SPF - 1) / SPF + VOICE_TAIL_FRAMES ))
  SHOT_FRAMES[$i]=$(( need > SHOT_MIN_FRAMES ? need : SHOT_MIN_FRAMES ))
done

# ---------------------------------------------------------------------------
# 1. Storyboard frame: plate (1200x1800 canvas, no text) + storyboard panel
#    (960x1440 with caption) from ONE ffmpeg run.
# ---------------------------------------------------------------------------
for i in "${!SHOT_SCENE[@]}"; do
  d=$WORK/shot$i; s=${SHOT_SCENE[$i]}
  cols=(); for c in ${SHOT_CHARS[$i]}; do id=${c%@*}; pos=; [[ $c == *@* ]] && pos=@${c#*@}; cols+=("${CHAR_RGB[$id]}$pos"); done
  geq=$(H frame-geq "${SCENE_TOD[$s]}" "${SCENE_LOC[$s]}" "${SHOT_TYPE[$i]}" "${SHOT_ANGLE[$i]}" "${cols[@]}")
  printf 'S%d-%d  %s / %s / %s\n%s: %s' $((s + 1)) $((i + 1)) "${SHOT_TYPE[$i]}" "${SHOT_ANGLE[$i]}" "${SHOT_CAM[$i]}" \
      "${SHOT_SPEAKER[$i]}" "${SHOT_LINE[$i]}" >"$d/caption_raw.txt"
  H wrap "$d/caption_raw.txt" 34 860 "$d/caption.txt"     # drawtext does not wrap; no trailing newline
  # $FONT and $d contain no filtergraph specials here; see escape_filter_value() in the notes otherwise.
  fg="[0:v]${geq},split=2[plate][p2];[p2]scale=960:1440:flags=bicubic,drawtext=fontfile=${FONT}:textfile=${d}/caption.txt:expansion=none:fontsize=34:fontcolor=white:line_spacing=10:box=1:boxcolor=black@0.6:boxborderw=18:x=(w-text_w)/2:y=h-text_h-60[panel]"
  run "frame$i" "${FF[@]}" -f lavfi -i "color=c=black:s=1200x1800:r=1,format=gbrp" \
      -filter_complex "$fg" \
      -map "[plate]" -frames:v 1 "$d/plate.png" \
      -map "[panel]" -frames:v 1 "$d/frame.png"
  cp "$d/frame.png" "$OUT/storyboard_s$((s + 1))_shot$((i + 1)).png"
done

# ---------------------------------------------------------------------------
# 2. Shot video: smooth camera move (perspective, sub-pixel) -> 30 fps ->
#    960x1440 -> grade. Intermediate: FFV1 (lossless, intra-only) in Matroska.
# 3. Last frame -> PNG (continuity frame).
# ---------------------------------------------------------------------------
for i in "${!SHOT_SCENE[@]}"; do
  d=$WORK/shot$i; n=${SHOT_FRAMES[$i]}
  dutch=0; [[ ${SHOT_ANGLE[$i]} == dutch ]] && dutch=6
  cam=$(H camera "${SHOT_CAM[$i]}" "$n" "$dutch")
  # loop filter = decode the PNG once (-loop 1 on the input re-decodes it for every frame)
  vf="loop=loop=$((n - 1)):size=1:start=0,settb=1/${FPS},setpts=N,fps=${FPS},format=gbrp,${cam},scale=960:1440:flags=bicubic,setsar=1,format=yuv420p,eq=contrast=1.15:saturation=1.15"
  run "shot$i.video" "${FF[@]}" -i "$d/plate.png" -vf "$vf" -frames:v "$n" \
      -c:v ffv1 -level 3 -g 1 -slices 4 -slicecrc 1 -threads 2 "$d/shot.mkv"
  run "shot$i.lastframe" "${FF[@]}" -sseof -0.5 -i "$d/shot.mkv" -update 1 -c:v png "$d/last.png"
done
cp "$WORK/shot0/last.png" "$OUT/continuity_shot1_last.png"

# ---------------------------------------------------------------------------
# 5. Music per scene, 6. scene video (concat) + scene audio (voices + ducked music)
# ---------------------------------------------------------------------------
SCENES_TSV=$WORK/scenes.tsv; : >"$SCENES_TSV"
for s in "${!SCENE_LOC[@]}"; do
  sd=$WORK/scene$s; mkdir -p "$sd"
  shots=(); for i in "${!SHOT_SCENE[@]}"; do [[ ${SHOT_SCENE[$i]} == "$s" ]] && shots+=("$i"); done
  # scene length in frames and per-shot start frame
  frames=0; list="ffconcat version 1.0"$'\n'
  for i in "${shots[@]}"; do
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$s" "$i" "$frames" "${SHOT_FRAMES[$i]}" \
        $(( (frames + VOICE_LEAD_FRAMES) * SPF )) "${VOICE_SAMPLES[$i]}" "$WORK/shot$i/line.txt" >>"$MANIFEST"
    f=$WORK/shot$i/shot.mkv; list+="file '${f//\'/\'\\\'\'}'"$'\n'
    frames=$((frames + SHOT_FRAMES[$i]))
  done
  samples=$((frames * SPF)); secs=$(awk -v f="$frames" 'BEGIN{printf "%.6f", f/30}')
  printf '%s\t%s\t%s\t%s\t%s\n' "$s" "$frames" "${SCENE_TRANS[$s]}" "${SCENE_TRANS_FRAMES[$s]}" "${SCENE_TITLE[$s]}" >>"$SCENES_TSV"

  # 5. music: MIDI -> fluidsynth 48 kHz -> exact scene length with fades
  H midi "${SCENE_MOOD[$s]}" "$secs" "$sd/music.mid"
  run "scene$s.fluidsynth" fluidsynth -ni -q -g 1.0 -r 48000 -O s16 -T wav -F "$sd/music_raw.wav" "$SF2" "$sd/music.mid"
  fade_st=$(awk -v f="$frames" 'BEGIN{printf "%.6f", f/30-1.5}')
  run "scene$s.music_fit" "${FF[@]}" -i "$sd/music_raw.wav" \
      -af "aresample=48000,aformat=sample_fmts=fltp:channel_layouts=stereo,apad=whole_len=${samples},atrim=end_sample=${samples},afade=t=in:d=0.5,afade=t=out:st=${fade_st}:d=1.5" \
      -c:a pcm_f32le "$sd/music.wav"

  # 6a. scene video: concat demuxer, stream copy (FFV1 is intra-only: every cut is clean)
  printf '%s' "$list" >"$sd/shots.ffconcat"
  run "scene$s.concat" "${FF[@]}" -f concat -safe 0 -i "$sd/shots.ffconcat" -c copy "$sd/video.mkv"

  # 6b. scene audio: silent bed of exact length + delayed voices -> sidechain duck the music
  in=(-i "$sd/music.wav"); fg="anullsrc=r=48000:cl=stereo,atrim=end_sample=${samples}[bed];"; mixin="[bed]"; k=1
  while IFS=$'\t' read -r sc sh sf nf vo vs tf; do
    [[ $sc == "$s" ]] || continue
    in+=(-i "$WORK/shot$sh/voice.wav")
    fg+="[$k:a]pan=stereo|c0=c0|c1=c0,adelay=delays=${vo}S:all=1[v$k];"; mixin+="[v$k]"; k=$((k + 1))
  done <"$MANIFEST"
  fg+="${mixin}amix=inputs=${k}:normalize=0:duration=first,asplit=2[sc][vox];"
  fg+="[0:a]volume=1.0,asplit=2[mus][musv];[mus][sc]sidechaincompress=threshold=0.02:ratio=6:attack=200:release=1000,asplit=2[duck][duckv];"
  fg+="[duck][vox]amix=inputs=2:normalize=0:duration=first,atrim=end_sample=${samples}[mix]"
  run "scene$s.audio_mix" "${FF[@]}" "${in[@]}" -filter_complex "$fg" \
      -map "[mix]" -c:a pcm_f32le "$sd/audio.wav" \
      -map "[duckv]" -c:a pcm_f32le "$sd/music_ducked.wav" \
      -map "[musv]" -c:a pcm_f32le "$sd/music_level.wav"         # 2nd/3rd outputs: only for the ducking check
done

# ---------------------------------------------------------------------------
# Ducking check: music level ducked vs. undocked in each dialogue window and
# in a dialogue-free window. (astats RMS over atrim windows)
# ---------------------------------------------------------------------------
rms() {  # rms FILE START END -> dBFS
  ffmpeg -hide_banner -nostdin -v info -i "$1" -af "atrim=start=$2:end=$3,astats=measure_perchannel=none:measure_overall=RMS_level" \
    -f null - 2>&1 | awk '/RMS level dB/ {v=$NF} END {print v}'
}
{
  printf 'scene\twindow\tstart_s\tend_s\tmusic_dB\tducked_dB\treduction_dB\n'
  while IFS=$'\t' read -r sc sh sf nf vo vs tf; do
    sd=$WORK/scene$sc
    a=$(awk -v o="$vo" 'BEGIN{printf "%.3f", o/48000+0.3}'); b=$(awk -v o="$vo" -v l="$vs" 'BEGIN{printf "%.3f", (o+l)/48000-0.1}')
    m=$(rms "$sd/music_level.wav" "$a" "$b")
    dk=$(rms "$sd/music_ducked.wav" "$a" "$b")
    printf '%s\tdialogue(shot%s)\t%s\t%s\t%s\t%s\t%s\n' "$sc" "$sh" "$a" "$b" "$m" "$dk" "$(awk -v m="$m" -v d="$dk" 'BEGIN{printf "%.2f", m-d}')"
  done <"$MANIFEST"
  # dialogue-free window: the 0.4 s before the first line starts (release has long settled)
  for s in "${!SCENE_LOC[@]}"; do
    sd=$WORK/scene$s
    m=$(rms "$sd/music_level.wav" 0.05 0.45); dk=$(rms "$sd/music_ducked.wav" 0.05 0.45)
    printf '%s\tno-dialogue\t0.05\t0.45\t%s\t%s\t%s\n' "$s" "$m" "$dk" "$(awk -v m="$m" -v d="$dk" 'BEGIN{printf "%.2f", m-d}')"
  done
} >"$OUT/ducking.tsv"

# ---------------------------------------------------------------------------
# 7. Episode: xfade video, acrossfade audio, loudnorm (2-pass), mux, thumbnail
# ---------------------------------------------------------------------------
E=$WORK/episode; mkdir -p "$E"
H timeline "$MANIFEST" "$SCENES_TSV" "$E/episode.srt" "$E/chapters.ffmeta" "$E/offsets.txt" \
  'Episode 1: "Sunset"; test #1 = ok'
read -r -a OFFS < <(sed -n 1p "$E/offsets.txt"); TOTAL_FRAMES=$(sed -n 2p "$E/offsets.txt")
NS=${#SCENE_LOC[@]}
vin=(); ain=(); vfg=""; afg=""
for s in $(seq 0 $((NS - 1))); do
  vin+=(-i "$WORK/scene$s/video.mkv"); ain+=(-i "$WORK/scene$s/audio.wav")
  vfg+="[$s:v]settb=AVTB,fps=${FPS},format=yuv420p,setsar=1[v$s];"
done
vprev="v0"; aprev="0:a"
for s in $(seq 1 $((NS - 1))); do
  tfr=${SCENE_TRANS_FRAMES[$((s - 1))]}
  dur=$(awk -v f="$tfr" 'BEGIN{printf "%.6f", f/30}')
  vfg+="[$vprev][v$s]xfade=transition=${SCENE_TRANS[$((s - 1))]}:duration=${dur}:offset=${OFFS[$((s - 1))]},setpts=N/FRAME_RATE/TB[x$s];"; vprev="x$s"
  afg+="[$aprev][$s:a]acrossfade=ns=$((tfr * SPF)):c1=tri:c2=tri[a$s];"; aprev="a$s"
done
vfg+="[$vprev]null[vout]"; afg+="[$aprev]anull[aout]"
run "episode.video" "${FF[@]}" "${vin[@]}" -filter_complex "$vfg" -map "[vout]" -an \
    -c:v libx264 -preset veryfast -crf 20 -profile:v high -pix_fmt yuv420p -g 60 -threads 2 \
    -movflags +faststart "$E/video.mp4"
run "episode.audio" "${FF[@]}" "${ain[@]}" -filter_complex "$afg" -map "[aout]" -c:a pcm_f32le "$E/audio_raw.wav"

# loudnorm pass 1 (measure) -> pass 2 (linear, with measured values) -> AAC 48k stereo
run "episode.loudnorm1" ffmpeg -hide_banner -nostdin -nostats -i "$E/audio_raw.wav" \
    -af "loudnorm=I=-16:TP=-1.5:LRA=11:print_format=json" -f null -
cp "$WORK/.stderr" "$E/loudnorm1.txt"; MEAS=$E/loudnorm1.txt
# linear mode is only possible if measured_TP + (I_target - measured_I) <= TP_target. If not, put a
# look-ahead limiter (latency-compensated) in front and measure again; both passes then share it.
PRE=$(H limiter "$E/loudnorm1.txt" -16 -1.5 0.5)
if [[ -n $PRE ]]; then
  run "episode.loudnorm1b" ffmpeg -hide_banner -nostdin -nostats -i "$E/audio_raw.wav" \
      -af "${PRE},loudnorm=I=-16:TP=-1.5:LRA=11:print_format=json" -f null -
  cp "$WORK/.stderr" "$E/loudnorm1b.txt"; MEAS=$E/loudnorm1b.txt; PRE="${PRE},"
fi
LN=$(H loudnorm "$MEAS" -16 -1.5 11)
run "episode.loudnorm2" ffmpeg -hide_banner -nostdin -nostats -y -i "$E/audio_raw.wav" \
    -af "${PRE}${LN},aresample=48000" -c:a aac -b:a 192k -ar 48000 -ac 2 "$E/audio.m4a"
cp "$WORK/.stderr" "$E/loudnorm2.txt"
grep -q '"normalization_type" : "linear"' "$E/loudnorm2.txt" || echo "WARNING: loudnorm fell back to dynamic mode" >&2

# final mux: video copy + audio copy + mov_text subtitles + chapters/metadata
run "episode.mux" "${FF[@]}" -i "$E/video.mp4" -i "$E/audio.m4a" -i "$E/episode.srt" \
    -f ffmetadata -i "$E/chapters.ffmeta" \
    -map 0:v:0 -map 1:a:0 -map 2:s:0 -map_metadata 3 -map_chapters 3 \
    -c:v copy -c:a copy -c:s mov_text -metadata:s:s:0 language=eng -metadata:s:a:0 language=jpn \
    -movflags +faststart "$OUT/episode.mp4"
run "episode.thumbnail" "${FF[@]}" -ss 1.0 -i "$OUT/episode.mp4" -frames:v 1 -vf "scale=480:-2" -q:v 3 "$OUT/thumbnail.jpg"

cp "$E/episode.srt" "$E/chapters.ffmeta" "$E"/loudnorm*.txt "$OUT/"
echo "expected_frames=$TOTAL_FRAMES expected_s=$(awk -v f="$TOTAL_FRAMES" 'BEGIN{printf "%.4f", f/30}')" >"$OUT/expected.txt"
"$MEDIA_REPORT" "$OUT/episode.mp4" | tee "$OUT/media-report.txt"
echo "--- ducking"; column -t -s $'\t' "$OUT/ducking.tsv"
echo "--- timings"; column -t -s $'\t' "$TIMES"
