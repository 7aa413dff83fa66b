"""`rag` with every unpickler disabled: proof that no code path needs one.

pickle, _pickle and torch.load raise as soon as anything calls them; then the real CLI runs
(`python -m tests.reliability.no_pickle ask ...`), loading the real models and an index.
"""

from __future__ import annotations

import _pickle
import pickle


def refuse(*args, **kwargs):
    raise AssertionError("something tried to unpickle")


class Refused:
    def __init__(self, *args, **kwargs) -> None:
        refuse()


pickle.load = pickle.loads = _pickle.load = _pickle.loads = refuse
pickle.Unpickler = _pickle.Unpickler = Refused

import torch  # noqa: E402 - after the guards, so nothing imported can keep a reference

torch.load = refuse

from rag.cli import app  # noqa: E402

if __name__ == "__main__":
    app()
