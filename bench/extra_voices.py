"""Add one more voice source to a corpus's training split, for the espeak-ng fold of
bench/held_out_voices.py: the sentences the corpus gave espeak-ng (every --every-th), said by
SAM or by piper, as extra training utterances of engine "sam" or "piper". Which voices reach a
held-out formant synthesizer: a second formant synthesizer, or the same sentences from a neural
voice? (docs/benchmarks.md, "A second formant engine in training: SAM".)

SAM is npm's `sam-js` (Software Automatic Mouth, 1982: formant synthesis with its own English
letter-to-sound rules), run by node; it is not an engine of `asrlab synth` (its speech is of
low quality). Each utterance draws SAM's speed, pitch, mouth and throat; piper utterances use 16
`asrlab.synth` piper speakers. Levels are drawn like asrlab synth's (0.9 peak, -12..0 dB).

    npm install --prefix /tmp/samjs sam-js@0.3.1
    python bench/extra_voices.py --corpus C --engine sam --out C_sam --sam-js /tmp/samjs
    python bench/held_out_voices.py --corpus-dir C_sam --part engines --held-out-engines espeak ...
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from asrlab import synth
from asrlab.audio import resample
from asrlab.synth.corpus import UTT_GAIN_DB

SAY_JS = """const SamJs = require('sam-js'); const fs = require('fs');
const [text, speed, pitch, mouth, throat, out] = process.argv.slice(2);
const buf = new SamJs({speed: +speed, pitch: +pitch, mouth: +mouth, throat: +throat}).buf8(text);
if (!buf) { console.error('SAM said nothing'); process.exit(2); }
fs.writeFileSync(out, Buffer.from(buf));
"""
SAM_RATE = 22050  # sam-js: 8-bit unsigned PCM at 22,050 Hz


def say_sam(text: str, voice: dict, sam_js: Path) -> np.ndarray:
    with tempfile.TemporaryDirectory() as tmp:
        script, raw = Path(tmp) / "say.js", Path(tmp) / "out.raw"
        script.write_text(SAY_JS)
        subprocess.run(["node", str(script), text, *(str(voice[k]) for k in
                                                      ("speed", "pitch", "mouth", "throat")),
                        str(raw)], check=True, env={"NODE_PATH": str(sam_js / "node_modules")})
        x = (np.fromfile(raw, np.uint8).astype(np.float32) - 128) / 128
    return synth.trim_silence(resample(x, SAM_RATE, synth.SAMPLE_RATE), synth.SAMPLE_RATE, 0.1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", type=Path, required=True, help="an asrlab synth corpus folder")
    p.add_argument("--engine", choices=["sam", "piper"], required=True)
    p.add_argument("--out", type=Path, required=True, help="new corpus folder")
    p.add_argument("--every", type=int, default=2, help="every N-th espeak-ng training sentence")
    p.add_argument("--sam-js", type=Path, default=Path("/tmp/samjs"),
                   help="npm prefix holding node_modules/sam-js")
    args = p.parse_args(argv)
    if args.engine == "sam" and not (args.sam_js / "node_modules" / "sam-js").is_dir():
        sys.exit(f"no sam-js under {args.sam_js}: npm install --prefix {args.sam_js} sam-js@0.3.1")
    shutil.rmtree(args.out, ignore_errors=True)
    folder = args.out / f"wavs_{args.engine}"
    folder.mkdir(parents=True)
    for name in ("corpus.json", "val.jsonl", "test.jsonl"):
        shutil.copy(args.corpus / name, args.out / name)
    (args.out / "wavs").symlink_to((args.corpus / "wavs").resolve())
    rows = [json.loads(line) for line in (args.corpus / "train.jsonl").read_text().splitlines()]
    rng = random.Random(f"extra/{args.engine}")
    speakers = synth.make_speakers(16, 0, ("piper",)) if args.engine == "piper" else []
    extra = []
    for k, row in enumerate([r for r in rows if r["engine"] == "espeak"]):
        # every sentence draws its voice and level, the kept ones are spoken: a sentence's
        # voice does not depend on --every
        voice = (dict(speed=rng.randint(60, 90), pitch=rng.randint(50, 95),
                      mouth=rng.randint(110, 170), throat=rng.randint(100, 170))
                 if args.engine == "sam" else speakers[k % len(speakers)])
        level = 0.9 * 10 ** (rng.uniform(*UTT_GAIN_DB) / 20)
        if k % args.every:
            continue
        if args.engine == "sam":
            audio = say_sam(row["text"], voice, args.sam_js)
            speaker = "sam:" + ":".join(f"{key[0]}{v}" for key, v in voice.items())
        else:
            audio, speaker = synth.render(row["text"], voice, seed=k), voice.id
        audio = audio * (level / max(1e-4, float(np.abs(audio).max())))
        path = f"wavs_{args.engine}/x{k:05d}.wav"
        sf.write(args.out / path, audio, synth.SAMPLE_RATE, subtype="PCM_16")
        extra.append({**row, "id": f"x_{args.engine}_{k:05d}", "audio_filepath": path,
                      "duration": round(len(audio) / synth.SAMPLE_RATE, 4), "speaker": speaker,
                      "engine": args.engine, "voice": args.engine})
    (args.out / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows + extra))
    hours = sum(r["duration"] for r in extra) / 3600
    print(f"{args.out}: {len(extra)} {args.engine} utterances ({hours:.2f} h) added to "
          f"{len(rows)} training utterances")
    return 0


if __name__ == "__main__":
    sys.exit(main())
