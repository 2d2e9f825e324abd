"""Speed of the online path, per stage and end to end: the same as ``flashback bench``.

    python benchmarks/fps.py [--seconds 20] [--size 320x240] [--model ViT-B-32] [--device auto] [--feeds 4]
"""

import sys

from flashback.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
