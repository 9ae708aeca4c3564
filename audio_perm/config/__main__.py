"""python -m audio_perm.config --paper_flags > configs/paper.flags"""

import sys

from audio_perm.config.run import paper_flagfile


def main(argv):
  if argv[1:] == ["--paper_flags"]:
    print(paper_flagfile(), end="")
    return 0
  print("usage: python -m audio_perm.config --paper_flags", flush=True)
  return 2


if __name__ == "__main__":
  sys.exit(main(sys.argv))
