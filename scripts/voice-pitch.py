#!/usr/bin/env python3
# Usage (project root, after a build): voice-pitch.py [SUFFIX, e.g. .ja] [EPISODE]
# needs numpy (the voices venv has it: ~/.local/share/studio/voices/bin/python).
"""Median F0 (autocorrelation over voiced 40-ms frames) of an episode's voice lines, by speaker."""
import sys, wave, re, numpy as np
def read(path):
    w = wave.open(path)
    n, ch, sw, rate = w.getnframes(), w.getnchannels(), w.getsampwidth(), w.getframerate()
    raw = w.readframes(n)
    if sw == 4:
        x = np.frombuffer(raw, dtype='<f4') if w.getcomptype()=='NONE' else None
    else:
        x = np.frombuffer(raw, dtype='<i2') / 32768.0
    return x.reshape(-1, ch).mean(axis=1), rate
def f0s(x, rate):
    size, hop = int(0.04*rate), int(0.01*rate)
    out = []
    lo, hi = int(rate/500), int(rate/70)
    for i in range(0, len(x)-size, hop):
        f = x[i:i+size]; f = f - f.mean()
        e = (f*f).sum()
        if e < 1e-3 * size * 0.01: continue
        ac = np.correlate(f, f, 'full')[size-1:]
        lag = lo + np.argmax(ac[lo:hi])
        if ac[lag] / ac[0] > 0.5: out.append(rate/lag)
    return out
ep = open(f'episodes/{sys.argv[2] if len(sys.argv) > 2 else "ep01"}.yaml').read()
speakers = {}
scene = shot = None
n = 0
for line in ep.splitlines():
    m = re.match(r'  - id: (s\d+)', line)
    if m: scene = m.group(1)
    m = re.match(r'      - id: (sh\d+)', line)
    if m: shot, n = m.group(1), 0
    m = re.match(r'\s+- speaker: (\w+)', line)
    if m:
        n += 1; speakers.setdefault(m.group(1), []).append(f'{scene}/{shot}/voice-{n}')
suffix = sys.argv[1] if len(sys.argv) > 1 else ''
for who, lines in speakers.items():
    allf, durs = [], []
    for l in lines:
        x, rate = read(f'out/{sys.argv[2] if len(sys.argv) > 2 else "ep01"}/{l}{suffix}.wav')
        durs.append(len(x)/rate); allf += f0s(x, rate)
    print(f'{who}: {len(lines)} lines, {sum(durs):.1f} s, median F0 {np.median(allf):.0f} Hz (IQR {np.percentile(allf,25):.0f}-{np.percentile(allf,75):.0f})')
