"""Measure voice lines per speaker: median F0, pitch spread, loudness, rate.

Run by scripts/voice-report.sh in the voices venv (numpy). Input: a TSV of
node id, WAV path, speaker, text. F0 is found per 40 ms frame (10 ms hop)
by normalized autocorrelation between 60 and 500 Hz; a frame counts as
voiced when it is within 30 dB of the line's loudest frame and its best
correlation is at least 0.6. Loudness is the RMS level of the voiced
frames (dBFS); the rate is words per second of the line's length.
"""
import sys
import wave

import numpy as np

FRAME, HOP = 0.040, 0.010
F0_RANGE = (60.0, 500.0)


def read(path):
    with wave.open(path) as w:
        rate = w.getframerate()
        x = np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float64)
        if w.getnchannels() > 1:
            x = x.reshape(-1, w.getnchannels()).mean(axis=1)
    return x / 32768.0, rate


def frames(x, rate):
    n, h = int(FRAME * rate), int(HOP * rate)
    for i in range(0, max(len(x) - n, 0), h):
        yield x[i : i + n]


def analyse(x, rate):
    fs = list(frames(x, rate))
    if not fs:
        return [], []
    rms = np.array([np.sqrt(np.mean(f**2)) + 1e-12 for f in fs])
    floor = rms.max() * 10 ** (-30 / 20)
    lo, hi = int(rate / F0_RANGE[1]), int(rate / F0_RANGE[0])
    f0s, levels = [], []
    for f, r in zip(fs, rms):
        if r < floor:
            continue
        f = f - f.mean()
        spec = np.fft.rfft(f, 2 * len(f))
        ac = np.fft.irfft(spec * np.conj(spec))[: len(f)]
        if ac[0] <= 0:
            continue
        # Normalized by the overlap, so long lags are not penalized.
        ac = ac / ac[0] * len(f) / (len(f) - np.arange(len(f)))
        lag = lo + int(np.argmax(ac[lo:hi]))
        if ac[lag] < 0.6:
            continue
        # The first peak near the best one, against octave errors.
        for div in (3, 2):
            sub = int(round(lag / div))
            if sub >= lo and ac[sub - 1 : sub + 2].max() > 0.85 * ac[lag]:
                lag = sub - 1 + int(np.argmax(ac[sub - 1 : sub + 2]))
                break
        f0s.append(rate / lag)
        levels.append(20 * np.log10(r))
    return f0s, levels


def main():
    by = {}
    for row in open(sys.argv[1], encoding="utf-8"):
        node, path, speaker, text = row.rstrip("\n").split("\t")
        x, rate = read(path)
        f0s, levels = analyse(x, rate)
        s = by.setdefault(speaker, {"f0": [], "db": [], "words": 0, "seconds": 0.0, "lines": 0})
        s["f0"] += f0s
        s["db"] += levels
        s["words"] += len(text.split())
        s["seconds"] += len(x) / rate
        s["lines"] += 1
    print(f"{'speaker':8} {'lines':>5} {'F0 median':>10} {'F0 IQR':>10} {'level':>9} {'rate':>11}")
    medians = {}
    for speaker, s in sorted(by.items()):
        f0 = np.array(s["f0"])
        if len(f0) == 0:
            print(f"{speaker:8} {s['lines']:5}  no voiced frames")
            continue
        q1, med, q3 = np.percentile(f0, [25, 50, 75])
        medians[speaker] = med
        iqr = 12 * np.log2(q3 / q1)
        db = 10 * np.log10(np.mean(10 ** (np.array(s["db"]) / 10)))
        wps = s["words"] / s["seconds"]
        print(f"{speaker:8} {s['lines']:5} {med:7.0f} Hz {iqr:6.1f} st {db:6.1f} dB {wps:5.2f} words/s")
    names = sorted(medians)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            st = 12 * np.log2(medians[a] / medians[b])
            print(f"  {a} vs {b}: {abs(medians[a] / medians[b] - 1) * 100:.0f}% apart in pitch ({st:+.1f} semitones)")


if __name__ == "__main__":
    main()
