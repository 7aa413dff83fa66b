"""Which onnx conversion keeps SmolLM2's answers: model builder options against float32 torch.

For each variant the dequantized GGUF is converted by onnxruntime-genai's model builder (the
command `rag/generators/onnx.py` runs, plus the variant's options), then 50 grounded prompts are
answered greedily and compared with the transformers float32 answers, and decode tokens/s is
timed on 6 of them. This chose `RAG_GENERATOR_PRECISION`'s default; not a `make bench` part.

    python -m bench.onnx_variants [--work DIR] [VARIANT ...]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

from bench.generation import decode_rate, grounded_chats, settings
from bench.measure import quiet

VARIANTS = {  # name: (precision, extra builder options)
    "int4": ("int4", []),
    "int4-k-quant-last": ("int4", ["algo_config=k_quant_last"]),  # lm head in int8
    "int4-matmul-only": ("int4", ["op_types_to_quantize=MatMul"]),  # embeddings kept float
    "int4-asymmetric": ("int4", ["is_symmetric=false"]),
    "int8": ("int8", []),
    "int8-block-128": ("int8", ["block_size=128"]),
    "fp32": ("fp32", []),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="*", help=f"of {', '.join(VARIANTS)} (default: all)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/rag-onnx-variants"))
    args = parser.parse_args()
    unknown = sorted(set(args.variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variants {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    args.variants = args.variants or list(VARIANTS)
    quiet()
    import onnxruntime_genai as og
    from transformers import AutoTokenizer

    from rag.generators import load_generator
    from rag.generators.onnx import OnnxGenerator, builder_command
    from rag.generators.source import resolve_source
    from rag.generators.transformers import load_pretrained, save_plain

    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    chats = grounded_chats(50)
    reference_file = work / "reference.json"
    if not reference_file.exists():
        reference = load_generator(settings("transformers", "int8"))
        answers = [reference.generate(chat) for chat in chats]
        reference_file.write_text(json.dumps(answers))
        print(f"transformers f32: decode {decode_rate(reference, chats[:6]):.1f} tokens/s")
        del reference
    expected = json.loads(reference_file.read_text())
    onnx_settings = settings("onnx", "int8")
    source = resolve_source(onnx_settings)
    plain = work / "plain"
    if not plain.exists():
        tokenizer, model = load_pretrained(source.location, source.load_options)
        save_plain(model, tokenizer, plain)
        del model
    tokenizer = AutoTokenizer.from_pretrained(str(plain))
    for name in args.variants:
        precision, extra = VARIANTS[name]
        out = work / name
        if not (out / "genai_config.json").exists():
            started = time.perf_counter()
            command = builder_command(plain, out, precision, work / "builder-cache", extra)
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode:
                print(f"{name}: the builder failed: {done.stderr.strip().splitlines()[-1]}")
                continue
            tokenizer.save_pretrained(out)
            print(f"{name}: converted in {time.perf_counter() - started:.0f} s")
        try:
            config = og.Config(str(out))
            config.clear_providers()
            generator = OnnxGenerator(og.Model(config), tokenizer, name, onnx_settings)
        except Exception as exc:  # a graph the runtime refuses: reported, not fatal
            print(f"{name}: onnxruntime cannot load it: {str(exc)[:160]}")
            continue
        answers = [generator.generate(chat) for chat in chats]
        same = sum(a == b for a, b in zip(answers, expected, strict=True)) / len(chats)
        size = sum(f.stat().st_size for f in out.iterdir() if f.is_file()) / 1e6
        print(
            f"{name}: same greedy answer on {same:.0%} of {len(chats)}, decode "
            f"{decode_rate(generator, chats[:6]):.1f} tokens/s, {size:.0f} MB"
        )


if __name__ == "__main__":
    main()
