"""KAD reference values from the authors' toolkit: PyPI `kadtk` (its kad.py, calc_kernel_audio_distance).

kadtk's package __init__ imports every embedding model it supports (tensorflow, laion-clap, ...);
this script loads only kadtk/kad.py from the installed package, with empty stand-ins for the
modules kad.py imports but calc_kernel_audio_distance does not use (hypy_utils, kadtk.emb_loader,
kadtk.model_loader). calc_kernel_audio_distance itself runs unchanged.

    python -m venv /tmp/kad && /tmp/kad/bin/pip install --no-deps kadtk==1.1.0 && /tmp/kad/bin/pip install torch numpy
    /tmp/kad/bin/python tests/data/kad/make_reference.py

Writes reference.json: per case (cases.py) kadtk's value with its defaults (precision float32, the
bandwidth from the median pairwise distance of the SECOND argument y, eps 1e-8, scale 100) and with
precision=torch.float64; the bandwidth it used; the hand case.
"""
from __future__ import annotations

import importlib.machinery
import importlib.metadata
import importlib.util
import json
import sys
import types
from pathlib import Path

HERE = Path(__file__).resolve().parent


class _StandIn(types.ModuleType):
    def __getattr__(self, attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return type(attr, (), {})


def load_kad():
    """kadtk/kad.py as a module, without running kadtk/__init__.py."""
    locations = importlib.util.find_spec("kadtk").submodule_search_locations
    for name in ("hypy_utils", "hypy_utils.tqdm_utils", "kadtk", "kadtk.emb_loader", "kadtk.model_loader"):
        module = _StandIn(name)
        module.__spec__ = importlib.machinery.ModuleSpec(name, None)
        sys.modules[name] = module
    spec = importlib.util.spec_from_file_location("kadtk.kad", Path(list(locations)[0]) / "kad.py")
    kad = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(kad)
    return kad


def main() -> None:
    import numpy as np
    import torch

    sys.path.insert(0, str(HERE))
    import cases

    kad = load_kad()
    out = {"kadtk": importlib.metadata.version("kadtk"), "torch": torch.__version__, "numpy": np.__version__,
           "function": "kadtk.kad.calc_kernel_audio_distance(x, y, (None, None), 'cpu')", "cases": {}}
    for case in cases.CASES:
        x, y = (torch.from_numpy(a) for a in cases.embeddings(case))
        out["cases"][case[0]] = {
            "kad_float32": float(kad.calc_kernel_audio_distance(x, y, (None, None), "cpu")),
            "kad_float64": float(kad.calc_kernel_audio_distance(x, y, (None, None), "cpu", precision=torch.float64)),
            "bandwidth": kad.median_pairwise_distance(y)}
    hx, hy = (torch.tensor(cases.HAND[k], dtype=torch.float32) for k in "xy")
    out["hand"] = {"kad_float32": float(kad.calc_kernel_audio_distance(hx, hy, (None, None), "cpu")),
                   "kad_float64": float(kad.calc_kernel_audio_distance(hx, hy, (None, None), "cpu",
                                                                       precision=torch.float64))}
    (HERE / "reference.json").write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
