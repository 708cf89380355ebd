"""Writes the small image folders the C examples run on: `good/` (normal striped
textures, 128 x 128 RGB PNG) and `test/` (two more good ones and one with a planted
defect). Usage: make_images.py OUT_DIR"""
import pathlib
import sys

import numpy as np
from PIL import Image


def texture(seed: int, size: int = 128) -> np.ndarray:
    phase = seed * 37 % 17
    y, x = np.mgrid[0:size, 0:size]
    v = np.where(((x + phase) // 6 + y // 9) % 2 == 0, 180, 60).astype(np.uint8)
    return np.stack([v, v // 2 + 20, 255 - v], axis=-1).astype(np.uint8)


def main() -> None:
    out = pathlib.Path(sys.argv[1])
    (out / "good").mkdir(parents=True, exist_ok=True)
    (out / "test").mkdir(parents=True, exist_ok=True)
    for i in range(8):
        Image.fromarray(texture(i)).save(out / "good" / f"good_{i}.png")
    for i in (20, 21):
        Image.fromarray(texture(i)).save(out / "test" / f"good_{i}.png")
    defect = texture(22)
    defect[50:74, 60:80] = (255, 255, 255)
    Image.fromarray(defect).save(out / "test" / "defect.png")


if __name__ == "__main__":
    main()
