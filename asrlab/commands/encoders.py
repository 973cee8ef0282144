"""`asrlab encoders [FOLDER ...]`: the pretrained speech encoders asrlab can use.

Lists the named bundles (installed or not, with the pip command for those that are not) and the
folders given: name, kind, layers, dimensions, parameters, where the weights are, their sha256.
A bundle's weights are checked against the sha256 asrlab records for it. `--json` prints one
JSON object ({"encoders": [...]}) for machines. Exit status 1 when an installed bundle is
corrupt or a folder given is not an encoder (each said in its row), else 0.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("folders", nargs="*", type=Path, metavar="FOLDER",
                   help="also describe these folders (CTranslate2 Whisper, or transformers "
                        "whisper / wav2vec2 / hubert / wavlm)")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")


def rows(folders: list[Path]) -> list[dict]:
    """One row per bundle and folder: the source's fields, or a status and what to do."""
    from asrlab.pretrained import BUNDLES, EncoderSourceError, bundle_files, resolve_encoder

    out = []
    for name in [*BUNDLES, *map(str, folders)]:
        bundle = BUNDLES.get(name)
        if bundle is not None and bundle_files(bundle) is None:
            out.append({"name": name, "status": "not installed", "install": bundle.install,
                        "license": bundle.license, "origin": bundle.origin})
            continue
        try:
            out.append({"status": "ok", **resolve_encoder(name).to_dict()})
        except EncoderSourceError as e:
            out.append({"name": name, "status": "error", "error": str(e)})
    return out


def describe(r: dict) -> list[str]:
    """A row as text: a headline, then the weights, the sha256 and where they come from."""
    if r["status"] == "not installed":
        return [f"{r['name']}  not installed: {r['install']}", f"  from     {r['origin']}"]
    if r["status"] == "error":
        return [f"{r['name']}  error: {r['error']}"]
    params = "?" if r["parameters"] is None else f"{r['parameters']:,}"
    mels = f", {r['n_mels']} mels" if r["n_mels"] else ", waveform"
    lines = [f"{r['name']}  {r['kind']} ({r['format']}): {r['layers']} layers x {r['width']}, "
             f"{r['heads']} heads{mels}, {params} parameters"]
    lines += [f"  weights  {f}" for f in r["files"]]
    lines.append(f"  sha256   {r['sha256']}")
    origin = ", ".join(x for x in (r["origin"], r["license"] and f"license {r['license']}") if x)
    return lines + [f"  from     {origin}"]


def run(args) -> int:
    found = rows(args.folders)
    if args.json:
        print(json.dumps({"encoders": found}, indent=2))
    else:
        print("\n".join(line for r in found for line in describe(r)))
    return 1 if any(r["status"] == "error" for r in found) else 0
