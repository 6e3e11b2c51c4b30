#!/usr/bin/env python3
"""Writes data/instruct-demo/{train,valid}.jsonl: a tiny synthetic instruction set (authored here, CC0)
for the CPU demo that LoRA-tunes aidreams260K. Records are Alpaca-style {instruction, input, output};
answers follow one fixed pattern per instruction kind so a 240K-parameter model can learn them in a
few minutes. Deterministic (stdlib random with a fixed seed); stdlib only."""
import json
import random
from pathlib import Path

PLACES = ["the sea", "a forest", "a city", "the moon", "a garden", "a river", "the stars", "a desert",
          "a mountain", "the rain", "a library", "a bridge", "a lake", "the snow", "a tower", "an island"]
COLORS = ["blue", "green", "gold", "silver", "red", "white", "violet", "amber"]
FEELINGS = ["calm", "curious", "quiet", "bright", "gentle", "warm"]


def record(rng):
    place, color, feeling = rng.choice(PLACES), rng.choice(COLORS), rng.choice(FEELINGS)
    kind = rng.randrange(3)
    if kind == 0:
        return {"instruction": f"Describe a dream about {place}.", "input": "",
                "output": f"I dream of {place}. The light is {color} and I feel {feeling}."}
    if kind == 1:
        return {"instruction": "Name the color of this dream.", "input": f"A {color} dream of {place}.",
                "output": f"The color is {color}."}
    return {"instruction": f"How do you feel in {place}?", "input": "",
            "output": f"In {place} I feel {feeling}."}


def main():
    rng = random.Random(20261122)
    out = Path(__file__).resolve().parent.parent / "data" / "instruct-demo"
    out.mkdir(parents=True, exist_ok=True)
    for name, n in (("train", 160), ("valid", 24)):
        with open(out / f"{name}.jsonl", "w", encoding="utf-8") as f:
            for _ in range(n):
                f.write(json.dumps(record(rng), ensure_ascii=False) + "\n")
        print(f"wrote {out / (name + '.jsonl')}: {n} records")


if __name__ == "__main__":
    main()
